"""Best-of-K with verifiable answers: how often the judge's pick among K candidates is a correct one.

Input: prompts, each with candidate answers and a correct/incorrect flag per candidate (PPE's correctness sets,
`lmarena-ai/PPE-*-Best-of-K`: up to 32 sampled answers per prompt; or a team's own file, `rmr1 judge --best-of-k`).
For each K (2, 4, 8, 16, 32) and each prompt with at least K candidates, K candidates are drawn without
replacement, seeded per (seed, prompt, K); the judge picks one by knockout (K−1 comparisons) or round robin
(K(K−1)/2); the pick is right when that candidate is correct. Beside it, on the same draws: the expected
accuracy of a random pick (the drawn correct share) and of an oracle (any drawn candidate correct). Pairwise
accuracy: (correct, incorrect) pairs of each prompt (at most `max_pairs`, a seeded sample), each judged once
in a seeded order; right 1, tie ½, wrong or unparseable 0.

What follows PPE's paper (arXiv 2410.14872): the correctness sets, sub-sampling K of a prompt's answers,
best-of-K accuracy against random and oracle, and pairwise correct-vs-incorrect accuracy. What is ours: the
draws (our seed, our sampler), picking with a pairwise judge (knockout or round robin, where PPE scores each
answer on its own), ties counted ½, the pair cap and the cost columns. PPE's code is not reachable here, so
none of these numbers is PPE's official number.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from tasks.judge.api import PairwiseJudge
from tasks.judge.ranking import Candidates, Method, comparisons, game_points, rank_many

KS = (2, 4, 8, 16, 32)
METHODS: tuple[Method, ...] = ("knockout", "round_robin")


@dataclass(frozen=True)
class Graded:
    """One prompt's candidates and whether each is correct."""

    name: str
    candidates: Candidates
    correct: tuple[bool, ...]


def draw(name: str, n: int, k: int, seed: int) -> list[int]:
    """K of a prompt's n candidate indices, without replacement, the same for the same (seed, prompt, K)."""
    digest = hashlib.sha256(f"{seed}:{name}:{k}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).sample(range(n), k)


def best_of_k(judge: PairwiseJudge, prompts: Sequence[Graded], ks: Sequence[int] = KS,
              methods: Sequence[Method] = METHODS, seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """One row per (K, method): prompts used, pick accuracy, random and oracle accuracy on the same draws, the
    comparisons the picks asked for, the calls sent (the rest came from the judge's cache) and the output tokens
    of the judge's traces behind the picks (cached ones included: what the metric costs to measure afresh)."""
    rows = []
    for k in ks:
        used = [p for p in prompts if len(p.correct) >= k]
        if not used:
            continue
        drawn = [draw(p.name, len(p.correct), k, seed) for p in used]
        items = [
            Candidates(p.candidates.conversation, [p.candidates.texts[i] for i in d])
            for p, d in zip(used, drawn, strict=True)
        ]
        flags = [[p.correct[i] for i in d] for p, d in zip(used, drawn, strict=True)]
        for method in methods:
            before = judge.calls
            rankings = rank_many(judge, items, method, seed)
            rows.append({
                "k": k, "method": method, "prompts": len(used),
                "pick_accuracy": fmean(float(f[r.best]) for f, r in zip(flags, rankings, strict=True)),
                "random": fmean(fmean(map(float, f)) for f in flags),
                "oracle": fmean(float(any(f)) for f in flags),
                "comparisons": sum(comparisons(method, k) for _ in used), "sent": judge.calls - before,
                "tokens": sum(game.judgment.tokens for r in rankings for game in r.games),
            })  # fmt: skip
    return rows


def pairwise_accuracy(judge: PairwiseJudge, prompts: Sequence[Graded], max_pairs: int = 16,
                      seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """(correct, incorrect) pairs judged once each, the correct one shown first or second by a seeded coin."""
    pairs, first = [], []
    for p in prompts:
        right = [i for i, ok in enumerate(p.correct) if ok]
        wrong = [i for i, ok in enumerate(p.correct) if not ok]
        chosen = [(i, j) for i in right for j in wrong]
        rng = random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{p.name}:pairs".encode()).digest()[:8], "big"))
        if len(chosen) > max_pairs:
            chosen = rng.sample(chosen, max_pairs)
        for i, j in chosen:
            shown_first = rng.random() < 0.5
            a, b = (i, j) if shown_first else (j, i)
            pairs.append((p.candidates.conversation, p.candidates.texts[a], p.candidates.texts[b]))
            first.append(shown_first)
    before = judge.calls
    judgments = judge.compare_many(pairs)
    scores = [game_points(j)[0 if correct_first else 1] for j, correct_first in zip(judgments, first, strict=True)]
    return {"pairs": len(pairs), "accuracy": fmean(scores) if scores else 0.0, "sent": judge.calls - before,
            "tokens": sum(j.tokens for j in judgments)}  # fmt: skip


def plot(rows: Sequence[dict[str, Any]], path: str, title: str) -> str:
    """Pick accuracy against K per method, beside random and oracle: a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        axes.plot([r["k"] for r in mine], [r["pick_accuracy"] for r in mine], marker="o", label=f"judge ({method})")
    first = [r for r in rows if r["method"] == rows[0]["method"]] if rows else []
    axes.plot([r["k"] for r in first], [r["random"] for r in first], linestyle="--", label="random pick")
    axes.plot([r["k"] for r in first], [r["oracle"] for r in first], linestyle=":", label="oracle")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("K (candidates per prompt)")
    axes.set_ylabel("accuracy of the pick")
    axes.set_ylim(0, 1.02)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
