"""Model builders: the tiny offline student the smoke recipe trains in place of a paper-scale checkpoint.

Nothing here downloads anything; every model folder is built from local text and a seed.
"""

from tasks.models.tiny import (
    CHAT_TEMPLATE,
    EOS_TOKEN,
    JUDGE_TAGS,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    TinyModelConfig,
    build_tiny_model,
    train_tiny_tokenizer,
)

__all__ = [
    "CHAT_TEMPLATE",
    "EOS_TOKEN",
    "JUDGE_TAGS",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "TinyModelConfig",
    "build_tiny_model",
    "train_tiny_tokenizer",
]
