"""What every stage returns: the artifacts it published (or found already published) and its counts.

Stages are plain functions `(config, store, upstream refs) -> StageResult`; Prefect wraps them in
`flows/`. The counts are also stored in each artifact's manifest, so a skipped stage reports the same
numbers as the run that made the artifact.
"""

from __future__ import annotations

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


class ConfigError(ValueError):
    """An invalid value in a stage config; `field` names the config field so the recipe key can be shown."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
