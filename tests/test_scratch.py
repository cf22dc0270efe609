"""The lock on a stage version's scratch folder: one run at a time, a clear message for the second, and a lock
left by a killed run taken over by exactly one taker.

Runs are real child processes entering the scratch through `ArtifactStore.scratch`, as the training and
evaluate stages do; they print a line at each milestone so the parent acts at that moment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from data_contracts import ArtifactStore
from data_contracts.kinds import EVAL_PREDICTIONS
from data_contracts.scratch import ScratchBusy, lock_path, locked_scratch
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.stage import evaluate_judge, evaluate_versions
from tasks.judge.config import JudgeConfig
from tests.conftest import ROOT

CHILD_TIMEOUT_S = 30.0
SYNTHETIC = tuple(BenchmarkConfig(name=n, path="synthetic") for n in ("rewardbench", "rm_bench", "rmb"))

# A run of stage `sft` version `v1`: take the scratch (waiting up to argv[2] s), append its name to
# `runs.log` inside it, print `held`, hold until the file argv[3] exists, then leave.
RUN = """
import os, sys, time
from data_contracts import ArtifactStore
from data_contracts.errors import UserError
store = ArtifactStore(sys.argv[1])
try:
    with store.scratch("sft", "v1", wait_s=float(sys.argv[2])) as scratch:
        with open(os.path.join(scratch, "runs.log"), "a") as log:
            log.write(f"{os.getpid()} in\\n")
        print("held", flush=True)
        while not os.path.exists(sys.argv[3]):
            time.sleep(0.02)
        with open(os.path.join(scratch, "runs.log"), "a") as log:
            log.write(f"{os.getpid()} out\\n")
except UserError as error:
    print(f"busy: {error}", flush=True)
    sys.exit(1)
"""


def _start(root: Path, wait_s: float, release: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(root), str(wait_s), str(release)], stdout=subprocess.PIPE, text=True, env=env
    )


def _line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline().strip()


def test_a_second_run_of_one_version_fails_naming_the_holder_and_the_folder(tmp_path: Path) -> None:
    root, release = tmp_path / "artifacts", tmp_path / "release"
    first = _start(root, 0, release)
    try:
        assert _line(first) == "held"
        second = _start(root, 0, release)
        message = _line(second)
        assert second.wait(CHILD_TIMEOUT_S) == 1
        scratch = ArtifactStore(root).work_dir("sft", "v1")
        assert message.startswith(f"busy: the scratch folder {scratch} is in use by pid {first.pid} on ")
        assert socket.gethostname() in message and " since 20" in message and "RMR1_SCRATCH_WAIT" in message
    finally:
        release.touch()
        assert first.wait(CHILD_TIMEOUT_S) == 0
    assert Path(scratch, "runs.log").read_text() == f"{first.pid} in\n{first.pid} out\n"  # the second never wrote
    assert not os.path.exists(lock_path(scratch))


def test_a_second_run_that_waits_enters_after_the_first_leaves(tmp_path: Path) -> None:
    root, release = tmp_path / "artifacts", tmp_path / "release"
    first = _start(root, 0, release)
    assert _line(first) == "held"
    second = _start(root, CHILD_TIMEOUT_S, tmp_path / "release-second")
    time.sleep(0.5)  # the second is waiting now (it cannot print `held` while the first holds the lock)
    release.touch()
    assert first.wait(CHILD_TIMEOUT_S) == 0
    assert _line(second) == "held"
    (tmp_path / "release-second").touch()
    assert second.wait(CHILD_TIMEOUT_S) == 0
    log = Path(ArtifactStore(root).work_dir("sft", "v1"), "runs.log").read_text().split()
    assert log == [str(first.pid), "in", str(first.pid), "out", str(second.pid), "in", str(second.pid), "out"]


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    killed = _start(root, 0, tmp_path / "never")
    assert _line(killed) == "held"
    killed.send_signal(signal.SIGKILL)
    killed.wait(CHILD_TIMEOUT_S)
    store = ArtifactStore(root)
    lock = lock_path(store.work_dir("sft", "v1"))
    assert json.loads(Path(lock).read_text())["pid"] == killed.pid  # left behind
    with store.scratch("sft", "v1", wait_s=0) as scratch:
        assert json.loads(Path(lock).read_text())["pid"] == os.getpid()
        assert Path(scratch, "runs.log").read_text() == f"{killed.pid} in\n"  # its resumable work is still there
    assert not os.path.exists(lock)


def _stale_lock(scratch: Path) -> None:
    """The lock of a run on this host whose process has exited."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    holder = {"pid": gone.pid, "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00", "token": "x"}
    Path(lock_path(str(scratch))).write_text(json.dumps(holder))


def test_threads_racing_for_a_stale_lock_exactly_one_wins(tmp_path: Path) -> None:
    scratch = tmp_path / ".work" / "rl-v2"
    scratch.mkdir(parents=True)
    takers, rounds = 16, 10

    def race() -> list[str]:
        start, tried = threading.Barrier(takers), threading.Barrier(takers)
        results: list[str] = []

        def take() -> None:
            start.wait()
            try:
                with locked_scratch(str(scratch), wait_s=0):
                    results.append("won")
                    tried.wait(CHILD_TIMEOUT_S)  # hold until every taker has tried
            except ScratchBusy as error:
                results.append("busy" if f"pid {os.getpid()} on " in str(error) else f"unexpected: {error}")
                tried.wait(CHILD_TIMEOUT_S)

        threads = [threading.Thread(target=take) for _ in range(takers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CHILD_TIMEOUT_S)
        return sorted(results)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the race windows really open
    try:
        for _ in range(rounds):
            _stale_lock(scratch)
            assert race() == ["busy"] * (takers - 1) + ["won"]
            assert not os.path.exists(lock_path(str(scratch)))
    finally:
        sys.setswitchinterval(switch)


def test_a_lock_from_another_host_is_stale_only_once_its_heartbeat_is_old(tmp_path: Path) -> None:
    scratch = tmp_path / "evaluate-v3"
    lock = Path(lock_path(str(scratch)))
    lock.write_text(json.dumps({"pid": 1, "host": "gpu-node-7", "since": "2026-01-01T00:00:00+00:00", "token": "y"}))
    busy = pytest.raises(ScratchBusy, match="in use by pid 1 on gpu-node-7 since 2026-01-01")
    with busy, locked_scratch(str(scratch), wait_s=0, stale_after_s=60):
        pass
    old = time.time() - 120
    os.utime(lock, (old, old))
    with locked_scratch(str(scratch), wait_s=0, stale_after_s=60):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()


def test_the_lock_is_released_when_the_stage_fails(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(RuntimeError, match="training diverged"), store.scratch("sft", "v4", wait_s=0):
        raise RuntimeError("training diverged")
    assert not os.path.exists(lock_path(store.work_dir("sft", "v4")))
    with store.scratch("sft", "v4", wait_s=0) as scratch:  # the next run enters at once
        assert os.path.isdir(scratch)


def test_the_nodes_of_one_multi_node_run_share_the_folder_each_under_its_own_lock(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    with store.scratch("rl", "v5", wait_s=0) as first, store.scratch("rl", "v5", wait_s=0, node=1) as second:
        assert first == second
        with pytest.raises(ScratchBusy), store.scratch("rl", "v5", wait_s=0, node=1):
            pass


def test_the_evaluate_stage_enters_its_scratch_under_the_lock(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    config = EvaluateConfig(judge=JudgeConfig(backend="length", allow_tie=True), benchmarks=SYNTHETIC, chunk_size=64)
    versions = evaluate_versions(config, None)
    with store.scratch("evaluate", versions[EVAL_PREDICTIONS.kind], wait_s=0) as scratch:  # another run holds it
        with pytest.raises(ScratchBusy, match=f"the scratch folder {scratch} is in use by pid {os.getpid()} on "):
            evaluate_judge(config, store, None, versions=versions)
        assert store.get(EVAL_PREDICTIONS.kind, versions[EVAL_PREDICTIONS.kind]) is None
    result = evaluate_judge(config, store, None, versions=versions)  # released: the next run goes through
    assert result.outputs[EVAL_PREDICTIONS.kind].version == versions[EVAL_PREDICTIONS.kind]
    assert not os.path.exists(scratch) and not os.path.exists(lock_path(scratch))


def test_a_run_that_waited_while_another_published_skips_and_redoes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run B of an evaluate step waits for the scratch lock (RMR1_SCRATCH_WAIT) held by run A; A publishes the
    versions and leaves. B then finds them published: the step is reported skipped (no result), nothing is
    judged again and what A published stays as A wrote it."""
    import shutil

    from flows.plan import execute, make_plan
    from flows.recipe import load_recipe

    benchmarks = "evaluate.benchmarks=[{name: rewardbench, path: synthetic}, {name: rm_bench, path: synthetic}]"
    recipe = load_recipe(ROOT / "recipes" / "eval-length-baseline.yaml", [benchmarks])
    store = ArtifactStore(tmp_path / "artifacts")
    plan = make_plan(recipe, store)
    [step] = [s for s in plan.steps if s.runs]
    assert step.name == "evaluate"
    monkeypatch.setenv("RMR1_SCRATCH_WAIT", "60")
    heard: list[object] = []
    b = threading.Thread(target=lambda: execute(plan, on_step=lambda s, result: heard.append(result)))
    with store.scratch("evaluate", step.versions[EVAL_PREDICTIONS.kind], wait_s=0):  # run A holds the scratch
        b.start()
        time.sleep(0.5)  # B is waiting for the lock now
        assert heard == [] and b.is_alive()
        elsewhere = ArtifactStore(tmp_path / "elsewhere")  # A's work, published under the same versions
        execute(make_plan(recipe, elsewhere))
        for kind, version in step.versions.items():
            shutil.copytree(elsewhere.folder(kind, version), store.folder(kind, version))
        published = {k: store.manifest(store.require(k, v)) for k, v in step.versions.items()}
    b.join(CHILD_TIMEOUT_S)
    assert heard == [None]  # skipped: the runner heard of no result
    assert {k: store.manifest(store.require(k, v)) for k, v in step.versions.items()} == published
    assert not os.path.exists(os.path.join(store.root, "evaluate"))  # nothing else written beside them
