"""The judge, in one package, from the protocol up. Nothing here imports a stage; the stages build on it.

- `protocol`: template sets, pair rendering, the three verdict rules, trace sections (pure, light).
- `config`: `JudgeConfig`, the recipe section that says which model judges and how it decodes.
- `backends`: what runs the model (hf, vllm, an OpenAI-compatible endpoint, the length baseline).
- `api`: `PairwiseJudge` (order policy, voting, the durable cache); `ranking`: N candidates ranked.
- `rewards` (TRL), `verl`, `server` (`rmr1 serve`): the judge as a reward.

`from tasks.judge import PairwiseJudge, knockout, ...` loads the API on first use, so the stages that only need
the protocol (`tasks.judge.protocol`) do not import the backends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.judge.api import Judgment, PairwiseJudge
    from tasks.judge.ranking import Game, Ranking, against_reference, knockout, round_robin

_EXPORTS = {
    "Judgment": "tasks.judge.api", "PairwiseJudge": "tasks.judge.api", "Game": "tasks.judge.ranking",
    "Ranking": "tasks.judge.ranking", "against_reference": "tasks.judge.ranking", "knockout": "tasks.judge.ranking",
    "round_robin": "tasks.judge.ranking",
}  # fmt: skip
__all__ = ["Game", "Judgment", "PairwiseJudge", "Ranking", "against_reference", "knockout", "round_robin"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tasks.judge' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
