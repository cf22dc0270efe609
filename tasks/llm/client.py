"""Sending chat-completion requests: bounded concurrency, rate limits, retries, a durable cache and a budget.

`send_requests` takes chat-completion requests and returns one `Outcome` per request, in order: answers
already in the `RequestCache` come back at once, the rest go through one pooled HTTP client (the openai SDK's
own httpx pool, headers and base URL, without its per-request machinery) with at most `max_in_flight` requests
in flight, a smooth requests/tokens-per-minute limiter before every attempt, and
retries with exponential back-off and full jitter that honour `Retry-After`. Each answer is committed to
the cache the moment it arrives; a request that still fails comes back `failed` with a reason. It must
never raise because one request failed, never send a request whose answer is cached, and never let the
API key reach an outcome, a log line, an exception message or the statistics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, cast

from data_contracts import canonical_json
from data_contracts.errors import UserError
from tasks.llm.cache import CachedAnswer, RequestCache
from tasks.llm.config import EndpointConfig

log = logging.getLogger(__name__)

RATE_SAFETY = 0.99  # aim 1% under a rate limit so arrival jitter never pushes a 60 s window over it
MAX_RETRY_AFTER_S = 3600.0  # a longer Retry-After is honoured only up to an hour
CHARS_PER_TOKEN = 4  # rough prompt-size estimate for the tokens-per-minute limiter
TOKENS_PER_MESSAGE = 4  # role and separators, per message
_RETRY_STATUSES = {408: "timeout", 429: "rate_limited"}  # and every 5xx: "server_error"


def request_id_of(body: dict[str, Any]) -> str:
    """The request cache's key: sha256 hex of the canonical JSON of a chat-completion request body."""
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TeacherRequest:
    """One chat-completion request; its id is a hash of exactly what is sent (model, messages, parameters)."""

    messages: tuple[dict[str, str], ...]
    model: str
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None  # sampled decoding: the provider's seed (best effort), and a distinct cache entry

    def body(self) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create`, leaving out parameters that are None."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(message) for message in self.messages],
            "max_tokens": self.max_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    @cached_property
    def request_id(self) -> str:
        """sha256 hex of the canonical JSON of `body()`: the same request always has the same id."""
        return request_id_of(self.body())

    def estimated_tokens(self) -> int:
        """Prompt estimate plus `max_tokens`: what a tokens-per-minute limit is charged for this request."""
        prompt_chars = sum(len(str(message.get("content", ""))) for message in self.messages)
        return prompt_chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * len(self.messages) + self.max_tokens


@dataclass(frozen=True)
class Outcome:
    """What became of one request: its answer and usage, or why it failed ("category: detail")."""

    request_id: str
    status: Literal["ok", "failed"]
    text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float  # the answer's cost at the configured prices (a cached answer's too)
    latency_s: float  # first attempt to outcome, back-off included; 0 for a cached answer
    attempts: int
    cached: bool
    failure_reason: str | None

    @property
    def failure_category(self) -> str | None:
        """The reason's category: rate_limited, server_error, timeout, connection, budget_exhausted, ..."""
        return None if self.failure_reason is None else self.failure_reason.split(":", 1)[0]


@dataclass
class RunStats:
    """Totals of one `send_requests` call. `cost_usd` and the tokens count only what this run paid for."""

    requests: int = 0
    ok: int = 0  # cached answers included
    failed: Counter[str] = field(default_factory=Counter)  # by failure category
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0

    @property
    def sent_ok(self) -> int:
        """Answers that came from the teacher in this run (not from the cache)."""
        return self.ok - self.cached

    def throughput(self) -> float:
        """Answers from the teacher per second of wall time (cached answers excluded)."""
        return self.sent_ok / self.wall_s if self.wall_s > 0 else 0.0


class RateLimiter:
    """Smooth requests- and tokens-per-minute limits; None means unlimited.

    Each `acquire` reserves the earliest moment both limits allow and sleeps until then; the next
    reservation starts one interval later (60/rpm seconds, tokens·60/tpm seconds). There is no burst
    allowance, so 120 RPM sends one request every ~0.5 s and a provider counting a sliding 60 s window never
    sees more than its limit (we aim `RATE_SAFETY` under it). Reserving is synchronous, so concurrent tasks
    on one event loop need no lock.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._request_interval = 60.0 / (requests_per_minute * RATE_SAFETY) if requests_per_minute else 0.0
        self._seconds_per_token = 60.0 / (tokens_per_minute * RATE_SAFETY) if tokens_per_minute else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_request = -math.inf
        self._next_token = -math.inf

    @property
    def unlimited(self) -> bool:
        return not self._request_interval and not self._seconds_per_token

    def reserve(self, tokens: int) -> float:
        """Book the next slot for a request of `tokens` tokens; the seconds to wait until it (≥ 0)."""
        now = self._clock()
        start = max(now, self._next_request, self._next_token)
        self._next_request = start + self._request_interval
        self._next_token = start + tokens * self._seconds_per_token
        return start - now

    async def acquire(self, tokens: int) -> None:
        if self.unlimited:
            return
        delay = self.reserve(tokens)
        if delay > 0:
            await self._sleep(delay)


class MissingApiKeyError(UserError, RuntimeError):
    """The teacher's API key could not be found; the message names where it was looked for."""


def resolve_api_key(cfg: EndpointConfig) -> str:
    """The key from the Prefect Secret block `cfg.api_key_secret_block` if set, else `$cfg.api_key_env`."""
    if cfg.api_key_secret_block:
        name = cfg.api_key_secret_block
        try:
            from prefect.blocks.system import Secret

            # `_sync=True`: the synchronous load even when called from inside an event loop.
            value = Secret.load(name, _sync=True).get()
        except Exception as error:
            raise MissingApiKeyError(
                f"could not load the teacher API key from Prefect Secret block {name!r} "
                f"(teacher.api_key_secret_block): {type(error).__name__}: {_short(str(error))}"
            ) from None
        if not isinstance(value, str) or not value.strip():
            raise MissingApiKeyError(f"Prefect Secret block {name!r} (teacher.api_key_secret_block) holds no key")
        return value.strip()
    value = os.environ.get(cfg.api_key_env, "").strip()
    if not value:
        raise MissingApiKeyError(
            f"no teacher API key: set the environment variable {cfg.api_key_env} "
            "(or name another one in teacher.api_key_env, or a Prefect Secret block in teacher.api_key_secret_block)"
        )
    return value


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date; None if absent."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def models_of(requests: Sequence[TeacherRequest]) -> str:
    """The model name the requests ask for, for log lines ("a, b" when they differ; "none" for no requests)."""
    return ", ".join(sorted({request.model for request in requests})) or "none"


def backoff_delay(
    retry: int, cfg: EndpointConfig, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds before retry number `retry` (0 = the first): full jitter over min(max, initial·2^retry), but
    never less than the server's Retry-After."""
    ceiling = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2.0 ** min(retry, 60))
    delay = (rng or random).uniform(0.0, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


def cost_usd(prompt_tokens: int, completion_tokens: int, cfg: EndpointConfig) -> float:
    return prompt_tokens * cfg.price_input_per_mtok / 1e6 + completion_tokens * cfg.price_output_per_mtok / 1e6


@dataclass(frozen=True)
class _Failure:
    category: str
    detail: str
    retryable: bool
    retry_after: float | None = None

    def reason(self, attempts: int) -> str:
        tail = f" after {attempts} attempts" if self.retryable else ""
        return f"{self.category}: {self.detail}{tail}" if self.detail else f"{self.category}{tail}"


class _InvalidResponse(Exception):
    """A 200 answer without usable content."""


class _StatusError(Exception):
    """An answer with an error status: its code, headers (for Retry-After) and body text."""

    def __init__(self, status: int, headers: Mapping[str, str], body: str) -> None:
        super().__init__(body)
        self.status, self.headers = status, headers


def _classify(error: Exception, cfg: EndpointConfig, scrub: Callable[[str], str]) -> _Failure:
    import httpx2

    if isinstance(error, httpx2.TimeoutException):
        return _Failure("timeout", f"no answer within {cfg.timeout_s:g} s", True)
    if isinstance(error, httpx2.TransportError):  # refused, reset, closed mid-answer, a proxy that failed
        detail = str(error) or type(error).__name__
        return _Failure("connection", _short(scrub(detail)), True)
    if isinstance(error, _StatusError):
        status = error.status
        retry_after = parse_retry_after(error.headers)
        if status in _RETRY_STATUSES:
            return _Failure(_RETRY_STATUSES[status], str(status), True, retry_after)
        if status >= 500:
            return _Failure("server_error", str(status), True, retry_after)
        return _Failure("client_error", f"{status} {_short(scrub(str(error)))}", False)
    if isinstance(error, _InvalidResponse | ValueError):  # ValueError: a body that is not JSON
        return _Failure("invalid_response", _short(scrub(str(error))), True)
    return _Failure("error", f"{type(error).__name__}: {_short(scrub(str(error)))}", False)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Sender:
    """The state of one `send_requests` call: the client, the limiter, the budget and the totals."""

    def __init__(
        self,
        cfg: EndpointConfig,
        cache: RequestCache,
        connection: Connection,
        stats: RunStats,
        budget_usd: float | None,
        spent_usd: float,
        api_key: str,
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        self.connection = connection
        self.stats = stats
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.limiter = connection.limiter
        self.rng = random.Random()
        self._api_key = api_key
        self._budget_logged = False

    def scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def budget_exhausted(self) -> bool:
        if self.budget_usd is None or self.spent_usd + self.stats.cost_usd < self.budget_usd:
            return False
        if not self._budget_logged:
            self._budget_logged = True
            log.warning(
                "budget of $%.4f reached ($%.4f spent before, $%.4f in this run): no new requests are sent",
                self.budget_usd, self.spent_usd, self.stats.cost_usd,
            )  # fmt: skip
        return True

    async def send(self, request: TeacherRequest) -> Outcome:
        """Send one request, retrying what may pass next time; always returns an Outcome."""
        cfg = self.cfg
        request_id = request.request_id
        body = request.body()
        tokens = 0 if self.limiter.unlimited else request.estimated_tokens()
        started = time.perf_counter()
        attempts = 0
        while True:
            if self.budget_exhausted():
                return self._failed(request_id, "budget_exhausted", attempts, started)
            await self.limiter.acquire(tokens)
            if self.budget_exhausted():
                return self._failed(request_id, "budget_exhausted", attempts, started)
            attempts += 1
            try:
                answer = _parse_answer(request, await self.connection.post(body))
            except Exception as error:
                failure = _classify(error, cfg, self.scrub)
            else:
                return self._answered(answer, attempts, started)  # a cache failure is loud, not a row
            if not failure.retryable or attempts > cfg.max_retries:
                reason = failure.reason(attempts)
                log.warning("teacher request %s failed: %s", request_id[:12], reason)
                return self._failed(request_id, reason, attempts, started)
            self.stats.retries += 1
            delay = backoff_delay(attempts - 1, cfg, failure.retry_after, self.rng)
            log.debug(
                "teacher request %s: %s (attempt %d), retrying in %.2f s",
                request_id[:12], failure.reason(attempts), attempts, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)

    def _answered(self, answer: CachedAnswer, attempts: int, started: float) -> Outcome:
        prompt_tokens, completion_tokens = answer.prompt_tokens, answer.completion_tokens
        self.cache.put(answer)  # committed before anyone hears of it
        cost = cost_usd(prompt_tokens, completion_tokens, self.cfg)
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.cost_usd += cost
        return Outcome(
            request_id=answer.request_id,
            status="ok",
            text=answer.text,
            finish_reason=answer.finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            latency_s=time.perf_counter() - started,
            attempts=attempts,
            cached=False,
            failure_reason=None,
        )

    @staticmethod
    def _failed(request_id: str, reason: str, attempts: int, started: float) -> Outcome:
        return Outcome(
            request_id=request_id,
            status="failed",
            text=None,
            finish_reason=None,
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0.0,
            latency_s=time.perf_counter() - started if attempts else 0.0,
            attempts=attempts,
            cached=False,
            failure_reason=reason,
        )


def _parse_answer(request: TeacherRequest, completion: Any) -> CachedAnswer:
    """The cache row for a chat completion (its JSON body); `_InvalidResponse` when it holds no text."""
    try:
        choice = completion["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        raise _InvalidResponse("the answer holds no message content")
    usage = completion.get("usage") if isinstance(completion.get("usage"), dict) else {}
    return CachedAnswer(
        request_id=request.request_id,
        text=text,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=completion.get("model") or request.model,
        created_at=time.time(),
    )


def cached_outcome(answer: CachedAnswer, cfg: EndpointConfig) -> Outcome:
    """The Outcome of an answer already in the cache: nothing sent, cost at the configured prices."""
    return Outcome(
        request_id=answer.request_id,
        status="ok",
        text=answer.text,
        finish_reason=answer.finish_reason,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        cost_usd=cost_usd(answer.prompt_tokens, answer.completion_tokens, cfg),
        latency_s=0.0,
        attempts=0,
        cached=True,
        failure_reason=None,
    )


@dataclass
class Connection:
    """What every call to one endpoint shares: the pooled HTTP client, the bound on requests in flight and the
    rate limiter. `send_requests` opens one per call unless given one (see `EndpointSession`).

    The pool, the headers (the key as a bearer token, OPENAI_ORG_ID / OPENAI_PROJECT_ID when set) and the
    normalised base URL are the openai SDK's own; each request is one POST of the body, without the SDK's
    per-request options, header merging and response models, which cost ~1.3 ms of CPU per request here
    (profiled: twice the POST itself) and capped the throughput of everything that shares a core with it."""

    http: Any  # httpx2.AsyncClient, the transport the openai SDK uses
    url: str
    headers: dict[str, str]
    gate: asyncio.Semaphore
    limiter: RateLimiter

    async def post(self, body: dict[str, Any]) -> Any:
        """The parsed JSON of one chat completion; `_StatusError` for an error status, httpx2's errors as
        raised, ValueError for a body that is not JSON."""
        response = await self.http.post(self.url, content=json.dumps(body).encode(), headers=self.headers)
        if not response.is_success:
            raise _StatusError(response.status_code, response.headers, response.text.strip())
        return response.json()

    async def close(self) -> None:
        await self.http.aclose()

    @classmethod
    def open(cls, cfg: EndpointConfig, api_key: str) -> Connection:
        import httpx2
        import openai

        if cfg.base_url is None:
            raise ValueError("teacher.base_url is None: start the stand-in teacher and pass its URL in the config")
        connections = cfg.max_in_flight + 8  # head-room, so a request never waits for a pooled connection
        http = openai.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=cfg.timeout_s,
        )
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url=cfg.base_url, max_retries=0, http_client=http)
        headers = {name: value for name, value in {**sdk.default_headers, **sdk.auth_headers}.items()
                   if isinstance(value, str)}  # fmt: skip
        url = str(sdk.base_url).rstrip("/") + "/chat/completions"
        limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
        return cls(http, url, headers, asyncio.Semaphore(cfg.max_in_flight), limiter)


class EndpointSession:
    """One endpoint kept open across many `send_requests` calls, from any thread: one event loop in its own
    thread, one `Connection` (a pooled client: no new TLS context and connections per call), and at most
    `max_in_flight` requests in flight across all the calls running at once. `close` cancels the calls still
    waiting (they raise CancelledError). A forked child cannot use its parent's session: open a new one."""

    def __init__(self, cfg: EndpointConfig, api_key: str, log_level: int = logging.INFO) -> None:
        self.cfg, self.log_level, self._api_key, self._pid = cfg, log_level, api_key, os.getpid()
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="rmr1-endpoint")
        self._thread.start()

        async def open_connection() -> Connection:  # made on the loop that will use it
            return Connection.open(cfg, api_key)

        try:
            self._connection = asyncio.run_coroutine_threadsafe(open_connection(), self._loop).result()
        except BaseException:
            self._stop_loop()
            raise

    def send(
        self,
        requests: Sequence[TeacherRequest],
        cache: RequestCache,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> tuple[list[Outcome], RunStats]:
        """`send_requests` on the session's loop and connection; blocks the calling thread until done.
        `on_outcome` runs on the loop's thread, in a copy of the caller's context (Prefect's run and settings)."""
        if os.getpid() != self._pid:
            raise RuntimeError("an EndpointSession cannot be used in a forked child: open a new one there")
        if threading.current_thread() is self._thread:
            raise RuntimeError("EndpointSession.send from its own loop's thread would wait on itself")
        report = on_outcome
        if on_outcome is not None:
            context, callback = contextvars.copy_context(), on_outcome
            report = lambda outcome: context.run(callback, outcome)  # noqa: E731
        if self._closed:
            raise RuntimeError("this EndpointSession is closed")
        sending = send_requests(requests, self.cfg, cache, api_key=self._api_key, on_outcome=report,
                                connection=self._connection, log_level=self.log_level)  # fmt: skip
        # No lock on this path (many request threads share it): set.add is atomic, and a `close` that ran since
        # the check above either sees this future among the pending or is seen below.
        future = asyncio.run_coroutine_threadsafe(sending, self._loop)
        self._pending.add(future)
        if self._closed:
            future.cancel()
        try:
            return future.result()
        finally:
            self._pending.discard(future)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The session's event loop: code running on it awaits `send_async` instead of blocking in `send`."""
        return self._loop

    async def send_async(
        self, requests: Sequence[TeacherRequest], cache: RequestCache
    ) -> tuple[list[Outcome], RunStats]:
        """`send`, awaited on the session's own loop (e.g. by a server running there): no thread waits."""
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("EndpointSession.send_async runs on the session's loop (see `loop`); elsewhere use send")
        if self._closed:
            raise RuntimeError("this EndpointSession is closed")
        return await send_requests(requests, self.cfg, cache, api_key=self._api_key, connection=self._connection,
                                   log_level=self.log_level)  # fmt: skip

    def close(self) -> None:
        """Cancel the calls still waiting, close the client and stop the loop (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        pending = list(self._pending)
        if os.getpid() != self._pid:
            return  # a forked child never touches its parent's loop
        for future in pending:
            future.cancel()  # the task is cancelled on the loop; its caller gets CancelledError at once
        asyncio.run_coroutine_threadsafe(self._connection.close(), self._loop).result()
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def send_requests(
    requests: Sequence[TeacherRequest],
    cfg: EndpointConfig,
    cache: RequestCache,
    *,
    api_key: str,
    on_outcome: Callable[[Outcome], None] | None = None,
    budget_usd: float | None = None,
    spent_usd: float = 0.0,
    connection: Connection | None = None,
    log_level: int = logging.INFO,
) -> tuple[list[Outcome], RunStats]:
    """One Outcome per request, in the order of `requests`, and the run's totals.

    Cached answers come back at once (`cached=True`, nothing sent); the others are sent by at most
    `cfg.max_in_flight` workers, each answer committed to `cache` before `on_outcome` hears of it. A
    request that keeps failing comes back `failed` with its reason; once `spent_usd` plus this run's cost
    reaches `budget_usd`, the requests not yet sent come back `failed` / `budget_exhausted` (requests
    already in flight may overshoot the budget by their own cost). Identical requests are sent once.
    Only an exception from `on_outcome` or from the cache itself (a full disk) propagates — answers
    already committed stay committed — and a ValueError when `cfg.base_url` is None. A `connection` shared
    with other calls is used and left open; without one, this call opens its own and closes it. The two
    summary lines are logged at `log_level` (a server's many small calls: DEBUG).
    """
    started = time.perf_counter()
    stats = RunStats(requests=len(requests))
    outcomes: list[Outcome | None] = [None] * len(requests)
    positions: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        positions.setdefault(request.request_id, []).append(index)

    def settle(outcome: Outcome) -> None:
        for index in positions[outcome.request_id]:
            outcomes[index] = outcome
            if outcome.status == "ok":
                stats.ok += 1
                stats.cached += outcome.cached
            else:
                stats.failed[outcome.failure_category or "error"] += 1
            if on_outcome is not None:
                on_outcome(outcome)

    cached = cache.get_many(positions)
    for answer in cached.values():
        settle(cached_outcome(answer, cfg))
    pending = [requests[indices[0]] for request_id, indices in positions.items() if request_id not in cached]
    log.log(
        log_level,
        "teacher %s: %d requests, %d answered from the cache, %d to send (%d in flight)",
        models_of(requests), len(requests), stats.cached, len(pending), min(cfg.max_in_flight, len(pending)),
    )  # fmt: skip

    if pending:
        own = connection is None
        connection = Connection.open(cfg, api_key) if connection is None else connection
        sender = _Sender(cfg, cache, connection, stats, budget_usd, spent_usd, api_key)
        queue: Iterator[TeacherRequest] = iter(pending)
        gate = connection.gate

        async def worker() -> None:
            for request in queue:  # shared iterator: each request is taken by exactly one worker
                async with gate:  # in flight across every call sharing the connection
                    outcome = await sender.send(request)
                settle(outcome)

        workers = [asyncio.create_task(worker()) for _ in range(min(cfg.max_in_flight, len(pending)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if own:
                await connection.close()

    stats.wall_s = time.perf_counter() - started
    log.log(
        log_level,
        "teacher %s: %d ok (%d cached), %d failed %s, %d retries, %d+%d tokens, $%.4f, %.1f s, %.1f answers/s",
        models_of(requests), stats.ok, stats.cached, sum(stats.failed.values()), dict(stats.failed), stats.retries,
        stats.prompt_tokens, stats.completion_tokens, stats.cost_usd, stats.wall_s, stats.throughput(),
    )  # fmt: skip
    return cast(list[Outcome], outcomes), stats
