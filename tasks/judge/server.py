"""`rmr1 serve`: the pairwise judge over HTTP, for RLHF frameworks and anything else.

- `POST /get_reward` speaks OpenRLHF's remote reward protocol: `{"query": [...], "prompts": [...],
  "labels": [...]}` -> `{"rewards": [...], "scores": [...], "extra_logs": {...}}`. A pairwise judge needs
  something to compare with: `labels` carry each query's reference answer, and the response (the query
  after its prompt) is judged against it: +1 beats it, 0 ties, −1 loses or the verdict is unparseable.
- `POST /v1/judge`: `{"conversation": [...] | "prompt": "...", "a": "...", "b": "..."}` -> the verdict
  (`a`, `b`, `tie`, `error`), the winner (0, 1 or null), the votes, traces and tokens.
- `GET /health`.

It binds 127.0.0.1 unless told otherwise, can require a bearer token (compared in constant time, never
logged), caps request bodies, admits at most `max_concurrency` requests at once (the rest wait), and answers
a bad request with a 4xx and a message instead of failing. A model loaded here judges the requests waiting
together in one batch (one worker thread runs it); an endpoint judge sends each request's calls at once,
through one pooled connection with its own bound on requests in flight (`--max-in-flight`).
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tasks.judge.api import Judgment, PairwiseJudge
from tasks.judge.ranking import Candidates, rank_many

MAX_BODY = 4 << 20  # bytes: long reasoning traces, a batch of them
log = logging.getLogger(__name__)


class BadRequest(ValueError):
    """A request the client can fix: answered with `status` and the message."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def _texts(body: dict[str, Any], key: str, count: int | None = None) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'{key}' must be a list of strings")
    if count is not None and len(value) != count:
        raise BadRequest(f"'{key}' has {len(value)} items, 'query' has {count}")
    return value


def get_reward(judge: PairwiseJudge, body: dict[str, Any]) -> dict[str, Any]:
    """OpenRLHF's /get_reward: each response (its query without the prompt) against its reference label, all
    of the request's comparisons judged together."""
    queries = _texts(body, "query")
    prompts = _texts(body, "prompts", len(queries))
    labels = _texts(body, "labels", len(queries))
    items = []
    for query, prompt, label in zip(queries, prompts, labels, strict=True):
        response = query[len(prompt) :] if query.startswith(prompt) else query
        items.append(Candidates([{"role": "user", "content": prompt}], [response], label))
    rankings = rank_many(judge, items, "reference")  # type: ignore[arg-type]
    rewards = [2 * ranking.scores[0] - 1 for ranking in rankings]
    errors = sum(ranking.games[0].judgment.verdict == "error" for ranking in rankings)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {"judge_errors": [float(errors)] * len(rewards)}}


def judge_pair(judge: PairwiseJudge, body: dict[str, Any]) -> dict[str, Any]:
    """/v1/judge: one pair, as `PairwiseJudge.compare` returns it."""
    if isinstance(body.get("conversation"), list):
        conversation = body["conversation"]
        if not all(isinstance(t, dict) and isinstance(t.get("content"), str) and t.get("role") in
                   ("system", "user", "assistant") for t in conversation) or not conversation:  # fmt: skip
            raise BadRequest("'conversation' must be a non-empty list of {role, content} messages")
    elif isinstance(body.get("prompt"), str):
        conversation = [{"role": "user", "content": body["prompt"]}]
    else:
        raise BadRequest("give 'conversation' (a list of messages) or 'prompt' (a string)")
    a, b = body.get("a"), body.get("b")
    if not isinstance(a, str) or not isinstance(b, str):
        raise BadRequest("'a' and 'b' must be strings")
    result = judge.compare(conversation, a, b)
    return {"verdict": result.verdict, "winner": result.winner, "votes": list(result.votes),
            "traces": list(result.traces), "tokens": result.tokens}  # fmt: skip


ROUTES = {"/get_reward": get_reward, "/v1/judge": judge_pair}


class Batched:
    """A model loaded in this process, behind one worker thread: request threads queue their pairs, the worker
    judges everything queued in one `compare_many` (one batched generate call) and hands each request its
    judgments. Only that thread ever touches the model."""

    def __init__(self, judge: PairwiseJudge, max_pairs: int = 512) -> None:
        self.judge, self.name, self.max_pairs = judge, judge.name, max_pairs
        self.queue: queue.Queue[tuple[list[Any], Future[list[Judgment]]]] = queue.Queue()
        threading.Thread(target=self._work, daemon=True, name="rmr1-judge").start()

    def compare_many(self, pairs: list[Any]) -> list[Judgment]:
        future: Future[list[Judgment]] = Future()
        self.queue.put((list(pairs), future))
        return future.result()

    def compare(self, conversation: Any, a: str, b: str) -> Judgment:
        return self.compare_many([(conversation, a, b)])[0]

    def _work(self) -> None:
        while True:
            batch = [self.queue.get()]
            while sum(len(p) for p, _ in batch) < self.max_pairs:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                judged = self.judge.compare_many([pair for pairs, _ in batch for pair in pairs])
            except Exception as error:  # a bug: every waiting request answers 500, the worker goes on
                for _, future in batch:
                    future.set_exception(error)
                continue
            start = 0
            for pairs, future in batch:
                future.set_result(judged[start : start + len(pairs)])
                start += len(pairs)


def make_server(judge: PairwiseJudge, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                max_body: int = MAX_BODY, max_concurrency: int = 64) -> ThreadingHTTPServer:  # fmt: skip
    """A threading HTTP server for `judge` (not started: call `serve_forever`, e.g. in a thread); at most
    `max_concurrency` requests are admitted to the judge at once. A local model judges the requests waiting
    together in one batch; an endpoint judge sends each request's calls as it comes."""
    gate = threading.BoundedSemaphore(max_concurrency)
    # A local model: batched by one worker. An endpoint: each request sends its own calls through the judge's
    # one connection (thread-safe, its in-flight bound shared), so no request waits for another's batch.
    batched = Batched(judge) if judge.config.backend in ("hf", "vllm") else judge

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add ~40 ms

        def log_message(self, format: str, *args: Any) -> None:  # the request line only: never a header
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if token is None:
                return True
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

        def do_GET(self) -> None:
            if not self._authorized():
                self._send(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
            elif self.path == "/health":
                self._send(HTTPStatus.OK, {"status": "ok", "judge": judge.name})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no GET {self.path}; try /health"})

        def do_POST(self) -> None:
            try:
                if not self._authorized():
                    raise BadRequest("missing or wrong bearer token", HTTPStatus.UNAUTHORIZED)
                route = ROUTES.get(self.path)
                if route is None:
                    raise BadRequest(f"no POST {self.path}; try {', '.join(ROUTES)}", HTTPStatus.NOT_FOUND)
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    raise BadRequest("a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED)
                if int(length) > max_body:
                    self.close_connection = True  # the body is not read
                    raise BadRequest(f"body of {length} bytes is over the {max_body} byte limit",
                                     HTTPStatus.REQUEST_ENTITY_TOO_LARGE)  # fmt: skip
                try:
                    body = json.loads(self.rfile.read(int(length)))
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    raise BadRequest(f"body is not JSON: {error}") from None
                if not isinstance(body, dict):
                    raise BadRequest("body must be a JSON object")
                with gate:
                    payload = route(batched, body)  # type: ignore[arg-type]
                self._send(HTTPStatus.OK, payload)
            except BadRequest as error:
                self._send(error.status, {"error": str(error)})
            except Exception:  # a bug: logged with its traceback, the client gets a 500, the server goes on
                log.exception("rmr1 serve: %s failed", self.path)
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (see the server log)"})

    return _Server((host, port), Handler)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: socketserver's 5 resets bursts of concurrent clients
