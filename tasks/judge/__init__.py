"""Using a trained judge: `PairwiseJudge` (compare two answers; from an artifact, a model or an endpoint) and
rankings of N candidates (`knockout`, `round_robin`, `against_reference`)."""

from tasks.judge.api import Judgment, PairwiseJudge
from tasks.judge.ranking import Game, Ranking, against_reference, knockout, round_robin

__all__ = ["Game", "Judgment", "PairwiseJudge", "Ranking", "against_reference", "knockout", "round_robin"]
