"""Ranking N candidate answers to one conversation with a pairwise judge: knockout (n−1 comparisons, seeded
bracket), round robin (n(n−1)/2, scored by win rate) and against a reference answer (n). Each returns the
order (best first), a score per candidate and every judgment behind it; best-of-N is `order[0]`.

Points: a win 1, a tie ½, a loss or an error 0 (an unparseable judgment helps neither side).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.judge.api import Judgment, PairwiseJudge
from tasks.judge_protocol import Turn


@dataclass(frozen=True)
class Game:
    """One comparison: candidate `a` shown against `b` (indices; -1 is the reference), and its judgment."""

    a: int
    b: int
    judgment: Judgment


@dataclass(frozen=True)
class Ranking:
    order: list[int]  # candidate indices, best first
    scores: list[float]  # per candidate, in the input order
    games: list[Game]

    @property
    def best(self) -> int:
        return self.order[0]


def _points(judgment: Judgment) -> tuple[float, float]:
    return {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5)}.get(judgment.verdict, (0.0, 0.0))


def _order(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))  # ties keep the input order


def round_robin(judge: PairwiseJudge, conversation: Sequence[Turn], candidates: Sequence[str]) -> Ranking:
    """Every pair once: n(n−1)/2 comparisons; a candidate's score is its win rate over its n−1 games."""
    pairs = [(i, j) for i in range(len(candidates)) for j in range(i + 1, len(candidates))]
    judgments = judge.compare_many([(conversation, candidates[i], candidates[j]) for i, j in pairs])
    points = [0.0] * len(candidates)
    for (i, j), judgment in zip(pairs, judgments, strict=True):
        gained = _points(judgment)
        points[i] += gained[0]
        points[j] += gained[1]
    scores = [p / max(len(candidates) - 1, 1) for p in points]
    return Ranking(_order(scores), scores, [Game(i, j, g) for (i, j), g in zip(pairs, judgments, strict=True)])


def knockout(judge: PairwiseJudge, conversation: Sequence[Turn], candidates: Sequence[str], seed: int = 0) -> Ranking:
    """A single-elimination bracket in a seeded random order: n−1 comparisons (an odd one out gets a bye).
    The winner of each game advances; a tie or an error advances the one placed first in the bracket. A
    candidate's score is the rounds it won (a bye counts) over the rounds played; candidates out in the same
    round share a score and keep the input order."""
    alive = list(range(len(candidates)))
    random.Random(seed).shuffle(alive)
    wins = [0] * len(candidates)
    games: list[Game] = []
    rounds = 0
    while len(alive) > 1:
        rounds += 1
        matches = [(alive[k], alive[k + 1]) for k in range(0, len(alive) - 1, 2)]
        judgments = judge.compare_many([(conversation, candidates[i], candidates[j]) for i, j in matches])
        advancing = []
        for (i, j), judgment in zip(matches, judgments, strict=True):
            games.append(Game(i, j, judgment))
            winner = j if judgment.verdict == "b" else i
            wins[winner] += 1
            advancing.append(winner)
        if len(alive) % 2:
            wins[alive[-1]] += 1  # a bye counts as a round won: the champion always won every round
            advancing.append(alive[-1])
        alive = advancing
    scores = [w / max(rounds, 1) for w in wins]
    return Ranking(_order(scores), scores, games)


def against_reference(
    judge: PairwiseJudge, conversation: Sequence[Turn], candidates: Sequence[str], reference: str
) -> Ranking:
    """Each candidate against the reference answer: n comparisons; score 1 beats it, ½ ties, 0 loses."""
    judgments = judge.compare_many([(conversation, candidate, reference) for candidate in candidates])
    scores = [_points(j)[0] for j in judgments]
    return Ranking(_order(scores), scores, [Game(i, -1, j) for i, j in enumerate(judgments)])
