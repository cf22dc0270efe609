"""IF-RewardBench's official scoring reproduced exactly: the same Elo fits (the random-number sequence of one
seed across all items included), per-item accuracy and Kendall τ_b, group means and the overall number, checked
against the official functions (tests/helpers/if_rewardbench_official.py) on random verdicts."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from data_contracts import ArtifactStore
from data_contracts.kinds import EVAL_PREDICTIONS, EVAL_SCORES
from tasks.evaluate import stage as evaluate_stage
from tasks.evaluate.benchmarks import BenchmarkError, if_rewardbench
from tasks.evaluate.benchmarks.if_rewardbench import (
    Item,
    constraint_bucket,
    model_size,
    score_items,
    shown_pairs,
    turn_count,
)
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.predictions import score_file
from tasks.evaluate.scoring import comparison_score, score_predictions, scores_as_dict
from tasks.evaluate.stage import evaluate_versions
from tasks.judge.config import JudgeConfig
from tasks.judge.protocol import Verdict, parse_eval_verdict
from tests.helpers.if_rewardbench_official import official_scores

MODELS = ["Qwen3-8B", "GLM-4.5-Air", "Kimi-K2", "GPT-5", "some-other-model"]
TEXTS = ["so [[A]]", "verdict: [[B]]", "[[A]] or [[B]]", "no verdict", "<answer>[[B]]</answer>", "[[A]]"]


def random_items(count: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Items in the official layout with random verdict texts, and their position map."""
    rng = random.Random(seed)
    data, maps = [], {}
    for index in range(count):
        n = rng.randint(2, 8)
        maps[str(index)] = {f"{u}_{v}": rng.randint(0, 1) for u in range(n) for v in range(u + 1, n)}
        order = list(range(n))
        rng.shuffle(order)  # a hidden true ranking; the graph holds some of its pairs
        graph = [(order[i], order[j]) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.7]
        kind = rng.choice(["Single_Turn", "Multi_Turn", "System_Prompt"])
        messages = [{"role": "system", "content": "s"}] if kind == "System_Prompt" else []
        for turn in range(rng.randint(1, 7) if kind == "Multi_Turn" else 1):
            messages += [{"role": "user", "content": f"u{turn}"}, {"role": "assistant", "content": f"a{turn}"}]
        data.append({
            "id": index, "response_generation_model": rng.choice(MODELS), "instruction_type": kind,
            "messages": messages[:-1], "checklist": ["c"] * rng.randint(1, 9),
            "responses": [{"response": f"r{k}"} for k in range(n)],
            "pairwise_evaluation_results": {f"{u}_{v}": rng.choice(TEXTS) for u, v in shown_pairs(n, maps[str(index)])},
            "preference_graph": [{"chosen": {"response_id": c}, "rejected": {"response_id": r}} for c, r in graph],
        })  # fmt: skip
    return data, maps


def as_item(record: dict[str, Any], positions: dict[str, int]) -> Item:
    shown = shown_pairs(len(record["responses"]), positions)
    verdicts = [parse_eval_verdict(record["pairwise_evaluation_results"][f"{u}_{v}"]) for u, v in shown]
    preferences = ["A" if v == Verdict.A else "B" if v == Verdict.B else "C" for v in verdicts]
    graph = [(e["chosen"]["response_id"], e["rejected"]["response_id"]) for e in record["preference_graph"]]
    groups = {"model_type": model_size(record["response_generation_model"]),
              "instruction_type": record["instruction_type"], "turn": turn_count(record["messages"]),
              "constraint_count": constraint_bucket(len(record["checklist"]))}  # fmt: skip
    return Item(len(record["responses"]), positions, preferences, graph, groups)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_the_official_script_on_random_verdicts(seed: int) -> None:
    data, maps = random_items(60, seed)
    official = official_scores(data, maps)
    ours = score_items([as_item(record, maps[str(record["id"])]) for record in data])
    assert ours["overall"] == {"accuracy": official["Overall"]["ranking"]["Accuracy"],
                               "kendall_tau_b": official["Overall"]["ranking"]["Kendall Taub"]}  # fmt: skip
    for group, key in [("model_type", "metrics_per_model_type"), ("instruction_type", "metrics_per_instruction_type"),
                       ("turn", "metrics_per_turn"), ("constraint_count", "metrics_per_constraint_count")]:  # fmt: skip
        expected = {k: {"accuracy": v["ranking"]["Accuracy"], "kendall_tau_b": v["ranking"]["Kendall Taub"]}
                    for k, v in official[key].items()}  # fmt: skip
        assert ours["groups"][group] == expected, group
    assert 0.0 < ours["overall"]["accuracy"] < 1.0  # random verdicts: neither all right nor all wrong


def test_the_shuffles_carry_over_from_item_to_item() -> None:
    """One seed for the whole run, as the official script: scoring an item alone (a fresh seed) can differ, and
    here does, from scoring it after the others."""
    data, maps = random_items(40, 3)
    items = [as_item(record, maps[str(record["id"])]) for record in data]
    together = score_items(items)["items"]
    alone = [score_items([item])["items"][0] for item in items]
    assert together != alone


def test_position_map_decides_who_is_shown_first() -> None:
    assert shown_pairs(3, {"0_1": 0, "0_2": 1, "1_2": 0}) == [(0, 1), (1, 2), (2, 0)]
    assert (constraint_bucket(3), constraint_bucket(6), constraint_bucket(7)) == ("<=3", "6", ">=7")
    assert turn_count([{"role": "system", "content": ""}] + [{"role": "user", "content": ""}] * 11) == 5
    assert model_size("GPT-5") == "API" and model_size("mine") == "Unknown"


def test_the_length_baseline_scores_the_synthetic_copy_end_to_end(tmp_path: Path) -> None:
    """The official layout written, loaded (every pair once, shown as the position map says), judged by the
    evaluate stage and scored: in the synthetic copy the longer answer is always the preferred one, so the
    longer-answer baseline ranks every item right (accuracy 1, τ_b 1), while the pairs it saw were shown in
    both positions."""
    config = EvaluateConfig(
        judge=JudgeConfig(backend="length", allow_tie=True),
        benchmarks=(BenchmarkConfig(name="if_rewardbench", path="synthetic"),),
    )
    store = ArtifactStore(tmp_path)
    result = evaluate_stage.evaluate_judge(config, store, None, versions=evaluate_versions(config, None))
    predictions = store.read_table(result.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
    assert set(predictions["chosen_position"]) == {"A"}  # the benchmark's own positions
    assert predictions["verdict"].isin(["A", "B"]).all() and predictions["verdict"].nunique() == 2
    scores = store.read_table(result.outputs[EVAL_SCORES.kind]).to_pandas()
    mine = scores[scores["benchmark"] == "if_rewardbench"].set_index(["level", "name"])["score"]
    assert mine[("benchmark", "score")] == 1.0 and mine[("benchmark", "kendall_tau_b")] == 1.0
    assert {"instruction_type/Single_Turn", "instruction_type/Multi_Turn", "instruction_type/System_Prompt"} <= set(
        mine.loc["subset"].index
    )

    # `rmr1 score` on the same judgments as a file (a third of the verdicts flipped, the score column left out for
    # the reader to derive) gives what the stage's scorer gives on them.
    flipped = predictions.copy()
    flipped.loc[flipped.index % 3 == 0, "verdict"] = flipped["verdict"].map({"A": "B", "B": "A"})
    pairs = zip(flipped["verdict"], flipped["chosen_position"], strict=True)
    flipped["score"] = [comparison_score(verdict, position) for verdict, position in pairs]
    exported = tmp_path / "judged.jsonl"
    flipped.drop(columns=["score"]).to_json(exported, orient="records", lines=True)
    from_file = score_file(str(exported), store)["if_rewardbench"]
    expected = scores_as_dict(score_predictions(flipped))["if_rewardbench"]
    assert from_file == expected and from_file["benchmark"]["score"]["score"] < 1.0


def test_the_loader_reads_the_official_layout_and_names_a_missing_position_map(tmp_path: Path) -> None:
    folder = if_rewardbench.write_synthetic(str(tmp_path), 0)
    config = BenchmarkConfig(name="if_rewardbench", path=folder)
    comparisons = if_rewardbench.load(config)
    data = json.loads((Path(folder) / "data" / "if_rewardbench.json").read_text())
    maps = json.loads((Path(folder) / "inference" / "position_maps.json").read_text())
    assert len(comparisons) == sum(len(d["responses"]) * (len(d["responses"]) - 1) // 2 for d in data)
    first = [c for c in comparisons if c.item_id == "0"]
    assert [(c.chosen_style, c.rejected_style) for c in first] == shown_pairs(len(data[0]["responses"]), maps["0"])
    del maps["3"]
    (Path(folder) / "inference" / "position_maps.json").write_text(json.dumps(maps))
    with pytest.raises(BenchmarkError, match="no position map for item 3"):
        if_rewardbench.load(config)
