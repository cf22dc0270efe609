"""`rmr1 serve`: the pairwise judge over HTTP, for RLHF frameworks and anything else (FastAPI under uvicorn,
`tasks.serving`; the schemas below are served as OpenAPI at `/openapi.json`).

- `POST /get_reward` speaks OpenRLHF's remote reward protocol: `{"query": [...], "prompts": [...],
  "labels": [...]}` -> `{"rewards": [...], "scores": [...], "extra_logs": {...}}`. A pairwise judge needs
  something to compare with: `labels` carry each query's reference answer, and the response (the query
  after its prompt) is judged against it: +1 beats it, 0 ties, −1 loses or the verdict is unparseable.
- `POST /v1/judge`: `{"conversation": [...] | "prompt": "...", "a": "...", "b": "..."}` -> the verdict
  (`a`, `b`, `tie`, `error`), the winner (0, 1 or null), the votes, traces and tokens.
- `GET /health`: `{"status": "ok"}` without the token, so a load balancer's probe (which carries none) can
  ask; it says nothing but that the server answers. With the token it also names the judge.

Limits: it binds 127.0.0.1 unless told otherwise; with a token every route but `/health` needs
`Authorization: Bearer <token>` (compared in constant time, never logged); a body over `max_body` bytes is
refused with 413, a POST without a length with 411, a body that does not match its schema with 422; at most
`max_concurrency` requests are judged at once (the rest wait). Every refusal is a JSON `{"error": ...}` and
leaves a kept-alive connection usable: the body is read to its end first and dropped (an async client reads
no answer before it has sent its whole body). Beyond `DRAIN_LIMIT` bytes the answer says `Connection: close` and
the connection is closed.

A model loaded here (hf, vllm) judges the requests waiting together in one batch, in one worker thread that
alone touches the model. An endpoint judge serves on its endpoint session's event loop: each request's calls
go out at once through one pooled connection with its own bound on requests in flight (`--max-in-flight`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException
from starlette.requests import Request

from tasks.judge.api import Judgment, Pair, PairwiseJudge
from tasks.judge.ranking import game_points
from tasks.serving import HOST, MAX_HEADER_BYTES, AsgiServer

MAX_BODY = 4 << 20  # bytes: long reasoning traces, a batch of them
DRAIN_LIMIT = 64 << 20  # bytes of a refused body read (and dropped) so the client can read the refusal
MAX_BATCH_PAIRS = 512  # a local model's batch: the pairs of the requests waiting together, up to this many
log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# ---------------------------------------------------------------- schemas


class Turn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class RewardRequest(BaseModel):
    """OpenRLHF's remote reward request; any other field it sends is ignored."""

    model_config = ConfigDict(extra="ignore")
    query: list[str] = Field(description="Prompt + response, as the policy saw and wrote them.")
    prompts: list[str] = Field(description="Each query's prompt (the response is the query after it).")
    labels: list[str] = Field(description="Each query's reference answer, the one the response is judged against.")

    @model_validator(mode="after")
    def _same_lengths(self) -> RewardRequest:
        for key in ("prompts", "labels"):
            if len(getattr(self, key)) != len(self.query):
                raise ValueError(f"'{key}' has {len(getattr(self, key))} items, 'query' has {len(self.query)}")
        return self


class RewardResponse(BaseModel):
    rewards: list[float] = Field(description="Per query: +1 beats the reference, 0 ties, −1 loses or no verdict.")
    scores: list[float] = Field(description="The rewards again (OpenRLHF reads either).")
    extra_logs: dict[str, list[float]] = Field(description="`judge_errors`: unparseable verdicts in this request.")


class JudgeRequest(BaseModel):
    """One pair: the conversation (or a single prompt) and two answers."""

    model_config = ConfigDict(extra="forbid")
    conversation: list[Turn] | None = Field(default=None, min_length=1, description="The turns before the answers.")
    prompt: str | None = Field(default=None, description="A single user turn, instead of `conversation`.")
    a: str
    b: str

    @model_validator(mode="after")
    def _one_context(self) -> JudgeRequest:
        if (self.conversation is None) == (self.prompt is None):
            raise ValueError("give 'conversation' (a list of messages) or 'prompt' (a string), not both")
        return self

    def pair(self) -> Pair:
        turns = [t.model_dump() for t in self.conversation] if self.conversation else [
            {"role": "user", "content": self.prompt}]  # fmt: skip
        return turns, self.a, self.b


class JudgeResponse(BaseModel):
    verdict: Literal["a", "b", "tie", "error"]
    winner: int | None = Field(description="0 (a), 1 (b), or null for a tie or an error.")
    votes: list[str] = Field(description="Per shown order and sample: a, b, tie or error.")
    traces: list[str | None] = Field(description="The judge's outputs behind the votes.")
    tokens: int


class Health(BaseModel):
    status: Literal["ok"]
    judge: str | None = Field(default=None, description="The judge's name (only to a caller with the token).")


class Refusal(BaseModel):
    error: str = Field(description="What was wrong with the request, in words.")
    detail: list[dict[str, Any]] | None = Field(default=None, description="422: each field that failed its schema.")


# ---------------------------------------------------------------- pure cores


def reward_pairs(body: RewardRequest) -> list[Pair]:
    """Each response (its query after the prompt) against its reference label."""
    pairs: list[Pair] = []
    for query, prompt, label in zip(body.query, body.prompts, body.labels, strict=True):
        response = query[len(prompt) :] if query.startswith(prompt) else query
        pairs.append(([{"role": "user", "content": prompt}], response, label))
    return pairs


def rewards(judgments: list[Judgment]) -> RewardResponse:
    """+1 / 0 / −1 from each response's points against its reference (`tasks.judge.ranking.game_points`)."""
    values = [2 * game_points(j)[0] - 1 for j in judgments]
    errors = float(sum(j.verdict == "error" for j in judgments))
    return RewardResponse(rewards=values, scores=values, extra_logs={"judge_errors": [errors] * len(values)})


def judgment_response(judgment: Judgment) -> JudgeResponse:
    return JudgeResponse(verdict=judgment.verdict, winner=judgment.winner, votes=list(judgment.votes),
                         traces=list(judgment.traces), tokens=judgment.tokens)  # fmt: skip


# ---------------------------------------------------------------- judging without blocking the loop


class LocalBatches:
    """A model loaded in this process: the pairs of the requests waiting together go to `compare_many` at once
    (one batched generate), in one worker thread, the only one that ever touches the model."""

    def __init__(self, judge: PairwiseJudge, max_pairs: int = MAX_BATCH_PAIRS) -> None:
        self.judge, self.max_pairs = judge, max_pairs
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rmr1-judge")
        self.waiting: list[tuple[list[Pair], asyncio.Future[list[Judgment]]]] = []
        self.running: asyncio.Task[None] | None = None

    async def compare_many(self, pairs: list[Pair]) -> list[Judgment]:
        future: asyncio.Future[list[Judgment]] = asyncio.get_running_loop().create_future()
        self.waiting.append((pairs, future))
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            batch, size = [], 0
            while self.waiting and (not batch or size + len(self.waiting[0][0]) <= self.max_pairs):
                batch.append(self.waiting.pop(0))
                size += len(batch[-1][0])
            try:
                judged = await loop.run_in_executor(self.worker, self.judge.compare_many,
                                                    [pair for pairs, _ in batch for pair in pairs])  # fmt: skip
            except Exception as error:  # a bug: every request of the batch answers 500 with it, the rest go on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for pairs, future in batch:
                if not future.done():  # its client may have gone
                    future.set_result(judged[start : start + len(pairs)])
                start += len(pairs)

    def close(self) -> None:
        self.worker.shutdown(wait=True)


class EndpointCalls:
    """An endpoint judge: each request's calls are awaited on the endpoint session's loop, where the server runs."""

    def __init__(self, judge: PairwiseJudge) -> None:
        self.judge = judge

    async def compare_many(self, pairs: list[Pair]) -> list[Judgment]:
        return await self.judge.compare_many_async(pairs)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- the guard: token and body, before the app


async def _json(send: Send, status: int, payload: dict[str, Any], close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Pure ASGI, around the app: the bearer token, then the body read whole within `max_body`. The app gets the
    body as read; a refused request's body is read to its end (bounded) first, so the connection stays usable."""

    def __init__(self, app: Any, token: str | None, max_body: int, drain_limit: int = DRAIN_LIMIT) -> None:
        self.app, self.max_body, self.drain_limit = app, max_body, drain_limit
        self.expected = f"Bearer {token}".encode() if token is not None else None

    def authorized(self, scope: Scope) -> bool:
        if self.expected is None:
            return True
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return hmac.compare_digest(given, self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        scope.setdefault("state", {})["authorized"] = self.authorized(scope)
        if not scope["state"]["authorized"] and scope["path"] != "/health":
            await self.refuse(receive, send, 401, "missing or wrong bearer token")
            return
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is not None and not length.isdigit():
            await self.refuse(receive, send, 400, "Content-Length must be a number")
            return
        if scope["method"] == "POST" and length is None and not chunked:
            await self.refuse(receive, send, 411, "a Content-Length header (or a chunked body) is required")
            return
        if length is not None and int(length) > self.max_body:
            await self.refuse(receive, send, 413, f"body of {int(length)} bytes is over the {self.max_body} byte limit")
            return
        body, over = await self.read(receive)
        if over:
            await self.refuse(receive, send, 413, f"body is over the {self.max_body} byte limit", read=len(body))
            return
        # A JSON-only API: a body is read as JSON whatever Content-Type it came with (many clients send none).
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        scope["headers"].append((b"content-type", b"application/json"))
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when the client goes

        await self.app(scope, replay, send)

    async def read(self, receive: Receive) -> tuple[bytes, bool]:
        """The body, and whether it went over `max_body` (then only what was read by then)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return b"".join(chunks), True
            if not message.get("more_body", False):
                return b"".join(chunks), False

    async def refuse(self, receive: Receive, send: Send, status: int, error: str, read: int = 0) -> None:
        """Read the rest of the body and drop it (`drain_limit` bytes at most), then answer `status`; a body still
        not at its end gets `Connection: close`, so nothing of it can be read as the next request."""
        done = False
        while read <= self.drain_limit:
            message = await receive()
            if message["type"] != "http.request":
                done = True
                break
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                done = True
                break
        await _json(send, status, {"error": error}, close=not done)


# ---------------------------------------------------------------- the app


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def _sent(answer: BaseModel) -> Response:
    return Response(answer.model_dump_json(), media_type="application/json")


def make_app(judge: PairwiseJudge, *, token: str | None = None, max_body: int = MAX_BODY,
             max_concurrency: int = 64) -> Any:  # fmt: skip
    """The ASGI app for `judge`: the FastAPI routes inside the `Guard`."""
    judging = EndpointCalls(judge) if judge.config.backend == "openai" else LocalBatches(judge)
    admitted: asyncio.Semaphore | None = None  # made on the serving loop, at the first request

    async def judged(pairs: list[Pair]) -> list[Judgment]:
        nonlocal admitted
        if admitted is None:
            admitted = asyncio.Semaphore(max_concurrency)
        async with admitted:
            try:
                return await judging.compare_many(pairs)
            except Exception:  # a bug: logged with its traceback, the client gets a 500, the server goes on
                log.exception("rmr1 serve: judging %d pairs failed", len(pairs))
                raise HTTPException(500, "internal error (see the server log)") from None

    # FastAPI's OpenTelemetry layer off: it asked the global providers on every request (~5% of the serving
    # loop's CPU, profiled) and, once an exporter is configured, would ship validation errors' messages.
    off: Any = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="rmr1 serve", summary="A trained pairwise judge as a reward server.", docs_url=None,
                  redoc_url=None, responses={code: {"model": Refusal} for code in (401, 411, 413, 422)},
                  telemetry=off)  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in error.errors()]
        return JSONResponse({"error": _validation_message(detail), "detail": detail}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        method, path = request.method, request.url.path
        message = {404: f"no {method} {path}; try POST /get_reward, POST /v1/judge or GET /health",
                   405: f"{method} is not allowed on {path}"}.get(error.status_code, error.detail)  # fmt: skip
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    @app.get("/health", response_model=Health, response_model_exclude_none=True)
    async def health(request: Request) -> Health:
        return Health(status="ok", judge=judge.name if request.scope["state"]["authorized"] else None)

    # The answers are built as the documented models and sent as they are (FastAPI would validate them again).
    @app.post("/get_reward", response_model=RewardResponse)
    async def get_reward(body: RewardRequest) -> Response:
        return _sent(rewards(await judged(reward_pairs(body))))

    @app.post("/v1/judge", response_model=JudgeResponse)
    async def judge_pair(body: JudgeRequest) -> Response:
        return _sent(judgment_response((await judged([body.pair()]))[0]))

    return Guard(app, token, max_body)


def make_server(judge: PairwiseJudge, host: str = HOST, port: int = 0, *, token: str | None = None,
                max_body: int = MAX_BODY, max_concurrency: int = 64,
                max_header_bytes: int = MAX_HEADER_BYTES) -> AsgiServer:  # fmt: skip
    """The server for `judge`, not started (`start()` binds and serves in the background; `stop()`). An endpoint
    judge is served on its session's event loop; a local model on a loop of the server's own."""
    app = make_app(judge, token=token, max_body=max_body, max_concurrency=max_concurrency)
    loop = judge.loop if judge.config.backend == "openai" else None
    # Connections beyond this many are answered 503 at once: each waiting request holds up to max_body bytes.
    return AsgiServer(app, host, port, name="rmr1-serve", loop=loop, max_header_bytes=max_header_bytes,
                      max_connections=max(256, 4 * max_concurrency))  # fmt: skip
