"""The promotion gate: a tag moves to a version only when that version's own published scores meet the bar.

`rmr1 artifacts tag rl_checkpoint/V production --require 'rewardbench>=0.80,judgebench>=0.60'`: the scores are
the `benchmark/score` rows of the `eval_scores` published for evaluations of exactly that checkpoint (its
`eval_predictions` name it upstream), the newest for each benchmark; scores are fractions (0.80, not 80).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

from data_contracts import ArtifactRef, ArtifactStore
from data_contracts.errors import UserError
from data_contracts.kinds import EVAL_PREDICTIONS, EVAL_SCORES

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(>=|<=|>|<)\s*([0-9]*\.?[0-9]+)\s*$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, ">": operator.gt, "<=": operator.le,
                                                          "<": operator.lt}  # fmt: skip


class BadRequirement(UserError):
    exit_code = 2


class PromotionRefused(UserError):
    """The version's published scores miss the bar: the tag is not moved."""


def parse_requirements(spec: str) -> list[tuple[str, str, float]]:
    """'rewardbench>=0.80,judgebench>=0.60' as (benchmark, operator, bar) triples."""
    requirements = []
    for part in spec.split(","):
        match = _REQUIREMENT.match(part)
        if match is None:
            raise BadRequirement(f"--require {part.strip()!r}: expected BENCHMARK>=SCORE, e.g. rewardbench>=0.80")
        name, op, value = match.group(1), match.group(2), float(match.group(3))
        if not 0.0 <= value <= 1.0:
            raise BadRequirement(f"--require {part.strip()!r}: scores are fractions from 0 to 1 (0.80, not 80)")
        requirements.append((name, op, value))
    return requirements


def published_scores(store: ArtifactStore, ref: ArtifactRef) -> dict[str, float]:
    """benchmark -> the newest published overall score of an evaluation of exactly `ref`."""
    evaluated = {m["version"] for m in store.list(EVAL_PREDICTIONS.kind) if m["upstream"].get(ref.kind) == ref.version}
    scores: dict[str, float] = {}
    for manifest in store.list(EVAL_SCORES.kind):  # oldest first: a newer evaluation's score wins
        if manifest["upstream"].get(EVAL_PREDICTIONS.kind) not in evaluated:
            continue
        for row in store.read_table(store.ref(EVAL_SCORES.kind, manifest["version"])).to_pylist():
            if row["level"] == "benchmark" and row["name"] == "score":
                scores[row["benchmark"]] = float(row["score"])
    return scores


def misses(ref: ArtifactRef, scores: dict[str, float], requirements: list[tuple[str, str, float]]) -> list[str]:
    """One line per requirement `scores` do not meet (a benchmark never scored is a miss)."""
    lines = []
    for name, op, bar in requirements:
        if name not in scores:
            known = ", ".join(f"{b} {s:.3f}" for b, s in sorted(scores.items())) or "none"
            lines.append(f"{name}: no published score for {ref} (its scores: {known})")
        elif not _OPERATORS[op](scores[name], bar):
            lines.append(f"{name} {scores[name]:.3f} is not {op} {bar:g}")
    return lines
