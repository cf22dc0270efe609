"""The distill stage against a real loopback teacher: passes, faults, kills, secrets, budget, versions."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data_contracts import ArtifactRef, ArtifactStore
from tasks.distill import stage as distill_stage
from tasks.distill.config import DistillConfig, TeacherConfig
from tasks.distill.stage import STANDIN_MODEL, DistillIncomplete, distill_version
from tasks.judge.protocol import filter_verdict_matches
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.stage import pull_preferences, pull_version
from tasks.split.config import SplitConfig
from tasks.split.stage import split_pairs, split_versions
from tasks.stage import StageResult
from tasks.standins.teacher import Faults, StandinTeacher

FAKE_KEY = "sk-rmr1-FAKE-secret-7f3c9a1e5b"


def make_distill_set(store: ArtifactStore, rows: int, fraction: float = 0.5) -> ArtifactRef:
    pull_config = PullConfig(sources=(SourceConfig(name="syn", adapter="synthetic", rows=rows, seed=11),))
    pairs = pull_preferences(pull_config, store, version=pull_version(pull_config)).outputs["preference_pairs"]
    split_config = SplitConfig(distill_fraction=fraction)
    split = split_pairs(pairs, split_config, store, versions=split_versions(split_config, pairs))
    return split.outputs["distill_set"]


def distill_traces(
    distill_set: ArtifactRef, config: DistillConfig, store: ArtifactStore, **options: Any
) -> StageResult:
    """The stage as the plan runs it: the version it publishes computed from the config and the distill set."""
    return distill_stage.distill_traces(
        distill_set, config, store, version=distill_version(config, distill_set), **options
    )


def fast_teacher(base_url: str | None, **changes: Any) -> TeacherConfig:
    settings: dict[str, Any] = {
        "base_url": base_url, "model": "teacher-under-test", "max_tokens": 512, "max_in_flight": 16,
        "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 0.5, "max_retries": 8,
    }  # fmt: skip
    return TeacherConfig(**{**settings, **changes})


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def teacher(tmp_path: Path) -> Iterator[StandinTeacher]:
    with StandinTeacher(log_path=str(tmp_path / "server.jsonl")) as server:
        yield server


def traces(store: ArtifactStore, result: Any) -> list[dict[str, Any]]:
    return store.read_table(result.outputs["teacher_traces"]).to_pylist()


def test_two_passes_record_pass_and_teacher_and_pass2_only_sees_what_pass1_got_wrong(
    tmp_path: Path, teacher: StandinTeacher, api_key: str
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    distill_set = make_distill_set(store, 120)
    config = DistillConfig(
        teacher=fast_teacher(teacher.base_url), second_teacher=fast_teacher(teacher.base_url, model="second-teacher")
    )
    result = distill_traces(distill_set, config, store)
    rows = traces(store, result)
    pass1 = [r for r in rows if r["teacher_pass"] == 1]
    pass2 = [r for r in rows if r["teacher_pass"] == 2]
    wrong = [r["pair_id"] for r in pass1 if not filter_verdict_matches(r["response"], r["winner"])]
    assert len(pass1) == 60 and all(r["status"] == "ok" for r in rows)
    assert 0 < len(wrong) < 60  # the stand-in prefers the longer answer; ~30% of chosen answers are shorter
    assert [r["pair_id"] for r in pass2] == wrong
    assert {r["teacher_model"] for r in pass1} == {"teacher-under-test"}
    assert {r["teacher_model"] for r in pass2} == {"second-teacher"}
    assert all("The correct verdict is" in r["user"] for r in pass2)
    assert all(filter_verdict_matches(r["response"], r["winner"]) for r in pass2)  # the hint was followed
    assert result.stats["totals"]["pass1_wrong"] == len(wrong)
    assert {p["pass"]: p["requests"] for p in result.stats["by_pass"]} == {1: 60, 2: len(wrong)}


def test_faults_leave_every_pair_accounted_for_without_duplicates_or_repeated_answers(
    tmp_path: Path, api_key: str
) -> None:
    faults = Faults(
        rate_429=0.3, retry_after_s=0.05, rate_500=0.1, rate_malformed=0.05, rate_hang=0.02, hang_s=5, seed=3
    )
    store = ArtifactStore(tmp_path / "artifacts")
    distill_set = make_distill_set(store, 400)
    with StandinTeacher(faults=faults) as server:
        result = distill_traces(distill_set, DistillConfig(teacher=fast_teacher(server.base_url)), store)
        log = server.request_log()
    rows = traces(store, result)
    pair_ids = store.read_table(distill_set).column("pair_id").to_pylist()
    assert sorted(r["pair_id"] for r in rows) == sorted(pair_ids)  # every pair, once
    assert all(r["status"] == "ok" or r["failure_reason"] for r in rows)
    answered = Counter(entry["request_id"] for entry in log if entry["outcome"] in ("ok", "malformed", "truncated"))
    assert max(answered.values()) == 1  # no answered request was sent again
    outcomes = Counter(entry["outcome"] for entry in log)
    assert outcomes["429"] > 0 and outcomes["500"] > 0 and outcomes["hang"] > 0 and outcomes["malformed"] > 0
    malformed = [r for r in rows if r["status"] == "ok" and "<answer>" not in (r["response"] or "")]
    assert malformed  # answered at the HTTP level; the filter stage rejects them
    assert result.stats["totals"]["retries"] > 0


def test_killed_distill_resumes_without_resending_answered_requests(tmp_path: Path) -> None:
    log_path = tmp_path / "server.jsonl"
    config = {"rows": 200, "max_in_flight": 8}
    with StandinTeacher(latency_s=0.05, log_path=str(log_path)) as server:
        env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "TQDM_DISABLE": "1"}
        command = [sys.executable, "-m", "tests.helpers.distill_worker", str(tmp_path / "killed"), server.base_url]
        rng = random.Random(5)
        kills = 0
        for _ in range(3):
            worker = subprocess.Popen([*command, json.dumps(config)], env=env, stdout=subprocess.PIPE, text=True)
            assert worker.stdout is not None and worker.stdout.readline().strip() == "distilling"
            time.sleep(rng.uniform(0.3, 1.2))
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                kills += 1
            worker.wait()
        finished = subprocess.run([*command, json.dumps(config)], env=env, capture_output=True, text=True)
        assert finished.returncode == 0, finished.stderr
        uninterrupted = subprocess.run(
            [*command[:-2], str(tmp_path / "clean"), server.base_url, json.dumps(config)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert kills >= 2
    resumed_rows = json.loads(finished.stdout.strip().splitlines()[-1])
    clean_rows = json.loads(uninterrupted.stdout.strip().splitlines()[-1])
    assert resumed_rows == clean_rows  # same rows as a run never interrupted
    # Before the clean run, each request may have been answered once, plus once more only if it was in
    # flight when a kill hit (answered by the server, never cached by the client).
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    before_clean = entries[: len(entries) - len({row[1] for row in clean_rows})]
    answered = Counter(e["request_id"] for e in before_clean if e["outcome"] == "ok")
    assert sum(answered.values()) == len(before_clean)
    assert set(answered) == {row[1] for row in resumed_rows}
    assert sum(n - 1 for n in answered.values()) <= kills * config["max_in_flight"]


def test_the_api_key_is_nowhere_in_artifacts_caches_or_logs(
    tmp_path: Path, teacher: StandinTeacher, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    store = ArtifactStore(tmp_path / "artifacts")
    result = distill_traces(make_distill_set(store, 40), DistillConfig(teacher=fast_teacher(teacher.base_url)), store)
    assert traces(store, result)
    assert all(entry["auth"] for entry in teacher.request_log())  # the key was sent...
    leaks = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []  # ...and written nowhere
    assert FAKE_KEY not in caplog.text
    assert FAKE_KEY not in (tmp_path / "server.jsonl").read_text()


def test_budget_stops_sending_says_so_and_a_rerun_resumes_from_the_cache(
    tmp_path: Path, teacher: StandinTeacher, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    distill_set = make_distill_set(store, 120)
    priced = fast_teacher(teacher.base_url, price_input_per_mtok=100.0, price_output_per_mtok=100.0, max_in_flight=4)
    with pytest.raises(DistillIncomplete, match=r"teacher requests failed \(\{'budget_exhausted': \d+\}\)"):
        distill_traces(distill_set, DistillConfig(teacher=priced, budget_usd=0.5), store)
    assert "budget" in caplog.text.lower()
    assert store.list("teacher_traces") == []  # nothing half-done is published
    answered = len(teacher.request_log())
    assert 0 < answered < 60
    result = distill_traces(distill_set, DistillConfig(teacher=priced, budget_usd=100.0), store)
    assert all(r["status"] == "ok" for r in traces(store, result))
    assert len(teacher.request_log()) - answered == 60 - answered  # the answered ones came from the cache
    assert result.stats["totals"]["cached"] == answered


def test_an_unreachable_teacher_fails_the_stage_without_publishing(tmp_path: Path, api_key: str) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    distill_set = make_distill_set(store, 20)
    dead = fast_teacher("http://127.0.0.1:9/v1", max_retries=1)  # the discard port: connection refused
    with pytest.raises(DistillIncomplete, match=r"10 of 10 teacher requests failed \(\{'connection': 10\}\)"):
        distill_traces(distill_set, DistillConfig(teacher=dead), store)
    assert store.list("teacher_traces") == []


def test_a_few_failures_are_published_as_failed_rows_and_a_new_attempt_retries_only_them(
    tmp_path: Path, api_key: str
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    distill_set = make_distill_set(store, 120)
    with StandinTeacher(faults=Faults(rate_500=0.5, seed=1)) as flaky:
        config = DistillConfig(teacher=fast_teacher(flaky.base_url, max_retries=1))
        first = distill_traces(distill_set, config, store, max_failure_rate=0.5)
        failed = [r for r in traces(store, first) if r["status"] == "failed"]
        assert failed and all(r["failure_reason"].startswith("server_error: 500") for r in failed)
    with StandinTeacher() as healthy:
        retry_config = DistillConfig(teacher=fast_teacher(healthy.base_url), attempt=1)
        retry = distill_traces(distill_set, retry_config, store)
        assert len(healthy.request_log()) == len(failed)  # only the failed requests are sent again
    assert all(r["status"] == "ok" for r in traces(store, retry))


def test_version_follows_what_is_asked_not_how_fast_and_the_standin_never_poses_as_the_teacher() -> None:
    ref = ArtifactRef("distill_set", "d1", "/nowhere")
    base = DistillConfig(teacher=fast_teacher("http://teacher/v1"))
    version = distill_version(base, ref)
    faster = dataclasses.replace(base.teacher, max_in_flight=256, requests_per_minute=600, base_url="http://other/v1")
    assert distill_version(dataclasses.replace(base, teacher=faster, shard_rows=7), ref) == version
    assert (
        distill_version(dataclasses.replace(base, teacher=fast_teacher("http://t/v1", max_tokens=99)), ref) != version
    )
    assert distill_version(dataclasses.replace(base, template="reasoning-v1"), ref) != version
    assert distill_version(dataclasses.replace(base, attempt=1), ref) != version
    assert distill_version(base, ArtifactRef("distill_set", "d2", "/nowhere")) != version
    standin = DistillConfig(teacher=fast_teacher(None))  # same model name, but answered by the stand-in
    assert distill_version(standin, ref) != distill_version(DistillConfig(teacher=fast_teacher("http://x/v1")), ref)


def test_no_endpoint_starts_the_standin_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    store = ArtifactStore(tmp_path / "artifacts")
    result = distill_traces(make_distill_set(store, 40), DistillConfig(teacher=fast_teacher(None)), store)
    assert {r["teacher_model"] for r in traces(store, result)} == {STANDIN_MODEL}
    assert "STAND-IN teacher" in caplog.text


def test_batch_mode_answers_every_pair_through_the_batch_api(tmp_path: Path, api_key: str) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    distill_set = make_distill_set(store, 60)
    with StandinTeacher(batch_delay_s=0.2) as server:
        config = DistillConfig(teacher=fast_teacher(server.base_url), batch_mode=True, batch_poll_s=0.05)
        result = distill_traces(distill_set, config, store)
        log = server.request_log()
        # Streamed and batched answers share the request cache: the same recipe streamed sends nothing.
        streamed_config = dataclasses.replace(config, batch_mode=False)
        streamed = distill_traces(distill_set, streamed_config, store)
        assert len(server.request_log()) == len(log)
    rows = traces(store, result)
    assert len(rows) == 30 and all(r["status"] == "ok" for r in rows)
    assert Counter(entry["source"] for entry in log) == {"batch": 30}
    assert streamed.stats["totals"]["cached"] == 30 and streamed.stats["totals"]["sent"] == 0
    # batch_mode does not change what is asked, so not the version either: a plan would skip it.
    assert distill_version(streamed_config, distill_set) == result.outputs["teacher_traces"].version
    assert streamed.outputs == result.outputs and traces(store, streamed) == rows


def test_a_killed_batch_run_collects_its_batch_instead_of_resubmitting(tmp_path: Path) -> None:
    with StandinTeacher(batch_delay_s=3.0) as server:
        env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "TQDM_DISABLE": "1"}
        command = [sys.executable, "-m", "tests.helpers.distill_worker", str(tmp_path), server.base_url]
        settings = json.dumps({"rows": 40, "max_in_flight": 8, "batch": True})
        worker = subprocess.Popen([*command, settings], env=env, stdout=subprocess.PIPE, text=True)
        state_folder = tmp_path / "artifacts" / ".request_cache" / "batches"
        deadline = time.monotonic() + 60
        while not any(state_folder.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(state_folder.glob("*.json")), "the batch id was not recorded before polling"
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        finished = subprocess.run([*command, settings], env=env, capture_output=True, text=True)
        log = server.request_log()
    assert finished.returncode == 0, finished.stderr
    rows = json.loads(finished.stdout.strip().splitlines()[-1])
    assert len(rows) == 20 and all(row[3] == "ok" for row in rows)
    assert Counter(entry["source"] for entry in log) == {"batch": 20}  # one batch, never resubmitted
    assert not any(state_folder.glob("*.json"))  # collected, so forgotten
