"""`prefect deploy --all` from infra/prefect.yaml against a real `prefect server start` on 127.0.0.1; a process
worker running the scheduled pull deployment with a recipe file and overrides as parameters; and the
pipeline handing a stage to a deployment (`dispatch`) while running the others in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from data_contracts import ArtifactStore
from flows.recipe import load_recipe
from flows.stages import DispatchFailed, pipeline_flow
from tests.conftest import ROOT

PREFECT = [sys.executable, "-m", "prefect"]
DEPLOYMENTS = {
    "pull/nightly", "split/default", "distill/weekly-refresh", "filter/default", "sft/gpu", "rl/gpu",
    "evaluate/gpu", "learning/gpu", "rm-r1 pipeline/paper", "rm-r1 pipeline/smoke", "rm-r1 artifacts gc/weekly",
}  # fmt: skip


def _prefect(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run([*PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def deployed(private_prefect_server: dict[str, str]) -> Iterator[dict[str, str]]:
    """The two work pools and every deployment of infra/prefect.yaml, created the documented way, on a server of
    the module's own (its workers must not pick up another test's runs, nor another test's worker its runs)."""
    env = {**private_prefect_server, "RMR1_HOME": str(ROOT), "RMR1_GPU_IMAGE": "rmr1-gpu:test", "RMR1_ARTIFACTS": ""}
    _prefect("work-pool", "create", "rmr1-cpu", "--type", "process", env=env)
    _prefect("work-pool", "create", "rmr1-gpu", "--type", "docker", env=env)
    _prefect("--no-prompt", "deploy", "--all", "--prefect-file", "infra/prefect.yaml", env=env)
    with temporary_settings({PREFECT_API_URL: private_prefect_server["PREFECT_API_URL"]}):
        yield env


async def _deployments() -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_deployments()
        flows = {f.id: f.name for f in await client.read_flows()}
        return {f"{flows[d.flow_id]}/{d.name}": d for d in found}


def test_deploy_all_then_a_process_worker_runs_the_scheduled_pull(deployed: dict[str, str], tmp_path: Path) -> None:
    deployments = asyncio.run(_deployments())
    assert set(deployments) == DEPLOYMENTS
    nightly = deployments["pull/nightly"]
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert nightly.work_pool_name == "rmr1-cpu"
    assert deployments["rl/gpu"].work_pool_name == "rmr1-gpu"
    gpu_variables = deployments["rl/gpu"].job_variables
    assert gpu_variables["container_create_kwargs"]["device_requests"][0]["driver"] == "nvidia"
    # The recipe parameter is typed: the UI's form knows every section and field, and refuses unknown keys.
    schema = json.dumps(nightly.parameter_openapi_schema)
    assert '"max_reject_rate"' in schema and '"distill_fraction"' in schema
    assert '"additionalProperties": false' in schema

    # The scheduled pull, run now with a small smoke recipe, picked up by a process worker.
    params = f'{{"recipe": "recipes/smoke.yaml", "overrides": ["pull.sources.0.rows=100"], "artifacts": "{tmp_path}"}}'
    _prefect("deployment", "run", "pull/nightly", "--params", params, env=deployed)
    _prefect("worker", "start", "--pool", "rmr1-cpu", "--run-once", env=deployed)
    [manifest] = ArtifactStore(tmp_path).list()
    assert manifest["kind"] == "preference_pairs" and manifest["rows"] == 100
    assert manifest["flow_run_id"]  # made by the deployment's flow run


@pytest.fixture
def worker(deployed: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """A process worker on the CPU pool, polling every second, for the length of one test.

    `prefect worker start` runs the worker in a child process and stops it with SIGINT. The worker runs in its
    own process group, and the group is killed once the parent has exited (or has not within 30 s): no orphaned
    worker keeps polling the session's server."""
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [*PREFECT, "worker", "start", "--pool", "rmr1-cpu"],
        env={**deployed, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            log.close()


def test_the_pipeline_dispatches_a_stage_to_its_deployment_and_runs_the_rest_in_process(
    worker: None, tmp_path: Path
) -> None:
    recipe = load_recipe(ROOT / "recipes" / "smoke.yaml", ["pull.sources.0.rows=100", "dispatch.pull=pull/nightly"])
    state = pipeline_flow(recipe.to_dict(), str(tmp_path), to_stage="split", return_state=True)
    versions = state.result()
    store = ArtifactStore(tmp_path)
    assert store.get("preference_pairs", versions["preference_pairs"]) is not None
    assert store.get("rl_set", versions["rl_set"]) is not None

    async def children() -> dict[str, Any]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
            names = {f.id: f.name for f in await client.read_flows()}
            return {names[run.flow_id]: run for run in runs}

    runs = asyncio.run(children())
    assert set(runs) == {"pull", "split"}
    deployment = asyncio.run(_deployments())["pull/nightly"]
    assert runs["pull"].deployment_id == deployment.id  # run by the worker, through the deployment
    assert runs["split"].deployment_id is None  # run in this process
    pull_manifest = store.manifest(store.require("preference_pairs", versions["preference_pairs"]))
    assert pull_manifest["flow_run_id"] == str(runs["pull"].id)


def test_dispatch_to_a_missing_deployment_names_the_recipe_key(deployed: dict[str, str], tmp_path: Path) -> None:
    recipe = load_recipe(ROOT / "recipes" / "smoke.yaml", ["dispatch.pull=pull/no-such-deployment"])
    with pytest.raises(DispatchFailed, match=r"recipe dispatch\.pull: no deployment 'pull/no-such-deployment'"):
        pipeline_flow(recipe.to_dict(), str(tmp_path), to_stage="pull")
    assert ArtifactStore(tmp_path).list() == []
