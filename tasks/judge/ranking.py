"""Ranking N candidate answers to one conversation with a pairwise judge: knockout (n−1 comparisons, seeded
bracket), round robin (n(n−1)/2, scored by win rate) and against a reference answer (n). Each returns the
order (best first), a score per candidate and every judgment behind it; best-of-N is `order[0]`.

Points: a win 1, a tie ½, a loss or an error 0 (an unparseable judgment helps neither side).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tasks.judge.api import Judgment, PairwiseJudge
from tasks.judge.protocol import Turn


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


def game_points(judgment: Judgment) -> tuple[float, float]:
    return {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5)}.get(judgment.verdict, (0.0, 0.0))


def _order(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))  # ties keep the input order


Method = Literal["round_robin", "knockout", "reference"]
METHODS: tuple[Method, ...] = ("round_robin", "knockout", "reference")


@dataclass(frozen=True)
class Candidates:
    """N candidate answers to one conversation, and the reference answer `reference` ranking needs."""

    conversation: Sequence[Turn]
    texts: Sequence[str]
    reference: str | None = None


def comparisons(method: Method, n: int) -> int:
    """Judge comparisons (before the cache) to rank n candidates: n(n−1)/2, n−1 or n."""
    return {"round_robin": n * (n - 1) // 2, "knockout": max(n - 1, 0), "reference": n}[method]


def rank_many(judge: PairwiseJudge, items: Sequence[Candidates], method: Method = "round_robin",
              seed: int = 0) -> list[Ranking]:  # fmt: skip
    """Rank every item's candidates; the comparisons of all items go to the judge together (one `compare_many`
    for round robin and reference, one per bracket round for knockout), so a local model sees full batches."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "knockout":
        return _knockouts(judge, items, seed)
    if method == "reference":
        for item in items:
            if item.reference is None:
                raise ValueError("ranking against a reference needs each item's reference answer")
        games = [[(i, -1) for i in range(len(item.texts))] for item in items]
    else:
        games = [[(i, j) for i in range(len(item.texts)) for j in range(i + 1, len(item.texts))] for item in items]
    judgments = iter(judge.compare_many([
        (item.conversation, item.texts[i], item.reference if j < 0 else item.texts[j])  # type: ignore[misc]
        for item, plan in zip(items, games, strict=True) for i, j in plan
    ]))  # fmt: skip
    rankings = []
    for item, plan in zip(items, games, strict=True):
        played = [Game(i, j, next(judgments)) for i, j in plan]
        points = [0.0] * len(item.texts)
        for game in played:
            gained = game_points(game.judgment)
            points[game.a] += gained[0]
            if game.b >= 0:
                points[game.b] += gained[1]
        # round robin: the win rate over n−1 games; reference: the one game's points
        scores = points if method == "reference" else [p / max(len(item.texts) - 1, 1) for p in points]
        rankings.append(Ranking(_order(scores), scores, played))
    return rankings


def _knockouts(judge: PairwiseJudge, items: Sequence[Candidates], seed: int) -> list[Ranking]:
    """A single-elimination bracket per item, in a seeded random order: n−1 comparisons (an odd one out gets a
    bye). The winner of each game advances; a tie or an error advances the one placed first in the bracket. A
    candidate's score is the rounds it won (a bye counts) over the rounds played; candidates out in the same
    round share a score and keep the input order. Every item's round k is judged in one call."""
    alive = []
    for item in items:
        order = list(range(len(item.texts)))
        random.Random(seed).shuffle(order)
        alive.append(order)
    wins = [[0] * len(item.texts) for item in items]
    games: list[list[Game]] = [[] for _ in items]
    rounds = [0] * len(items)
    while any(len(left) > 1 for left in alive):
        matches = [(k, left[m], left[m + 1]) for k, left in enumerate(alive) for m in range(0, len(left) - 1, 2)]
        judgments = judge.compare_many([(items[k].conversation, items[k].texts[i], items[k].texts[j])
                                        for k, i, j in matches])  # fmt: skip
        advancing: list[list[int]] = [[] for _ in items]
        for (k, i, j), judgment in zip(matches, judgments, strict=True):
            games[k].append(Game(i, j, judgment))
            winner = j if judgment.verdict == "b" else i
            wins[k][winner] += 1
            advancing[k].append(winner)
        for k, left in enumerate(alive):
            if len(left) < 2:
                advancing[k] = left
                continue
            rounds[k] += 1
            if len(left) % 2:
                wins[k][left[-1]] += 1  # a bye counts as a round won: the champion always won every round
                advancing[k].append(left[-1])
        alive = advancing
    rankings = []
    for k in range(len(items)):
        scores = [w / max(rounds[k], 1) for w in wins[k]]
        rankings.append(Ranking(_order(scores), scores, games[k]))
    return rankings


def round_robin(judge: PairwiseJudge, conversation: Sequence[Turn], candidates: Sequence[str]) -> Ranking:
    """Every pair once: n(n−1)/2 comparisons; a candidate's score is its win rate over its n−1 games."""
    return rank_many(judge, [Candidates(conversation, candidates)], "round_robin")[0]


def knockout(judge: PairwiseJudge, conversation: Sequence[Turn], candidates: Sequence[str], seed: int = 0) -> Ranking:
    """A seeded single-elimination bracket: n−1 comparisons (see `_knockouts`)."""
    return rank_many(judge, [Candidates(conversation, candidates)], "knockout", seed)[0]


def against_reference(
    judge: PairwiseJudge, conversation: Sequence[Turn], candidates: Sequence[str], reference: str
) -> Ranking:
    """Each candidate against the reference answer: n comparisons; score 1 beats it, ½ ties, 0 loses."""
    return rank_many(judge, [Candidates(conversation, candidates, reference)], "reference")[0]
