"""Model builders: the tiny offline student the smoke recipe trains in place of a paper-scale checkpoint.

Nothing here downloads anything; every model folder is built from local text and a seed. The builder
lives in `tasks.models.tiny` (imports torch and transformers); this package exports only the light config.
"""

from tasks.models.config import EOS_TOKEN, JUDGE_TAGS, PAD_TOKEN, SPECIAL_TOKENS, TinyModelConfig

__all__ = ["EOS_TOKEN", "JUDGE_TAGS", "PAD_TOKEN", "SPECIAL_TOKENS", "TinyModelConfig"]
