"""The tiny student's size and vocabulary constants: light to import (recipes parse it without torch)."""

from __future__ import annotations

from dataclasses import field

from data_contracts.versioning import UNLESS_DEFAULT
from tasks.config import Float, Int, config_section

IM_START = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"  # ends every chat turn; generation stops here
PAD_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, IM_START, EOS_TOKEN)  # ids 0, 1, 2

# The judge protocol's tags (docs/method.md §2), each kept as one whole token so a tiny model learns the
# layout quickly and `<answer>[[A]]</answer>` is three tokens. They are ordinary (non-special) tokens:
# decoding keeps them even with skip_special_tokens=True, which the RL reward rule relies on.
JUDGE_TAGS: tuple[str, ...] = (
    "<type>", "</type>", "<rubric>", "</rubric>", "<justify>", "</justify>", "<solution>", "</solution>",
    "<eval>", "</eval>", "<quote_A>", "</quote_A>", "<quote_B>", "</quote_B>",
    "<summary_A>", "</summary_A>", "<summary_B>", "</summary_B>",
    "<answer>", "</answer>", "[[A]]", "[[B]]", "[[C]]", "<think>", "</think>",
)  # fmt: skip


@config_section
class TinyModelConfig:
    """Size and seed of the tiny offline student (a random-init Qwen2 with its own BPE tokenizer)."""

    vocab_size: Int = field(
        default=4096,
        metadata={"help": "Tokenizer budget (bytes, special tokens, judge tags, merges); also the embedding rows."},
    )
    hidden_size: Int = field(default=128, metadata={"help": "Model width."})
    num_layers: Int = field(default=2, metadata={"help": "Number of decoder layers."})
    num_heads: Int = field(default=4, metadata={"help": "Attention (query) heads; must divide hidden_size."})
    num_kv_heads: Int = field(
        default=2, metadata={"help": "Key/value heads (grouped-query attention); must divide num_heads."}
    )
    intermediate_size: Int = field(default=256, metadata={"help": "Width of the MLP's hidden layer."})
    max_position_embeddings: Int = field(
        default=4096, metadata={"help": "Longest sequence in tokens; also the tokenizer's model_max_length."}
    )
    seed: Int = field(default=0, metadata={"help": "Torch seed for the random initial weights."})
    initializer_range: Float = field(
        default=0.02,
        metadata={
            "versioned": UNLESS_DEFAULT,  # added later: students built at the default keep their versions
            "help": "Standard deviation of the random initial weights. Qwen2's 0.02 suits wide models; at width 128 "
            "the smoke student learns the verdict reliably from 0.06 (README, 'How reliably it learns').",
        },
    )
    tie_word_embeddings: bool = field(
        default=True, metadata={"help": "Share input embeddings and LM head, as the small Qwen2.5 models do."}
    )

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size}) "
                f"and num_kv_heads ({self.num_kv_heads}) must divide num_heads"
            )
        if not self.initializer_range > 0:
            raise ValueError(f"initializer_range must be above 0, got {self.initializer_range}")
        smallest = 256 + len(SPECIAL_TOKENS) + len(JUDGE_TAGS)
        if self.vocab_size < smallest:
            raise ValueError(f"vocab_size {self.vocab_size} is below {smallest} (bytes + special tokens + judge tags)")
