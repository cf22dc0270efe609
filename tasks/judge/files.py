"""`rmr1 judge FILE`: judge every pair of a file (json, jsonl or parquet, read through the label-aware field
mapping) and write one row per judgement, in the format `rmr1 score` reads (docs/evaluation.md).

The mapping says which answer the file prefers (`chosen`/`rejected`, or `first`/`second` with a `label`), so
every row records where the preferred answer was shown (`chosen_position`), the verdict (`A`, `B`, `tie`,
`error`) and the judge's trace (`output`): the output scores as a custom pairwise set. A re-run sends
nothing already answered (the judge's cache), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from tasks.evaluate.benchmarks import pairwise
from tasks.evaluate.config import BenchmarkConfig
from tasks.judge.api import Judgment, PairwiseJudge
from tasks.records.fields import FieldMap

BATCH = 256  # pairs per compare_many call: one progress step, and what a kill can lose before the cache has it


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
    if not out.endswith((".jsonl", ".parquet")):
        raise ValueError(f"{out}: write .jsonl or .parquet")
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
    partial = f"{out}.partial"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), partial)
    else:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    os.replace(partial, out)  # the output is whole or absent
    return len(rows)
