"""`rmr1 judge FILE`: judge a file (json, jsonl or parquet) of labelled pairs, or rank N candidates per prompt.

- Pairs (`judge_file`), read through the label-aware field mapping: one row per judgement, in the format
  `rmr1 score` reads (docs/evaluation.md). The mapping says which answer the file prefers (`chosen`/`rejected`,
  or `first`/`second` with a `label`), so every row records where the preferred answer was shown
  (`chosen_position`), the verdict (`A`, `B`, `tie`, `error`) and the judge's trace (`output`): the output
  scores as a custom pairwise set.
- Candidates (`rank_file`), read through `CandidateFields` (the context as in the pair mapping, a field with
  a list of answers, optionally a reference answer): one row per prompt with the ranking (best first), a
  score per candidate and every game behind it, traces included.

A re-run sends nothing already answered (the judge's cache), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from data_contracts.errors import UserError
from tasks.config import ConfigError
from tasks.evaluate.benchmarks import pairwise
from tasks.evaluate.best_of_k import KS, Graded, best_of_k, pairwise_accuracy, plot
from tasks.evaluate.config import BenchmarkConfig
from tasks.judge.api import Judgment, PairwiseJudge
from tasks.judge.ranking import Candidates, Method, Ranking, comparisons, rank_many
from tasks.records.fields import FieldMap, RowError, label_key, map_context, text_value
from tasks.records.reader import BadRow

BATCH = 256  # comparisons per compare_many call: one progress step


def _rows(comparison: Any, judgment: Judgment, judge: PairwiseJudge) -> list[dict[str, Any]]:
    """One row per vote (order and sample), with the ids `rmr1 score` expects."""
    samples = judge.config.samples
    rows = []
    for k, (vote, trace, a_at) in enumerate(zip(judgment.votes, judgment.traces, judgment.shown, strict=True)):
        swapped, sample = divmod(k, samples)
        b_at = "B" if a_at == "A" else "A"
        verdict = {"a": a_at, "b": b_at, "tie": "tie"}.get(vote, "error")
        suffix = ("#swapped" if swapped else "") + (f"#sample-{sample}" if sample else "")
        rows.append({"benchmark": comparison.benchmark, "subset": comparison.subset, "item_id": comparison.item_id,
                     "comparison_id": comparison.comparison_id + suffix, "chosen_position": a_at,
                     "swapped": bool(swapped), "judge": judge.name, "verdict": verdict, "output": trace})  # fmt: skip
    return rows


def judge_file(path: str, fields: FieldMap, judge: PairwiseJudge, out: str, *, name: str = "judged",
               subset: str | None = None, max_bad_rows: float = 0.0) -> int:  # fmt: skip
    """Judge every labelled pair of `path`, write the rows to `out` (.jsonl or .parquet); the rows written."""
    check_out(out)
    config = BenchmarkConfig(name=name, path=path, fields=fields, subset=subset, max_bad_rows=max_bad_rows)
    comparisons = pairwise.load(config)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(comparisons), desc="judge", unit="pair") as progress:
        for start in range(0, len(comparisons), BATCH):
            batch = comparisons[start : start + BATCH]
            judgments = judge.compare_many([(c.conversation, c.chosen, c.rejected) for c in batch])
            for comparison, judgment in zip(batch, judgments, strict=True):
                rows += _rows(comparison, judgment, judge)
            progress.update(len(batch))
    _check_requests(judge, out)
    _write(rows, out)
    return len(rows)


def check_out(out: str) -> None:
    if not out.endswith((".jsonl", ".parquet")):
        raise ConfigError("--out", f"{out}: write .jsonl or .parquet")


def _check_requests(judge: PairwiseJudge, out: str) -> None:
    """Requests an endpoint could not answer (timeouts, rate limits after every retry) would be rows marked
    `error` and games lost: nothing is written, and a re-run sends only those (the rest is cached)."""
    failed = judge.failed_requests()
    if failed:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(failed.items()))
        raise JudgeFileError(f"{sum(failed.values())} judge request(s) failed ({reasons}); {out} not written. "
                             "Run again: the answered comparisons are cached, only these are sent.")  # fmt: skip


def _write(rows: list[dict[str, Any]], out: str) -> None:
    """Write `rows` to `out` (.jsonl or .parquet) whole or not at all."""
    partial = f"{out}.partial"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), partial)
    else:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    os.replace(partial, out)  # the output is whole or absent


class JudgeFileError(UserError, ValueError):
    """A run of `rmr1 judge` that cannot finish as asked: unreadable records, no records, failed requests."""


@dataclass(frozen=True)
class CandidateFields:
    """Where N candidate answers to one prompt lie in a record."""

    candidates: str  # a field holding a list of answers (strings), or a pattern like `response_*` (one field each)
    prompt: str | None = None  # the context, as in the pair mapping: prompt field(s), or a conversation field
    conversation: str | None = None
    system: str | None = None
    reference: str | None = None  # a field with a reference answer, for `--rank reference`
    id: str | None = None  # a field naming the row in the output, unique (default: file#record)
    correct: str | None = None  # a field with a correct/incorrect flag per candidate, for `--best-of-k`

    def check(self, method: Method) -> None:
        for key in ("candidates", "prompt", "conversation", "system", "reference", "id", "correct"):
            value = getattr(self, key)
            if (key == "candidates" or value is not None) and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"fields.{key}", f"expected a record field name, got {value!r}")
        if (self.prompt is None) == (self.conversation is None):
            raise ConfigError("fields.prompt", "map exactly one of `prompt` (text fields) or `conversation` (messages)")
        if method == "reference" and self.reference is None:
            raise ConfigError("fields.reference", "ranking against a reference needs the field that holds it")


def read_candidates(record: dict[str, Any], fields: CandidateFields, method: Method) -> Candidates:
    """One record as Candidates; RowError names the record field that is wrong."""
    conversation = map_context(record, fields.prompt, fields.conversation, fields.system)
    texts = _pattern_fields(record, fields.candidates) if "*" in fields.candidates else record.get(fields.candidates)
    if not isinstance(texts, list):
        raise RowError(
            fields.candidates, "missing" if texts is None else f"expected a list, got {type(texts).__name__}"
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise RowError(fields.candidates, f"candidate {index} is not a non-empty text")
    least = 1 if method == "reference" else 2
    if len(texts) < least:
        raise RowError(fields.candidates, f"{len(texts)} candidate(s); ranking needs at least {least}")
    reference = text_value(record, fields.reference) if method == "reference" and fields.reference else None
    return Candidates(conversation, texts, reference)


def _pattern_fields(record: dict[str, Any], pattern: str) -> list[Any] | None:
    """The values of the fields matching `pattern` (`*` any text), in natural order (`response_2` before
    `response_10`), as PPE's best-of-K rows hold their answers; fields left empty (null) at the end are not
    candidates (a row with fewer answers than columns). None when no field matches."""
    matcher = re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")
    names = sorted((n for n in record if matcher.match(n)), key=lambda n: [int(t) if t.isdigit() else t
                                                                           for t in re.split(r"(\d+)", n)])  # fmt: skip
    values = [record[name] for name in names]
    while values and values[-1] is None:
        values.pop()
    return values or None


def read_correct(record: dict[str, Any], fields: CandidateFields, count: int) -> tuple[bool, ...]:
    """The candidates' correctness flags (true/false, or 1/0), one per candidate; RowError otherwise."""
    assert fields.correct is not None
    flags = record.get(fields.correct)
    if not isinstance(flags, list) or len(flags) != count:
        got = "missing" if flags is None else f"{len(flags)} flags" if isinstance(flags, list) else type(flags).__name__
        raise RowError(fields.correct, f"expected a list of {count} flags (one per candidate), got {got}")
    if not all(flag in (True, False, 0, 1) for flag in flags):
        raise RowError(fields.correct, f"flags are true/false or 1/0, got {flags[:4]!r}")
    return tuple(bool(flag) for flag in flags)


def load_candidates(path: str, fields: CandidateFields, method: Method, max_bad_rows: float = 0.0
                    ) -> list[tuple[str, Candidates, tuple[bool, ...] | None]]:  # fmt: skip
    """(item id, candidates, correctness flags when `fields.correct` maps them) of every record of `path` (a file
    or folder). Unreadable records stop the run (file, record and field named) unless within `max_bad_rows`; ids
    must be unique."""
    fields.check(method)
    items: list[tuple[str, Candidates, tuple[bool, ...] | None]] = []
    errors: list[str] = []
    seen: dict[str, str] = {}  # item id -> where it was read
    read = 0
    for where, prefix, records in pairwise.file_sources(path):
        for row, record in records:
            read += 1
            try:
                if isinstance(record, BadRow):
                    raise RowError(record.where, record.reason)
                name = f"{prefix}#{row}" if fields.id is None else _item_id(record, fields.id)
                candidates = read_candidates(record, fields, method)
                correct = read_correct(record, fields, len(candidates.texts)) if fields.correct else None
            except RowError as error:
                errors.append(f"{where}, record {row}: {error}")
                continue
            if name in seen:
                raise JudgeFileError(f"{where}, record {row}: {fields.id}: id {name!r} is also {seen[name]}")
            seen[name] = f"{where}, record {row}"
            items.append((name, candidates, correct))
    pairwise.check_bad_rows(path, errors, read, max_bad_rows)
    if not items:
        raise JudgeFileError(f"{path}: no records to rank")
    return items


def _item_id(record: dict[str, Any], field: str) -> str:
    value = label_key(record.get(field))
    if not value:
        raise RowError(field, "missing" if record.get(field) is None else "expected a text or integer id")
    return value


def rank_file(path: str, fields: CandidateFields, judge: PairwiseJudge, out: str, *, method: Method = "round_robin",
              seed: int = 0, max_bad_rows: float = 0.0) -> int:  # fmt: skip
    """Rank the candidates of every record of `path` (see `load_candidates`); write one row per record to `out`
    (.jsonl or .parquet) and return how many. About `BATCH` comparisons go to the judge at a time."""
    check_out(out)
    items = load_candidates(path, fields, method, max_bad_rows)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(items), desc=f"rank ({method})", unit="prompt") as progress:
        start = 0
        while start < len(items):
            end, size = start, 0
            while end < len(items) and (end == start or size + comparisons(method, len(items[end][1].texts)) <= BATCH):
                size += comparisons(method, len(items[end][1].texts))
                end += 1
            batch = items[start:end]
            rankings = rank_many(judge, [item for _, item, _ in batch], method, seed)
            rows += [
                _ranked_row(name, ranking, method, judge) for (name, _, _), ranking in zip(batch, rankings, strict=True)
            ]
            progress.update(len(batch))
            start = end
    _check_requests(judge, out)
    _write(rows, out)
    return len(rows)


def _ranked_row(name: str, ranking: Ranking, method: Method, judge: PairwiseJudge) -> dict[str, Any]:
    games = [{"a": g.a, "b": g.b, "verdict": g.judgment.verdict, "votes": list(g.judgment.votes),
              "shown": list(g.judgment.shown), "traces": list(g.judgment.traces), "tokens": g.judgment.tokens}
             for g in ranking.games]  # fmt: skip
    return {"item_id": name, "method": method, "judge": judge.name, "best": ranking.best,
            "ranking": ranking.order, "scores": ranking.scores, "games": games}  # fmt: skip


def best_of_k_file(path: str, fields: CandidateFields, judge: PairwiseJudge, out: str, *,
                   ks: tuple[int, ...] = KS, seed: int = 0, max_bad_rows: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Best-of-K on every record of `path` (`tasks.evaluate.best_of_k`): the report as JSON at `out` and the
    curve as a PNG beside it (`out` with .png); returns the report."""
    if fields.correct is None:
        raise ConfigError("fields.correct", "--best-of-k needs the field that flags each candidate correct or not")
    loaded = load_candidates(path, fields, "knockout", max_bad_rows)
    prompts = [Graded(name, item, correct) for name, item, correct in loaded if correct is not None]
    report = {"judge": judge.name, "file": os.path.basename(path), "seed": seed,
              "best_of_k": best_of_k(judge, prompts, ks, seed=seed),
              "pairwise": pairwise_accuracy(judge, prompts, seed=seed)}  # fmt: skip
    _check_requests(judge, out)
    partial = f"{out}.partial"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    os.replace(partial, out)
    plot(report["best_of_k"], os.path.splitext(out)[0] + ".png", f"best-of-K: {judge.name}")
    return report
