"""Stage flows and the pipeline against a real `prefect server start` on 127.0.0.1, read back through the
Prefect client as the UI would (flow and task runs, their parameters, every stage's artifacts)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import State

from data_contracts import ArtifactStore
from flows.plan import STAGE_NAMES, GateFailed, MissingUpstream
from flows.recipe import load_recipe
from flows.stages import pipeline_flow, split_flow
from tasks.distill.stage import trace_outcome
from tasks.evaluate.stage import judgment_outcome
from tasks.judge.protocol import trace_sections
from tasks.recipe import Recipe
from tasks.trace_samples import PER_GROUP
from tests.conftest import ROOT, TINY_TRAINING
from tests.helpers.prefect_runs import artifact_of
from tests.test_trace_samples import FENCE

SMOKE = ROOT / "recipes" / "smoke.yaml"


@pytest.fixture(scope="module", autouse=True)
def on_a_real_server(prefect_server: dict[str, str]) -> Iterator[None]:
    with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        yield


def smoke(*overrides: str) -> Recipe:
    return load_recipe(SMOKE, ["pull.sources.0.rows=120", *TINY_TRAINING, "rl.max_steps=2", *overrides])


@dataclass(frozen=True)
class Published:
    root: Path
    state: State[Any]
    versions: dict[str, str]

    def copy(self, to: Path) -> Path:
        """A copy of the published root for a test that publishes more (the shared one stays as it was made)."""
        shutil.copytree(self.root, to)
        return to


@pytest.fixture(scope="module")
def published(on_a_real_server: None, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """One pipeline run of the smoke recipe, every stage published, made once: the test of what it leaves in
    Prefect reads it, and the tests of re-runs start from a copy of its root."""
    root = tmp_path_factory.mktemp("published-smoke")
    state = pipeline_flow(smoke(), str(root), return_state=True)
    return Published(root, state, state.result())


def table_artifact(state: State, key: str) -> list[dict[str, Any]]:
    """The table artifact `key` of the flow run that ended in `state`."""
    return _table(artifact_of(state, key))


def _table(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def run_artifact(ui: dict[str, Any], key: str) -> Any:
    """The artifact `key` made by this pipeline run (whichever stage made it), not a later run's."""
    [artifact] = [stage["artifacts"][key] for stage in ui["stages"].values() if key in stage["artifacts"]]
    return artifact


async def _read_back(pipeline_run_id: Any) -> dict[str, Any]:
    """What the UI shows for a pipeline run: its run, each stage's subflow run with its task runs and artifacts."""
    async with get_client() as client:
        pipeline = await client.read_flow_run(pipeline_run_id)
        flows = {f.id: f.name for f in await client.read_flows()}
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[pipeline_run_id]))
        )
        stages = {}
        for run in children:
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
            by_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            artifacts = await client.read_artifacts(artifact_filter=by_run)
            stages[flows[run.flow_id]] = {"run": run, "tasks": {t.name for t in tasks},
                                          "artifacts": {a.key: a for a in artifacts}}  # fmt: skip
        return {"pipeline": pipeline, "flow": flows[pipeline.flow_id], "stages": stages}


def assert_samples_intact(markdown: str, rows: list[dict[str, Any]], group: str, outcome: Callable[..., str],
                          heading: str, text: str) -> list[dict[str, Any]]:  # fmt: skip
    """Every group and outcome of `rows` has its section and count; each sample a heading matches (`heading`: a
    regex whose groups are the row's id fields) is shown with every section of its `text` whole, in order."""
    blocks: list[str] = []

    def set_aside(match: re.Match[str]) -> str:  # a trace may hold markdown of its own: read the layout around it
        blocks.append(match.group(2))
        return f"<block {len(blocks) - 1}>"

    layout = FENCE.sub(set_aside, markdown)
    for name in sorted({row[group] for row in rows}):
        section = layout.split(f"\n## {name}\n")[1].split("\n## ")[0]
        counts = Counter(outcome(row) for row in rows if row[group] == name)
        for label, count in counts.items():
            assert f"### {label}: {min(count, PER_GROUP)} of {count}" in section, (name, label)
    shown = []
    for sample in layout.split("\n#### ")[1:]:
        ids = re.match(heading, sample)
        assert ids is not None, sample[:200]
        row = next(r for r in rows if tuple(str(r[k]) for k in ids.groupdict()) == tuple(ids.groupdict().values()))
        sections = trace_sections(row[text])
        assert re.findall(r"^\*\*(\w+)\*\*", sample, flags=re.M) == [name for name, _ in sections]
        texts = [blocks[int(index)] for index in re.findall(r"<block (\d+)>", sample)]
        assert [t for t in texts if len(t) < 1000] == [t for _, t in sections if len(t) < 1000]  # longer ones are cut
        shown.append(row)
    assert shown
    return shown


def assert_traces_readable_in_prefect(ui: dict[str, Any], store: ArtifactStore, versions: dict[str, str]) -> None:
    """The sample traces of distill, filter and evaluate, read back through the Prefect client, against the rows."""
    traces = store.read_table(store.require("teacher_traces", versions["teacher_traces"])).to_pylist()
    distilled = str(ui["stages"]["distill"]["artifacts"]["distill-traces"].data)
    shown = assert_samples_intact(distilled, traces, "domain", trace_outcome,
                                  r"pair `(?P<pair_id>[^`]+)` · pass (?P<teacher_pass>\d)", "response")  # fmt: skip
    assert {row["domain"] for row in shown} == {"chat", "safety", "code", "math"} & {r["domain"] for r in traces}

    kept = store.read_table(store.require("sft_examples", versions["sft_examples"])).to_pylist()
    rejects = store.read_table(store.require("filter_rejects", versions["filter_rejects"])).to_pylist()
    by_request = {row["request_id"]: row for row in traces}
    rows = [{**row, "outcome": "kept", "text": row["assistant"]} for row in kept]
    rows += [{**row, "outcome": "rejected", "text": by_request[row["request_id"]]["response"]} for row in rejects]
    filtered = str(ui["stages"]["filter"]["artifacts"]["filter-traces"].data)
    shown = assert_samples_intact(filtered, rows, "domain", lambda row: row["outcome"],
                                  r"pair `(?P<pair_id>[^`]+)` · pass (?P<teacher_pass>\d)", "text")  # fmt: skip
    assert rejects and any(row["outcome"] == "rejected" for row in shown)
    for row in shown:
        if row["outcome"] == "rejected":
            assert f"- reason: `{row['reason']}`" in filtered

    predictions = store.read_table(store.require("eval_predictions", versions["eval_predictions"])).to_pylist()
    judged = str(ui["stages"]["evaluate"]["artifacts"]["evaluate-judgments"].data)
    shown = assert_samples_intact(judged, predictions, "benchmark", judgment_outcome,
                                  r"`[^`]+` · `(?P<comparison_id>[^`]+)`", "output")  # fmt: skip
    assert {row["benchmark"] for row in shown} == {"rewardbench", "rm_bench", "rmb"}


def test_pipeline_publishes_every_stage_and_leaves_counts_and_links_in_prefect(published: Published) -> None:
    recipe, state, versions = smoke(), published.state, published.versions
    fingerprint = load_recipe(SMOKE, ["pull.sources.0.rows=120", *TINY_TRAINING, "rl.max_steps=2"]).fingerprint
    ui = asyncio.run(_read_back(state.state_details.flow_run_id))
    assert ui["flow"] == "rm-r1 pipeline" and ui["pipeline"].name == f"pipeline · smoke · {fingerprint}"
    assert ui["pipeline"].parameters["recipe"] == recipe.to_dict()  # the whole resolved recipe, as a run parameter
    assert set(ui["stages"]) == set(STAGE_NAMES)
    for name, stage in ui["stages"].items():
        assert stage["run"].name == f"{name} · smoke · {fingerprint}"
        assert stage["run"].state.is_completed()
        assert name in stage["tasks"]  # the stage's own task run is named after the stage
        artifacts = stage["artifacts"]
        assert {f"{name}-summary", f"{name}-progress"} <= set(artifacts), sorted(artifacts)
        assert artifacts[f"{name}-progress"].type == "progress" and float(artifacts[f"{name}-progress"].data) == 100
        assert any(a.type == "table" for a in artifacts.values()), sorted(artifacts)
        links = [
            a
            for a in artifacts.values()
            if a.type == "markdown" and a.key != f"{name}-summary" and "file://" in str(a.data)
        ]
        assert links, sorted(artifacts)  # a link to each output folder
    assert {"sft-metrics", "sft-totals", "sft-curves"} <= set(ui["stages"]["sft"]["artifacts"])
    assert {"rl-metrics", "rl-totals", "rl-curves"} <= set(ui["stages"]["rl"]["artifacts"])
    assert "image/png;base64" in str(ui["stages"]["rl"]["artifacts"]["rl-curves"].data)
    evaluate = ui["stages"]["evaluate"]["artifacts"]
    assert {"evaluate-report", "evaluate-headline", "evaluate-rewardbench", "evaluate-rm-bench", "evaluate-rmb"} <= set(
        evaluate
    )
    assert "RM-R1-Qwen2.5-Instruct-7B" in str(evaluate["evaluate-report"].data)  # the run beside the paper
    assert {"pass1-shard0000"} <= ui["stages"]["distill"]["tasks"]  # one task run per shard of requests
    assert {"distill-counts", "distill-by-pass", "distill-totals"} <= set(ui["stages"]["distill"]["artifacts"])
    store = ArtifactStore(published.root)
    assert set(versions) == {
        "preference_pairs", "distill_set", "rl_set", "teacher_traces", "sft_examples", "filter_rejects",
        "sft_checkpoint", "rl_checkpoint", "eval_predictions", "eval_scores", "learning_scores",
    }  # fmt: skip
    pairs = store.require("preference_pairs", versions["preference_pairs"])
    manifest = store.manifest(pairs)
    assert manifest["flow_run_id"]  # made inside a Prefect flow run
    counts = _table(run_artifact(ui, "pull-counts"))
    assert {row["domain"] for row in counts} == {"chat", "safety", "code", "math"}
    assert sum(row["rows_out"] for row in counts) == manifest["rows"] == 120
    progress = run_artifact(ui, "pull-progress")
    assert progress is not None and float(progress.data) == 100.0
    split_counts = _table(run_artifact(ui, "split-counts"))
    assert sum(row["rows_in"] for row in split_counts) == 120
    assert sum(row["distill_set"] for row in split_counts) == 15
    assert {row["domain"] for row in split_counts} == {"chat", "safety", "code", "math"}
    balance = _table(run_artifact(ui, "split-label-balance"))
    assert {"artifact": "distill_set", "rows": 15, "model_a": 8, "model_b": 7} in balance
    sft_metrics = _table(run_artifact(ui, "sft-metrics"))
    assert [row["step"] for row in sft_metrics] == [1, 2, 3, 4] and all(row["loss"] > 0 for row in sft_metrics)
    rl_metrics = _table(run_artifact(ui, "rl-metrics"))
    assert [row["step"] for row in rl_metrics] == [1, 2] and all(-1 <= row["reward"] <= 1 for row in rl_metrics)
    assert _table(run_artifact(ui, "rl-totals"))[0]["steps"] == 2
    curves = run_artifact(ui, "rl-curves")
    assert curves is not None and "data:image/png;base64,iVBOR" in str(curves.data)  # the PNG, inline
    training_progress = run_artifact(ui, "sft-progress")
    assert training_progress is not None and float(training_progress.data) == 100.0
    link = run_artifact(ui, "split-distill-set")
    folder = store.folder("distill_set", versions["distill_set"])
    assert link is not None and f"(file://{folder})" in str(link.data)  # link artifacts read back as markdown
    predictions = store.read_table(store.require("eval_predictions", versions["eval_predictions"])).to_pandas()
    assert set(predictions["judge"]) == {f"rl_checkpoint/{versions['rl_checkpoint']}"}
    assert set(predictions["benchmark"]) == {"rewardbench", "rm_bench", "rmb"}
    rm_bench = _table(run_artifact(ui, "evaluate-rm-bench"))
    assert {"hard", "normal", "easy"} <= {row["name"] for row in rm_bench if row["level"] == "section"}
    assert all({"score", "n", "error_rate_%"} <= set(row) for row in rm_bench)
    assert [row["name"] for row in _table(run_artifact(ui, "evaluate-headline"))] == ["score"]
    matrix = _table(run_artifact(ui, "evaluate-rm-bench-matrix"))
    assert [(row["domain"], row["chosen"]) for row in matrix[:3]] == [
        ("chat", s) for s in ("concise", "detailed", "markdown")
    ]
    assert all(0 <= row["vs markdown"] <= 100 for row in matrix)
    report = run_artifact(ui, "evaluate-report")
    assert report is not None and "RM-R1-Qwen2.5-Instruct-7B" in str(report.data)
    evaluate_progress = run_artifact(ui, "evaluate-progress")
    assert evaluate_progress is not None and float(evaluate_progress.data) == 100.0
    assert_traces_readable_in_prefect(ui, store, versions)
    learning = _table(run_artifact(ui, "learning-table"))  # the student before and after training, beside the baseline
    assert [row["judge"] for row in learning] == ["untrained student", "after SFT", "after GRPO", "length baseline"]
    assert all(row["n"] == 4 for row in learning)  # refusal_task, 2 items per subset
    assert [row["step"] for row in _table(run_artifact(ui, "learning-rl-reward"))] == [1, 2]
    report = run_artifact(ui, "learning-report")
    assert report is not None and "| after GRPO |" in str(report.data) and "image/png;base64" in str(report.data)


def test_rerun_skips_every_stage_and_returns_the_same_versions(published: Published, tmp_path: Path) -> None:
    first, root = published.versions, published.copy(tmp_path / "artifacts")
    store = ArtifactStore(root)
    created = {m["version"]: m["created_at"] for m in store.list()}
    rerun = pipeline_flow(smoke(), str(root), return_state=True)
    second = rerun.result()
    assert second == first
    assert {m["version"]: m["created_at"] for m in store.list()} == created
    stages = table_artifact(rerun, "pipeline-stages")  # no stage flow ran: the pipeline's table says why
    assert [row["stage"] for row in stages][:3] == ["pull", "split", "split"]
    assert {row["how"] for row in stages} == {"skipped, already published"}
    assert {row["artifact"] for row in stages} == {f"{kind}/{version}" for kind, version in first.items()}
    # A gate the judge misses fails even this all-skipped run, naming the gate and the numbers; nothing is lost.
    gated = pipeline_flow(smoke("learning.gates.min_rl_accuracy=0.999"), str(root), return_state=True)
    with pytest.raises(GateFailed, match=r"^gate learning\.gates\.min_rl_accuracy: held-out accuracy after GRPO "
                                         r"0\.\d{3} < 0\.999 \(learning_scores/"):  # fmt: skip
        gated.result()
    assert {m["version"]: m["created_at"] for m in store.list()} == created
    assert len(table_artifact(gated, "pipeline-stages")) == len(stages)  # the UI still lists every (skipped) stage


def test_changing_a_split_value_rebuilds_the_split_and_what_follows_it_only(
    published: Published, tmp_path: Path
) -> None:
    first, root = published.versions, published.copy(tmp_path / "artifacts")
    pull_created = ArtifactStore(root).list("preference_pairs")[0]["created_at"]
    run = pipeline_flow(smoke("split.seed=5"), str(root), return_state=True)
    changed = run.result()
    assert changed["preference_pairs"] == first["preference_pairs"]
    assert ArtifactStore(root).list("preference_pairs")[0]["created_at"] == pull_created  # pull skipped
    how = {row["stage"]: row["how"] for row in table_artifact(run, "pipeline-stages")}
    assert how == {"pull": "skipped, already published", "split": "ran", "distill": "ran", "filter": "ran",
                   "sft": "ran", "rl": "ran", "evaluate": "ran", "learning": "ran"}  # fmt: skip
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
    versions = pipeline_flow(smoke(), str(tmp_path), from_stage="split", to_stage="split")
    assert "rl_set" in versions


def test_a_pipeline_run_validates_the_recipe_once_and_hashes_a_local_source_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.pull.sources

    validated, hashed = [], []
    real_post_init, real_sha = Recipe.__post_init__, tasks.pull.sources.file_sha256
    monkeypatch.setattr(Recipe, "__post_init__", lambda self: validated.append(1) or real_post_init(self))
    monkeypatch.setattr(tasks.pull.sources, "file_sha256", lambda path: hashed.append(path) or real_sha(path))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(
        json.dumps({"chosen": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"yes {i}"}],
                    "rejected": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"no {i}"}],
                    "source": "t"})
        + "\n" for i in range(30)
    ))  # fmt: skip
    recipe = load_recipe(SMOKE, [f"pull.sources=[{{name: local, adapter: skywork, path: {pairs}}}]"])
    versions = pipeline_flow(recipe, str(tmp_path / "artifacts"), to_stage="split")  # pull and split as subflows
    assert set(versions) == {"preference_pairs", "distill_set", "rl_set"}
    assert len(validated) == 1  # at the boundary, not again at each Prefect flow call
    assert hashed == [str(pairs)]  # the source's version is computed once per run
