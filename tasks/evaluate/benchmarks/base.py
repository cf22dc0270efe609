"""What every benchmark module shares: the `Benchmark` it declares, the `Comparison`s its loader returns, the
readers of its official files, and the score rows its scorer returns.

A benchmark is a module with one `BENCHMARK = Benchmark(...)`: how to load its official layout (local files,
or the Hub through `datasets`), how to score judged comparisons by its official rule, which parts its score
needs, what to show in the report and the numbers others published on it. The registry
(`tasks.evaluate.benchmarks`) lists the modules; nothing else knows a benchmark by name.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pandas as pd

from data_contracts.errors import UserError
from tasks.judge.protocol import Turn, Verdict
from tasks.records.fields import FieldMap
from tasks.records.reader import BadRow, SourceError, open_file, open_rows

ScoreRow = dict[str, Any]  # one eval_scores row: {benchmark, level, name, score, count, error_rate}
Record = dict[str, Any]
READ_ROWS = 1_024  # records taken from a file at a time
BENCHMARK_MAX_CHARS = 4_000_000  # text one benchmark record may hold (RM-Bench items hold six long answers)


class BenchmarkError(UserError, ValueError):
    """Benchmark files that cannot be read as the official layout; the message names file, record, field."""


@dataclass(frozen=True)
class Comparison:
    """One chosen-vs-rejected judgement a benchmark asks for, before the A/B order is decided."""

    benchmark: str
    subset: str  # RewardBench subset; RM-Bench file subset; RMB "pairwise/Helpfulness", "bon/Harmlessness", ...
    item_id: str  # the benchmark item (RM-Bench: 9 comparisons; RMB BoN: one per loser)
    comparison_id: str
    conversation: list[Turn]
    chosen: str
    rejected: str
    category: str | None = None  # RewardBench section, RM-Bench domain, RMB category path below the goal, ...
    group_id: str | None = None  # comparisons scored together (an RM-Bench item, an RMB or RewardBench 2 BoN item)
    chosen_style: int | None = None  # RM-Bench: answer styles; RewardBench 2: the answers' indices in the item
    rejected_style: int | None = None
    position: Literal["A", "B"] | None = None  # where `chosen` is shown by the benchmark's own rule; None: seeded


class BenchmarkSource(Protocol):
    """What a loader reads of a recipe's benchmark entry (`tasks.evaluate.config.BenchmarkConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def hub_id(self) -> str | None: ...
    @property
    def revision(self) -> str | None: ...
    @property
    def split(self) -> str | None: ...
    @property
    def items_per_subset(self) -> int | None: ...
    @property
    def sample_seed(self) -> int: ...
    @property
    def fields(self) -> FieldMap | None: ...
    @property
    def subset(self) -> str | None: ...
    @property
    def max_bad_rows(self) -> float: ...


@dataclass(frozen=True)
class Published:
    """A number someone published on a benchmark, in points, and where it was published."""

    model: str
    score: float  # the benchmark's overall score, in points
    source: str  # paper (arXiv id, table) or repository file, precise enough to check
    parts: Mapping[str, float] = field(default_factory=dict)  # section or subset scores, in points
    split: str | None = None  # the split it was measured on, when the benchmark has several


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its loader, its official scoring rule, its report section and published numbers."""

    name: str  # the recipe's `benchmarks[].name` and the `benchmark` column of predictions and scores
    title: str  # as the field writes it, e.g. "RewardBench 2"
    load: Callable[[BenchmarkSource], list[Comparison]]
    score: Callable[[pd.DataFrame], list[ScoreRow]]  # one benchmark's judged rows -> its score rows
    files: tuple[str, ...] = ("*.json",)  # the local files a folder path is searched for
    hub: bool = False  # whether it loads from the Hub (`hub_id`)
    split: str | None = None  # the Hub split read when the recipe names none
    parts: tuple[str, ...] = ()  # section rows the official score needs: fewer is a partial score
    needs: tuple[str, ...] = ()  # prediction columns besides the required ones its scorer reads
    orders: Literal["seeded", "both"] = "seeded"  # "both": every pair judged in both orders, both scored
    report: Callable[[list[ScoreRow]], list[str]] | None = None  # markdown lines of its report section
    # Which judged rows pit a right answer against a wrong one (position rows use only these); None = all.
    right_vs_wrong: Callable[[pd.DataFrame], pd.Series] | None = None
    published: tuple[Published, ...] = ()
    write_synthetic: Callable[[str, int], str] | None = None  # (folder, seed) -> path of a small seeded copy
    rule: str = ""  # its official overall score in a few words, for reports and model cards


# ---------------------------------------------------------------- reading records


def record_field(record: Record, name: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """`record[name]` when it is a `kind` (a non-empty list or dict when `kind` is one); else BenchmarkError."""
    value = record.get(name)
    if not isinstance(value, kind) or (isinstance(value, str | list) and not value and kind is not str):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        got = "missing" if name not in record else f"{type(value).__name__} {str(value)[:60]!r}"
        raise BenchmarkError(f"{where}: field '{name}' must be a {expected}, got {got}")
    return value


def benchmark_files(path: str, patterns: Iterable[str]) -> list[str]:
    """`path` itself when it is a file, else the files under it matching `patterns`, sorted."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise BenchmarkError(f"{path}: no such file or folder")
    files = sorted({f for pattern in patterns for f in glob.glob(os.path.join(path, "**", pattern), recursive=True)})
    if not files:
        raise BenchmarkError(f"{path}: no {' or '.join(patterns)} files found")
    return files


def _rows(rows: Any, name: str, keep_bad: bool) -> Iterator[tuple[int, Any]]:
    for start in range(0, len(rows), READ_ROWS):
        indices = list(range(start, min(start + READ_ROWS, len(rows))))
        for index, record in zip(indices, rows.read(indices), strict=True):
            if isinstance(record, BadRow) and not keep_bad:
                raise BenchmarkError(f"{name}, record {index}: {record.where}: {record.reason}")
            yield index, record


def file_records(file: str, keep_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """(record index, record) of a json (array or lines), jsonl or parquet file, read with the one row reader
    (`tasks.records`): a record that is not a JSON object is a BenchmarkError naming the file and record, or
    with `keep_bad` a `BadRow` for the caller to count."""
    with tempfile.TemporaryDirectory(prefix="rmr1-benchmark-") as scratch:
        try:
            rows = open_file(file, scratch, BENCHMARK_MAX_CHARS)
        except SourceError as error:
            raise BenchmarkError(str(error)) from None
        yield from _rows(rows, file, keep_bad)


def hub_records(config: BenchmarkSource, split: str, keep_bad: bool = False) -> tuple[str, Iterator[tuple[int, Any]]]:
    """The named split of `config.hub_id` at its pinned revision (`datasets`), and how to name it in errors."""
    import datasets  # heavy import, kept off the CLI's start-up path

    dataset = datasets.load_dataset(config.hub_id, revision=config.revision, split=split)
    name = f"hf://{config.hub_id}@{config.revision}/{split}"
    return name, _rows(open_rows(name, dataset.with_format("arrow"), BENCHMARK_MAX_CHARS), name, keep_bad)


def user_turn(content: str) -> list[Turn]:
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------- score rows


def score_row(benchmark: str, level: str, name: str, score: float, count: int, judged: pd.DataFrame) -> ScoreRow:
    """One eval_scores row; `error_rate` is the share of `judged` comparisons whose verdict was unparseable."""
    error_rate = float((judged["verdict"] == Verdict.ERROR).mean()) if len(judged) else 0.0
    return {"benchmark": benchmark, "level": level, "name": name, "score": float(score), "count": int(count),
            "error_rate": error_rate}  # fmt: skip


def accuracy_row(benchmark: str, level: str, name: str, judged: pd.DataFrame) -> ScoreRow:
    """The mean comparison score of `judged` (correct 1, tie 0.5, wrong or unparseable 0)."""
    return score_row(benchmark, level, name, judged["score"].mean(), len(judged), judged)


def all_won(judged: pd.DataFrame) -> pd.Series:
    """Per group: 1.0 when the chosen answer won every comparison of the group (a tie or an error loses)."""
    return (judged["score"] == 1.0).groupby(judged["group_id"]).all().astype(float)


def find_row(rows: list[ScoreRow], benchmark: str, level: str, name: str) -> ScoreRow | None:
    return next((r for r in rows if (r["benchmark"], r["level"], r["name"]) == (benchmark, level, name)), None)


def points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def detail_table(rows: list[ScoreRow], benchmark: str, level: str, names: list[str] | None = None) -> list[str]:
    """Markdown: name, score (points), n and error rate of one benchmark's rows at `level`."""
    chosen = [r for r in rows if r["benchmark"] == benchmark and r["level"] == level]
    if names is not None:
        chosen = [r for name in names for r in chosen if r["name"] == name]
    lines = ["| name | score | n | error rate |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {points(r['score'])} | {r['count']} | {100 * r['error_rate']:.1f}% |" for r in chosen]
    return lines if chosen else []
