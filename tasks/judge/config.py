"""The judge's recipe section: which model judges, which backend runs it and how it decodes.

The evaluate stage's `evaluate.judge`, the learning stage and `PairwiseJudge` all build one. Only what changes
a verdict is versioned: batch size, GPU memory share and the endpoint's connection settings are not.
"""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from data_contracts.versioning import UNLESS_DEFAULT
from tasks.config import ConfigError, Float, Int, config_section
from tasks.hub import requested_revision_field, revision_field
from tasks.llm.config import EndpointConfig

BACKENDS = ("vllm", "hf", "openai", "length")
# `judge.model` values that mean "the checkpoint this recipe trained" rather than a path, Hub id or API name.
CHECKPOINT_MODELS = ("rl_checkpoint", "sft_checkpoint")


@config_section
class JudgeConfig:
    """The model that judges, the backend that runs it and how it decodes (greedy by default, docs/method.md §8)."""

    backend: Literal["vllm", "hf", "openai", "length"] = field(
        default="vllm",
        metadata={
            "help": "vllm: offline LLM.generate on GPUs; hf: transformers generate (CPU-capable); openai: any "
            "OpenAI-compatible endpoint; length: the 'longer answer wins' baseline (no model)."
        },
    )
    model: str = field(
        default="rl_checkpoint",
        metadata={
            "help": "rl_checkpoint / sft_checkpoint (this recipe's), a local model folder or Hub id (vllm, hf), or "
            "the model name the endpoint serves (openai)."
        },
    )
    revision: str | None = revision_field("hf / vllm, when `model` is a Hub id")
    requested_revision: str | None = requested_revision_field()
    template: str = field(
        default="cor-instruct-v1",
        metadata={"help": "Judge template set: a built-in name or a folder (e.g. the authors' exact strings)."},
    )
    max_new_tokens: Int = field(
        default=8192,
        metadata={"help": "Longest verdict in tokens (docs/method.md §8: long; the authors use up to 50,000)."},
    )
    temperature: Float = field(default=0.0, metadata={"help": "0 = greedy decoding (docs/method.md §8)."})
    max_prompt_tokens: Int | None = field(
        default=None,
        metadata={
            "help": "hf / vllm: prompts longer than this are not judged and score as errors; None = the model's "
            "context length minus max_new_tokens."
        },
    )
    samples: Int = field(
        default=1,
        metadata={
            "versioned": UNLESS_DEFAULT,
            "help": "Verdicts sampled per comparison (temperature > 0), combined by majority vote; the report shows "
            "the scores at 1, 3, 5, ... samples from the same verdicts and the tokens each costs.",
        },
    )
    seed: Int = field(
        default=0,
        metadata={
            "versioned": UNLESS_DEFAULT,
            "help": "With samples > 1: each sample of each comparison gets its own seed derived from this one.",
        },
    )
    allow_tie: bool = field(
        default=False,
        metadata={"help": "Read [[C]] (neither [[A]] nor [[B]]) as a tie worth 0.5, for judges that can call one."},
    )
    dtype: str = field(default="auto", metadata={"help": "hf / vllm weights dtype: auto, bfloat16, float16, float32."})
    batch_size: Int = field(default=8, metadata={"versioned": False, "help": "hf: prompts per generate call."})
    tensor_parallel_size: Int = field(default=1, metadata={"help": "vllm: GPUs per model (docs/method.md §7 uses 4)."})
    gpu_memory_utilization: Float = field(
        default=0.9, metadata={"versioned": False, "help": "vllm: share of GPU memory it may take."}
    )
    max_model_len: Int | None = field(
        default=None, metadata={"help": "vllm: context length to allocate; None = the model's own."}
    )
    endpoint: EndpointConfig | None = field(
        default=None,
        metadata={
            "versioned": False,
            "help": "openai: connection, concurrency, retries and prices (the endpoint client's settings); the "
            "model, max tokens and temperature come from this judge section.",
        },
    )

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint kind this judge runs (rl_checkpoint, sft_checkpoint), or None for any other model."""
        return self.model if self.model in CHECKPOINT_MODELS and self.backend != "length" else None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError("backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("max_new_tokens", "batch_size", "tensor_parallel_size", "samples"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ConfigError("temperature", f"must be >= 0, got {self.temperature}")
        if self.samples > 1 and (self.temperature == 0 or self.backend == "length"):
            raise ConfigError("samples", "several samples need sampled decoding: a model judge with temperature > 0")
        if self.seed != 0 and self.samples == 1:
            raise ConfigError("seed", "seeds the samples of `samples` > 1; with one sample it has no effect")
        if self.backend == "openai" and (self.endpoint is None or self.endpoint.base_url is None):
            raise ConfigError("endpoint.base_url", "the openai backend needs the endpoint's URL")
        if self.backend == "openai" and self.model in CHECKPOINT_MODELS:
            raise ConfigError("model", "the openai backend judges with a served model: give the name it serves")
