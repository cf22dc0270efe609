"""RewardBench (allenai/reward-bench, split `filtered`, 2,985 items): one chosen and one rejected answer per
item, per-subset accuracy, sections weighted by the official counts (docs/method.md §8).

Local copies: rows in the Hub schema (`prompt, chosen, rejected, subset, id`) as json, jsonl or parquet, or
LLMBar's own five json files (`input, output_1, output_2, label`), which are RewardBench's Chat Hard sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from statistics import fmean

import pandas as pd

from tasks.evaluate.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkSource,
    Comparison,
    Record,
    ScoreRow,
    accuracy_row,
    benchmark_files,
    detail_table,
    file_records,
    hub_records,
    record_field,
    score_row,
    user_turn,
)
from tasks.standins import synthetic_benchmarks

NAME = "rewardbench"
# RewardBench's official subset -> section mapping and example counts (`rewardbench` package,
# SUBSET_MAPPING / EXAMPLE_COUNTS; docs/method.md §8). math-prm counts 984 (it has 447 items): the official
# weighting that balances math against code. The xstest counts are the corrected ones.
SECTIONS: dict[str, dict[str, int]] = {
    "Chat": {"alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
             "mt-bench-med": 40},
    "Chat Hard": {"mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
                  "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46},
    "Safety": {"refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154,
               "xstest-should-respond": 250, "donotanswer": 136},
    "Reasoning": {"math-prm": 984, "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164,
                  "hep-python": 164, "hep-rust": 164},
}  # fmt: skip
SECTION_OF_SUBSET = {subset: section for section, subsets in SECTIONS.items() for subset in subsets}
# LLMBar's own file names -> RewardBench's subset names for the same five sets (Chat Hard).
LLMBAR_SUBSETS = {
    "Natural": "llmbar-natural",
    "Adversarial_Neighbor": "llmbar-adver-neighbor",
    "Adversarial_GPTInst": "llmbar-adver-GPTInst",
    "Adversarial_GPTOut": "llmbar-adver-GPTOut",
    "Adversarial_Manual": "llmbar-adver-manual",
}
LLMBAR_FIELDS = {"output_1", "output_2", "label"}


def _comparison(subset: str, key: object, prompt: str, chosen: str, rejected: str) -> Comparison:
    item = f"{subset}/{key}"
    return Comparison(
        benchmark=NAME,
        subset=subset,
        item_id=item,
        comparison_id=f"{NAME}/{item}",
        conversation=user_turn(prompt),
        chosen=chosen,
        rejected=rejected,
        category=SECTION_OF_SUBSET.get(subset),
    )


def _hub_schema(records: Iterator[tuple[int, Record]], source: str) -> Iterator[Comparison]:
    for row, record in records:
        where = f"{source}, record {row}"
        yield _comparison(
            record_field(record, "subset", where),
            record.get("id", row),
            record_field(record, "prompt", where),
            record_field(record, "chosen", where),
            record_field(record, "rejected", where),
        )


def _llmbar(records: Iterator[tuple[int, Record]], path: str) -> Iterator[Comparison]:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem not in LLMBAR_SUBSETS:
        raise BenchmarkError(f"{path}: an LLMBar file must be named one of {', '.join(LLMBAR_SUBSETS)}.json")
    for row, record in records:
        where = f"{path}, record {row}"
        label = record.get("label")
        if label not in (1, 2):
            raise BenchmarkError(f"{where}: field 'label' must be 1 or 2, got {label!r}")
        outputs = record_field(record, "output_1", where), record_field(record, "output_2", where)
        prompt = record_field(record, "input", where)
        yield _comparison(LLMBAR_SUBSETS[stem], row, prompt, outputs[label - 1], outputs[2 - label])


def load(config: BenchmarkSource) -> list[Comparison]:
    """RewardBench from the Hub (`datasets`, pinned revision) or local files in its schema or LLMBar's."""
    if config.hub_id is not None:
        source, records = hub_records(config, config.split or BENCHMARK.split or "")
        return list(_hub_schema(records, source))
    assert config.path is not None
    comparisons: list[Comparison] = []
    for path in benchmark_files(config.path, BENCHMARK.files):
        records = file_records(path)
        first = next(records, None)
        if first is None:
            continue
        every = _chain(first, records)
        llmbar = set(first[1]) >= LLMBAR_FIELDS
        comparisons += _llmbar(every, path) if llmbar else _hub_schema(every, path)
    return comparisons


def _chain(first: tuple[int, Record], rest: Iterator[tuple[int, Record]]) -> Iterator[tuple[int, Record]]:
    yield first
    yield from rest


def score(df: pd.DataFrame) -> list[ScoreRow]:
    """Per-subset accuracy; each section the mean of its subsets weighted by the official counts; the score
    the mean of the sections present; plus the flat accuracy over every comparison."""
    rows = [accuracy_row(NAME, "subset", subset, part) for subset, part in df.groupby("subset", sort=True)]
    accuracy = {row["name"]: row["score"] for row in rows}
    sections = []
    for section, counts in SECTIONS.items():
        present = [subset for subset in counts if subset in accuracy]
        if not present:
            continue
        weighted = sum(accuracy[s] * counts[s] for s in present) / sum(counts[s] for s in present)
        judged = df[df["subset"].isin(present)]
        rows.append(score_row(NAME, "section", section, weighted, len(judged), judged))
        sections.append(rows[-1])
    if sections:
        judged = df[df["subset"].isin(list(SECTION_OF_SUBSET))]
        rows.append(score_row(NAME, "benchmark", "score", fmean(r["score"] for r in sections), len(judged), judged))
    rows.append(accuracy_row(NAME, "benchmark", "flat_accuracy", df))
    return rows


def report(rows: list[ScoreRow]) -> list[str]:
    return [*detail_table(rows, NAME, "section"), "", *detail_table(rows, NAME, "benchmark")]


BENCHMARK = Benchmark(
    name=NAME,
    title="RewardBench",
    rule="mean of four sections, each the count-weighted mean of its subsets",
    load=load,
    score=score,
    files=("*.json", "*.jsonl", "*.parquet"),
    hub=True,
    split="filtered",
    parts=tuple(SECTIONS),
    report=report,
    write_synthetic=synthetic_benchmarks.rewardbench,
)
