"""Recipe sections for the evaluate stage: which benchmarks, which judge, how pairs are ordered.

Only what changes the predictions takes part in the `eval_predictions` version: the judge (backend, model,
template, decoding), the benchmark data (file contents or Hub commit sha) and sampling, the order
seed and `both_orders`. How fast they are produced (batch size, GPU memory share, chunking, the endpoint's
URL, key, concurrency and retries) does not: the fields marked `"versioned": False`.
"""

from __future__ import annotations

import re
from dataclasses import field

from data_contracts.versioning import UNLESS_DEFAULT
from tasks.config import ConfigError, Float, Int, config_section
from tasks.evaluate.benchmarks import REGISTRY, SYNTHETIC
from tasks.hub import requested_revision_field, revision_field
from tasks.judge.config import JudgeConfig
from tasks.records.fields import FieldMap

CUSTOM_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
RESERVED_NAMES = ("overall", "headline", "rm-bench-matrix")  # score rows and Prefect tables of their own


@config_section
class BenchmarkConfig:
    """One benchmark to judge: a registered one (its official files) or a team's own pairwise set."""

    name: str = field(
        metadata={
            "help": "A registered benchmark (rewardbench, rm_bench, rmb, rewardbench2, judgebench; "
            "docs/evaluation.md), or the name of a team's own pairwise set read through `fields`."
        }
    )
    path: str | None = field(
        default=None,
        metadata={
            "versioned": False,
            "help": "Local copy in the official layout (docs/evaluation.md lists each benchmark's), or a custom "
            "set's json/jsonl/parquet file or folder. 'synthetic' writes a small seeded set in the official "
            "layout (smoke runs).",
        },
    )
    hub_id: str | None = field(
        default=None,
        metadata={"help": "Hugging Face dataset id, e.g. allenai/reward-bench-2 (benchmarks that load from the Hub)."},
    )
    revision: str | None = revision_field("required with hub_id")
    requested_revision: str | None = requested_revision_field()
    split: str | None = field(
        default=None,
        metadata={
            "help": "Hub split; None = the benchmark's own (RewardBench: filtered, RewardBench 2: test, JudgeBench: "
            "gpt, a custom set: train)."
        },
    )
    items_per_subset: Int | None = field(
        default=None,
        metadata={
            "help": "Judge at most this many items per subset (a seeded sample; an item keeps all its "
            "comparisons). None = the whole benchmark, as published."
        },
    )
    sample_seed: Int = field(default=0, metadata={"help": "Seed of the items_per_subset sample."})
    fields: FieldMap | None = field(
        default=None,
        metadata={
            "versioned": UNLESS_DEFAULT,
            "help": "A custom set's field mapping: prompt or conversation, then chosen/rejected or first/second with "
            "a label (the pull stage's grammar).",
        },
    )
    subset: str | None = field(
        default=None,
        metadata={"versioned": UNLESS_DEFAULT, "help": "A custom set's record field that splits the score by subset."},
    )
    max_bad_rows: Float = field(
        default=0.0,
        metadata={
            "versioned": UNLESS_DEFAULT,
            "help": "A custom set: the share of records that may be unreadable through `fields` and are then left out "
            "(counted in a warning naming the first with file, row and field). 0 = any such record stops the run.",
        },
    )

    def __post_init__(self) -> None:
        benchmark = REGISTRY.get(self.name)
        if benchmark is None:
            taken = {*REGISTRY, *(name.replace("_", "-") for name in REGISTRY), *RESERVED_NAMES}
            if self.name in taken or self.name.replace("_", "-") in taken:
                raise ConfigError("name", f"{self.name!r} is taken (a benchmark, or a row or table of the report)")
            if not CUSTOM_NAME.match(self.name):
                raise ConfigError(
                    "name", f"a custom set's name is lower-case letters, digits, '-', '_', '.': {self.name!r}"
                )
            if self.fields is None:
                raise ConfigError(
                    "name",
                    f"{self.name!r} is not a registered benchmark ({', '.join(REGISTRY)}); a team's own pairwise set "
                    "of that name needs `fields`",
                )
            self.fields.check()
            if self.path == SYNTHETIC:
                raise ConfigError("path", "a custom set has no synthetic copy")
        elif self.fields is not None or self.subset is not None or self.max_bad_rows:
            raise ConfigError(
                "fields",
                f"{self.name} is read in its official layout; fields, subset, max_bad_rows are for custom sets",
            )
        elif self.hub_id is not None and not benchmark.hub:
            raise ConfigError("hub_id", f"{self.name} does not load from the Hub; give it a local path")
        if (self.path is None) == (self.hub_id is None):
            raise ConfigError("path", "set exactly one of path and hub_id")
        if self.hub_id is not None and self.revision is None:
            raise ConfigError("revision", f"name a revision for {self.hub_id}: a commit sha, or a branch or tag")
        if self.items_per_subset is not None and self.items_per_subset < 1:
            raise ConfigError("items_per_subset", f"must be at least 1, got {self.items_per_subset}")
        if not 0 <= self.max_bad_rows < 1:
            raise ConfigError("max_bad_rows", f"must be in [0, 1), got {self.max_bad_rows}")


@config_section
class EvaluateConfig:
    """The evaluate stage's recipe section."""

    judge: JudgeConfig = field(default_factory=JudgeConfig, metadata={"help": "Who judges, and how."})
    benchmarks: tuple[BenchmarkConfig, ...] = field(
        default=(),
        metadata={"help": "Benchmarks to judge; the headline is the mean of their scores (docs/method.md §8)."},
    )
    order_seed: Int = field(
        default=0,
        metadata={"help": "Seed of each pair's A/B order (recorded in every prediction; the authors used none)."},
    )
    both_orders: bool = field(
        default=False,
        metadata={
            "help": "Judge every pair in both orders too: adds position consistency and per-order accuracy. "
            "Scores still use the seeded order, as published."
        },
    )
    chunk_size: Int = field(
        default=512,
        metadata={
            "help": "hf / vllm: comparisons per resumable chunk (a killed run redoes at most one); the openai "
            "backend sends everything at once, its request cache keeping each answer."
        },
    )

    def __post_init__(self) -> None:
        if not self.benchmarks:
            raise ConfigError("benchmarks", "list at least one benchmark")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ConfigError("benchmarks", f"each benchmark at most once, got {names}")
        if self.chunk_size < 1:
            raise ConfigError("chunk_size", f"must be at least 1, got {self.chunk_size}")
