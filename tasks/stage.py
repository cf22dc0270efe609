"""What every stage returns: the artifacts it published (or found already published) and its counts.

Stages are plain functions `(config, store, upstream refs) -> StageResult`; Prefect wraps them in
`flows/`. The counts are also stored in each artifact's manifest, so a skipped stage reports the same
numbers as the run that made the artifact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data_contracts import ArtifactRef

ProgressCallback = Callable[[int, int], None]  # (work done, total work): drives bars and Prefect progress


@dataclass(frozen=True)
class StageResult:
    """Outputs by kind, whether the stage was skipped (all outputs already published), and its counts."""

    stage: str
    outputs: dict[str, ArtifactRef]
    skipped: bool
    stats: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        state = "skipped, already published" if self.skipped else "published"
        return f"{self.stage}: {state}: " + ", ".join(str(ref) for ref in self.outputs.values())


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


class ConfigError(ValueError):
    """An invalid value in a stage config; `field` names the config field so the recipe key can be shown."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
