"""JudgeBench (ScalerLab/JudgeBench; Tan et al., arXiv 2410.12784, ICLR 2025): pairs of answers by one model to
hard questions, one objectively right. Split `gpt` (350 pairs by GPT-4o, the paper's tables) or `claude` (270).

Every pair is judged in both orders (`orders="both"`) and scored by the official rule (`utils/metrics.py`,
`compute_final_metrics`): per pair, +1 for each game that picks the right answer, −1 for each that picks the
wrong one, 0 for a tie or an unparseable verdict; the pair is right when the sum is above 0. So right+right and
right+tie are right; right+wrong (inconsistent), tie+tie and error+error are not; there is no half credit. A
pair with only one game in the rows (e.g. a file judged in one order and scored with `rmr1 score`) sums the
games it has, which is the official `--single_game` accuracy. Accuracy is per category (knowledge: MMLU-Pro,
reasoning: LiveBench reasoning, math: LiveBench math, coding: LiveCodeBench; by source prefix, as
`run_judge.py` does) and overall the micro average over pairs, not the mean of the categories.

Local copies: the GitHub files `data/dataset=judgebench,response_model=<model>.jsonl` or the Hub's
`data/<split>-00000-of-00001.parquet`, records `{pair_id, original_id, source, question, response_model,
response_A, response_B, label}` with label "A>B" or "B>A". In a folder, a file whose name marks a split (the
GitHub `response_model=gpt-…`/`claude-…` or the Hub's `gpt-…`/`claude-…`) is read only for that split.

Published numbers are the paper's (GPT-4o pairs, i.e. split `gpt`), which the official outputs reproduce.
Some later papers (Skywork-Reward-V2, GRAM-R²) report the mean of the four categories as the overall score
instead; those numbers are not comparable, which is why the RM-R1 rows they publish are not listed here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pandas as pd

from tasks.evaluate.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkSource,
    Comparison,
    Published,
    Record,
    ScoreRow,
    benchmark_files,
    detail_table,
    file_records,
    hub_records,
    record_field,
    score_row,
    user_turn,
)
from tasks.judge.protocol import Verdict
from tasks.standins import synthetic_benchmarks

NAME = "judgebench"
# Source prefix -> category (run_judge.py's prefixes; the paper's names).
CATEGORIES = {"mmlu-pro": "knowledge", "livebench-reasoning": "reasoning", "livebench-math": "math",
              "livecodebench": "coding"}  # fmt: skip
LABELS = ("A>B", "B>A")
_FILE_SPLIT = re.compile(r"response_model=(gpt|claude)-|^(gpt|claude)-\d+-of-\d+\.")


def _category(source: str, where: str) -> str:
    category = next((c for prefix, c in CATEGORIES.items() if source.startswith(prefix)), None)
    if category is None:
        raise BenchmarkError(f"{where}: field 'source' must start with {', '.join(CATEGORIES)}, got {source!r}")
    return category


def _comparisons(records: Iterator[tuple[int, Record]], name: str) -> Iterator[Comparison]:
    for row, record in records:
        where = f"{name}, record {row}"
        label = record.get("label")
        if label not in LABELS:
            raise BenchmarkError(f"{where}: field 'label' must be A>B or B>A, got {label!r}")
        pair_id = record_field(record, "pair_id", where)
        source = record_field(record, "source", where)
        answers = record_field(record, "response_A", where), record_field(record, "response_B", where)
        chosen = 0 if label == "A>B" else 1
        yield Comparison(
            benchmark=NAME,
            subset=_category(source, where),
            item_id=pair_id,
            comparison_id=f"{NAME}/{pair_id}",
            conversation=user_turn(record_field(record, "question", where)),
            chosen=answers[chosen],
            rejected=answers[1 - chosen],
            category=source,
        )


def _split_of_file(path: str) -> str | None:
    match = _FILE_SPLIT.search(os.path.basename(path))
    return None if match is None else match.group(1) or match.group(2)


def load(config: BenchmarkSource) -> list[Comparison]:
    """JudgeBench from the Hub (`datasets`, pinned revision, the recipe's split or `gpt`) or local files."""
    split = config.split or BENCHMARK.split or ""
    if config.hub_id is not None:
        source, records = hub_records(config, split)
        return list(_comparisons(records, source))
    assert config.path is not None
    files = benchmark_files(config.path, BENCHMARK.files)
    if os.path.isdir(config.path):
        files = [f for f in files if _split_of_file(f) in (None, split)]
        if not files:
            raise BenchmarkError(f"{config.path}: no JudgeBench file of split {split!r} (files are named per split)")
    return [c for path in files for c in _comparisons(file_records(path), path)]


def _games(judged: pd.DataFrame) -> pd.Series:
    """Per game: +1 when the verdict picks the right answer, −1 the wrong one, 0 a tie or an error."""
    decided = judged["verdict"].isin([Verdict.A, Verdict.B])
    picks_right = judged["verdict"] == judged["chosen_position"]
    return picks_right.map({True: 1, False: -1}).where(decided, 0)


def score(df: pd.DataFrame) -> list[ScoreRow]:
    """Pair accuracy (the net rule over the pair's games) per category, per source, and overall (micro)."""
    right = (_games(df).groupby(df["item_id"]).sum() > 0).astype(float)  # per pair, by item_id (= pair_id)
    pairs = df.groupby("item_id").agg(subset=("subset", "first"), source=("category", "first"))
    rows: list[ScoreRow] = []
    for category in CATEGORIES.values():
        mine = right[pairs["subset"] == category]
        if len(mine):
            rows.append(score_row(NAME, "section", category, mine.mean(), len(mine), df[df["subset"] == category]))
    rows += [
        score_row(NAME, "subset", source, part.mean(), len(part), df[df["category"] == source])
        for source, part in right.groupby(pairs["source"], sort=True)
    ]
    if len(right):
        rows.append(score_row(NAME, "benchmark", "score", right.mean(), len(right), df))
    return rows


def report(rows: list[ScoreRow]) -> list[str]:
    return [*detail_table(rows, NAME, "section", list(CATEGORIES.values())), "", *detail_table(rows, NAME, "benchmark")]


def _paper(model: str, table: int, knowledge: float, reasoning: float, math: float, coding: float,
           overall: float) -> Published:  # fmt: skip
    parts = {"knowledge": knowledge, "reasoning": reasoning, "math": math, "coding": coding}
    source = f"Tan et al., arXiv 2410.12784 (ICLR 2025), Table {table}, GPT-4o pairs"
    return Published(model, overall, source, parts, split="gpt")


BENCHMARK = Benchmark(
    name=NAME,
    title="JudgeBench",
    rule="accuracy over pairs, each judged in both orders (net rule)",
    load=load,
    score=score,
    files=("*.json", "*.jsonl", "*.parquet"),
    hub=True,
    split="gpt",
    parts=tuple(CATEGORIES.values()),
    orders="both",
    report=report,
    published=(
        _paper("Vanilla judge (GPT-4o)", 1, 44.16, 47.96, 66.07, 61.90, 50.86),
        _paper("Arena-Hard judge (GPT-4o)", 1, 50.65, 54.08, 75.00, 59.52, 56.57),
        _paper("Arena-Hard judge (Claude-3.5-Sonnet)", 2, 62.34, 66.33, 66.07, 64.29, 64.29),
        _paper("Arena-Hard judge (o1-preview)", 2, 66.23, 79.59, 85.71, 85.71, 75.43),
        _paper("Arena-Hard judge (o3-mini, high)", 2, 67.53, 89.80, 87.50, 100.0, 80.86),
        _paper("Arena-Hard judge (Llama-3.1-70B-Instruct)", 2, 51.30, 48.98, 60.71, 52.38, 52.29),
        _paper("Skywork-Reward-Gemma-2-27B (scalar)", 3, 59.74, 66.33, 83.93, 50.00, 64.29),
        _paper("InternLM2-20B-Reward (scalar)", 3, 62.34, 69.39, 66.07, 50.00, 63.43),
    ),
    write_synthetic=synthetic_benchmarks.judgebench,
)
