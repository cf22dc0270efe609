"""PPE human preference (lmarena-ai/PPE-Human-Preference-V1, split `test`, 16,038 Chatbot Arena votes; Frick et
al., "How to Evaluate Reward Models for RLHF", arXiv 2410.14872): two models' answers to one user prompt and
which one a person preferred.

Records, as the dataset card lists them: `question_id`, `model_a`, `model_b`, `winner` ("model_a", "model_b", or
a tie: "tie", "tie (bothbad)"), `prompt`, `response_1` (model_a's answer), `response_2` (model_b's), `language`,
the category flags `is_code`, `hard_prompt`, `easy_prompt`, `if_prompt`, `math_prompt`, and metadata this
scorer does not read. Local copies: the Hub's `data/test-*.parquet`, or rows in that schema as json or jsonl.

Ties are left out (a tie says neither answer is better, so there is nothing to get right). Each vote is one
comparison, the preferred answer shown first or second by the pipeline's seeded order, scored as every pair
is here: 1 when the judge picks the preferred answer, 0.5 for a tie verdict, 0 for the other answer or an
unparseable verdict. Rows: `benchmark/score` (accuracy over all votes), a `section` row per category flag (the
votes whose flag is set; a vote can be in several), and a `subset` row per `language/<language>`.

What follows PPE and what is ours: the PPE paper reports a reward model's accuracy on these votes with ties
removed, overall and per category; its code is not reachable here, so these rows follow the paper's
definition, not its script, and nothing here is its official number. A scalar reward model scores each
answer; a pairwise judge compares them once, and its tie verdicts count half. The dataset's `prompt` is the
first user turn; multi-turn votes (`conv_metadata.turns` > 1) are judged on that turn alone, as the dataset
gives no other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

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
    user_turn,
)

NAME = "ppe_human"
WINNERS = {"model_a": 0, "model_b": 1}
TIES = ("tie", "tie (bothbad)")
FLAGS = ("hard_prompt", "easy_prompt", "if_prompt", "math_prompt", "is_code")  # the card's category columns
NO_FLAG = "none"


def _flags(record: Record, where: str) -> str:
    """The set category flags, "+"-joined in FLAGS order (`category` of the comparison); "none" when none is."""
    set_flags = []
    for flag in FLAGS:
        value = record.get(flag)
        if value not in (None, True, False, 0, 1):
            raise BenchmarkError(f"{where}: field '{flag}' must be true or false, got {value!r}")
        if value:
            set_flags.append(flag)
    return "+".join(set_flags) or NO_FLAG


def _comparisons(records: Iterator[tuple[int, Record]], name: str) -> Iterator[Comparison]:
    for row, record in records:
        where = f"{name}, record {row}"
        winner = record.get("winner")
        if winner in TIES:
            continue
        if winner not in WINNERS:
            raise BenchmarkError(
                f"{where}: field 'winner' must be model_a, model_b, tie or tie (bothbad), got {winner!r}"
            )
        question_id = record_field(record, "question_id", where)
        answers = record_field(record, "response_1", where), record_field(record, "response_2", where)
        chosen = WINNERS[winner]
        yield Comparison(
            benchmark=NAME,
            subset=f"language/{record_field(record, 'language', where)}",
            item_id=question_id,
            comparison_id=f"{NAME}/{question_id}",
            conversation=user_turn(record_field(record, "prompt", where)),
            chosen=answers[chosen],
            rejected=answers[1 - chosen],
            category=_flags(record, where),
        )


def load(config: BenchmarkSource) -> list[Comparison]:
    """The votes without ties, from the Hub (`datasets`, pinned revision, split `test`) or local files."""
    if config.hub_id is not None:
        source, records = hub_records(config, config.split or BENCHMARK.split or "test")
        return list(_comparisons(records, source))
    assert config.path is not None
    return [c for path in benchmark_files(config.path, BENCHMARK.files) for c in _comparisons(file_records(path), path)]


def score(df: pd.DataFrame) -> list[ScoreRow]:
    """Accuracy over all votes, per category flag (section) and per language (subset)."""
    flags = df["category"].str.split("+")
    rows = [accuracy_row(NAME, "section", flag, df[flags.map(lambda f, flag=flag: flag in f)]) for flag in FLAGS]
    rows = [row for row in rows if row["count"]]
    rows += [accuracy_row(NAME, "subset", subset, part) for subset, part in df.groupby("subset", sort=True)]
    if len(df):
        rows.append(accuracy_row(NAME, "benchmark", "score", df))
    return rows


def report(rows: list[ScoreRow]) -> list[str]:
    return [*detail_table(rows, NAME, "section", list(FLAGS)), "", *detail_table(rows, NAME, "benchmark")]


def write_synthetic(folder: str, seed: int) -> str:
    """The Hub's layout, `data/test-00000-of-00001.parquet`: votes for model_a, model_b and both kinds of tie,
    in two languages, with every category flag set on some rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.standins.synthetic_pairs import synthetic_drafts

    rows: list[dict[str, Any]] = []
    for index, draft in enumerate(d for d in synthetic_drafts(24, seed) if len(d.conversation) == 1):
        winner = ("model_a", "model_b", "model_a", "model_b", "tie", "tie (bothbad)")[index % 6]
        good, bad = draft.good[index % 2], draft.bad[(index // 2) % 2]
        first, second = (bad, good) if winner == "model_b" else (good, bad)
        flags = {flag: (index + k) % 3 == 0 for k, flag in enumerate(FLAGS)}
        rows.append(
            {"question_id": f"q{seed}-{index:04d}", "model_a": "model-x", "model_b": "model-y", "winner": winner,
             "prompt": draft.conversation[0]["content"], "response_1": first, "response_2": second,
             "language": ("English", "German")[index % 2], **flags,
             "conv_metadata": {"turns": 1}, "is_refusal": False}
        )  # fmt: skip
    path = os.path.join(folder, "data", "test-00000-of-00001.parquet")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return folder


BENCHMARK = Benchmark(
    name=NAME,
    title="PPE human preference",
    rule="accuracy over the human votes that are not ties",
    load=load,
    score=score,
    files=("*.parquet", "*.json", "*.jsonl"),
    hub=True,
    split="test",
    report=report,
    write_synthetic=write_synthetic,
)
