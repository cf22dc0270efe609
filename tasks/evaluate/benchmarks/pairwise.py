"""A team's own pairwise benchmark: any json, jsonl or parquet file (or Hub dataset) read through a field
mapping (`FieldMap`, the same label-aware grammar the pull stage uses), scored as accuracy per subset and
overall (micro over pairs).

The recipe names it (any name that is not a registered benchmark) and maps its fields: the conversation or
prompt, then `chosen`/`rejected` or `first`/`second` plus a `label`; `subset` names an optional record
field that splits the score. Rows labelled a tie are left out (a pair needs a winner). A record that cannot
be read (broken JSON, a field missing, a label outside the mapping) stops the run naming its file, row and
field, since a benchmark silently missing rows would not measure what its owner thinks; `max_bad_rows`
allows a share of them, left out and counted in a warning.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator

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
)
from tasks.records.fields import RowError, label_key, map_record
from tasks.records.reader import BadRow

FILES = ("*.json", "*.jsonl", "*.parquet", "*.json.gz", "*.jsonl.gz", "*.parquet.gz")
SPLIT = "train"  # the Hub split read when the recipe names none
SHOWN_ERRORS = 3
ALL = "all"  # the subset of every pair when the mapping names no subset field

log = logging.getLogger(__name__)


def sources(config: BenchmarkSource) -> Iterator[tuple[str, str, Iterator[tuple[int, Record | BadRow]]]]:
    """(where, id prefix, records) per file or Hub split."""
    if config.hub_id is not None:
        split = config.split or SPLIT
        name, records = hub_records(config, split, keep_bad=True)
        yield name, split, records
        return
    assert config.path is not None
    yield from file_sources(config.path)


def file_sources(path: str) -> Iterator[tuple[str, str, Iterator[tuple[int, Record | BadRow]]]]:
    """(file, its path under `path`, records) for a file or each file of a folder; bad records kept."""
    root = path if os.path.isdir(path) else os.path.dirname(path)
    for file in benchmark_files(path, FILES):
        yield file, os.path.relpath(file, root), file_records(file, keep_bad=True)


def load(config: BenchmarkSource) -> list[Comparison]:
    """Every labelled pair of the set, chosen and rejected as the label says."""
    assert config.fields is not None
    comparisons: list[Comparison] = []
    errors: list[str] = []
    read, ties = 0, Counter[str]()
    for where, prefix, records in sources(config):
        for row, record in records:
            read += 1
            if isinstance(record, BadRow):
                errors.append(f"{where}, record {row}: {record.where}: {record.reason}")
                continue
            try:
                pair = map_record(record, config.fields)
                subset = _subset(record, config.subset)
            except RowError as error:
                errors.append(f"{where}, record {row}: {error}")
                continue
            if pair.winner == "tie":
                ties[where] += 1
                continue
            chosen, rejected = (pair.first, pair.second) if pair.winner == "first" else (pair.second, pair.first)
            item = f"{prefix}#{row}"
            comparisons.append(
                Comparison(
                    benchmark=config.name,
                    subset=subset,
                    item_id=item,
                    comparison_id=f"{config.name}/{item}",
                    conversation=pair.conversation,
                    chosen=chosen,
                    rejected=rejected,
                    category=subset,
                )
            )
    check_bad_rows(config.name, errors, read, config.max_bad_rows)
    for where, count in ties.items():
        log.info("%s: %s: %d pair(s) labelled a tie left out", config.name, where, count)
    return comparisons


def check_bad_rows(name: str, errors: list[str], read: int, max_bad_rows: float) -> None:
    """Stop (BenchmarkError naming the first few, each with file, record and field) when more than
    `max_bad_rows` of the `read` records could not be read; else warn once about those left out."""
    bad = len(errors)
    if bad > max_bad_rows * read:
        raise BenchmarkError(
            f"{name}: {bad} of {read} record(s) cannot be read through the field mapping (max_bad_rows "
            f"{max_bad_rows:g}); fix them or the mapping. First {min(bad, SHOWN_ERRORS)}: "
            + "; ".join(errors[:SHOWN_ERRORS])
        )
    if errors:
        shown = "; ".join(errors[:SHOWN_ERRORS])
        log.warning("%s: %d of %d record(s) left out (max_bad_rows %g); first: %s", name, bad, read, max_bad_rows,
                    shown)  # fmt: skip


def _subset(record: Record, field: str | None) -> str:
    if field is None:
        return ALL
    value = label_key(record.get(field))
    if not value:
        raise RowError(field, "missing" if record.get(field) is None else "expected a text or integer subset")
    return value


def _score(name: str, df: pd.DataFrame) -> list[ScoreRow]:
    rows = [accuracy_row(name, "subset", subset, part) for subset, part in df.groupby("subset", sort=True)]
    return [*rows, accuracy_row(name, "benchmark", "score", df)]


def benchmark(name: str) -> Benchmark:
    """The Benchmark of a custom set called `name`: accuracy per subset, and over every pair."""
    return Benchmark(
        name=name,
        title=name,
        load=load,
        score=lambda df: _score(name, df),
        files=FILES,
        hub=True,
        split=SPLIT,
        report=lambda rows: [*detail_table(rows, name, "subset"), "", *detail_table(rows, name, "benchmark")],
    )
