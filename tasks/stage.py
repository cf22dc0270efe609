"""The stage protocol: what a stage declares (`Stage`), what it is given (`StageRun`), what it returns.

Each stage package exports one `Stage`: its name, the artifact kinds it reads and writes, how its output
versions follow from the recipe and its inputs, how to run it, and the tables it shows in the UI; a stage
that reads the Hub also pins the branches and tags it reads to their commits (`resolve`). A stage never
asks whether it is already done: the plan (`flows/plan.py`) pins the recipe, computes every version once,
decides what runs, and hands `run` the versions to publish. Stages are plain Python; Prefect wraps them in
`flows/`. The counts a run returns are also stored in each artifact's manifest, so a skipped stage
reports the same numbers as the run that made the artifact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from data_contracts import ArtifactRef, ArtifactStore
from tasks.hub import HubRevisions
from tasks.recipe import Recipe

ProgressCallback = Callable[[int, int], None]  # (work done, total work): drives bars and Prefect progress
Tables = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class StageResult:
    """What a stage run published, by kind, and its counts (whether to skip is the plan's, not the stage's)."""

    stage: str
    outputs: dict[str, ArtifactRef]
    stats: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.stage}: published: " + ", ".join(str(ref) for ref in self.outputs.values())


class Progress:
    """A terminal bar plus the stage's progress callback (Prefect's progress artifact), at most every 2 s."""

    def __init__(self, total: int, on_progress: ProgressCallback | None, desc: str, unit: str) -> None:
        from tqdm.auto import tqdm  # kept off the import path of recipe parsing

        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
        self.total, self.done, self.on_progress, self.last = total, 0, on_progress, 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.bar.update(count)
        if self.on_progress is not None and (time.monotonic() - self.last > 2.0 or self.done == self.total):
            self.last = time.monotonic()
            self.on_progress(self.done, self.total)

    def add(self, more: int) -> None:
        """More work discovered on the way (distill's second pass)."""
        self.total += more
        self.bar.total = self.total

    def close(self) -> None:
        self.bar.close()
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


@dataclass(frozen=True)
class StageRun:
    """What a stage's `run` is given: the recipe, the store, its inputs by kind and the versions to publish."""

    recipe: Recipe
    store: ArtifactStore
    inputs: Mapping[str, ArtifactRef]
    versions: Mapping[str, str]
    on_progress: ProgressCallback | None = None
    shard_runner: Any = None  # distill: how one shard of requests runs (Prefect: one task per shard)


def _no_tables(result: StageResult) -> Tables:
    return {}


def _trains(recipe: Recipe) -> bool:
    return recipe.trains


def _pins_nothing(recipe: Recipe, hub: HubRevisions) -> Recipe:
    return recipe


def _no_gates(recipe: Recipe, store: ArtifactStore, outputs: Mapping[str, ArtifactRef]) -> list[str]:
    return []


@dataclass(frozen=True)
class Stage:
    """One stage, declared: the plan and the Prefect layer need nothing else to run it and show it."""

    name: str
    description: str  # one line, shown on its Prefect flow
    writes: tuple[str, ...]  # artifact kinds it publishes
    reads: Callable[[Recipe], tuple[str, ...]]  # artifact kinds it reads (may depend on the recipe)
    versions: Callable[[Recipe, Mapping[str, ArtifactRef]], dict[str, str]]  # what it would publish, by kind
    run: Callable[[StageRun], StageResult]  # publishes exactly `versions`; never checks whether to skip
    enabled: Callable[[Recipe], bool] = _trains  # False: the recipe leaves this stage out
    tables: Callable[[StageResult], Tables] = _no_tables  # UI tables, counts first
    # UI markdown by key suffix, from the result and what it published (sample traces are read back from the store)
    markdown: Callable[[StageResult, ArtifactStore], dict[str, str]] = lambda result, store: {}
    left_out: str = "the recipe has no pull section (no training stages)"  # why `enabled` may say False
    # Pins the moving references (Hub branches and tags) in the parts of the recipe this stage reads to their
    # commit shas (`tasks/hub.py`); the plan applies it before computing versions, and the steps get that recipe.
    resolve: Callable[[Recipe, HubRevisions], Recipe] = _pins_nothing
    # What its published outputs miss of the recipe's gates, one line each; the executor reads it after every
    # run, published or skipped, and fails the run on any (`flows/plan.py:execute`).
    gates: Callable[[Recipe, ArtifactStore, Mapping[str, ArtifactRef]], list[str]] = _no_gates


def reads(*kinds: str) -> Callable[[Recipe], tuple[str, ...]]:
    """A `Stage.reads` for a stage that reads the same kinds under every recipe."""
    return lambda recipe: kinds
