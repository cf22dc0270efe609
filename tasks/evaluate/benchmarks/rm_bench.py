"""RM-Bench (THU-KEG/RM-Bench): every item has 3 chosen and 3 rejected answers in three styles; all 9 pairs
are judged and scored as a 3x3 matrix per domain (docs/method.md §8).

Local copies: the official `<subset>_filtered.json` files (or `total_dataset.json`, whose records carry a
`domain`); records `{id, prompt, chosen[3], rejected[3]}`.
"""

from __future__ import annotations

import os
from statistics import fmean
from typing import Any

import pandas as pd

from tasks.evaluate.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkSource,
    Comparison,
    ScoreRow,
    accuracy_row,
    benchmark_files,
    detail_table,
    file_records,
    record_field,
    score_row,
    user_turn,
)
from tasks.standins import synthetic_benchmarks

NAME = "rm_bench"
# Answer styles 0 concise, 1 detailed plain, 2 detailed markdown; the files are named per subset.
SUBSETS = ("chat", "code", "math", "safety-refuse", "safety-response")
STYLES = 3
STYLE_NAMES = ("concise", "detailed", "markdown")
DOMAINS = ("chat", "code", "math", "safety")  # safety = safety-refuse + safety-response
DIFFICULTY = ("hard", "normal", "easy")  # chosen less styled than rejected (i<j), equal, more (i>j)


def _subset(record: dict[str, Any], path: str, where: str) -> str:
    """The record's `domain` when present (total_dataset.json), else the file's name (chat_filtered.json)."""
    subset = record.get("domain") or os.path.basename(path).split("_filtered")[0].removesuffix(".json")
    if subset not in SUBSETS:
        raise BenchmarkError(
            f"{where}: cannot tell the RM-Bench subset (a 'domain' field or a file named <subset>_filtered.json, "
            f"subset one of {', '.join(SUBSETS)}); got {subset!r}"
        )
    return subset


def load(config: BenchmarkSource) -> list[Comparison]:
    """RM-Bench's official JSON: every item gives 3 chosen x 3 rejected = 9 comparisons."""
    assert config.path is not None
    comparisons: list[Comparison] = []
    for path in benchmark_files(config.path, BENCHMARK.files):
        for row, record in file_records(path):
            where = f"{path}, record {row}"
            subset = _subset(record, path, where)
            answers = {}
            for side in ("chosen", "rejected"):
                answers[side] = record_field(record, side, where, list)
                if len(answers[side]) != STYLES or not all(isinstance(a, str) for a in answers[side]):
                    raise BenchmarkError(f"{where}: field '{side}' must list {STYLES} answers (one per style)")
            item = f"{subset}/{record.get('id', row)}"
            conversation = user_turn(record_field(record, "prompt", where))
            for i in range(STYLES):
                for j in range(STYLES):
                    comparisons.append(
                        Comparison(
                            benchmark=NAME,
                            subset=subset,
                            item_id=item,
                            comparison_id=f"{NAME}/{item}/c{i}-r{j}",
                            conversation=conversation,
                            chosen=answers["chosen"][i],
                            rejected=answers["rejected"][j],
                            category=subset.split("-")[0],  # safety-refuse and safety-response pool as safety
                            group_id=item,
                            chosen_style=i,
                            rejected_style=j,
                        )
                    )
    return comparisons


def _difficulty(i: int, j: int) -> str:
    return DIFFICULTY[0] if i < j else DIFFICULTY[1] if i == j else DIFFICULTY[2]


def _of_difficulty(part: pd.DataFrame, name: str) -> pd.DataFrame:
    return part[[_difficulty(i, j) == name for i, j in zip(part["chosen_style"], part["rejected_style"], strict=True)]]


def score(df: pd.DataFrame) -> list[ScoreRow]:
    """Per domain the 3x3 matrix M[i][j] = mean over items of 1[chosen style i beats rejected style j];
    hard / normal / easy = upper triangle / diagonal / lower triangle; the domain score the mean of the
    nine cells (safety-refuse and safety-response pooled by item); the score the mean of the domains."""
    rows = [accuracy_row(NAME, "subset", subset, part) for subset, part in df.groupby("subset", sort=True)]
    domains: dict[str, dict[str, float]] = {}
    for domain, part in df.groupby("category", sort=True):
        cells: dict[tuple[int, int], float] = {}
        for i in range(STYLES):
            for j in range(STYLES):
                cell = part[(part["chosen_style"] == i) & (part["rejected_style"] == j)]
                if cell.empty:
                    raise ValueError(f"rm_bench {domain}: no comparison of chosen style {i} with rejected style {j}")
                cells[i, j] = cell["score"].mean()
                rows.append(score_row(NAME, "cell", f"{domain}/c{i}-r{j}", cells[i, j], cell["group_id"].nunique(),
                                      cell))  # fmt: skip
        items = part["group_id"].nunique()
        scores = {d: fmean(v for (i, j), v in cells.items() if _difficulty(i, j) == d) for d in DIFFICULTY}
        scores["score"] = fmean(cells.values())
        for name in DIFFICULTY:
            rows.append(score_row(NAME, "section", f"{domain}/{name}", scores[name], items, _of_difficulty(part, name)))
        rows.append(score_row(NAME, "section", str(domain), scores["score"], items, part))
        domains[str(domain)] = scores
    if domains:
        for name in DIFFICULTY:
            mean = fmean(s[name] for s in domains.values())
            rows.append(score_row(NAME, "section", name, mean, df["group_id"].nunique(), _of_difficulty(df, name)))
        rows.append(
            score_row(NAME, "benchmark", "score", fmean(s["score"] for s in domains.values()),
                      df["group_id"].nunique(), df)
        )  # fmt: skip
    return rows


def report(rows: list[ScoreRow]) -> list[str]:
    domains = sorted({r["name"].split("/")[0] for r in rows if r["benchmark"] == NAME and r["level"] == "cell"})
    return ["Hard: the chosen answer less styled than the rejected one.", "",
            *detail_table(rows, NAME, "section", [*DIFFICULTY, *domains])]  # fmt: skip


def matrix(rows: list[ScoreRow]) -> list[dict[str, Any]]:
    """The 3x3 matrices as the paper draws them: chosen style (rows) against rejected style, in points."""
    cells = {row["name"]: row["score"] for row in rows if row["benchmark"] == NAME and row["level"] == "cell"}
    domains = sorted({name.split("/")[0] for name in cells})
    return [
        {"domain": domain, "chosen": chosen, **{f"vs {rejected}": round(100 * cells[f"{domain}/c{i}-r{j}"], 2)
                                              for j, rejected in enumerate(STYLE_NAMES)}}
        for domain in domains for i, chosen in enumerate(STYLE_NAMES)
    ]  # fmt: skip


BENCHMARK = Benchmark(
    name=NAME,
    title="RM-Bench",
    rule="mean of the domains' 3x3 style-matrix accuracies",
    load=load,
    score=score,
    parts=DOMAINS,
    needs=("group_id", "category", "chosen_style", "rejected_style"),
    report=report,
    write_synthetic=synthetic_benchmarks.rm_bench,
)
