"""A team's own pairwise set as a benchmark: the label-aware field mapping, files and a Hub-shaped folder,
bad rows and ties, recipe errors, the stage end to end with `rmr1 score`, and PandaLM's human test set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import ArtifactStore
from data_contracts.kinds import EVAL_PREDICTIONS
from flows.cli import main as rmr1
from flows.recipe import RecipeError, load_recipe
from tasks.evaluate.benchmarks import BenchmarkError, load_benchmark
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.stage import evaluate_judge, evaluate_versions
from tasks.judge.config import JudgeConfig
from tasks.records.fields import FieldMap
from tests.conftest import PREFERENCES, needs_shared

LABELLED = FieldMap(prompt="question", first="response_A", second="response_B", label="label",
                    first_wins=("A>B",), second_wins=("B>A",), tie=("A=B",))  # fmt: skip
ROWS = [
    {"question": "q0", "response_A": "short", "response_B": "a longer answer", "label": "A>B", "topic": "math"},
    {"question": "q1", "response_A": "short", "response_B": "a longer answer", "label": "B>A", "topic": "math"},
    {"question": "q2", "response_A": "x", "response_B": "y", "label": "A=B", "topic": "chat"},
    {"question": "q3", "response_A": "a much longer answer", "response_B": "tiny", "label": "A>B", "topic": "chat"},
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _custom(path: Path | str, **changes: Any) -> BenchmarkConfig:
    return BenchmarkConfig(name="team-heldout", path=str(path), fields=LABELLED, subset="topic", **changes)


def test_labels_put_the_winner_first_and_ties_are_left_out(tmp_path: Path) -> None:
    comparisons = load_benchmark(_custom(_jsonl(tmp_path / "heldout.jsonl", ROWS)))
    assert [(c.comparison_id, c.subset, c.chosen, c.rejected) for c in comparisons] == [
        ("team-heldout/heldout.jsonl#0", "math", "short", "a longer answer"),
        ("team-heldout/heldout.jsonl#1", "math", "a longer answer", "short"),
        ("team-heldout/heldout.jsonl#3", "chat", "a much longer answer", "tiny"),
    ]
    assert comparisons[0].conversation == [{"role": "user", "content": "q0"}]
    assert {c.benchmark for c in comparisons} == {"team-heldout"}


def test_parquet_files_a_folder_and_a_hub_shaped_dataset_read_alike(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "one.parquet")
    from_parquet = load_benchmark(_custom(tmp_path / "one.parquet"))
    assert [(c.chosen, c.rejected) for c in from_parquet] == [
        ("short", "a longer answer"), ("a longer answer", "short"), ("a much longer answer", "tiny")
    ]  # fmt: skip
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "hub" / "data" / "test-00000-of-00001.parquet")
    config = BenchmarkConfig(name="team-heldout", hub_id=str(tmp_path / "hub"), revision="sha", split="test",
                             fields=LABELLED, subset="topic")  # fmt: skip
    from_hub = load_benchmark(config)
    assert [(c.comparison_id, c.chosen) for c in from_hub] == [
        ("team-heldout/test#0", "short"), ("team-heldout/test#1", "a longer answer"),
        ("team-heldout/test#3", "a much longer answer"),
    ]  # fmt: skip


def test_unreadable_records_stop_the_run_naming_them_unless_a_share_is_allowed(tmp_path: Path) -> None:
    bad = [*ROWS, {"question": "q4", "response_A": 7, "response_B": "b", "label": "A>B", "topic": "code"},
           {"question": "q5", "response_A": "a", "response_B": "b", "label": "A>>B", "topic": "code"}]  # fmt: skip
    path = _jsonl(tmp_path / "heldout.jsonl", bad)
    with path.open("a") as handle:
        handle.write('{"question": "q6", "response_A": "a", \n')  # a broken JSON line
    with pytest.raises(BenchmarkError) as error:
        load_benchmark(_custom(path))
    message = str(error.value)
    assert "team-heldout: 3 of 7 record(s) cannot be read through the field mapping" in message
    assert f"{path}, record 4: response_A: expected a string, got int" in message
    assert f"{path}, record 5: label: value 'A>>B' is not in the mapping" in message
    assert f"{path}, record 6: line 7" in message and "not valid JSON" in message
    kept = load_benchmark(_custom(path, max_bad_rows=0.5))
    assert [c.item_id for c in kept] == ["heldout.jsonl#0", "heldout.jsonl#1", "heldout.jsonl#3"]


@pytest.mark.parametrize(
    ("benchmark", "message"),
    [
        ("{name: heldout, path: x.jsonl}", "benchmarks.0.name: 'heldout' is not a registered benchmark"),
        ("{name: rm_bench, path: x, fields: {chosen: a, rejected: b, prompt: q}}",
         "benchmarks.0.fields: rm_bench is read in its official layout"),
        ("{name: Held Out, path: x.jsonl, fields: {chosen: a, rejected: b, prompt: q}}",
         "benchmarks.0.name: a custom set's name is lower-case"),
        ("{name: heldout, path: x.jsonl, fields: {chosen: a, prompt: q}}", "benchmarks.0.fields.rejected"),
        ("{name: heldout, path: synthetic, fields: {chosen: a, rejected: b, prompt: q}}",
         "benchmarks.0.path: a custom set has no synthetic copy"),
        ("{name: overall, path: x.jsonl, fields: {chosen: a, rejected: b, prompt: q}}",
         "benchmarks.0.name: 'overall' is taken"),
        ("{name: rm-bench, path: x.jsonl, fields: {chosen: a, rejected: b, prompt: q}}",
         "benchmarks.0.name: 'rm-bench' is taken"),
    ],
)  # fmt: skip
def test_recipe_errors_name_the_key(tmp_path: Path, benchmark: str, message: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: x\nevaluate: {{judge: {{backend: length}}, benchmarks: [{benchmark}]}}\n")
    with pytest.raises(RecipeError, match=message.replace(".", r"\.").replace("'", "'")):
        load_recipe(str(path))


def test_a_custom_set_is_judged_scored_and_reported_beside_a_registered_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    custom = _custom(_jsonl(tmp_path / "heldout.jsonl", ROWS))
    config = EvaluateConfig(
        judge=JudgeConfig(backend="length", allow_tie=True),
        benchmarks=(BenchmarkConfig(name="rewardbench", path="synthetic"), custom),
        both_orders=True,
    )
    store = ArtifactStore(tmp_path / "artifacts")
    result = evaluate_judge(config, store, versions=evaluate_versions(config, None))
    rows = {(r["benchmark"], r["level"], r["name"]): r for r in result.stats["scores"]}
    # The longer answer wins: q0 wrong, q1 right, q3 right.
    assert rows["team-heldout", "subset", "math"]["score"] == 0.5
    assert rows["team-heldout", "subset", "chat"]["score"] == 1.0
    assert rows["team-heldout", "benchmark", "score"]["score"] == pytest.approx(2 / 3)
    assert rows["team-heldout", "position", "both_correct"]["score"] == pytest.approx(2 / 3)  # length ignores order
    assert rows["team-heldout", "position", "flip_rate"]["score"] == 0.0
    headline = (rows["rewardbench", "benchmark", "score"]["score"] + 2 / 3) / 2
    assert rows["overall", "headline", "score"]["score"] == pytest.approx(headline)
    report = result.stats["report"]
    assert "## team-heldout" in report and "## RewardBench" in report
    assert "Beside the paper" in report  # RewardBench is one of the paper's three

    predictions = result.outputs[EVAL_PREDICTIONS.kind]
    assert rmr1(["score", str(predictions), "--artifacts", str(tmp_path / "artifacts")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["team-heldout"]["benchmark"]["score"]["score"] == pytest.approx(2 / 3, abs=1e-6)


@needs_shared
def test_pandalm_human_test_set_as_a_custom_benchmark() -> None:
    """999 rows labelled by annotator1: 1 or 2 names the winner, 0 a tie; 60 rows hold an empty or bool
    answer (the pull stage's test counts the same)."""
    path = PREFERENCES / "pandalm_human_testset" / "testset-v1.json"
    records = json.loads(path.read_text())
    fields = FieldMap(prompt="instruction,input", first="response1", second="response2", label="annotator1",
                      first_wins=(1,), second_wins=(2,), tie=(0,))  # fmt: skip
    with pytest.raises(BenchmarkError, match=r"pandalm: 60 of 999 record\(s\) cannot be read"):
        load_benchmark(BenchmarkConfig(name="pandalm", path=str(path), fields=fields))
    comparisons = load_benchmark(BenchmarkConfig(name="pandalm", path=str(path), fields=fields, max_bad_rows=0.1))
    labels = Counter(r["annotator1"] for r in records)
    assert len(comparisons) == 999 - 60 - _ties_kept(records)
    assert sum(c.chosen == records[int(c.item_id.rsplit("#", 1)[1])]["response2"] for c in comparisons) > 0.4 * len(
        comparisons
    )  # the second response wins often: read the wrong way round, this would be silent and huge
    assert len(comparisons) < labels[1] + labels[2]
    for comparison in comparisons:
        record = records[int(comparison.item_id.rsplit("#", 1)[1])]
        winner = "response1" if record["annotator1"] == 1 else "response2"
        assert comparison.chosen == record[winner]


def _ties_kept(records: list[dict[str, Any]]) -> int:
    """Rows labelled a tie whose answers are readable (a tie with a bad answer counts as a bad row)."""
    readable = [r for r in records if all(isinstance(r[k], str) and r[k].strip() for k in ("response1", "response2"))]
    return sum(r["annotator1"] == 0 for r in readable)
