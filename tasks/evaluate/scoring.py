"""Scoring judged comparisons: votes over samples, each benchmark's official rule, position rows, the headline.

Input: `eval_predictions` rows (a DataFrame); output: `eval_scores` rows `{benchmark, level, name, score,
count, error_rate}`. Each comparison's `score` follows the evaluation rule (docs/method.md §3: correct 1, wrong
0, unparseable 0, tie 0.5). `count` is what the score averages over (comparisons, items, pairs);
`error_rate` is always the share of that row's judged comparisons whose verdict was unparseable.

- With `judge.samples: k`, a comparison has k rows (`#sample-N` after its id for N >= 1); its verdict is the
  majority of their A/B verdicts (`vote`), and "samples" rows give each benchmark's score from the first
  1, 3, 5, ... samples.
- A benchmark scores the seeded-order judgements (`swapped` false), as published, unless its official rule
  judges both orders (JudgeBench). With both orders judged, position rows report consistency.
"""

from __future__ import annotations

import re
from statistics import fmean

import pandas as pd

from tasks.evaluate.benchmarks import REGISTRY, benchmark_of
from tasks.evaluate.benchmarks.base import ScoreRow, accuracy_row, score_row
from tasks.judge.protocol import Verdict

SWAPPED_SUFFIX = "#swapped"  # comparison_id of a pair's second judgement, A and B exchanged (both_orders)
SAMPLE_SUFFIX = "#sample-"  # comparison_id of a judgement's sample N >= 1 (judge.samples); sample 0 has none
_SAMPLE = re.compile(r"#sample-(\d+)$")
PAPER = ("rewardbench", "rm_bench", "rmb")  # the paper's headline is the mean of these three (docs/method.md §8)

__all__ = ["SAMPLE_SUFFIX", "SWAPPED_SUFFIX", "ScoreRow", "comparison_score", "score_predictions"]


def comparison_score(verdict: str, chosen_position: str) -> float:
    """1 when the verdict names the chosen answer's position, 0.5 for a tie, 0 when wrong or unparseable."""
    if verdict == Verdict.TIE:
        return 0.5
    return 1.0 if verdict == chosen_position else 0.0


def sample_of(comparison_id: str) -> int:
    match = _SAMPLE.search(comparison_id)
    return int(match.group(1)) if match else 0


def judgement_of(comparison_id: str) -> str:
    """The judgement a sample belongs to: its id without `#sample-N`."""
    return _SAMPLE.sub("", comparison_id)


def majority(verdicts: list[str]) -> str:
    """The verdict most samples gave, counting A and B only (ties and errors abstain). Equal counts have no
    majority and score as an error, unless every sample called a tie."""
    a, b = verdicts.count(Verdict.A), verdicts.count(Verdict.B)
    if a != b:
        return str(Verdict.A if a > b else Verdict.B)
    return str(Verdict.TIE if verdicts.count(Verdict.TIE) == len(verdicts) else Verdict.ERROR)


def vote(predictions: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per judgement (the sample-0 row) with the majority verdict of its first `k` samples."""
    sample = predictions["comparison_id"].map(sample_of)
    if (sample == 0).all():
        return predictions
    used = predictions[sample < k]
    verdicts = used.groupby(used["comparison_id"].map(judgement_of), sort=False)["verdict"].agg(list).map(majority)
    first = predictions[sample == 0].copy()
    first["verdict"] = first["comparison_id"].map(verdicts)
    first["score"] = [comparison_score(v, p) for v, p in zip(first["verdict"], first["chosen_position"], strict=True)]
    return first


def samples_in(predictions: pd.DataFrame) -> int:
    """How many samples each judgement has (1 without `judge.samples`)."""
    return int(predictions["comparison_id"].map(sample_of).max()) + 1 if len(predictions) else 1


def vote_points(samples: int) -> list[int]:
    """The sample counts reported: 1, 3, 5, ... up to `samples`, and `samples` itself."""
    return sorted({*range(1, samples + 1, 2), samples})


# ---------------------------------------------------------------- position


def _picks_chosen(judged: pd.DataFrame) -> pd.Series:
    """True / False where the judge picked the chosen / rejected answer; NaN for ties and errors."""
    decided = judged["verdict"].isin([Verdict.A, Verdict.B])
    return (judged["verdict"] == judged["chosen_position"]).where(decided)


def position_rows(benchmark: str, df: pd.DataFrame) -> list[ScoreRow]:
    """Accuracy when the chosen answer was shown as A and as B, the share of [[A]] verdicts; with both
    orders judged, per pair: `consistency` (the same answer picked both times; errors and ties count as
    inconsistent), `both_correct` (the chosen answer picked both times) and `flip_rate` (the two verdicts
    name the same position, so the picked answer flips with the order)."""
    rows = [
        accuracy_row(benchmark, "position", f"accuracy_chosen_as_{position}", part)
        for position, part in df.groupby("chosen_position", sort=True)
    ]
    rows.append(score_row(benchmark, "position", "says_A", (df["verdict"] == Verdict.A).mean(), len(df), df))
    swapped = df[df["swapped"]]
    if not swapped.empty:
        primary = df[~df["swapped"]].set_index("comparison_id")
        second = swapped.set_index(swapped["comparison_id"].str.removesuffix(SWAPPED_SUFFIX))
        both = primary.index.intersection(second.index)
        first_pick, second_pick = _picks_chosen(primary.loc[both]), _picks_chosen(second.loc[both])
        decided = first_pick.notna() & second_pick.notna()
        consistent = (first_pick == second_pick) & decided
        judged = pd.concat([primary.loc[both], second.loc[both]])
        share = {
            "consistency": consistent.mean(),
            "both_correct": (first_pick.eq(True) & second_pick.eq(True)).mean(),
            "flip_rate": ((first_pick != second_pick) & decided).mean(),
        }
        rows += [score_row(benchmark, "position", name, value if len(both) else 0.0, len(both), judged)
                 for name, value in share.items()]  # fmt: skip
    return rows


# ---------------------------------------------------------------- every benchmark


def benchmark_rows(name: str, judged: pd.DataFrame) -> list[ScoreRow]:
    """The official rows of benchmark `name` from its judged rows (voted), and its position rows."""
    benchmark = benchmark_of(name)
    scored = judged if benchmark.orders == "both" else judged[~judged["swapped"]]
    labelled = judged if benchmark.right_vs_wrong is None else judged[benchmark.right_vs_wrong(judged)]
    return benchmark.score(scored) + position_rows(name, labelled)


def _headline(rows: list[ScoreRow], primary: pd.DataFrame) -> list[ScoreRow]:
    scores = [r["score"] for r in rows if r["level"] == "benchmark" and r["name"] == "score"]
    return [score_row("overall", "headline", "score", fmean(scores), len(primary), primary)] if scores else []


def score_predictions(predictions: pd.DataFrame) -> list[ScoreRow]:
    """Every benchmark's official scores, its position rows, the score at each number of samples, and the
    headline (the mean of the benchmark scores)."""
    samples = samples_in(predictions)
    voted = vote(predictions, samples)
    rows: list[ScoreRow] = []
    for name in _benchmarks(voted):
        rows += benchmark_rows(name, voted[voted["benchmark"] == name])
    rows += _headline(rows, voted[~voted["swapped"]])
    if samples > 1:
        for k in vote_points(samples):
            at_k = vote(predictions, k)
            for name in _benchmarks(at_k):
                mine = at_k[at_k["benchmark"] == name]
                benchmark = benchmark_of(name)
                official = benchmark.score(mine if benchmark.orders == "both" else mine[~mine["swapped"]])
                score = next((r for r in official if r["level"] == "benchmark" and r["name"] == "score"), None)
                if score is not None:  # e.g. RewardBench with no subset of its four sections
                    rows.append({**score, "level": "samples", "name": f"score@{k}"})
    return rows


def _benchmarks(predictions: pd.DataFrame) -> list[str]:
    """The judged benchmarks: the registered ones in registry order, then custom sets by name."""
    present = set(predictions["benchmark"])
    return [name for name in REGISTRY if name in present] + sorted(present - set(REGISTRY))


def missing_parts(rows: list[ScoreRow]) -> dict[str, list[str]]:
    """What each judged benchmark's official score lacks (its `parts` with no section row). A score over fewer
    parts is the same rule on less data, not the published number."""
    present = {(r["benchmark"], r["name"]) for r in rows if r["level"] == "section"}
    judged = [r["benchmark"] for r in rows if r["level"] == "benchmark" and r["name"] == "score"]
    missing = {name: [p for p in benchmark_of(name).parts if (name, p) not in present] for name in judged}
    return {name: parts for name, parts in missing.items() if parts}


def scores_as_dict(rows: list[ScoreRow]) -> dict[str, dict[str, dict[str, dict[str, float | int]]]]:
    """{benchmark: {level: {name: {score, count, error_rate}}}}, for JSON output."""
    nested: dict[str, dict[str, dict[str, dict[str, float | int]]]] = {}
    for row in rows:
        entry = {"score": round(row["score"], 6), "count": row["count"], "error_rate": round(row["error_rate"], 6)}
        nested.setdefault(row["benchmark"], {}).setdefault(row["level"], {})[row["name"]] = entry
    return nested
