"""Stage flows and the pipeline under a real Prefect server (the test harness), read back as the UI would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from data_contracts import ArtifactStore
from flows.cli import STAGE_NAMES
from flows.recipe import load_recipe
from flows.stages import STAGES, MissingUpstream, pipeline_flow, split_flow
from tests.conftest import ROOT, TINY_TRAINING

SMOKE = ROOT / "recipes" / "smoke.yaml"


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


def smoke(*overrides: str) -> dict[str, Any]:
    return load_recipe(SMOKE, ["pull.sources.0.rows=120", *TINY_TRAINING, "rl.max_steps=2", *overrides]).to_dict()


def table_artifact(key: str) -> list[dict[str, Any]]:
    artifact = Artifact.get(key)
    assert artifact is not None, f"no Prefect artifact {key}"
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def test_cli_stage_names_match_the_pipeline() -> None:
    assert STAGE_NAMES == STAGES


def test_pipeline_publishes_every_stage_and_leaves_counts_and_links_in_prefect(tmp_path: Path) -> None:
    versions = pipeline_flow(smoke(), str(tmp_path))
    store = ArtifactStore(tmp_path)
    assert set(versions) == {
        "preference_pairs", "distill_set", "rl_set", "teacher_traces", "sft_examples", "filter_rejects",
        "sft_checkpoint", "rl_checkpoint", "eval_predictions", "eval_scores",
    }  # fmt: skip
    pairs = store.require("preference_pairs", versions["preference_pairs"])
    manifest = store.manifest(pairs)
    assert manifest["flow_run_id"]  # made inside a Prefect flow run
    counts = table_artifact("pull-counts")
    assert {row["domain"] for row in counts} == {"chat", "safety", "code", "math"}
    assert sum(row["rows_out"] for row in counts) == manifest["rows"] == 120
    progress = Artifact.get("pull-progress")
    assert progress is not None and float(progress.data) == 100.0
    split_counts = table_artifact("split-counts")
    assert sum(row["rows_in"] for row in split_counts) == 120
    assert sum(row["distill_set"] for row in split_counts) == 15
    assert {row["domain"] for row in split_counts} == {"chat", "safety", "code", "math"}
    balance = table_artifact("split-label-balance")
    assert {"artifact": "distill_set", "rows": 15, "model_a": 8, "model_b": 7} in balance
    sft_metrics = table_artifact("sft-metrics")
    assert [row["step"] for row in sft_metrics] == [1, 2, 3, 4] and all(row["loss"] > 0 for row in sft_metrics)
    rl_metrics = table_artifact("rl-metrics")
    assert [row["step"] for row in rl_metrics] == [1, 2] and all(-1 <= row["reward"] <= 1 for row in rl_metrics)
    assert table_artifact("rl-totals")[0]["steps"] == 2
    curves = Artifact.get("rl-curves")
    assert curves is not None and "data:image/png;base64,iVBOR" in str(curves.data)  # the PNG, inline
    training_progress = Artifact.get("sft-progress")
    assert training_progress is not None and float(training_progress.data) == 100.0
    link = Artifact.get("split-distill-set")
    folder = store.folder("distill_set", versions["distill_set"])
    assert link is not None and f"(file://{folder})" in str(link.data)  # link artifacts read back as markdown
    predictions = store.read_table(store.require("eval_predictions", versions["eval_predictions"])).to_pandas()
    assert set(predictions["judge"]) == {f"rl_checkpoint/{versions['rl_checkpoint']}"}
    assert set(predictions["benchmark"]) == {"rewardbench", "rm_bench", "rmb"}
    rm_bench = table_artifact("evaluate-rm-bench")
    assert {"hard", "normal", "easy"} <= {row["name"] for row in rm_bench if row["level"] == "section"}
    assert all({"score", "n", "error_rate_%"} <= set(row) for row in rm_bench)
    assert [row["name"] for row in table_artifact("evaluate-headline")] == ["score"]
    matrix = table_artifact("evaluate-rm-bench-matrix")
    assert [(row["domain"], row["chosen"]) for row in matrix[:3]] == [
        ("chat", s) for s in ("concise", "detailed", "markdown")
    ]
    assert all(0 <= row["vs markdown"] <= 100 for row in matrix)
    report = Artifact.get("evaluate-report")
    assert report is not None and "RM-R1-Qwen2.5-Instruct-7B" in str(report.data)
    evaluate_progress = Artifact.get("evaluate-progress")
    assert evaluate_progress is not None and float(evaluate_progress.data) == 100.0


def test_rerun_skips_every_stage_and_returns_the_same_versions(tmp_path: Path) -> None:
    first = pipeline_flow(smoke(), str(tmp_path))
    store = ArtifactStore(tmp_path)
    created = {m["version"]: m["created_at"] for m in store.list()}
    second = pipeline_flow(smoke(), str(tmp_path))
    assert second == first
    assert {m["version"]: m["created_at"] for m in store.list()} == created
    summary = Artifact.get("split-summary")
    assert summary is not None and "skipped (already published)" in str(summary.data)


def test_changing_a_split_value_rebuilds_the_split_and_what_follows_it_only(tmp_path: Path) -> None:
    first = pipeline_flow(smoke(), str(tmp_path))
    pull_created = ArtifactStore(tmp_path).list("preference_pairs")[0]["created_at"]
    changed = pipeline_flow(smoke("split.seed=5"), str(tmp_path))
    assert changed["preference_pairs"] == first["preference_pairs"]
    assert ArtifactStore(tmp_path).list("preference_pairs")[0]["created_at"] == pull_created  # pull skipped
    assert "skipped" in str(Artifact.get("pull-summary").data)  # type: ignore[union-attr]
    for kind in ("distill_set", "rl_set", "teacher_traces", "sft_examples", "sft_checkpoint", "rl_checkpoint"):
        assert changed[kind] != first[kind]


def test_a_stage_flow_alone_runs_its_missing_upstream_first(tmp_path: Path) -> None:
    versions = split_flow(smoke(), str(tmp_path))
    store = ArtifactStore(tmp_path)
    assert {m["kind"] for m in store.list()} == {"preference_pairs", "distill_set", "rl_set"}  # nothing downstream
    assert store.get("distill_set", versions["distill_set"]) is not None


def test_from_stage_refuses_to_run_without_published_upstream(tmp_path: Path) -> None:
    with pytest.raises(MissingUpstream, match="stage 'pull' has not published preference_pairs/"):
        pipeline_flow(smoke(), str(tmp_path), from_stage="split")
    pipeline_flow(smoke(), str(tmp_path), to_stage="pull")
    versions = pipeline_flow(smoke(), str(tmp_path), from_stage="split")
    assert "rl_set" in versions
