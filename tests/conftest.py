"""Shared test paths and fixtures.

The real offline data lives in `shared/` beside the checkout (as on CI); tests that need it skip with a
reason when it is absent. Prefect and `datasets` run against throw-away homes, never the developer's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from filelock import FileLock

from tests.helpers.fake_hub import FakeHub

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PREFERENCES = SHARED_DATA / "preferences"
BENCHMARKS = SHARED_DATA / "benchmarks"
FIXTURES = Path(__file__).parent / "fixtures"

# Recipe overrides that shrink the smoke recipe's training to seconds: a ~50k-parameter student, a few steps.
TINY_TRAINING = [
    "student.tiny.vocab_size=600",
    "student.tiny.hidden_size=32",
    "student.tiny.intermediate_size=64",
    "student.tiny.num_heads=2",
    "student.tiny.num_kv_heads=1",
    "sft.max_steps=4",
    "sft.save_steps=2",
    "sft.global_batch_size=4",
    "sft.micro_batch_size=4",
    "rl.max_steps=4",
    "rl.save_steps=2",
    "rl.num_generations=2",
    "rl.prompts_per_rollout=2",
    "rl.mini_batch_prompts=2",
    "rl.micro_batch_size=4",
    "rl.max_completion_length=24",
    "evaluate.judge.max_new_tokens=8",
    "evaluate.judge.batch_size=8",
    # Plumbing, not learning: the mixed synthetic set (every domain) judged by the longer-answer stand-in, the
    # official layouts' synthetic copies, and the learning stage on a sample with no gates (tests/test_learning_gates.py
    # checks that the smoke recipe itself learns).
    "pull.sources.0.task=mixed",
    "split.distill_fraction=0.12",  # the paper's share (the smoke recipe distills more so SFT sees distinct pairs)
    "distill.teacher.model=standin-longer-answer-judge",
    "distill.second_teacher.model=standin-longer-answer-judge",
    "evaluate.benchmarks=[{name: rewardbench, path: synthetic, items_per_subset: 1},"
    " {name: rm_bench, path: synthetic, items_per_subset: 1}, {name: rmb, path: synthetic, items_per_subset: 1}]",
    "learning.benchmark.items_per_subset=2",
    "learning.max_new_tokens=8",
    "learning.batch_size=8",
    "learning.gates={}",
]

needs_shared = pytest.mark.skipif(not PREFERENCES.is_dir(), reason=f"real offline data absent ({SHARED_DATA})")


# Set before any test module imports Prefect or datasets, which read these at import time.
_CACHES = Path(tempfile.mkdtemp(prefix="rmr1-test-caches-"))
os.environ["HF_DATASETS_CACHE"] = str(_CACHES / "hf-datasets")
os.environ["RMR1_CACHE"] = str(_CACHES / "rmr1")
os.environ["PREFECT_HOME"] = str(_CACHES / "prefect-home")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
os.environ["TQDM_DISABLE"] = "1"
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"  # else huggingface_hub asks its endpoint for an agent registry
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("RMR1_ARTIFACTS", None)

# Tests press Ctrl-C on servers they start (SIGINT, as a terminal does). A shell's background job starts with
# SIGINT ignored, and a child inherits that: Python would then install no KeyboardInterrupt handler in it, and
# Prefect's worker, which stops its child with SIGINT, would wait forever. Run the suite as if from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake Hugging Face Hub on 127.0.0.1 (`tests/helpers/fake_hub.py`); HF_ENDPOINT points at it, online."""
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield hub
    finally:
        hub.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real S3-compatible server (moto's server mode, in its own process, conditional writes atomic as on S3:
    `tests/helpers/s3_server.py`) on 127.0.0.1 for the session; this
    process's botocore points at it while it runs. Yields the environment a child process needs to use it."""
    home = tmp_path_factory.mktemp("s3-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(home / "server.log", "w")  # noqa: SIM115 (kept open for the server's lifetime)
    server = Path(__file__).parent / "helpers" / "s3_server.py"  # moto, its conditional writes made atomic
    process = subprocess.Popen([sys.executable, str(server), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=log)  # fmt: skip
    env = {**S3_ENV, "AWS_ENDPOINT_URL": url}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/moto-api/", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()[-2000:]
            time.sleep(0.2)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            yield {**os.environ, **env}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def s3_root(s3_server: dict[str, str]) -> str:
    """A fresh bucket on the session's S3 server: `s3://<bucket>/artifacts`."""
    import uuid

    import s3fs

    bucket = f"rmr1-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/artifacts"


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One real `prefect server start` on 127.0.0.1 for the whole run, shared by the xdist workers; yields the
    environment that points at it.

    The first test that needs it starts it; the run's main process stops it at the end (`pytest_sessionfinish`,
    once every worker is done). Tests on it read back their own runs (by flow run id or a name of their own),
    never "the newest" of a key. Tests that change the server itself (work pools, deployments, workers) start
    their own: `private_prefect_server`."""
    shared = _run_folder(tmp_path_factory)
    with FileLock(shared / f"{SERVER_INFO}.lock"):  # the first worker starts it; the others wait, then use it
        if not (shared / SERVER_INFO).exists():
            home = shared / "prefect-server"
            process, env = _start_prefect_server(home, template=None)
            live, copy = sqlite3.connect(home / "prefect.db"), sqlite3.connect(shared / f"{TEMPLATE}.partial")
            with closing(live), closing(copy):
                live.backup(copy)  # its fresh database (no run in it yet), for the private servers
            os.replace(shared / f"{TEMPLATE}.partial", shared / TEMPLATE)
            (shared / SERVER_INFO).write_text(json.dumps({"pid": process.pid, "env": env}))
    env = json.loads((shared / SERVER_INFO).read_text())["env"]
    yield {**os.environ, **env}
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # this worker's runs' last logs reach the server before it goes


@pytest.fixture
def empty_prefect_home(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Prefect home whose database has no flow, run or log in it: a copy of the shared server's database taken
    as soon as it answered (migrated, so a temporary server started on it skips ~10 s of migrations)."""
    home = tmp_path_factory.mktemp("empty-prefect-home")
    shutil.copyfile(_run_folder(tmp_path_factory) / TEMPLATE, home / "prefect.db")
    return home


@pytest.fixture(scope="module")
def private_prefect_server(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                           ) -> Iterator[dict[str, str]]:  # fmt: skip
    """A `prefect server start` of the module's own, started from a copy of the shared server's fresh database
    (~9 s instead of ~19 s): for tests that create work pools, deployments and workers no other test may see."""
    home = tmp_path_factory.mktemp("prefect-server")
    process, env = _start_prefect_server(home, template=_run_folder(tmp_path_factory) / TEMPLATE)
    try:
        yield {**os.environ, **env}
    finally:
        from prefect.logging.handlers import APILogWorker

        try:
            APILogWorker.drain_all(timeout=5)
        finally:
            _stop(process.pid)


SERVER_INFO, TEMPLATE = "prefect-server.json", "prefect-server-template.db"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's main process (not an xdist worker) stops the shared Prefect server, if a test started it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    info = _run_folder(session.config._tmp_path_factory) / SERVER_INFO  # type: ignore[attr-defined]
    if info.exists():
        _stop(json.loads(info.read_text())["pid"])
        info.unlink()


def _run_folder(factory: pytest.TempPathFactory) -> Path:
    """One folder for the whole run: its base temporary folder (each xdist worker's is a folder inside it)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _start_prefect_server(home: Path, template: Path | None) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """`prefect server start` on a free port of 127.0.0.1 with its home (and log) in `home`, from a copy of the
    database `template` if given, once it answers; with the environment (home, API URL) that points at it."""
    home.mkdir(parents=True, exist_ok=True)
    if template is not None:
        shutil.copyfile(template, home / "prefect.db")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_UI_ENABLED": "false"}
    # The server's background services that no test reads from (schedules, late runs, automations, the event
    # store, clean-ups) are off: they cost ~20% of its CPU. Task runs (recorded from events), flow runs, logs
    # and artifacts are served as always.
    for service in ("CANCELLATION_CLEANUP", "CLEANUP_RECONCILER", "EVENT_PERSISTER", "FOREMAN", "LATE_RUNS",
                    "PAUSE_EXPIRATIONS", "REPOSSESSOR", "SCHEDULER", "TRIGGERS"):  # fmt: skip
        env[f"PREFECT_SERVER_SERVICES_{service}_ENABLED"] = "false"
    env["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] = "[]"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/api"
    with open(home / "server.log", "w") as log:  # the server keeps its own handle
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, {**env, "PREFECT_API_URL": url}
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            pytest.fail("prefect server exited:\n" + (home / "server.log").read_text()[-2000:])
        time.sleep(0.5)
    process.kill()
    pytest.fail("prefect server did not start within 180 s")


def _stop(pid: int) -> None:
    """Stop the process `pid` (SIGTERM; SIGKILL if it is still there after 30 s), a child of ours or not."""
    import psutil

    try:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(timeout=30)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        process.kill()
