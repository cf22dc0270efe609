"""The teacher client: request ids, back-off, the rate limiter, the durable cache, and sending requests
against the stand-in teacher (a real HTTP server on 127.0.0.1) with faults injected."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tasks.distill.config import TeacherConfig
from tasks.llm.cache import CachedAnswer, RequestCache
from tasks.llm.client import (
    RATE_SAFETY,
    MissingApiKeyError,
    Outcome,
    RateLimiter,
    RunStats,
    TeacherRequest,
    _classify,
    backoff_delay,
    parse_retry_after,
    resolve_api_key,
    send_requests,
)

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-test-RECOGNISABLE-fake-key-0123456789"


def chat(question: str) -> tuple[dict[str, str], ...]:
    return ({"role": "system", "content": "You are a judge."}, {"role": "user", "content": question})


def answer(request_id: str, text: str = "an answer") -> CachedAnswer:
    return CachedAnswer(request_id, text, "stop", 10, 20, "teacher", time.time())


# --- request ids -------------------------------------------------------------------------------------


def test_request_id_is_the_sha256_of_the_canonical_body():
    request = TeacherRequest(messages=chat("Which is better?"), model="m", max_tokens=64, temperature=0.6)
    canonical = json.dumps(request.body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert request.request_id == hashlib.sha256(canonical.encode()).hexdigest()
    assert len(request.request_id) == 64


def test_request_id_ignores_key_order_and_depends_on_every_sent_parameter():
    base = TeacherRequest(messages=chat("q"), model="m", max_tokens=64)
    reordered = TeacherRequest(
        messages=tuple({"content": m["content"], "role": m["role"]} for m in base.messages), model="m", max_tokens=64
    )
    assert reordered.request_id == base.request_id
    variants = [
        TeacherRequest(messages=chat("q2"), model="m", max_tokens=64),
        TeacherRequest(messages=chat("q"), model="m2", max_tokens=64),
        TeacherRequest(messages=chat("q"), model="m", max_tokens=65),
        TeacherRequest(messages=chat("q"), model="m", max_tokens=64, temperature=0.0),
        TeacherRequest(messages=chat("q"), model="m", max_tokens=64, top_p=0.9),
    ]
    ids = {base.request_id} | {variant.request_id for variant in variants}
    assert len(ids) == 1 + len(variants)


def test_body_is_exactly_the_create_kwargs_without_none_parameters():
    request = TeacherRequest(messages=chat("q"), model="m", max_tokens=8, top_p=0.5)
    assert request.body() == {"model": "m", "messages": [dict(m) for m in chat("q")], "max_tokens": 8, "top_p": 0.5}
    assert "temperature" not in request.body()


# --- back-off and Retry-After ------------------------------------------------------------------------


class TopOfRange(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_doubles_from_the_initial_delay_and_is_capped():
    cfg = TeacherConfig(backoff_initial_s=1.0, backoff_max_s=10.0)
    ceilings = [backoff_delay(retry, cfg, rng=TopOfRange()) for retry in range(7)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_backoff_has_full_jitter_below_the_ceiling():
    cfg = TeacherConfig(backoff_initial_s=1.0, backoff_max_s=60.0)
    delays = [backoff_delay(3, cfg, rng=random.Random(seed)) for seed in range(300)]
    assert all(0.0 <= delay <= 8.0 for delay in delays)
    assert min(delays) < 1.0 and max(delays) > 7.0  # spread over the whole range, not clustered


def test_backoff_never_retries_before_retry_after_even_past_the_cap():
    cfg = TeacherConfig(backoff_initial_s=1.0, backoff_max_s=5.0)
    assert all(backoff_delay(0, cfg, retry_after=3.0, rng=random.Random(s)) >= 3.0 for s in range(50))
    assert backoff_delay(0, cfg, retry_after=30.0, rng=random.Random(0)) == 30.0


def test_parse_retry_after_reads_seconds_milliseconds_and_http_dates():
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    http_date = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": http_date}, now=now) == pytest.approx(30.0, abs=1.0)
    past = format_datetime(datetime.fromtimestamp(now, UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after({"retry-after": "nan"}) is None


# --- the rate limiter --------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when told; `sleep` records when each sleeper would wake."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wakes: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.wakes.append(self.now + seconds)
        await asyncio.sleep(0)


def test_limiter_spaces_requests_evenly_without_a_burst():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock, sleep=clock.sleep)

    async def main() -> None:
        await asyncio.gather(*(limiter.acquire(100) for _ in range(10)))

    asyncio.run(main())
    interval = 0.5 / RATE_SAFETY
    assert len(clock.wakes) == 9  # the first goes at once, every other one waits its turn
    assert clock.wakes == pytest.approx([clock.now + interval * k for k in range(1, 10)])


def test_limiter_never_lets_a_sliding_minute_exceed_the_limit():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(400):
        starts.append(clock.now + limiter.reserve(1))
        clock.now += random.Random(len(starts)).uniform(0, 0.6)  # callers arrive irregularly, sometimes idle
    for first in range(len(starts)):
        in_window = sum(1 for t in starts[first:] if t < starts[first] + 60.0)
        assert in_window <= 120


def test_limiter_charges_tokens_per_minute_for_prompt_and_max_tokens():
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock, sleep=clock.sleep)
    assert limiter.reserve(3000) == 0.0  # half a minute's tokens: the next one waits ~30 s
    assert limiter.reserve(600) == pytest.approx(30.0 / RATE_SAFETY)
    assert limiter.reserve(600) == pytest.approx(36.0 / RATE_SAFETY)
    request = TeacherRequest(messages=chat("x" * 400), model="m", max_tokens=1000)
    assert 1000 + 100 <= request.estimated_tokens() <= 1000 + 130


def test_limiter_takes_the_stricter_of_both_limits():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=60_000, clock=clock, sleep=clock.sleep)
    assert limiter.reserve(10) == 0.0
    assert limiter.reserve(10) == pytest.approx(1.0 / RATE_SAFETY)  # requests bind
    assert limiter.reserve(5000) == pytest.approx(2.0 / RATE_SAFETY)
    assert limiter.reserve(10) == pytest.approx(7.0 / RATE_SAFETY)  # 5,000 tokens took 5 s of the budget


def test_unlimited_limiter_never_waits():
    """Without limits no acquire ever sleeps (its sleep is recorded, not timed: a timed assert flaked under load)."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(None, None, sleep=sleep)

    async def main() -> None:
        await asyncio.gather(*(limiter.acquire(10**9) for _ in range(1000)))

    asyncio.run(main())
    assert limiter.unlimited and slept == []
    limited = RateLimiter(requests_per_minute=600, sleep=sleep)  # the same check sees a limiter that waits
    asyncio.run(limited.acquire(1))
    asyncio.run(limited.acquire(1))
    assert len(slept) == 1 and slept[0] > 0


def test_limiter_holds_its_rate_in_real_time():
    limiter = RateLimiter(requests_per_minute=600)  # one every 0.1 s
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire(1)
        stamps.append(time.perf_counter())

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(11)))

    asyncio.run(main())
    stamps.sort()
    span = stamps[-1] - stamps[0]
    assert 1.0 / RATE_SAFETY - 0.01 <= span <= 1.0 / RATE_SAFETY + 0.25


# --- the cache ---------------------------------------------------------------------------------------


def test_cache_returns_stored_answers_and_survives_reopening(tmp_path):
    path = tmp_path / "nested" / "cache.sqlite"
    cache = RequestCache(str(path))
    stored = [answer(f"id-{i}", f"text {i}") for i in range(1200)]  # more than one lookup chunk
    for item in stored:
        cache.put(item)
    assert len(cache) == 1200
    found = cache.get_many([item.request_id for item in stored] + ["missing"])
    assert found == {item.request_id: item for item in stored}
    cache.put(answer("id-0", "a later answer"))  # the first answer stored for an id is kept
    cache.close()
    reopened = RequestCache(str(path))
    assert len(reopened) == 1200
    assert reopened.get_many(["id-0"])["id-0"].text == "text 0"
    assert "id-5" in reopened and "nope" not in reopened


def test_cache_gives_each_thread_its_own_connection(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    cache = RequestCache(str(tmp_path / "cache.sqlite"))

    def write(start: int) -> None:
        for i in range(start, start + 100):
            cache.put(answer(f"id-{i}"))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, [0, 100, 200, 300]))
    assert len(cache) == 400


WRITER = textwrap.dedent(
    """
    import sys, time
    from tasks.llm.cache import CachedAnswer, RequestCache
    cache = RequestCache(sys.argv[1])
    prefix, count = sys.argv[2], int(sys.argv[3])
    for i in range(count):
        cache.put(CachedAnswer(f"{prefix}-{i}", "text", "stop", 1, 2, "m", time.time()))
        print(f"{prefix}-{i}", flush=True)
    if sys.argv[4] == "hang":
        time.sleep(120)
    """
)


def start_writer(path: Path, prefix: str, count: int, then: str = "exit") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), prefix, str(count), then],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_cache_is_shared_by_processes_writing_at_once(tmp_path):
    path = tmp_path / "cache.sqlite"
    writers = [start_writer(path, f"p{n}", 300) for n in range(3)]
    cache = RequestCache(str(path))
    for writer in writers:
        writer.communicate(timeout=120)
        assert writer.returncode == 0
    assert len(cache) == 900
    assert len(cache.get_many(f"p{n}-{i}" for n in range(3) for i in range(300))) == 900


def test_answer_put_just_before_sigkill_is_not_lost(tmp_path):
    path = tmp_path / "cache.sqlite"
    writer = start_writer(path, "killed", 25, then="hang")
    try:
        last = ""
        for _ in range(25):
            last = writer.stdout.readline().strip()  # printed right after put() returned
        assert last == "killed-24"
        os.kill(writer.pid, signal.SIGKILL)  # no close(), no checkpoint, nothing flushed on exit
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    cache = RequestCache(str(path))
    assert len(cache) == 25
    assert cache.get_many(["killed-24"])["killed-24"].text == "text"


# --- the API key -------------------------------------------------------------------------------------


def test_api_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", FAKE_KEY)
    assert resolve_api_key(TeacherConfig(api_key_env="MY_TEACHER_KEY")) == FAKE_KEY


def test_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("MY_TEACHER_KEY", raising=False)
    with pytest.raises(MissingApiKeyError, match="MY_TEACHER_KEY"):
        resolve_api_key(TeacherConfig(api_key_env="MY_TEACHER_KEY"))


def test_api_key_from_a_prefect_secret_block_wins_over_the_variable(monkeypatch):
    from prefect.blocks.system import Secret

    class FakeSecret:
        def get(self) -> str:
            return FAKE_KEY

    def load(name: str, *args: object, **kwargs: object) -> FakeSecret:
        if name != "teacher-key":
            raise ValueError(f"Unable to find block document named {name}")
        return FakeSecret()

    monkeypatch.setattr(Secret, "load", load)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    assert resolve_api_key(TeacherConfig(api_key_secret_block="teacher-key")) == FAKE_KEY
    with pytest.raises(MissingApiKeyError, match="'absent-block'") as raised:
        resolve_api_key(TeacherConfig(api_key_secret_block="absent-block"))
    assert "sk-other" not in str(raised.value)


# --- statistics --------------------------------------------------------------------------------------


def test_run_stats_throughput_counts_only_answers_from_the_teacher():
    stats = RunStats(requests=10, ok=7, cached=2, retries=4, prompt_tokens=100, completion_tokens=50, wall_s=2.0)
    assert stats.sent_ok == 5 and stats.throughput() == 2.5


def test_outcome_failure_category_is_the_reason_prefix():
    failed = Outcome("x", "failed", None, None, 0, 0, 0.0, 1.0, 7, False, "rate_limited: 429 after 7 attempts")
    assert failed.failure_category == "rate_limited"
    assert math.isclose(failed.latency_s, 1.0)


# --- against the stand-in teacher (a real HTTP server on 127.0.0.1) ----------------------------------

standin = pytest.importorskip("tasks.standins.teacher")
Faults, StandinTeacher = standin.Faults, standin.StandinTeacher


@pytest.fixture
def start_teacher():
    """Start stand-in teachers for one test; all are stopped at its end."""
    started: list[StandinTeacher] = []

    def start(latency_s: float = 0.01, faults: Faults | None = None, **kwargs: object) -> tuple[StandinTeacher, str]:
        teacher = StandinTeacher(latency_s, faults or Faults(), **kwargs)
        base_url = teacher.start()
        started.append(teacher)
        return teacher, base_url

    yield start
    for teacher in started:
        teacher.stop()


def fast_cfg(base_url: str, **overrides: object) -> TeacherConfig:
    """Short back-offs and timeouts, so fault tests take seconds."""
    settings: dict[str, object] = {
        "base_url": base_url,
        "model": "standin",
        "max_tokens": 512,
        "max_in_flight": 8,
        "max_retries": 6,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 5.0,
    }
    return TeacherConfig(**(settings | overrides))


def judge_requests(count: int, tag: str = "q", cfg: TeacherConfig | None = None) -> list[TeacherRequest]:
    """Pairwise judge prompts in the RM-R1 layout; answer B is longer for odd i."""
    requests = []
    for i in range(count):
        a, b = f"answer A to {tag}{i}", f"answer B to {tag}{i}" + " with more detail" * (i % 2)
        user = (
            f"[Client Question]\n{tag} question {i}\n\n[The Start of Chatbot A's Response]\n{a}\n"
            f"[The End of Chatbot A's Response]\n\n[The Start of Chatbot B's Response]\n{b}\n"
            "[The End of Chatbot B's Response]"
        )
        messages = ({"role": "system", "content": "You are a fair judge."}, {"role": "user", "content": user})
        requests.append(TeacherRequest(messages, model="standin", max_tokens=cfg.max_tokens if cfg else 512))
    return requests


def send(requests, cfg, cache, **kwargs):
    return asyncio.run(send_requests(requests, cfg, cache, api_key=FAKE_KEY, **kwargs))


def entries_by_request(log: list[dict]) -> dict[str, list[dict]]:
    by_id: dict[str, list[dict]] = {}
    for entry in sorted(log, key=lambda e: e["t"]):
        by_id.setdefault(entry["request_id"], []).append(entry)
    return by_id


ANSWERED = {"ok", "malformed", "truncated"}  # outcomes the stand-in answers with a 200


def test_every_request_is_answered_in_order_and_cached_before_it_is_reported(start_teacher, tmp_path):
    teacher, url = start_teacher()
    cfg = fast_cfg(url, price_input_per_mtok=3.0, price_output_per_mtok=15.0)
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    requests = judge_requests(40)
    requests.insert(7, requests[3])  # a duplicate is sent once and reported at both places
    cached_when_reported = []

    def on_outcome(outcome: Outcome) -> None:
        cached_when_reported.append(outcome.request_id in cache)

    outcomes, stats = send(requests, cfg, cache, on_outcome=on_outcome)

    assert [o.request_id for o in outcomes] == [r.request_id for r in requests]
    assert all(o.status == "ok" and not o.cached and o.attempts == 1 for o in outcomes)
    assert all("<answer>[[" in o.text and o.finish_reason == "stop" for o in outcomes)
    assert outcomes[1].text.endswith("[[B]]</answer>") and outcomes[0].text.endswith("[[A]]</answer>")
    assert len(cached_when_reported) == 41 and all(cached_when_reported)
    log = teacher.request_log()
    # The server hashes the body it received: our request id is a hash of exactly what was sent.
    assert sorted(e["request_id"] for e in log) == sorted({r.request_id for r in requests})
    assert all(e["outcome"] == "ok" and e["auth"] for e in log)
    assert len(cache) == 40
    assert stats.requests == 41 and stats.ok == 41 and stats.cached == 0 and not stats.failed
    assert stats.prompt_tokens == sum(o.prompt_tokens for o in outcomes) - outcomes[7].prompt_tokens
    assert stats.cost_usd == pytest.approx((stats.prompt_tokens * 3.0 + stats.completion_tokens * 15.0) / 1e6)
    assert stats.throughput() > 0


def test_cached_answers_are_not_sent_again(start_teacher, tmp_path):
    teacher, url = start_teacher()
    cfg = fast_cfg(url)
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    first, _ = send(judge_requests(20), cfg, cache)
    sent_before = len(teacher.request_log())

    # A wider recipe: the 20 old requests again (with a changed concurrency, which is not part of the id)
    # and 10 new ones.
    outcomes, stats = send(judge_requests(30), fast_cfg(url, max_in_flight=3), cache)

    resent = [e["request_id"] for e in teacher.request_log()[sent_before:]]
    assert sorted(resent) == sorted(r.request_id for r in judge_requests(30)[20:])
    assert [o.cached for o in outcomes] == [True] * 20 + [False] * 10
    assert [o.text for o in outcomes[:20]] == [o.text for o in first]
    assert stats.cached == 20 and stats.ok == 30 and stats.sent_ok == 10


def test_429_is_retried_no_sooner_than_retry_after(start_teacher, tmp_path):
    teacher, url = start_teacher(faults=Faults(rate_429=0.3, retry_after_s=0.5, seed=3))
    cfg = fast_cfg(url, max_retries=10)  # back-off alone would retry after ≤ 0.05 s
    outcomes, stats = send(judge_requests(30), cfg, RequestCache(str(tmp_path / "cache.sqlite")))

    assert all(o.status == "ok" for o in outcomes)
    log = teacher.request_log()
    rejected = [e for e in log if e["outcome"] == "429"]
    assert rejected and stats.retries == len(rejected)
    for entries in entries_by_request(log).values():
        for before, after in itertools.pairwise(entries):
            assert before["outcome"] == "429"
            assert after["t"] - before["t"] >= 0.5  # the Retry-After the server asked for
    assert sum(o.attempts for o in outcomes) == len(log)


def test_500_is_retried_until_answered(start_teacher, tmp_path):
    teacher, url = start_teacher(faults=Faults(rate_500=0.3, seed=5))
    outcomes, stats = send(judge_requests(30), fast_cfg(url, max_retries=10), RequestCache(str(tmp_path / "c.db")))

    assert all(o.status == "ok" for o in outcomes)
    errors = sum(e["outcome"] == "500" for e in teacher.request_log())
    assert errors > 0 and stats.retries == errors


def test_a_hanging_request_times_out_and_fails_with_its_reason_after_max_retries(start_teacher, tmp_path):
    teacher, url = start_teacher(faults=Faults(rate_hang=1.0, hang_s=30.0))
    cfg = fast_cfg(url, timeout_s=0.3, max_retries=2)
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    started = time.perf_counter()
    outcomes, stats = send(judge_requests(3), cfg, cache)

    assert time.perf_counter() - started < 5.0
    for outcome in outcomes:
        assert outcome.status == "failed" and outcome.attempts == 3 and outcome.text is None
        assert outcome.failure_reason == "timeout: no answer within 0.3 s after 3 attempts"
    assert stats.failed == {"timeout": 3} and stats.retries == 6 and stats.ok == 0
    assert [len(entries) for entries in entries_by_request(teacher.request_log()).values()] == [3, 3, 3]
    assert len(cache) == 0  # a failure is never cached: the next run tries again


def test_other_client_errors_fail_at_once(start_teacher, tmp_path):
    _, url = start_teacher()
    outcomes, stats = send(judge_requests(2), fast_cfg(url + "/no-such-path"), RequestCache(str(tmp_path / "c.db")))

    assert [o.attempts for o in outcomes] == [1, 1]
    assert all(o.failure_reason.startswith("client_error: 404") for o in outcomes)
    assert stats.retries == 0 and stats.failed == {"client_error": 2}


def test_fault_mix_accounts_for_every_request_and_never_repeats_an_answered_one(start_teacher, tmp_path):
    faults = Faults(
        rate_429=0.3, retry_after_s=0.2, rate_500=0.1, rate_malformed=0.05, rate_hang=0.02, hang_s=30.0,
        rate_truncated=0.05, seed=11,
    )  # fmt: skip
    teacher, url = start_teacher(faults=faults)
    cfg = fast_cfg(url, max_in_flight=32, max_retries=3, timeout_s=0.5)
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    requests = judge_requests(200)
    outcomes, stats = send(requests, cfg, cache)

    assert len(outcomes) == 200 and len({o.request_id for o in outcomes}) == 200
    assert all((o.status == "ok") == (o.failure_reason is None) for o in outcomes)
    assert stats.ok + sum(stats.failed.values()) == 200 and stats.ok > 150
    assert set(stats.failed) <= {"rate_limited", "server_error", "timeout"}
    log = teacher.request_log()
    assert all(sum(e["outcome"] in ANSWERED for e in entries) <= 1 for entries in entries_by_request(log).values())
    # Malformed and truncated answers are answers (the filter judges them), and they are cached.
    assert sum(o.text == standin.MALFORMED_TEXT for o in outcomes) == sum(e["outcome"] == "malformed" for e in log)
    truncated = sum(e["outcome"] == "truncated" for e in log)
    assert truncated > 0 and sum(o.finish_reason == "length" for o in outcomes) == truncated
    assert len(cache) == stats.ok

    # A re-run sends only what failed, and nothing already answered.
    failed_ids = {o.request_id for o in outcomes if o.status == "failed"}
    sent_before = len(log)
    again, _ = send(requests, fast_cfg(url, max_in_flight=32, max_retries=20, timeout_s=0.5), cache)
    resent = {e["request_id"] for e in teacher.request_log()[sent_before:]}
    assert resent == failed_ids
    assert all(o.status == "ok" for o in again)


def test_rate_limit_keeps_the_achieved_rate_just_under_the_limit_without_a_429(start_teacher, tmp_path, monkeypatch):
    # A 15 s sliding window allowing 30 requests is a 120 RPM limit the test can fill in seconds rather
    # than minutes: a client sending faster than 120 RPM for a moment is refused, as by a real provider.
    monkeypatch.setattr(standin, "RATE_WINDOW_S", 15.0)
    teacher, url = start_teacher(requests_per_minute=30)

    # Control, on a twin server: without the client-side limit a burst is refused, so the check has teeth.
    _, twin_url = start_teacher(requests_per_minute=30)
    unlimited = fast_cfg(twin_url, max_in_flight=16, max_retries=0)
    burst, _ = send(judge_requests(40, "burst"), unlimited, RequestCache(str(tmp_path / "burst.sqlite")))
    assert sum(o.failure_category == "rate_limited" for o in burst) > 0

    cfg = fast_cfg(url, max_in_flight=16, requests_per_minute=120)
    outcomes, stats = send(judge_requests(50), cfg, RequestCache(str(tmp_path / "cache.sqlite")))

    log = teacher.request_log()
    assert all(o.status == "ok" for o in outcomes) and stats.retries == 0
    assert [e["outcome"] for e in log] == ["ok"] * 50  # the server never saw us over its limit
    arrivals = sorted(e["t"] for e in log)
    achieved_rpm = 60.0 * (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert 0.95 * 120 <= achieved_rpm <= 120


def test_budget_cap_stops_sending_and_a_rerun_with_more_budget_resumes(start_teacher, tmp_path):
    teacher, url = start_teacher()
    cfg = fast_cfg(url, max_in_flight=1, price_output_per_mtok=10_000.0)  # about $1 per answer
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    requests = judge_requests(20)
    outcomes, stats = send(requests, cfg, cache, budget_usd=5.0)

    answered = [o for o in outcomes if o.status == "ok"]
    costs = [o.cost_usd for o in answered]
    assert 0 < len(answered) < 20 and sum(costs[:-1]) < 5.0 <= sum(costs)
    assert outcomes[: len(answered)] == answered  # one in flight: the first ones were answered
    assert all(o.failure_reason == "budget_exhausted" and o.attempts == 0 for o in outcomes[len(answered) :])
    assert stats.failed == {"budget_exhausted": 20 - len(answered)}
    assert len(teacher.request_log()) == len(answered)  # nothing sent after the budget was reached

    # Already over budget before this run: nothing is sent at all.
    nothing, _ = send(judge_requests(3, "other"), cfg, cache, budget_usd=5.0, spent_usd=stats.cost_usd)
    assert [o.failure_reason for o in nothing] == ["budget_exhausted"] * 3
    assert len(teacher.request_log()) == len(answered)

    resumed, more = send(requests, cfg, cache, budget_usd=100.0, spent_usd=stats.cost_usd)
    assert all(o.status == "ok" for o in resumed) and more.cached == len(answered)
    assert len(teacher.request_log()) == 20  # each request sent exactly once over both runs


def test_concurrency_never_exceeds_max_in_flight(start_teacher, tmp_path):
    teacher, url = start_teacher(latency_s=0.3)
    started = time.perf_counter()
    send(judge_requests(24), fast_cfg(url, max_in_flight=4), RequestCache(str(tmp_path / "cache.sqlite")))
    assert time.perf_counter() - started >= 24 / 4 * 0.3
    arrivals = sorted(e["t"] for e in teacher.request_log())
    # Each worker sends its next request only after the previous answer (0.3 s later), so any 0.29 s
    # holds at most one arrival per worker.
    assert max(sum(1 for t in arrivals if start <= t < start + 0.29) for start in arrivals) <= 4


KILLED_RUN = textwrap.dedent(
    """
    import asyncio, json, sys
    from tasks.llm.cache import RequestCache
    from tasks.llm.client import TeacherRequest, send_requests
    from tasks.distill.config import TeacherConfig
    settings, cache_path, requests_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    bodies = json.load(open(requests_path))
    requests = [TeacherRequest(tuple(b["messages"]), b["model"], b["max_tokens"]) for b in bodies]
    asyncio.run(send_requests(requests, TeacherConfig(**settings), RequestCache(cache_path), api_key="sk-child",
                              on_outcome=lambda o: print(o.request_id, flush=True)))
    """
)


def test_a_killed_run_loses_only_what_was_in_flight(start_teacher, tmp_path):
    teacher, url = start_teacher(latency_s=0.1)
    cfg = fast_cfg(url, max_in_flight=4)
    requests = judge_requests(60)
    (tmp_path / "requests.json").write_text(json.dumps([r.body() for r in requests]))
    settings = json.dumps({name: getattr(cfg, name) for name in ("base_url", "model", "max_in_flight", "timeout_s")})
    path = tmp_path / "cache.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, settings, str(path), str(tmp_path / "requests.json")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        reported = [child.stdout.readline().strip() for _ in range(12)]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    sent_by_child = len(teacher.request_log())
    assert 12 <= sent_by_child < 60

    cache = RequestCache(str(path))
    assert set(reported) <= set(cache.get_many(reported))
    outcomes, stats = send(requests, cfg, cache)

    assert all(o.status == "ok" for o in outcomes) and stats.cached >= 12
    by_id = entries_by_request(teacher.request_log())
    assert set(by_id) == {r.request_id for r in requests}
    # At most the 4 requests in flight at the kill were sent twice; no answer that was stored.
    sent_twice = [rid for rid, entries in by_id.items() if len(entries) > 1]
    assert len(sent_twice) <= 4 and not set(sent_twice) & set(reported)


def test_the_api_key_never_appears_in_outcomes_stats_or_logs(start_teacher, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, the openai and httpx ones included
    healthy, healthy_url = start_teacher()
    refusing, refusing_url = start_teacher(faults=Faults(rate_429=0.5, retry_after_s=0.05, rate_500=0.5, seed=2))
    hanging, hanging_url = start_teacher(faults=Faults(rate_hang=1.0, hang_s=30.0))
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    results = [
        send(judge_requests(5), fast_cfg(healthy_url), cache),
        send(judge_requests(20, "refused"), fast_cfg(refusing_url, max_retries=1), cache),
        send(judge_requests(2, "hung"), fast_cfg(hanging_url, timeout_s=0.2, max_retries=1), cache),
        send(judge_requests(2, "lost"), fast_cfg(healthy_url + "/no-such-path"), cache),
        send(judge_requests(2, "nobody"), fast_cfg("http://127.0.0.1:9/v1", max_retries=1), cache),  # no listener
    ]

    categories = [o.failure_category for outcomes, _ in results for o in outcomes]
    assert {None, "rate_limited", "server_error", "timeout", "client_error", "connection"} == set(categories)
    for teacher in (healthy, refusing, hanging):
        assert all(entry["auth"] for entry in teacher.request_log())  # it was sent, as a bearer token
    text = caplog.text + repr(results) + "".join(repr(stats) for _, stats in results)
    assert FAKE_KEY not in text and FAKE_KEY[-12:] not in text
    for file in tmp_path.glob("cache.sqlite*"):  # the database, its WAL and shared-memory files
        assert FAKE_KEY.encode() not in file.read_bytes()


def test_error_messages_are_scrubbed_of_the_key():

    failure = _classify(
        RuntimeError(f"bad header Bearer {FAKE_KEY}"), TeacherConfig(), lambda s: s.replace(FAKE_KEY, "***")
    )
    assert FAKE_KEY not in failure.reason(1) and "***" in failure.reason(1)


def test_answers_and_failures_are_read_from_the_wire_as_the_sdk_would():
    import httpx2

    from tasks.llm.client import _InvalidResponse, _parse_answer, _StatusError

    request = TeacherRequest(messages=({"role": "user", "content": "q"},), model="m", max_tokens=8)
    body = {"model": "served", "choices": [{"message": {"content": "text"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}  # fmt: skip
    answer = _parse_answer(request, body)
    assert (answer.text, answer.finish_reason, answer.prompt_tokens, answer.completion_tokens, answer.model) == (
        "text",
        "stop",
        3,
        2,
        "served",
    )
    bare = _parse_answer(request, {"choices": [{"message": {"content": ""}}]})  # no usage, no model: defaults
    assert (bare.text, bare.finish_reason, bare.prompt_tokens, bare.model) == ("", None, 0, "m")
    for empty in ({"choices": []}, {"choices": [{"message": {"content": None}}]}, [], {"error": "x"}, "text"):
        with pytest.raises(_InvalidResponse):
            _parse_answer(request, empty)

    cfg, keep = TeacherConfig(timeout_s=5), lambda text: text
    limited = _classify(_StatusError(429, {"retry-after": "2"}, "slow down"), cfg, keep)
    assert (limited.category, limited.retryable, limited.retry_after) == ("rate_limited", True, 2.0)
    assert _classify(_StatusError(503, {}, ""), cfg, keep).category == "server_error"
    refused = _classify(_StatusError(400, {}, '{"error": {"message": "bad max_tokens"}}'), cfg, keep)
    assert not refused.retryable and refused.reason(1) == 'client_error: 400 {"error": {"message": "bad max_tokens"}}'
    assert (
        _classify(httpx2.ReadTimeout("slow"), cfg, keep).reason(2) == "timeout: no answer within 5 s after 2 attempts"
    )
    assert _classify(httpx2.ConnectError("refused"), cfg, keep).category == "connection"
    assert (
        _classify(httpx2.RemoteProtocolError(""), cfg, keep).reason(1)
        == "connection: RemoteProtocolError after 1 attempts"
    )
    assert _classify(ValueError("Expecting value"), cfg, keep).category == "invalid_response"  # a body not JSON


@pytest.mark.slow
def test_throughput_is_at_least_95_percent_of_the_raw_client(tmp_path):
    """bench/-style check: 2,000 requests, 200 ms latency, 64 in flight, raw client first and last."""
    import openai

    server = subprocess.Popen(
        [sys.executable, "-m", "tasks.standins.teacher", "--latency", "0.2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    url = server.stdout.readline().strip()

    async def raw(requests: list[TeacherRequest]) -> float:
        client = openai.AsyncOpenAI(api_key=FAKE_KEY, base_url=url, max_retries=0)
        queue = iter(requests)

        async def worker() -> None:
            for request in queue:
                await client.chat.completions.create(**request.body())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(64)))
        elapsed = time.perf_counter() - started
        await client.close()
        return len(requests) / elapsed

    try:
        cfg = fast_cfg(url, max_in_flight=64, timeout_s=60.0)
        rates: dict[str, list[float]] = {"raw": [], "ours": []}
        for round_ in range(3):
            rates["raw"].append(asyncio.run(raw(judge_requests(2000, f"raw{round_}"))))
            cache = RequestCache(str(tmp_path / f"cache{round_}.sqlite"))
            started = time.perf_counter()
            outcomes, _ = send(judge_requests(2000, f"ours{round_}"), cfg, cache)
            rates["ours"].append(2000 / (time.perf_counter() - started))
            assert all(o.status == "ok" for o in outcomes)
    finally:
        server.terminate()
        server.wait()
    assert max(rates["ours"]) >= 0.95 * max(rates["raw"]), rates


# --- EndpointSession: one connection for many calls, from many threads ----------------------------------


def test_a_session_bounds_in_flight_across_threads_and_runs_callbacks_in_the_callers_context(start_teacher, tmp_path):
    import contextvars
    import threading

    from tasks.llm.client import EndpointSession

    teacher, url = start_teacher(latency_s=0.3)
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    session = EndpointSession(fast_cfg(url, max_in_flight=4), FAKE_KEY)
    tag = contextvars.ContextVar("tag", default="none")
    seen: list[str] = []

    def call(name: str) -> None:
        tag.set(name)
        outcomes, _ = session.send(judge_requests(6, tag=name), cache, on_outcome=lambda _: seen.append(tag.get()))
        assert all(o.status == "ok" for o in outcomes)

    threads = [threading.Thread(target=call, args=(f"t{k}",)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    arrivals = sorted(e["t"] for e in teacher.request_log())
    assert len(arrivals) == 18
    assert max(sum(1 for t in arrivals if start <= t < start + 0.29) for start in arrivals) <= 4  # one bound for all
    assert sorted(seen) == sorted([f"t{k}" for k in range(3)] * 6)  # each callback saw its caller's context
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.send(judge_requests(1), cache)
    session.close()  # idempotent


def test_closing_a_session_releases_callers_still_waiting(start_teacher, tmp_path):
    import concurrent.futures
    import threading

    from tasks.llm.client import EndpointSession

    _, url = start_teacher(latency_s=30)
    threads_before = sum(t.name == "rmr1-endpoint" for t in threading.enumerate())
    session = EndpointSession(fast_cfg(url, timeout_s=60), FAKE_KEY)
    cache = RequestCache(str(tmp_path / "cache.sqlite"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(session.send, judge_requests(2), cache)
        time.sleep(0.3)
        started = time.perf_counter()
        session.close()
        with pytest.raises(concurrent.futures.CancelledError):
            waiting.result(timeout=10)
    assert time.perf_counter() - started < 10
    assert sum(t.name == "rmr1-endpoint" for t in threading.enumerate()) == threads_before  # its loop stopped


def test_a_session_that_cannot_open_leaves_no_thread_behind():
    import threading

    from tasks.llm.client import EndpointSession

    before = sum(t.name == "rmr1-endpoint" for t in threading.enumerate())
    with pytest.raises(ValueError, match="base_url"):
        EndpointSession(fast_cfg(None), FAKE_KEY)
    assert sum(t.name == "rmr1-endpoint" for t in threading.enumerate()) == before
