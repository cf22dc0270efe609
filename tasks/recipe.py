"""The recipe: one typed section per stage, the whole of what a pipeline run is asked to do.

Every section is a stage's config dataclass (`tasks/<stage>/config.py`) whose fields carry help text;
`Recipe` adds the checks that span sections. Reading YAML, `--set` overrides and turning validation
errors into messages that name the key live at the boundary, in `flows/recipe.py`; nothing here reads
a file.
"""

from __future__ import annotations

import hashlib
import typing
from dataclasses import field
from typing import Any

from data_contracts.errors import UserError
from data_contracts.versioning import canonical_json, plain
from tasks.config import ConfigError, Float, config_section
from tasks.distill.config import DistillConfig
from tasks.evaluate.config import EvaluateConfig
from tasks.filter.config import FilterConfig
from tasks.learning.config import LearningConfig
from tasks.pull.config import PullConfig
from tasks.split.config import SplitConfig
from tasks.train.config import RlConfig, SftConfig, StudentConfig

NO_DISTILLATION = "the recipe has sft: null (no distillation, no SFT) or no pull section"


class RecipeError(UserError, ValueError):
    """A recipe or override that cannot be used; the message names the file and the key."""

    exit_code = 2


@config_section
class Recipe:
    """A whole pipeline run: one section per stage."""

    name: str = field(metadata={"help": "Recipe name, shown in flow-run names."})
    pull: PullConfig | None = field(
        default=None,
        metadata={
            "help": "Which preference sources to load. null: no training stages at all (a recipe that only "
            "evaluates a model, an API judge or the length baseline)."
        },
    )
    split: SplitConfig = field(default_factory=SplitConfig, metadata={"help": "Distillation / RL split."})
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "Teacher traces."})
    filter: FilterConfig = field(default_factory=FilterConfig, metadata={"help": "Which traces become SFT data."})
    student: StudentConfig = field(default_factory=StudentConfig, metadata={"help": "The model training starts from."})
    sft: SftConfig | None = field(
        default_factory=SftConfig,
        metadata={
            "help": "SFT on the kept traces (instruct family). null: no distillation and no SFT, RL straight from "
            "the student (DeepSeek-distilled family); then split.distill_fraction must be 0."
        },
    )
    rl: RlConfig = field(default_factory=RlConfig, metadata={"help": "GRPO with the ±1 verdict reward."})
    evaluate: EvaluateConfig | None = field(
        default=None,
        metadata={
            "help": "Judge RewardBench / RM-Bench / RMB and score them (docs/method.md §8); null: no evaluation."
        },
    )
    learning: LearningConfig | None = field(
        default=None,
        metadata={
            "help": "Judge a held-out benchmark before training, after SFT and after GRPO (and the length baseline), "
            "and gate the run on the numbers; null: no learning check."
        },
    )
    dispatch: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "Stages the pipeline hands to a Prefect deployment instead of running in-process, e.g. "
            "`{sft: sft/gpu, rl: rl/gpu, evaluate: evaluate/gpu}` (deployments from infra/prefect.yaml, on the GPU "
            "pool). The pipeline waits for each run and reads its outputs from the artifact root, which must then "
            "be one every worker sees (s3://..., a shared disk). Where work runs never changes an artifact version."
        },
    )
    max_reject_rate: Float = field(
        default=0.05,
        metadata={
            "help": "A stage fails and publishes nothing when more than this share of an input's rows is rejected."
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise ConfigError("max_reject_rate", f"must be in [0, 1], got {self.max_reject_rate}")
        if self.sft is None and self.split.distill_fraction > 0:
            raise ConfigError(
                "split.distill_fraction", "must be 0 without an sft section (no SFT: every pair goes to RL)"
            )
        if self.sft is not None and self.rl.template != self.distill.template:
            raise ConfigError(
                "rl.template",
                f"{self.rl.template!r} differs from distill.template {self.distill.template!r}: RL prompts must "
                "look like the prompts the student was fine-tuned on",
            )
        for stage, deployment in self.dispatch.items():  # the stage names are checked against the registry
            if deployment.count("/") != 1 or not all(deployment.split("/")):
                expected = f"expected FLOW/DEPLOYMENT, e.g. {stage}/gpu, got {deployment!r}"
                raise ConfigError(f"dispatch.{stage}", expected)
        if self.learning is not None and self.pull is None:
            raise ConfigError("learning", "measures the training stages: the recipe needs a pull section")
        if self.pull is None and self.evaluate is None:
            raise ConfigError("pull", "a recipe needs a pull section (training) or an evaluate section, or both")
        if self.evaluate is not None and self.evaluate.judge.checkpoint is not None:
            judge = self.evaluate.judge
            if self.pull is None or (judge.model == "sft_checkpoint" and self.sft is None):
                raise ConfigError("evaluate.judge.model", f"{judge.model}: this recipe does not train one")
            trained_on = self.rl.template if judge.model == "rl_checkpoint" else self.distill.template
            if judge.template != trained_on:
                raise ConfigError(
                    "evaluate.judge.template",
                    f"{judge.template!r} differs from {trained_on!r}, the template the {judge.model} was trained on",
                )

    @property
    def trains(self) -> bool:
        """Whether the recipe has training stages (a pull section)."""
        return self.pull is not None

    @property
    def distills(self) -> bool:
        """Whether the recipe distills and fine-tunes (the instruct family); `sft: null` leaves that out."""
        return self.trains and self.sft is not None

    def to_dict(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], plain(self))

    @property
    def fingerprint(self) -> str:
        """Short hash of the resolved recipe, shown beside every run."""
        return hashlib.sha256(canonical_json(self).encode()).hexdigest()[:12]
