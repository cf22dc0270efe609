"""The filter stage: label rule, format strictness, pass-2 fallback, lineage and pass rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from data_contracts import ArtifactRef, ArtifactStore, publish_table
from data_contracts.kinds import TEACHER_TRACES
from flows.plan import Plan, Step, execute, plan_step
from flows.recipe import Recipe
from tasks.filter import stage as filter_stage
from tasks.filter.config import FilterConfig
from tasks.filter.stage import STAGE, filter_versions
from tasks.pull.config import PullConfig, SourceConfig
from tasks.stage import StageResult

GOOD_B = (
    "<type>Chat</type>\n<rubric>helpfulness 100%\n<justify>the client asked for help</justify>\n</rubric>\n"
    "<eval><quote_B>useful</quote_B></eval>\n<answer>[[B]]</answer>"
)
GOOD_A = GOOD_B.replace("[[B]]", "[[A]]")
NO_JUSTIFY_B = GOOD_B.replace("<justify>the client asked for help</justify>", "")


def filter_traces(traces: ArtifactRef, config: FilterConfig, store: ArtifactStore) -> StageResult:
    """The stage as the plan runs it: the versions it publishes computed from the config and the traces."""
    return filter_stage.filter_traces(traces, config, store, versions=filter_versions(config, traces))


def trace(pair_id: str, teacher_pass: int, response: str | None, winner: str = "model_b", **changes: Any) -> dict:
    row = {
        "pair_id": pair_id,
        "request_id": f"{pair_id}-{teacher_pass}",
        "teacher_pass": teacher_pass,
        "teacher_model": "claude" if teacher_pass == 1 else "o3",
        "status": "ok" if response is not None else "failed",
        "failure_reason": None if response is not None else "server_error: 500 after 7 attempts",
        "system": "judge system prompt",
        "user": f"pair {pair_id}" + ("\n\nThe correct verdict is [[B]]." if teacher_pass == 2 else ""),
        "response": response,
        "finish_reason": "stop",
        "winner": winner,
        "domain": "chat",
        "source": "syn",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.0,
        "latency_s": 0.1,
        "attempts": 1,
    }
    return {**row, **changes}


def publish_traces(store: ArtifactStore, rows: list[dict]) -> Any:
    return publish_table(store, TEACHER_TRACES, "t1", pa.Table.from_pylist(rows, schema=TEACHER_TRACES.schema))


def test_keeps_matching_well_formed_traces_and_rejects_the_rest_with_reasons(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    rows = [
        trace("ok", 1, GOOD_B),
        trace("wrong", 1, GOOD_A),
        trace("no-justify", 1, NO_JUSTIFY_B),
        trace("failed", 1, None),
        trace("answer-too-early", 1, GOOD_B + " " + "padding " * 20),
    ]
    result = filter_traces(publish_traces(store, rows), FilterConfig(strictness="format"), store)
    examples = store.read_table(result.outputs["sft_examples"]).to_pylist()
    rejects = {r["pair_id"]: r["reason"] for r in store.read_table(result.outputs["filter_rejects"]).to_pylist()}
    assert [e["pair_id"] for e in examples] == ["ok"]
    assert examples[0]["assistant"] == GOOD_B and examples[0]["user"] == "pair ok"
    assert rejects == {
        "wrong": "verdict: label tag not in the last 100 characters",
        "no-justify": "format: <justify> in <rubric>",
        "failed": "request failed: server_error: 500 after 7 attempts",
        "answer-too-early": "verdict: label tag not in the last 100 characters",
    }


def test_verdict_strictness_keeps_traces_with_the_right_tag_whatever_the_layout(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    rows = [trace("no-justify", 1, NO_JUSTIFY_B), trace("bare", 1, "B is better. <answer>[[B]]</answer>")]
    result = filter_traces(publish_traces(store, rows), FilterConfig(strictness="verdict"), store)
    assert store.read_table(result.outputs["sft_examples"]).num_rows == 2


def test_pass2_trace_replaces_a_wrong_pass1_trace_but_the_prompt_stays_the_pass1_prompt(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    rows = [trace("p", 1, GOOD_A), trace("p", 2, GOOD_B), trace("q", 1, GOOD_B)]
    result = filter_traces(publish_traces(store, rows), FilterConfig(), store)
    examples = {e["pair_id"]: e for e in store.read_table(result.outputs["sft_examples"]).to_pylist()}
    assert examples["p"]["teacher_pass"] == 2 and examples["p"]["teacher_model"] == "o3"
    assert examples["p"]["user"] == "pair p"  # no pass-2 hint in what the student learns from
    assert examples["p"]["request_id"] == "p-2"
    assert examples["q"]["teacher_pass"] == 1
    rejects = store.read_table(result.outputs["filter_rejects"]).to_pylist()
    assert [(r["pair_id"], r["teacher_pass"], r["teacher_model"]) for r in rejects] == [("p", 1, "claude")]
    rates = {(r["pass"], r["teacher"]): (r["traces"], r["kept"]) for r in result.stats["pass_rates"]}
    assert rates == {(1, "claude"): (2, 1), (2, "o3"): (1, 1)}


def _recipe(config: FilterConfig) -> Recipe:
    source = SourceConfig(name="syn", adapter="synthetic", rows=10, seed=0)  # the plan here starts at the filter
    return Recipe(name="filter-twice", pull=PullConfig(sources=(source,)), filter=config)


def _no_stage(step: Step) -> Any:
    raise AssertionError(f"a published step ran: {step.name}")


def test_filter_is_skipped_when_published_and_versioned_by_strictness(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    traces = publish_traces(store, [trace("ok", 1, GOOD_B)])
    inputs = {TEACHER_TRACES.kind: traces}
    assert plan_step(STAGE, _recipe(FilterConfig()), store, inputs).runs
    first = filter_traces(traces, FilterConfig(), store)
    again = plan_step(STAGE, _recipe(FilterConfig()), store, inputs)
    assert again.published and not again.runs and again.outputs == first.outputs
    assert execute(Plan(_recipe(FilterConfig()), store, (again,)), _no_stage) == first.outputs  # no stage runs
    assert filter_versions(FilterConfig(strictness="verdict"), traces) != filter_versions(FilterConfig(), traces)
    assert plan_step(STAGE, _recipe(FilterConfig(strictness="verdict")), store, inputs).runs
