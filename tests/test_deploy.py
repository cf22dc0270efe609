"""`prefect deploy --all` from infra/prefect.yaml against a real `prefect server start` on 127.0.0.1, and a
process worker running the scheduled pull deployment with a recipe file and overrides as parameters."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from data_contracts import ArtifactStore
from tests.conftest import ROOT

PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 (kept open for the server's lifetime)
    process = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (home / "server.log").read_text()[-2000:]
            time.sleep(1)
        else:
            pytest.fail("prefect server did not start within 180 s")
        yield {**env, "PREFECT_API_URL": url}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _prefect(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run([*PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_deploy_all_then_a_process_worker_runs_the_scheduled_pull(server: dict[str, str], tmp_path: Path) -> None:
    env = {**server, "RMR1_HOME": str(ROOT), "RMR1_GPU_IMAGE": "rmr1-gpu:test", "RMR1_ARTIFACTS": str(tmp_path)}
    _prefect("work-pool", "create", "rmr1-cpu", "--type", "process", env=env)
    _prefect("work-pool", "create", "rmr1-gpu", "--type", "docker", env=env)
    _prefect("--no-prompt", "deploy", "--all", "--prefect-file", "infra/prefect.yaml", env=env)

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def deployments() -> dict[str, object]:
        async with get_client() as client:
            found = await client.read_deployments()
            flows = {f.id: f.name for f in await client.read_flows()}
            return {f"{flows[d.flow_id]}/{d.name}": d for d in found}

    with temporary_settings({PREFECT_API_URL: server["PREFECT_API_URL"]}):
        deployed = asyncio.run(deployments())
    assert set(deployed) == {
        "pull/nightly", "split/default", "distill/weekly-refresh", "filter/default", "sft/gpu", "rl/gpu",
        "evaluate/gpu", "rm-r1 pipeline/paper", "rm-r1 pipeline/smoke",
    }  # fmt: skip
    nightly = deployed["pull/nightly"]
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]  # type: ignore[attr-defined]
    assert nightly.work_pool_name == "rmr1-cpu"  # type: ignore[attr-defined]
    assert deployed["rl/gpu"].work_pool_name == "rmr1-gpu"  # type: ignore[attr-defined]
    gpu_variables = deployed["rl/gpu"].job_variables  # type: ignore[attr-defined]
    assert gpu_variables["container_create_kwargs"]["device_requests"][0]["driver"] == "nvidia"

    # The scheduled pull, run now with a small smoke recipe, picked up by a process worker.
    params = '{"recipe": "recipes/smoke.yaml", "overrides": ["pull.sources.0.rows=100"]}'
    _prefect("deployment", "run", "pull/nightly", "--params", params, env=env)
    _prefect("worker", "start", "--pool", "rmr1-cpu", "--run-once", env=env)
    [manifest] = ArtifactStore(tmp_path).list()
    assert manifest["kind"] == "preference_pairs" and manifest["rows"] == 100
    assert manifest["flow_run_id"]  # made by the deployment's flow run
