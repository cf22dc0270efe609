"""The learning stage's gates without training: each names the gate, the number and the threshold; the executor
reads them after every run, a skipped one included. (The real learning runs are in test_learning_gates.py.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from data_contracts import ArtifactStore, publish_table
from data_contracts.kinds import LEARNING_SCORES
from flows.plan import GateFailed, Plan, Step, execute
from flows.recipe import load_recipe
from tasks.learning.stage import gate_failures, learning_lines, summary_row
from tasks.stage import Stage, StageResult
from tests.conftest import ROOT

SMOKE = ROOT / "recipes" / "smoke.yaml"
GATES = ["learning.gates={min_sft_accuracy: 0.8, min_rl_accuracy: 0.9, max_unparseable: 0.05, max_rl_drop: 0.05}"]


def _publish(store: ArtifactStore, accuracy: dict[str, float], unparseable: float = 0.0):
    rows = [{"judge": judge, "model": judge, "benchmark": "refusal_task", "comparisons": 200, "accuracy": value,
             "unparseable": unparseable if judge in ("sft", "rl") else 0.0, "verdict_a": 0.5}
            for judge, value in accuracy.items()]  # fmt: skip
    return publish_table(store, LEARNING_SCORES, "v1", pa.Table.from_pylist(rows, schema=LEARNING_SCORES.schema))


def test_every_gate_a_judge_misses_is_one_line_with_the_number_and_the_threshold(tmp_path: Path) -> None:
    recipe = load_recipe(SMOKE, GATES)
    store = ArtifactStore(str(tmp_path))
    ref = _publish(store, {"untrained": 0.5, "sft": 0.7, "rl": 0.6, "length": 0.5}, unparseable=0.1)
    failures = gate_failures(recipe, store, {LEARNING_SCORES.kind: ref})
    assert failures == [
        f"gate learning.gates.min_sft_accuracy: held-out accuracy after SFT 0.700 < 0.800 ({ref})",
        f"gate learning.gates.min_rl_accuracy: held-out accuracy after GRPO 0.600 < 0.900 ({ref})",
        f"gate learning.gates.max_unparseable: unparseable share after SFT 0.100 > 0.050 ({ref})",
        f"gate learning.gates.max_unparseable: unparseable share after GRPO 0.100 > 0.050 ({ref})",
        f"gate learning.gates.max_rl_drop: held-out accuracy after GRPO 0.600 < 0.650 (after SFT 0.700 minus 0.050) "
        f"({ref})",
    ]
    drop_only = load_recipe(SMOKE, ["learning.gates={max_rl_drop: 0.05}"])
    on_the_bound = _publish(ArtifactStore(str(tmp_path / "bound")), {"untrained": 0.5, "sft": 0.54, "rl": 0.49})
    assert gate_failures(drop_only, ArtifactStore(str(tmp_path / "bound")), {LEARNING_SCORES.kind: on_the_bound}) == []


def test_a_judge_that_learned_passes_and_a_recipe_without_gates_checks_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = _publish(store, {"untrained": 0.5, "sft": 0.92, "rl": 0.95, "length": 0.49})
    assert gate_failures(load_recipe(SMOKE, GATES), store, {LEARNING_SCORES.kind: ref}) == []
    low = _publish(ArtifactStore(str(tmp_path / "low")), {"untrained": 0.5, "sft": 0.5, "rl": 0.5, "length": 0.5})
    assert gate_failures(load_recipe(SMOKE, ["learning.gates={}"]), ArtifactStore(str(tmp_path / "low")),
                         {LEARNING_SCORES.kind: low}) == []  # fmt: skip
    assert gate_failures(load_recipe(SMOKE, ["learning=null"]), store, {LEARNING_SCORES.kind: ref}) == []


def test_gates_are_read_after_a_run_whose_stages_were_all_skipped(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ran: list[str] = []

    def stage(failures: list[str]) -> Stage:
        return Stage(name="stub", description="", writes=("k",), reads=lambda recipe: (),
                     versions=lambda recipe, inputs: {"k": "v"},
                     run=lambda run: ran.append("run") or StageResult("stub", {}),  # type: ignore[func-returns-value]
                     gates=lambda recipe, store, outputs: failures)  # fmt: skip

    def plan(failures: list[str]) -> Plan:
        step = Step(stage(failures), {}, {"k": "v"}, {"k": store.ref("k", "v")}, published=True)
        return Plan(load_recipe(SMOKE), store, (step,))

    with pytest.raises(GateFailed, match=r"^gate a: 0\.5 < 0\.9; gate b: 1 > 0$") as failed:
        execute(plan(["gate a: 0.5 < 0.9", "gate b: 1 > 0"]))
    assert failed.value.exit_code == 1 and not ran
    assert execute(plan([])) == {"k": store.ref("k", "v")}


def test_a_summary_row_counts_unparseable_and_a_verdicts() -> None:
    predictions = pd.DataFrame({"verdict": ["A", "A", "B", "error"], "score": [1.0, 0.0, 1.0, 0.0]})
    row = summary_row("rl", "rl_checkpoint/x", "refusal_task", predictions)
    assert (row["accuracy"], row["unparseable"], row["verdict_a"], row["comparisons"]) == (0.5, 0.25, 0.5, 4)
    lines = learning_lines([row])
    assert lines[1].split() == ["after", "GRPO", "50.0%", "25.0%", "50.0%"]
