"""Recipe sections for the pull stage: which preference sources to load and how to read them.

Every field takes part in the `preference_pairs` version except `path`: input files count by content
(see `tasks/pull/stage.py`), so moving them changes nothing; and `requested_revision`: a Hub source counts
by the commit sha its branch or tag was resolved to (`tasks/hub.py`). Fields added later (`max_chars`, the
label keys of `fields`) count only when set away from their defaults, so older versions stay valid.
"""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from data_contracts.kinds import DOMAINS
from data_contracts.versioning import BY_CONTENT, UNLESS_DEFAULT
from tasks.config import ConfigError, Int, config_section
from tasks.hub import requested_revision_field, revision_field
from tasks.records.fields import FieldMap
from tasks.records.reader import MAX_CHARS

ADAPTERS = (
    "skywork",
    "code_preference_pairs",
    "math_step_dpo",
    "hh_rlhf",
    "sharegpt_dpo",
    "generic",
    "synthetic",
)


@config_section
class SourceConfig:
    """One preference source: where its rows come from and which adapter normalises them."""

    name: str = field(metadata={"help": "Short name of the source; stored in every row's `source` column."})
    adapter: str = field(metadata={"help": f"How records are read: one of {', '.join(ADAPTERS)}."})
    path: str | None = field(
        default=None,
        metadata={
            "versioned": BY_CONTENT,
            "help": "Local file, glob or folder (json, jsonl, parquet, optionally .gz). Exclusive with hub_id.",
        },
    )
    hub_id: str | None = field(
        default=None, metadata={"help": "Hugging Face dataset id, e.g. Skywork/Skywork-Reward-Preference-80K-v0.2."}
    )
    revision: str | None = revision_field("required with hub_id")
    requested_revision: str | None = requested_revision_field()
    subset: str | None = field(
        default=None, metadata={"help": "Hub dataset configuration name, if the dataset has several."}
    )
    split: str = field(default="train", metadata={"help": "Dataset split to load."})
    domain: str | None = field(
        default=None,
        metadata={"help": f"Domain for every row ({', '.join(DOMAINS)}); None lets the adapter decide."},
    )
    shuffle_seed: Int | None = field(
        default=None,
        metadata={"help": "Shuffle the whole split with this seed before first_n (datasets' shuffle, as the authors)."},
    )
    first_n: Int | None = field(default=None, metadata={"help": "Keep only the first N records (after the shuffle)."})
    fields: FieldMap = field(
        default_factory=FieldMap,
        metadata={
            "help": "generic adapter only: which record fields hold the pair: prompt (or conversation), chosen and "
            "rejected, or first, second and a label with the values that mean first_wins / second_wins / tie."
        },
    )
    max_chars: Int = field(
        default=MAX_CHARS,
        metadata={
            "versioned": UNLESS_DEFAULT,
            "help": "The most text one row may hold, in characters (all its string values); a longer row is one "
            "reject. A JSON line of more than 12 bytes per allowed character is skipped without being held.",
        },
    )
    rows: Int = field(default=0, metadata={"help": "synthetic adapter only: how many pairs to generate."})
    seed: Int = field(default=0, metadata={"help": "synthetic adapter only: generator seed."})
    task: Literal["mixed", "refusal"] = field(
        default="mixed",
        metadata={
            "versioned": UNLESS_DEFAULT,
            "help": "synthetic adapter only: mixed = chat, safety, code, math and multi-turn pairs (plumbing); "
            "refusal = the learnable refusal task's training split (harmful requests are better refused, harmless "
            "ones better answered; its held-out split is the refusal_task benchmark).",
        },
    )

    def __post_init__(self) -> None:
        if self.adapter not in ADAPTERS:
            raise ConfigError("adapter", f"unknown adapter {self.adapter!r}; expected one of {', '.join(ADAPTERS)}")
        if self.domain is not None and self.domain not in DOMAINS:
            raise ConfigError("domain", f"unknown domain {self.domain!r}; expected one of {', '.join(DOMAINS)}")
        if self.max_chars < 1:
            raise ConfigError("max_chars", f"must be at least 1, got {self.max_chars}")
        if self.first_n is not None and self.first_n < 1:
            raise ConfigError("first_n", f"must be at least 1, got {self.first_n}")
        if self.task != "mixed" and self.adapter != "synthetic":
            raise ConfigError("task", "only a synthetic source generates a task")
        if self.adapter == "synthetic":
            if self.rows < 1:
                raise ConfigError("rows", "a synthetic source needs rows >= 1")
            if self.path or self.hub_id:
                raise ConfigError("adapter", "a synthetic source takes no path or hub_id")
            return
        if (self.path is None) == (self.hub_id is None):
            raise ConfigError("path", "set exactly one of path (local files) or hub_id (Hugging Face Hub)")
        if self.hub_id is not None and not self.revision:
            raise ConfigError("revision", f"name a revision for {self.hub_id}: a commit sha, or a branch or tag")
        if self.adapter == "generic":
            self.fields.check()
        elif self.fields != FieldMap():
            raise ConfigError("fields", f"only the generic adapter reads `fields`; {self.adapter} knows its own fields")


@config_section
class PullConfig:
    """The pull stage's recipe section."""

    sources: tuple[SourceConfig, ...] = field(metadata={"help": "Preference sources, read in this order."})
