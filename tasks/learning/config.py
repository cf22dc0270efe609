"""Recipe section of the learning stage: the held-out benchmark, how the checkpoints judge it, and the gates.

The judges decode as in evaluation (greedy, docs/method.md §8) with the template the student was trained
on (`rl.template`, which the recipe keeps equal to `distill.template`). The gates change no artifact: they
are read after every run, including one whose stages were all skipped, and fail it when a number misses.
"""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from tasks.config import ConfigError, Float, Int, config_section
from tasks.evaluate.config import BenchmarkConfig


@config_section
class GatesConfig:
    """Thresholds a trained judge must meet on the held-out benchmark; None = no gate."""

    min_sft_accuracy: Float | None = field(
        default=None, metadata={"help": "Held-out accuracy after SFT at least this (0-1)."}
    )
    min_rl_accuracy: Float | None = field(
        default=None, metadata={"help": "Held-out accuracy after GRPO at least this (0-1)."}
    )
    max_unparseable: Float | None = field(
        default=None,
        metadata={"help": "Share of unparseable verdicts (neither tag, or both) after SFT and after GRPO at most."},
    )
    max_rl_drop: Float | None = field(
        default=None,
        metadata={"help": "GRPO's held-out accuracy at least its starting point's (SFT, or the student) minus this."},
    )

    def __post_init__(self) -> None:
        for name in ("min_sft_accuracy", "min_rl_accuracy", "max_unparseable", "max_rl_drop"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(name, f"must be in [0, 1], got {value}")


@config_section
class LearningConfig:
    """The learning stage's recipe section."""

    benchmark: BenchmarkConfig = field(
        default_factory=lambda: BenchmarkConfig(name="refusal_task", path="synthetic"),
        metadata={"help": "The held-out benchmark every judge is scored on (default: the refusal task's)."},
    )
    backend: Literal["hf", "vllm"] = field(
        default="hf", metadata={"help": "hf: transformers generate (CPU-capable); vllm: on GPU workers."}
    )
    max_new_tokens: Int = field(default=256, metadata={"help": "Longest judgement in tokens."})
    order_seed: Int = field(default=0, metadata={"help": "Seed of each pair's A/B order."})
    batch_size: Int = field(default=32, metadata={"versioned": False, "help": "hf: prompts per generate call."})
    gates: GatesConfig = field(
        default_factory=GatesConfig,
        metadata={"versioned": False, "help": "Fail the run (exit 1, artifacts kept) when a trained judge misses one."},
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("max_new_tokens", "max_new_tokens and batch_size must be at least 1")
