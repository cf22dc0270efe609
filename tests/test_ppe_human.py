"""PPE human preference: votes in the card's layout with ties left out, the preferred answer as chosen, accuracy
overall, per category flag and per language on hand-computed verdicts, the Hub path, a bad record named, and
the length baseline end to end through the evaluate stage on the synthetic copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import ArtifactStore
from tasks.evaluate.benchmarks import BenchmarkError, load_benchmark
from tasks.evaluate.benchmarks.ppe_human import write_synthetic
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.scoring import comparison_score, score_predictions
from tasks.judge.config import JudgeConfig
from tests.test_evaluate_stage import evaluate_judge


def vote(key: str, winner: str, language: str = "English", **flags: bool) -> dict[str, Any]:
    return {"question_id": key, "model_a": "x", "model_b": "y", "winner": winner, "prompt": f"question {key}",
            "response_1": f"{key} by x", "response_2": f"{key} by y", "language": language,
            "hard_prompt": False, "easy_prompt": False, "if_prompt": False, "math_prompt": False, "is_code": False,
            **flags}  # fmt: skip


def write_votes(folder: Path, rows: list[dict[str, Any]]) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "test-00000-of-00001.parquet")
    return folder


def test_ties_are_left_out_and_the_voted_answer_is_chosen(tmp_path: Path) -> None:
    rows = [vote("a", "model_a", hard_prompt=True), vote("b", "model_b", "German", is_code=True, math_prompt=True),
            vote("c", "tie"), vote("d", "tie (bothbad)"), vote("e", "model_b")]  # fmt: skip
    comparisons = load_benchmark(BenchmarkConfig(name="ppe_human", path=str(write_votes(tmp_path, rows))))
    assert [(c.item_id, c.chosen, c.rejected) for c in comparisons] == [
        ("a", "a by x", "a by y"), ("b", "b by y", "b by x"), ("e", "e by y", "e by x")
    ]  # fmt: skip
    assert [(c.subset, c.category) for c in comparisons] == [
        ("language/English", "hard_prompt"), ("language/German", "math_prompt+is_code"), ("language/English", "none")
    ]  # fmt: skip
    assert comparisons[0].conversation == [{"role": "user", "content": "question a"}]


def judged(key: str, outcome: str, language: str, category: str) -> dict[str, Any]:
    verdict = {"right": "A", "wrong": "B", "tie": "tie", "error": "error"}[outcome]
    return {"benchmark": "ppe_human", "subset": f"language/{language}", "item_id": key,
            "comparison_id": f"ppe_human/{key}", "group_id": None, "category": category, "chosen_style": None,
            "rejected_style": None, "chosen_position": "A", "swapped": False, "judge": "test", "order_seed": 0,
            "output": None, "verdict": verdict, "score": comparison_score(verdict, "A")}  # fmt: skip


def test_accuracy_overall_per_flag_and_per_language_by_hand() -> None:
    rows = [judged("1", "right", "English", "hard_prompt+math_prompt"), judged("2", "wrong", "English", "hard_prompt"),
            judged("3", "tie", "German", "math_prompt"), judged("4", "error", "German", "none"),
            judged("5", "right", "German", "is_code")]  # fmt: skip
    scores = {
        (r["level"], r["name"]): r for r in score_predictions(pd.DataFrame(rows)) if r["benchmark"] == "ppe_human"
    }
    assert scores["benchmark", "score"]["score"] == pytest.approx((1 + 0 + 0.5 + 0 + 1) / 5)
    assert scores["section", "hard_prompt"]["score"] == pytest.approx(0.5)  # votes 1 and 2
    assert scores["section", "math_prompt"]["score"] == pytest.approx(0.75)  # votes 1 and 3: a vote in two flags
    assert scores["section", "is_code"]["score"] == 1.0 and ("section", "easy_prompt") not in scores  # no vote
    assert scores["subset", "language/English"]["score"] == 0.5
    assert scores["subset", "language/German"]["score"] == pytest.approx(1.5 / 3)
    assert scores["subset", "language/German"]["error_rate"] == pytest.approx(1 / 3)


def test_the_hub_path_reads_split_test_of_a_hub_shaped_dataset(tmp_path: Path) -> None:
    """`datasets` resolves a local folder laid out like lmarena-ai/PPE-Human-Preference-V1 through the very call
    that reads the Hub."""
    folder = write_votes(tmp_path, [vote("a", "model_b"), vote("b", "tie")])
    [comparison] = load_benchmark(BenchmarkConfig(name="ppe_human", hub_id=str(folder), revision="pinned-sha"))
    assert (comparison.comparison_id, comparison.chosen) == ("ppe_human/a", "a by y")


def test_a_bad_vote_names_the_file_the_record_and_the_field(tmp_path: Path) -> None:
    folder = write_votes(tmp_path, [vote("a", "model_a"), vote("b", "model_c")])
    with pytest.raises(BenchmarkError, match=r"test-00000-of-00001\.parquet, record 1: field 'winner' must be"):
        load_benchmark(BenchmarkConfig(name="ppe_human", path=str(folder)))
    write_votes(tmp_path, [vote("a", "model_a", hard_prompt="yes")])  # type: ignore[arg-type]
    with pytest.raises(BenchmarkError, match=r"record 0: field 'hard_prompt' must be true or false"):
        load_benchmark(BenchmarkConfig(name="ppe_human", path=str(folder)))


def test_length_baseline_end_to_end_on_the_synthetic_copy(tmp_path: Path) -> None:
    written = write_synthetic(str(tmp_path / "copy"), 0)
    table = pq.read_table(Path(written) / "data" / "test-00000-of-00001.parquet").to_pandas()
    votes = int(table["winner"].isin(["model_a", "model_b"]).sum())
    assert 0 < votes < len(table)  # the copy has ties, which are left out
    config = EvaluateConfig(judge=JudgeConfig(backend="length", allow_tie=True),
                            benchmarks=(BenchmarkConfig(name="ppe_human", path="synthetic"),))  # fmt: skip
    result = evaluate_judge(config, ArtifactStore(tmp_path / "store"))
    s = {(r["level"], r["name"]): r for r in result.stats["scores"] if r["benchmark"] == "ppe_human"}
    assert s["benchmark", "score"]["count"] == votes
    assert {name for level, name in s if level == "subset"} == {"language/English", "language/German"}
    assert {name for level, name in s if level == "section"} <= {"hard_prompt", "easy_prompt", "if_prompt",
                                                                  "math_prompt", "is_code"}  # fmt: skip
    assert "## PPE human preference" in result.stats["report"]
