"""JudgeBench: the official net rule over both orders on hand-computed pairs, micro accuracy per category and
overall, the loader on small files in the official layouts (GitHub jsonl, Hub parquet), both orders always
judged, and the length baseline end to end on the synthetic copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from data_contracts import ArtifactStore
from data_contracts.kinds import EVAL_PREDICTIONS
from tasks.evaluate.benchmarks import BenchmarkError, load_benchmark
from tasks.evaluate.benchmarks.judgebench import BENCHMARK, report
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.scoring import comparison_score, missing_parts, score_predictions
from tasks.evaluate.stage import judgements
from tasks.judge.config import JudgeConfig
from tests.test_evaluate_stage import evaluate_judge

RIGHT, WRONG, TIE, ERROR = "right", "wrong", "tie", "error"
GITHUB_GPT = "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl"
GITHUB_CLAUDE = "dataset=judgebench,response_model=claude-3-5-sonnet-20240620.jsonl"


def _game(
    pair: str, outcome: str, swapped: bool, subset: str = "knowledge", source: str = "mmlu-pro-law"
) -> dict[str, Any]:
    """One judged game of `pair`: the chosen answer at A in the first order, at B in the reverse."""
    position = "B" if swapped else "A"
    verdict = {RIGHT: position, WRONG: "A" if position == "B" else "B", TIE: "tie", ERROR: "error"}[outcome]
    return {
        "benchmark": "judgebench", "subset": subset, "item_id": pair,
        "comparison_id": f"judgebench/{pair}" + ("#swapped" if swapped else ""), "group_id": None,
        "category": source, "chosen_style": None, "rejected_style": None, "chosen_position": position,
        "swapped": swapped, "judge": "test", "order_seed": 0, "output": None, "verdict": verdict,
        "score": comparison_score(verdict, position),
    }  # fmt: skip


def _pair(pair: str, first: str, second: str | None, **where: str) -> list[dict[str, Any]]:
    games = [_game(pair, first, False, **where)]
    return games if second is None else [*games, _game(pair, second, True, **where)]


def _scores(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["benchmark"], r["level"], r["name"]): r for r in score_predictions(pd.DataFrame(rows))}


@pytest.mark.parametrize(
    ("first", "second", "right"),
    [
        (RIGHT, RIGHT, 1.0),  # +1 +1 = 2 > 0
        (RIGHT, TIE, 1.0),  # +1 + 0 = 1 > 0
        (TIE, RIGHT, 1.0),  # 0 + 1 = 1 > 0, either order
        (RIGHT, ERROR, 1.0),  # +1 + 0 = 1 > 0: an unparseable game abstains
        (RIGHT, WRONG, 0.0),  # +1 -1 = 0, not > 0: an inconsistent pair is wrong
        (WRONG, RIGHT, 0.0),  # -1 +1 = 0
        (TIE, TIE, 0.0),  # 0 + 0 = 0: no half credit
        (ERROR, ERROR, 0.0),  # 0 + 0 = 0
        (WRONG, TIE, 0.0),  # -1 + 0 = -1
        (WRONG, WRONG, 0.0),  # -1 -1 = -2
        (RIGHT, None, 1.0),  # one game only: +1 (the official --single_game accuracy)
        (TIE, None, 0.0),  # one game only: 0
    ],
)
def test_a_pair_is_right_when_its_games_net_above_zero(first: str, second: str | None, right: float) -> None:
    s = _scores(_pair("p", first, second))
    assert s["judgebench", "benchmark", "score"]["score"] == right
    assert s["judgebench", "benchmark", "score"]["count"] == 1  # pairs, not games
    assert s["judgebench", "section", "knowledge"]["score"] == right


def test_categories_and_overall_are_micro_accuracies_over_pairs() -> None:
    rows = [
        *_pair("k1", RIGHT, RIGHT),
        *_pair("k2", RIGHT, TIE, source="mmlu-pro-history"),
        *_pair("k3", RIGHT, WRONG),
        *_pair("r1", TIE, TIE, subset="reasoning", source="livebench-reasoning"),
        *_pair("m1", ERROR, RIGHT, subset="math", source="livebench-math"),
        *_pair("m2", RIGHT, RIGHT, subset="math", source="livebench-math"),
    ]
    s = _scores(rows)
    assert s["judgebench", "section", "knowledge"]["score"] == pytest.approx(2 / 3)  # k1 +2, k2 +1, k3 0
    assert s["judgebench", "section", "knowledge"]["count"] == 3
    assert s["judgebench", "section", "reasoning"]["score"] == 0.0  # r1: 0
    assert s["judgebench", "section", "math"]["score"] == 1.0  # m1 +1, m2 +2
    assert s["judgebench", "section", "math"]["error_rate"] == 0.25  # 1 of math's 4 games unparseable
    # Micro: 4 right pairs of 6 = 0.667, not the mean of the categories (2/3 + 0 + 1) / 3 = 0.556.
    assert s["judgebench", "benchmark", "score"]["score"] == pytest.approx(4 / 6)
    assert s["judgebench", "benchmark", "score"]["count"] == 6
    assert s["judgebench", "benchmark", "score"]["error_rate"] == pytest.approx(1 / 12)  # 1 of 12 games
    assert s["judgebench", "subset", "mmlu-pro-law"]["score"] == 0.5  # k1 right, k3 wrong
    assert s["judgebench", "subset", "mmlu-pro-history"]["count"] == 1
    assert s["overall", "headline", "score"]["score"] == pytest.approx(4 / 6)
    assert missing_parts(score_predictions(pd.DataFrame(rows))) == {"judgebench": ["coding"]}
    # Position rows pair the two orders: only k1 and m2 pick the same answer twice (a tie or an error does not).
    assert s["judgebench", "position", "consistency"]["score"] == pytest.approx(2 / 6)
    lines = report(score_predictions(pd.DataFrame(rows)))
    assert "| knowledge | 66.7 | 3 | 0.0% |" in lines and "| score | 66.7 | 6 | 8.3% |" in lines


def test_published_categories_add_up_to_the_micro_overall() -> None:
    counts = {"knowledge": 154, "reasoning": 98, "math": 56, "coding": 42}  # the gpt split, 350 pairs
    assert {p.model for p in BENCHMARK.published} >= {"Arena-Hard judge (o1-preview)", "InternLM2-20B-Reward (scalar)"}
    for published in BENCHMARK.published:
        assert set(published.parts) == set(BENCHMARK.parts)
        micro = sum(published.parts[c] * n for c, n in counts.items()) / 350
        assert micro == pytest.approx(published.score, abs=0.01), published.model


def _record(pair_id: str, source: str, label: str, **changes: Any) -> dict[str, Any]:
    return {"pair_id": pair_id, "original_id": 7 if source.startswith("mmlu-pro") else None, "source": source,
            "question": f"question {pair_id}", "response_model": "gpt-4o-2024-05-13", "response_A": f"A of {pair_id}",
            "response_B": f"B of {pair_id}", "label": label, **changes}  # fmt: skip


def _jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


GPT = [
    _record("g1", "mmlu-pro-computer science", "A>B"),
    _record("g2", "livebench-reasoning", "B>A"),
    _record("g3", "livebench-math", "A>B"),
    _record("g4", "livecodebench", "B>A"),
]
CLAUDE = [_record("c1", "mmlu-pro-law", "B>A", response_model="claude-3-5-sonnet-20240620")]


def test_github_files_load_with_the_labelled_winner_as_chosen_and_the_split_picking_the_file(tmp_path: Path) -> None:
    _jsonl(tmp_path / "data" / GITHUB_GPT, GPT)
    _jsonl(tmp_path / "data" / GITHUB_CLAUDE, CLAUDE)
    loaded = load_benchmark(BenchmarkConfig(name="judgebench", path=str(tmp_path)))  # split gpt by default
    assert [(c.comparison_id, c.item_id, c.subset, c.category) for c in loaded] == [
        ("judgebench/g1", "g1", "knowledge", "mmlu-pro-computer science"),
        ("judgebench/g2", "g2", "reasoning", "livebench-reasoning"),
        ("judgebench/g3", "g3", "math", "livebench-math"),
        ("judgebench/g4", "g4", "coding", "livecodebench"),
    ]
    assert (loaded[0].chosen, loaded[0].rejected) == ("A of g1", "B of g1")  # A>B
    assert (loaded[1].chosen, loaded[1].rejected) == ("B of g2", "A of g2")  # B>A
    assert loaded[0].conversation == [{"role": "user", "content": "question g1"}]
    [claude] = load_benchmark(BenchmarkConfig(name="judgebench", path=str(tmp_path), split="claude"))
    assert (claude.item_id, claude.chosen) == ("c1", "B of c1")
    # A file named explicitly is read whatever the split.
    [only] = load_benchmark(BenchmarkConfig(name="judgebench", path=str(tmp_path / "data" / GITHUB_CLAUDE)))
    assert only.item_id == "c1"


def test_hub_path_reads_the_named_split_of_a_hub_shaped_dataset(tmp_path: Path) -> None:
    """As for RewardBench: `datasets` resolves a local folder laid out like ScalerLab/JudgeBench
    (data/<split>-00000-of-00001.parquet) through the very call that reads the Hub."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(GPT), tmp_path / "data" / "gpt-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(CLAUDE), tmp_path / "data" / "claude-00000-of-00001.parquet")
    config = BenchmarkConfig(name="judgebench", hub_id=str(tmp_path), revision="pinned-sha")
    loaded = load_benchmark(config)
    assert [c.item_id for c in loaded] == ["g1", "g2", "g3", "g4"]
    assert loaded[3].chosen == "B of g4" and loaded[3].subset == "coding"
    [claude] = load_benchmark(BenchmarkConfig(name="judgebench", hub_id=str(tmp_path), revision="x", split="claude"))
    assert claude.comparison_id == "judgebench/c1"


def test_bad_records_name_the_file_the_record_and_the_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a" / GITHUB_GPT, [GPT[0], _record("g5", "livecodebench", "A=B")])
    with pytest.raises(BenchmarkError, match=r"gpt-4o-2024-05-13\.jsonl, record 1: field 'label' must be A>B or B>A, "
                                             r"got 'A=B'"):  # fmt: skip
        load_benchmark(BenchmarkConfig(name="judgebench", path=path))
    path = _jsonl(tmp_path / "b" / "pairs.jsonl", [_record("g6", "arena-hard", "A>B")])
    with pytest.raises(BenchmarkError, match=r"pairs\.jsonl, record 0: field 'source' must start with mmlu-pro, "):
        load_benchmark(BenchmarkConfig(name="judgebench", path=path))
    broken = _record("g7", "livebench-math", "B>A")
    del broken["response_B"]
    path = _jsonl(tmp_path / "c" / "pairs.jsonl", [broken])
    with pytest.raises(BenchmarkError, match=r"pairs\.jsonl, record 0: field 'response_B' must be a str, got missing"):
        load_benchmark(BenchmarkConfig(name="judgebench", path=path))


def test_judgebench_is_judged_in_both_orders_even_when_the_recipe_asks_for_one() -> None:
    judge = load_benchmark(BenchmarkConfig(name="judgebench", path="synthetic"))
    other = load_benchmark(BenchmarkConfig(name="rewardbench", path="synthetic"))
    items = judgements(judge + other, order_seed=0, both_orders=False)
    swapped = [j for j in items if j.swapped]
    assert len(items) == 2 * len(judge) + len(other)
    assert {j.comparison.benchmark for j in swapped} == {"judgebench"}
    first = {j.comparison.comparison_id: j.chosen_position for j in items if not j.swapped}
    assert all(j.chosen_position != first[j.comparison.comparison_id] for j in swapped)


def _official(predictions: pd.DataFrame) -> float:
    """utils/metrics.py's compute_final_metrics, on decisions rebuilt from the predictions: game 1 as shown,
    game 2's decision flipped back (A>B <-> B>A); +1 right, -1 the flipped label, else 0; right iff > 0."""
    flip = {"A>B": "B>A", "B>A": "A>B"}
    decision = {"A": "A>B", "B": "B>A", "tie": "A=B", "error": None}
    first = predictions[~predictions["swapped"]].set_index("item_id")
    second = predictions[predictions["swapped"]].set_index("item_id")
    correct = 0
    for pair, game in first.iterrows():
        label = "A>B" if game["chosen_position"] == "A" else "B>A"
        reverse = decision[second.loc[pair, "verdict"]]
        decisions = [decision[game["verdict"]], flip.get(reverse, reverse)]  # flip_judgment keeps A=B and None
        counter = sum(1 if d == label else -1 if d == flip[label] else 0 for d in decisions)
        correct += counter > 0
    return correct / len(first)


def test_length_baseline_end_to_end_scores_both_orders_by_the_official_rule(tmp_path: Path) -> None:
    config = EvaluateConfig(judge=JudgeConfig(backend="length", allow_tie=True),
                            benchmarks=(BenchmarkConfig(name="judgebench", path="synthetic"),))  # fmt: skip
    assert not config.both_orders
    store = ArtifactStore(tmp_path)
    result = evaluate_judge(config, store)
    predictions = store.read_table(result.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
    pairs = len(load_benchmark(BenchmarkConfig(name="judgebench", path="synthetic")))
    assert predictions["swapped"].sum() == (~predictions["swapped"]).sum() == pairs
    s = {(r["level"], r["name"]): r for r in result.stats["scores"] if r["benchmark"] == "judgebench"}
    assert {name for level, name in s if level == "section"} == {"knowledge", "reasoning", "math", "coding"}
    assert s["benchmark", "score"]["count"] == pairs
    assert s["benchmark", "score"]["score"] == pytest.approx(_official(predictions))
    assert 0 < s["benchmark", "score"]["score"] < 1  # the synthetic pairs are not all won by the longer answer
    assert {"consistency", "both_correct", "flip_rate"} <= {name for level, name in s if level == "position"}
    assert s["position", "flip_rate"]["score"] == 0.0  # the length judge ignores where an answer is shown
    assert s["position", "both_correct"]["score"] == pytest.approx(s["benchmark", "score"]["score"])
    report = result.stats["report"]
    assert "## JudgeBench" in report and "| Vanilla judge (GPT-4o) | 50.9 (" in report  # beside the gpt split's numbers


def test_published_numbers_are_shown_beside_their_split_only() -> None:
    from tasks.evaluate.report import markdown_report
    from tasks.evaluate.scoring import score_predictions

    row = {"benchmark": "judgebench", "subset": "math", "item_id": "p", "comparison_id": "judgebench/p",
           "group_id": None, "category": "livebench-math", "chosen_position": "A", "swapped": False,
           "verdict": "A", "score": 1.0}  # fmt: skip
    rows = score_predictions(pd.DataFrame([row]))
    claude = markdown_report(rows, {"benchmarks": {"judgebench": {"split": "claude"}}})
    assert "Vanilla judge (GPT-4o)" not in claude and "Published numbers are on split gpt, not claude." in claude
    assert "Vanilla judge (GPT-4o)" in markdown_report(rows, {"benchmarks": {"judgebench": {"split": "gpt"}}})
