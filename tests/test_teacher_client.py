"""The teacher client: request ids, back-off, the rate limiter, the durable cache, and sending requests
against the stand-in teacher (a real HTTP server on 127.0.0.1) with faults injected."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
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

from tasks.distill.cache import CachedAnswer, RequestCache
from tasks.distill.client import (
    RATE_SAFETY,
    MissingApiKeyError,
    Outcome,
    RateLimiter,
    RunStats,
    TeacherRequest,
    backoff_delay,
    parse_retry_after,
    resolve_api_key,
)
from tasks.distill.config import TeacherConfig

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
    limiter = RateLimiter(None, None)

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(limiter.acquire(10**9) for _ in range(1000)))
        return time.perf_counter() - started

    assert asyncio.run(main()) < 0.5


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
    assert min(b - a for a, b in itertools.pairwise(stamps)) > 0.07


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
    from tasks.distill.cache import CachedAnswer, RequestCache
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


def test_run_stats_table_lists_failures_by_reason_and_throughput():
    stats = RunStats(requests=10, ok=7, cached=2, retries=4, prompt_tokens=100, completion_tokens=50, wall_s=2.0)
    stats.failed.update(["rate_limited", "rate_limited", "budget_exhausted"])
    rows = {row["metric"]: row["value"] for row in stats.as_rows()}
    assert rows["failed"] == 3
    assert rows["failed: rate_limited"] == 2 and rows["failed: budget_exhausted"] == 1
    assert stats.throughput() == 2.5 and rows["throughput (answers/s)"] == 2.5
    both = stats.merged(stats)
    assert both.requests == 20 and both.failed["rate_limited"] == 4


def test_outcome_failure_category_is_the_reason_prefix():
    failed = Outcome("x", "failed", None, None, 0, 0, 0.0, 1.0, 7, False, "rate_limited: 429 after 7 attempts")
    assert failed.failure_category == "rate_limited"
    assert math.isclose(failed.latency_s, 1.0)
