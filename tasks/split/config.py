"""The split stage's recipe section."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from tasks.config import ConfigError, Float, Int, config_section


@config_section
class SplitConfig:
    """How preference pairs are divided into `distill_set` and `rl_set`, and where the chosen answer goes."""

    distill_fraction: Float = field(
        default=0.12,
        metadata={
            "help": "Share of pairs for teacher distillation (docs/method.md §4: ~12%); 0 sends every pair to RL."
        },
    )
    seed: Int = field(default=42, metadata={"help": "Seed of the subset choice and of random A/B placement."})
    stratify_by_domain: bool = field(
        default=True, metadata={"help": "Take the fraction within each domain, so every domain is distilled."}
    )
    placement: Literal["alternate", "random"] = field(
        default="alternate",
        metadata={
            "help": "alternate: chosen goes to A, B, A, B... in row order within each set (the authors' "
            "counter, exact balance); random: a seeded coin per pair."
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.distill_fraction < 1.0:
            raise ConfigError("distill_fraction", f"must be in [0, 1), got {self.distill_fraction}")
