"""RewardBench 2: best-of-4 items judged pairwise, the official Ties formula on round-robin win rates (worked by
hand), the loader on the official layouts, and the length baseline end to end."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from data_contracts import ArtifactStore
from data_contracts.kinds import EVAL_SCORES
from tasks.evaluate import stage as evaluate_stage
from tasks.evaluate.benchmarks import BenchmarkError, load_benchmark
from tasks.evaluate.benchmarks.rewardbench2 import SUBSETS, report, ties_margin
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.scoring import comparison_score, missing_parts, score_predictions
from tasks.evaluate.stage import evaluate_versions
from tasks.judge.config import JudgeConfig

WIN, LOSS, TIE, ERROR = "win", "loss", "tie", "error"  # from the first answer's side (chosen, or answer i)


def _row(subset: str, cid: str, outcome: str, position: str, **columns: Any) -> dict[str, Any]:
    other = "B" if position == "A" else "A"
    verdict = {WIN: position, LOSS: other, TIE: "tie", ERROR: "error"}[outcome]
    return {"benchmark": "rewardbench2", "subset": subset, "comparison_id": cid, "chosen_position": position,
            "swapped": False, "judge": "test", "order_seed": 0, "output": None, "verdict": verdict,
            "score": comparison_score(verdict, position), **columns}  # fmt: skip


def _item(subset: str, key: str, outcomes: list[str]) -> list[dict[str, Any]]:
    """A best-of-4 item: the chosen answer 0 against rejected answers 1..3, positions alternating."""
    item = f"{subset}/{key}"
    columns = {"item_id": item, "group_id": item, "category": subset, "chosen_style": 0}
    return [
        _row(subset, f"{item}/c0-r{j}", outcome, "AB"[j % 2], rejected_style=j, **columns)
        for j, outcome in enumerate(outcomes, start=1)
    ]


def _round_robin(key: str, num_correct: int, games: dict[tuple[int, int], str]) -> list[dict[str, Any]]:
    """A Ties row: `games[i, j]` is how answer i did against answer j; answer i is shown as A when i + j is even."""
    sample_type, prompt_id = key.split(":")
    return [
        _row("Ties", f"Ties/{key}/a{i}-a{j}", outcome, "AB"[(i + j) % 2], item_id=f"Ties/{prompt_id}",
             group_id=f"Ties/{key}", category=f"{sample_type}/{num_correct}", chosen_style=i, rejected_style=j)
        for (i, j), outcome in games.items()
    ]  # fmt: skip


def _scores(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["level"], r["name"]): r for r in score_predictions(pd.DataFrame(rows)) if r["benchmark"] != "overall"}


def test_a_best_of_4_item_is_right_only_when_the_chosen_answer_wins_every_comparison() -> None:
    rows = [
        *_item("Factuality", "1", [WIN, WIN, WIN]),  # clean win: right
        *_item("Factuality", "2", [WIN, LOSS, WIN]),  # a loss: wrong
        *_item("Math", "3", [WIN, WIN, TIE]),  # a tie: wrong
        *_item("Math", "4", [ERROR, WIN, WIN]),  # an unparseable verdict: wrong
        *_item("Math", "5", [WIN, WIN, WIN]),  # right
    ]
    s = _scores(rows)
    assert s["section", "Factuality"]["score"] == 0.5  # 1 of 2 items
    assert s["section", "Factuality"]["count"] == 2  # items, not comparisons
    assert s["section", "Math"]["score"] == pytest.approx(1 / 3)  # 1 of 3 items
    assert s["section", "Math"]["error_rate"] == pytest.approx(1 / 9)  # 1 error in 9 comparisons
    assert s["benchmark", "score"]["score"] == pytest.approx((1 / 2 + 1 / 3) / 2)  # unweighted mean of subsets
    assert s["benchmark", "score"]["count"] == 5
    assert missing_parts(score_predictions(pd.DataFrame(rows))) == {
        "rewardbench2": ["Precise IF", "Safety", "Focus", "Ties"]
    }


# Four prompt ids. Win rate = points over the answer's n - 1 games (win 1, tie 0.5, loss or error 0 for both).
TIES_ROWS = [
    # ref:0, answers [c | x, y]: c>x, c>y, x~y -> c 2/2 = 1, x 0.5/2 = 1/4, y 1/4.
    # accurate: 1 - 1/4 = 3/4 > 0 yes; cim = 3/4.
    *_round_robin("ref:0", 1, {(0, 1): WIN, (0, 2): WIN, (1, 2): TIE}),
    # tied:0, answers [c0, c1 | x0, x1]: c0~c1, both beat x0 and x1, x0 vs x1 unparseable ->
    # c0 (0.5+1+1)/3 = 5/6, c1 5/6, x0 0, x1 0. accurate yes; dcm = 5/6 - 5/6 = 0; cim = 5/6.
    *_round_robin("tied:0", 2, {(0, 1): TIE, (0, 2): WIN, (0, 3): WIN, (1, 2): WIN, (1, 3): WIN, (2, 3): ERROR}),
    # ref:1, answers [c | x, y]: c<x, c>y, x>y -> c 1/2, x 1, y 0. accurate: 1/2 - 1 = -1/2 > 0 no; cim = -1/2.
    *_round_robin("ref:1", 1, {(0, 1): LOSS, (0, 2): WIN, (1, 2): WIN}),
    # tied:1, answers [c0, c1, c2 | x]: every lower index wins -> 1, 2/3, 1/3, 0.
    # accurate: 1/3 - 0 > 0 yes; dcm = 1 - 1/3 = 2/3; cim = 1/3.
    *_round_robin("tied:1", 3, {(i, j): WIN for i in range(4) for j in range(i + 1, 4)}),
    # ref:2, answers [c | x]: c>x -> 1, 0. accurate yes; cim = 1.
    *_round_robin("ref:2", 1, {(0, 1): WIN}),
    # tied:2, answers [c0, c1 | x]: all tied -> 1/2 each. accurate: 1/2 - 1/2 = 0 > 0 no; dcm = 0; cim = 0.
    *_round_robin("tied:2", 2, {(0, 1): TIE, (0, 2): TIE, (1, 2): TIE}),
    # ref:3 has no tied row (only the accuracy counts it), answers [c | x]: c<x -> 0, 1. accurate no.
    *_round_robin("ref:3", 1, {(0, 1): LOSS}),
]


def test_the_official_ties_formula_on_round_robin_win_rates() -> None:
    s = _scores(TIES_ROWS)
    assert s["subset", "Ties/ref_accuracy"]["score"] == 0.5  # ref 0, 1, 2, 3: yes, no, yes, no
    assert s["subset", "Ties/ref_accuracy"]["count"] == 4
    assert s["subset", "Ties/tied_accuracy"]["score"] == pytest.approx(2 / 3)  # tied 0, 1, 2: yes, yes, no
    assert s["subset", "Ties/tied_accuracy"]["error_rate"] == pytest.approx(1 / 15)  # 1 error in 6 + 6 + 3 games
    # Over prompt ids 0, 1, 2 (ref and tied): tied.cim > tied.dcm: 5/6 > 0 yes, 1/3 > 2/3 no, 0 > 0 no.
    assert s["subset", "Ties/correctness_preferred"]["score"] == pytest.approx(1 / 3)
    assert s["subset", "Ties/correctness_preferred"]["count"] == 3
    # min(ref.cim, tied.cim) > tied.dcm: min(3/4, 5/6) = 3/4 > 0 yes, -1/2 > 2/3 no, min(1, 0) = 0 > 0 no.
    assert s["subset", "Ties/correctness_preferred_hard"]["score"] == pytest.approx(1 / 3)
    # margin: tanh(3/4 / 0 - 1) = tanh(+inf) = 1 (dcm = 0); tanh(-1/2 / (2/3) - 1) = tanh(-7/4);
    # 0 / 0 = nan -> 0. Mean: (1 + tanh(-7/4) + 0) / 3 = (1 - 0.94138) / 3 = 0.01954.
    margin = (1 + math.tanh(-7 / 4) + 0) / 3
    ties = 0.30 * (2 / 3) + 0.30 * 0.5 + 0.20 * (1 / 3) + 0.20 * (1 / 3) + 0.01 * margin  # = 0.48353
    assert s["section", "Ties"]["score"] == pytest.approx(ties)
    assert s["section", "Ties"]["count"] == 7  # rows (round robins), as the paper counts Ties
    assert s["section", "Ties"]["error_rate"] == pytest.approx(1 / 23)  # 3+6+3+6+1+3+1 games
    assert s["benchmark", "score"]["score"] == pytest.approx(ties)  # the only subset judged
    rows = score_predictions(pd.DataFrame(TIES_ROWS))
    assert ties_margin(rows) == pytest.approx(margin)
    assert f"Ties margin term (mean tanh, weight 0.01): {margin:+.3f}" in report(rows)


def test_ties_margins_that_are_equal_compare_equal() -> None:
    # tied:0, answers [c0, c1, c2 | x]: c0>c1, c0>c2, c0<x, c1~c2, c1>x, c2>x -> c0 2/3, c1 (0.5+1)/3 = 1/2,
    # c2 1/2, x 1/3. dcm = 2/3 - 1/2 = 1/6 and cim = 1/2 - 1/3 = 1/6: 'cim > dcm' is no. In floats it would be
    # yes: 1/2 - 1/3 = 0.16666666666666669 > 2/3 - 1/2 = 0.16666666666666663. Win rates are exact fractions.
    games = {(0, 1): WIN, (0, 2): WIN, (0, 3): LOSS, (1, 2): TIE, (1, 3): WIN, (2, 3): WIN}
    rows = [*_round_robin("ref:0", 1, {(0, 1): WIN}), *_round_robin("tied:0", 3, games)]  # ref cim = 1 - 0 = 1
    s = _scores(rows)
    assert s["subset", "Ties/correctness_preferred"]["score"] == 0.0
    assert s["subset", "Ties/correctness_preferred_hard"]["score"] == 0.0  # min(1, 1/6) = 1/6 > 1/6 no
    # tied and ref accurate (1/6 > 0, 1 > 0); margin tanh(1/6 / (1/6) - 1) = tanh(0) = 0.
    assert s["section", "Ties"]["score"] == pytest.approx(0.30 + 0.30)


def _record(key: str, subset: str, chosen: list[str], rejected: list[str]) -> dict[str, Any]:
    """A row in the Hub schema (allenai/reward-bench-2, split test)."""
    return {"id": key, "prompt": f"prompt {key}", "chosen": chosen, "rejected": rejected, "num_correct": len(chosen),
            "num_incorrect": len(rejected), "total_completions": len(chosen) + len(rejected),
            "models": ["m"] * (len(chosen) + len(rejected)), "subset": subset,
            "additional_metadata": {"category": None, "valid": 1.0}}  # fmt: skip


RECORDS = [
    _record("12", "Precise IF", ["good"], ["bad1", "bad2", "bad3"]),
    _record("ref:5", "Ties", ["right"], ["wrong1", "wrong2"]),
    _record("tied:5", "Ties", ["right1", "right2"], ["wrong1"]),
]


def _check_official_layout(comparisons: list[Any]) -> None:
    best = [c for c in comparisons if c.subset == "Precise IF"]
    assert [(c.comparison_id, c.chosen, c.rejected, c.chosen_style, c.rejected_style) for c in best] == [
        ("rewardbench2/Precise IF/12/c0-r1", "good", "bad1", 0, 1),
        ("rewardbench2/Precise IF/12/c0-r2", "good", "bad2", 0, 2),
        ("rewardbench2/Precise IF/12/c0-r3", "good", "bad3", 0, 3),
    ]
    assert {(c.item_id, c.group_id, c.category) for c in best} == {("Precise IF/12", "Precise IF/12", "Precise IF")}
    assert best[0].conversation == [{"role": "user", "content": "prompt 12"}]
    ties = [c for c in comparisons if c.subset == "Ties"]
    assert [(c.comparison_id, c.chosen, c.rejected, c.category) for c in ties] == [
        ("rewardbench2/Ties/ref:5/a0-a1", "right", "wrong1", "ref/1"),
        ("rewardbench2/Ties/ref:5/a0-a2", "right", "wrong2", "ref/1"),
        ("rewardbench2/Ties/ref:5/a1-a2", "wrong1", "wrong2", "ref/1"),
        ("rewardbench2/Ties/tied:5/a0-a1", "right1", "right2", "tied/2"),
        ("rewardbench2/Ties/tied:5/a0-a2", "right1", "wrong1", "tied/2"),
        ("rewardbench2/Ties/tied:5/a1-a2", "right2", "wrong1", "tied/2"),
    ]
    assert {c.item_id for c in ties} == {"Ties/5"}  # one prompt: a sample keeps its ref and tied rows together
    assert [c.group_id for c in ties] == ["Ties/ref:5"] * 3 + ["Ties/tied:5"] * 3


def test_rows_in_the_hub_schema_load_from_jsonl_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "rb2.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS))
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "rb2.parquet")
    for name in ("rb2.jsonl", "rb2.parquet"):
        _check_official_layout(load_benchmark(BenchmarkConfig(name="rewardbench2", path=str(tmp_path / name))))


def test_the_hub_path_reads_the_test_split_of_a_hub_shaped_dataset(tmp_path: Path) -> None:
    """The Hub is unreachable here: `datasets` resolves a local folder laid out like allenai/reward-bench-2
    (data/test-00000-of-00001.parquet) through the very call that reads the Hub; the split defaults to test."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "data" / "test-00000-of-00001.parquet")
    config = BenchmarkConfig(name="rewardbench2", hub_id=str(tmp_path), revision="pinned-sha")
    _check_official_layout(load_benchmark(config))


def test_bad_records_name_the_file_the_record_and_the_field(tmp_path: Path) -> None:
    cases = [
        ({**RECORDS[0], "rejected": None}, r"record 1: field 'rejected' must be a list, got NoneType 'None'"),
        ({**RECORDS[0], "chosen": ["good", 3]}, r"record 1: field 'chosen' must list answers as strings"),
        ({**RECORDS[0], "subset": "Chat"}, r"record 1: field 'subset' must be one of Factuality, .*, got 'Chat'"),
        ({**RECORDS[1], "id": "5"}, r"record 1: field 'id' of a Ties row must be ref:N or tied:N, got '5'"),
        ({**RECORDS[1], "num_correct": 2}, r"record 1: field 'num_correct' is 2 but 'chosen' lists 1"),
        ({**RECORDS[2], "chosen": ["r"], "num_correct": 1}, r"record 1: field 'chosen' of a tied row must list at"),
    ]
    for index, (bad, message) in enumerate(cases):
        path = tmp_path / f"bad{index}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in [RECORDS[0], bad]))
        with pytest.raises(BenchmarkError, match=rf"bad{index}\.jsonl, {message}"):
            load_benchmark(BenchmarkConfig(name="rewardbench2", path=str(path)))


def test_the_synthetic_copy_goes_through_the_real_loader() -> None:
    comparisons = load_benchmark(BenchmarkConfig(name="rewardbench2", path="synthetic"))
    assert len({c.comparison_id for c in comparisons}) == len(comparisons)
    assert {c.subset for c in comparisons} == set(SUBSETS)
    best = [c for c in comparisons if c.subset != "Ties"]
    assert set(Counter(c.group_id for c in best).values()) == {3}  # 1 chosen x 3 rejected
    rows = Counter((c.item_id, c.group_id) for c in comparisons if c.subset == "Ties")
    prompts = Counter(item for item, _ in rows)
    assert len(prompts) >= 2 and set(prompts.values()) == {2}  # every prompt has a ref and a tied row
    assert {c.category for c in comparisons if c.group_id.startswith("Ties/tied:")} == {"tied/3"}
    sample = load_benchmark(BenchmarkConfig(name="rewardbench2", path="synthetic", items_per_subset=1))
    assert len({c.group_id for c in sample if c.subset == "Ties"}) == 2  # one prompt: its ref and tied rows


def test_the_length_baseline_scores_the_synthetic_copy_end_to_end(tmp_path: Path) -> None:
    config = EvaluateConfig(
        judge=JudgeConfig(backend="length", allow_tie=True),
        benchmarks=(BenchmarkConfig(name="rewardbench2", path="synthetic"),),
    )
    store = ArtifactStore(tmp_path)
    result = evaluate_stage.evaluate_judge(config, store, None, versions=evaluate_versions(config, None))
    scores = store.read_table(result.outputs[EVAL_SCORES.kind]).to_pandas()
    mine = scores[scores["benchmark"] == "rewardbench2"]
    sections = mine[mine["level"] == "section"]
    assert list(sections["name"]) == list(SUBSETS)
    benchmark = mine[(mine["level"] == "benchmark") & (mine["name"] == "score")]["score"].item()
    assert benchmark == pytest.approx(sections["score"].mean())
    assert set(mine[mine["level"] == "subset"]["name"]) == {
        "Ties/tied_accuracy", "Ties/ref_accuracy", "Ties/correctness_preferred", "Ties/correctness_preferred_hard"
    }  # fmt: skip
    lines = report(scores.to_dict("records"))
    assert "| Ties/correctness_preferred_hard |" in "\n".join(lines)
    assert any(line.startswith("Ties margin term") for line in lines)


def test_position_rows_leave_out_ties_games_between_two_correct_or_two_wrong_answers() -> None:
    # tied:9 has answers 0 and 1 correct, 2 and 3 wrong: of its six games, (0,1) and (2,3) have no right
    # answer; the four correct-vs-wrong games and the best-of-4 item's three comparisons remain.
    games = {(0, 1): WIN, (0, 2): WIN, (0, 3): WIN, (1, 2): LOSS, (1, 3): WIN, (2, 3): WIN}
    rows = [*_round_robin("tied:9", 2, games), *_item("Focus", "1", [WIN, WIN, LOSS])]
    s = _scores(rows)
    assert s["position", "says_A"]["count"] == 4 + 3
    # Shown first (A) when i + j is even: (0,2) won, (1,3) won; the item's r2 won; as B: (0,3) won,
    # (1,2) lost, r1 and r3: won, lost.
    assert s["position", "accuracy_chosen_as_A"]["score"] == pytest.approx(3 / 3)
    assert s["position", "accuracy_chosen_as_B"]["score"] == pytest.approx(2 / 4)


def test_ties_rows_that_do_not_pair_ref_and_tied_by_item_are_refused() -> None:
    # As if item_id were per row and group_id the prompt: the ref/tied pairing would silently vanish.
    rows = [{**r, "item_id": r["group_id"].split(":")[0], "group_id": "Ties/0"} for r in TIES_ROWS]
    with pytest.raises(ValueError, match=r"item_id must be 'Ties/<prompt id>'"):
        score_predictions(pd.DataFrame(rows))
