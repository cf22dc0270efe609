"""The stand-in teacher: a real loopback HTTP server that speaks the OpenAI API and is NOT a real model.

No strong LLM is reachable from a CPU smoke run or from the tests, so the distill stage talks to this
server instead: real sockets, the real `openai` client, chat completions and the Batch API subset the
distill stage uses, configurable latency, injected faults (429 with Retry-After, 500, hangs, malformed
and truncated answers) and a server-side requests-per-minute limit. Its "judge" never sees the label and
is picked by the model name a request asks for:
- `standin-longer-answer-judge` (the default, any other name): the longer answer wins, a tie goes to A;
- `standin-refusal-rule-judge-v2`: the rule of the refusal task (`tasks.standins.refusal_task`: a harmful
  request is better refused, a harmless one better answered), spelled out step by step in a short trace;
  it misreads the request on purpose on `RULE_MISTAKE_SHARE` of the pairs (a seeded hash of the prompt), so
  the filter and the second pass have work to do. Pairs that are not of that task get the longer-answer trace.
Both write well-formed Chain-of-Rubrics traces (docs/method.md §2) around their verdict. Only a pass-2 hint
written into the prompt (docs/method.md §5) can change the verdict. It must always be named as a stand-in
(model name, start-up log line, CLI banner), and it must never store or log an API key, only whether one
was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import logging
import math
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, TextIO

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tasks.judge.protocol import load_template_set, placeholder_markers
from tasks.llm.client import request_id_of
from tasks.serving import HOST, AsgiServer
from tasks.standins.refusal_task import rule_judgement, rule_trace

logger = logging.getLogger(__name__)

STANDIN_MODEL = "standin-longer-answer-judge"
STANDIN_RULE_MODEL = "standin-refusal-rule-judge-v2"
# The judges it answers as, by the request's model name. Traces are versioned by that name alone (the distill
# stage's `teacher.model`): a change to what a judge writes for the same prompt needs a new name, and the old
# name is retired (refused by name, so it can never version other text).
STANDIN_MODELS = (STANDIN_MODEL, STANDIN_RULE_MODEL)
RETIRED_STANDIN_MODELS = {
    "standin-refusal-rule-judge": "its traces ended on a lookup the tiny student learned in some seeds only",
}
STANDIN_NOTICE = "stand-in teacher (heuristic: longer answer wins, or the refusal task's rule; NOT a real model)"
RULE_MISTAKE_SHARE = 0.2  # pairs the rule judge misreads on purpose (the paper saw ~25% pass-1 failures, §5)
RATE_WINDOW_S = 60.0  # the sliding window of `requests_per_minute`
CHARS_PER_TOKEN = 4  # token counts are estimated as ceil(chars / 4)
QUOTE_WORDS = 8  # words quoted from each answer inside <quote_A>/<quote_B>
MALFORMED_TEXT = "I am sorry, but I cannot compare these two responses right now. Please try again later."

# Markers of the judge user message, docs/method.md §2, read from the built-in template the pipeline renders with.
_LAYOUT = load_template_set("cor-instruct-v1")
_QUESTION, _ = placeholder_markers(_LAYOUT.user_single, "{question}")
_START_A, _END_A = placeholder_markers(_LAYOUT.user_single, "{answer_a}")
_START_B, _END_B = placeholder_markers(_LAYOUT.user_single, "{answer_b}")
_CONV_START_A, _CONV_END_A = placeholder_markers(_LAYOUT.user_multi, "{conversation_a}")
_CONV_START_B, _CONV_END_B = placeholder_markers(_LAYOUT.user_multi, "{conversation_b}")
# The pass-2 suffix states the correct verdict (docs/method.md §5); the stand-in follows it like a real teacher.
_HINT = re.compile(r"correct verdict is \[\[([AB])\]\]", re.IGNORECASE)
_REASONING_CUES = re.compile(
    r"\d\s*[-+*/^=×÷%<>]\s*\d|\bcode\b|\bfunction\b|def |```|\bsolve\b|\bcalculate\b", re.IGNORECASE
)
_UNQUOTABLE = re.compile(r"[\[\]<>]")  # keeps quotes from holding verdict tags or closing a tag early


# ---------------------------------------------------------------- the heuristic judge


@dataclass(frozen=True)
class Pair:
    """What the judge reads from a user message: the client's (last) question and the two answers."""

    question: str
    answer_a: str
    answer_b: str


def _between(text: str, start: str, end: str, offset: int = 0) -> tuple[str, int] | None:
    """The text between the first `start` at or after `offset` and the next `end`, and the index past `end`.

    One newline right after `start` and one right before `end` belong to the layout, not to the text.
    """
    i = text.find(start, offset)
    if i < 0:
        return None
    i += len(start)
    j = text.find(end, i)
    if j < 0:
        return None
    inner = text[i:j]
    inner = inner[1:] if inner.startswith("\n") else inner
    inner = inner[:-1] if inner.endswith("\n") else inner
    return inner, j + len(end)


def _last_turn(block: str, speaker: str) -> tuple[str, int] | None:
    """The text of the last `speaker:` turn of a conversation block (to the block's end) and where it starts."""
    prefix = f"{speaker}: "
    i = block.rfind("\n" + prefix)
    if i >= 0:
        return block[i + 1 + len(prefix) :], i
    if block.startswith(prefix):
        return block[len(prefix) :], 0
    return None


def parse_pair(user_text: str) -> Pair | None:
    """Read the single-turn or multi-turn layout of docs/method.md §2; None when neither is there."""
    answer_a = _between(user_text, _START_A, _END_A)
    answer_b = answer_a and _between(user_text, _START_B, _END_B, answer_a[1])
    if answer_a and answer_b:
        question = _between(user_text, _QUESTION, _START_A)
        return Pair(question[0].strip() if question else "", answer_a[0], answer_b[0])

    block_a = _between(user_text, _CONV_START_A, _CONV_END_A)
    block_b = block_a and _between(user_text, _CONV_START_B, _CONV_END_B, block_a[1])
    if not (block_a and block_b):
        return None
    turn_a, turn_b = _last_turn(block_a[0], "Chatbot A"), _last_turn(block_b[0], "Chatbot B")
    if not (turn_a and turn_b):
        return None
    before = block_a[0][: turn_a[1]]
    user = _last_turn(before, "User")
    return Pair(user[0].strip() if user else "", turn_a[0], turn_b[0])


def _text_of(content: Any) -> str:
    """A message's text, whether `content` is a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _quote(text: str, words: int = QUOTE_WORDS) -> str:
    """The first words of `text` on one line, without brackets or angle brackets."""
    first = _UNQUOTABLE.sub("", " ".join(text.split()[:words]))
    return first or "(empty response)"


def _looks_like_reasoning(question: str) -> bool:
    """Math or code: digits with operators, or words such as code, function, solve, calculate."""
    return bool(_REASONING_CUES.search(question))


def _unparseable_trace(has_system: bool, hint: str | None) -> str:
    """A short trace for a request without the two responses: the hint's verdict, else A."""
    verdict = hint or "A"
    note = "The request does not hold two responses in the expected layout, so nothing can be compared"
    note += "; following the correct verdict given with the request." if hint else "."
    if not has_system:
        return f"<think>\n{note}\n</think>\n\n<answer>[[{verdict}]]</answer>"
    return (
        "<type>Chat</type>\n\n<rubric>\n1. Completeness (100%): whether the response answers the request.\n"
        "<justify>\nNo responses were found, so a single criterion is listed.\n</justify>\n</rubric>\n\n"
        f"<eval>\n{note}\n</eval>\n\n<answer>[[{verdict}]]</answer>"
    )


def _misread(user_text: str) -> bool:
    """Whether the rule judge misreads this prompt's request: a hash of the prompt, the same on every call."""
    digest = hashlib.sha256(f"standin-rule-mistake:{user_text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < RULE_MISTAKE_SHARE


def _rule_trace(pair: Pair, user_text: str, hint: str | None) -> str | None:
    """The refusal task's rule as a trace (misread on purpose on some pairs, never against a pass-2 hint);
    None when the pair is not of that task or both answers do the same thing."""
    judgement = rule_judgement(pair.question, pair.answer_a, pair.answer_b)
    if judgement is None or judgement.verdict is None:
        return None
    if hint is not None:  # the correct verdict is given: read the request the way that verdict needs
        return rule_trace(judgement, harmful=judgement.harmful == (hint == judgement.verdict))
    return rule_trace(judgement, harmful=judgement.harmful != _misread(user_text))


def judge_trace(messages: list[dict[str, Any]], model: str = STANDIN_MODEL) -> str:
    """A Chain-of-Rubrics trace whose verdict is the longer answer (tie: A), or the pass-2 hint if present;
    as `STANDIN_RULE_MODEL`, a pair of the refusal task gets the rule's trace instead.

    Deterministic: the same messages always give the same text. No system message (the reasoning
    template family) gives free `<think>...</think>` reasoning before the answer tag.
    """
    has_system = any(m.get("role") in ("system", "developer") for m in messages if isinstance(m, dict))
    users = [_text_of(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    user_text = users[-1] if users else ""
    hint = _HINT.search(user_text)
    pair = parse_pair(user_text)
    if pair is None:
        return _unparseable_trace(has_system, hint.group(1).upper() if hint else None)
    if model == STANDIN_RULE_MODEL and has_system:
        trace = _rule_trace(pair, user_text, hint.group(1).upper() if hint else None)
        if trace is not None:
            return trace

    len_a, len_b = len(pair.answer_a), len(pair.answer_b)
    if hint:
        verdict = hint.group(1).upper()
        conclusion = (
            f"Weighing the correct verdict given with the request, Chatbot {verdict}'s response is the better one."
        )
    elif len_a == len_b:
        verdict = "A"
        conclusion = "Both responses are equally thorough by this measure; the tie goes to Chatbot A."
    else:
        verdict = "A" if len_a > len_b else "B"
        conclusion = f"Chatbot {verdict}'s response is the more thorough of the two, so it serves the client better."
    quote_a, quote_b = _quote(pair.answer_a), _quote(pair.answer_b)
    asked = _quote(pair.question, 16) if pair.question else "(no question found)"

    if not has_system:
        return (
            f'<think>\nThe client asks: "{asked}". Chatbot A\'s response begins "{quote_a}" and runs to '
            f'{len_a} characters; Chatbot B\'s response begins "{quote_b}" and runs to {len_b} characters. '
            f"{conclusion}\n</think>\n\n<answer>[[{verdict}]]</answer>"
        )

    evidence = (
        f"<eval>\n<quote_A>{quote_a}</quote_A>\n<summary_A>Chatbot A's response runs to {len_a} characters."
        f"</summary_A>\n<quote_B>{quote_b}</quote_B>\n<summary_B>Chatbot B's response runs to {len_b} characters."
        f"</summary_B>\n{conclusion}\n</eval>"
    )
    if _looks_like_reasoning(pair.question):
        body = (
            "<type>Reasoning</type>\n\n<solution>\n"
            f'The client asks: "{asked}". A correct answer works through each step and states the result '
            "plainly; the more fully worked response is the likelier to reach it.\n</solution>"
        )
    else:
        body = (
            "<type>Chat</type>\n\n<rubric>\n1. Thoroughness (60%): how fully the response covers the request.\n"
            "2. Relevance (25%): whether the response stays on the client's request.\n"
            "3. Clarity (15%): whether the response is easy to follow.\n<justify>\n"
            f'The client asks: "{asked}". A complete answer matters most here, so thoroughness carries the '
            "largest weight; relevance and clarity decide between answers that are equally complete.\n"
            "</justify>\n</rubric>"
        )
    return f"{body}\n\n{evidence}\n\n<answer>[[{verdict}]]</answer>"


def _truncate_before_answer(text: str) -> str:
    """The trace cut to two thirds of the part before its answer tag (what a length stop leaves)."""
    head = text[: max(text.rfind("<answer>"), 0)]
    return head[: (2 * len(head)) // 3]


# ---------------------------------------------------------------- the server


@dataclass(frozen=True)
class Faults:
    """Share of requests (attempts) that get each fault; drawn per attempt from a seeded RNG."""

    rate_429: float = 0.0
    retry_after_s: float = 1.0  # 429 with a Retry-After header (seconds)
    rate_500: float = 0.0
    rate_hang: float = 0.0
    hang_s: float = 3600.0  # never answers in time (the client's timeout fires); then answers normally
    rate_malformed: float = 0.0  # 200 OK, text that is not a CoR trace (no answer tag)
    rate_truncated: float = 0.0  # 200 OK, finish_reason "length", text cut before the answer tag
    seed: int = 0

    KINDS = ("429", "500", "hang", "malformed", "truncated")

    def __post_init__(self) -> None:
        rates = self.rates()
        if any(not 0.0 <= r <= 1.0 for r in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must each lie in [0, 1] and add up to at most 1, got {rates}")
        if self.retry_after_s < 0 or self.hang_s < 0:
            raise ValueError("retry_after_s and hang_s must not be negative")

    def rates(self) -> dict[str, float]:
        """Fault kind -> share of attempts, in the order one uniform draw walks them."""
        values = (self.rate_429, self.rate_500, self.rate_hang, self.rate_malformed, self.rate_truncated)
        return dict(zip(self.KINDS, values, strict=True))


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": kind}}, status, headers=headers)


def _retry_after_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


class StandinTeacher:
    """A loopback OpenAI-compatible server in a background thread; see the module docstring.

    Every chat answer and fault waits `latency_s` (without blocking the server). `requests_per_minute`
    admits at most floor(rpm) requests in any sliding 60 s window of arrival times and answers the rest
    429 (outcome "rate_limited", Retry-After = seconds until a slot frees); refused requests do not
    count. Faults are drawn per admitted attempt, in arrival order, from `random.Random(faults.seed)`.
    `request_log()` has one entry per chat-completion request, whether sent over HTTP or as a line of a
    batch: {"t": monotonic arrival time, "request_id": `request_id_of(body)`, "outcome", "auth": whether a
    bearer key came (never the key), "source": "http" | "batch"}; `log_path` appends the same as JSON lines.
    Files, batches and models requests are not logged. `port` 0 picks a free port.
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        faults: Faults = Faults(),  # frozen, so a shared default is safe
        requests_per_minute: float | None = None,
        log_path: str | None = None,
        model: str = STANDIN_MODEL,
        batch_delay_s: float = 0.5,
        port: int = 0,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, got {requests_per_minute}")
        self.latency_s = latency_s
        self.faults = faults
        self.requests_per_minute = requests_per_minute
        self.log_path = log_path
        self.model = model
        self.batch_delay_s = batch_delay_s
        self.port = port
        self._rng = random.Random(faults.seed)
        self._window: deque[float] = deque()  # arrival times of accepted requests in the last 60 s
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._log_file: TextIO | None = None
        self._ids = itertools.count(1)
        self._files: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._base_url: str | None = None
        self._server: AsgiServer | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the stand-in teacher is not started")
        return self._base_url

    def start(self) -> str:
        """Serve in a background thread on 127.0.0.1; returns the base URL ".../v1"."""
        if self._server is not None:
            raise RuntimeError("the stand-in teacher is already started")
        if self.log_path:
            self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 -- closed in stop()
        self._stopping = asyncio.Event()  # bound to the server's loop when first awaited there
        self._server = AsgiServer(self._app(), HOST, self.port, name="standin-teacher")
        try:
            self._base_url = f"{self._server.start()}/v1"
        except BaseException:
            self.stop()
            raise
        logger.info("%s serving %s (model %r)", STANDIN_NOTICE, self._base_url, self.model)
        return self._base_url

    def stop(self) -> None:
        """Stop serving; hanging requests are released with a 503. Safe to call twice."""
        if self._server is None:
            return
        loop = self._server.loop
        if loop is not None and self._stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopping.set)
        self._server.stop()
        self._server = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> StandinTeacher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def request_log(self) -> list[dict[str, Any]]:
        """A copy of the log: one entry per chat-completion request, in arrival order."""
        with self._log_lock:
            return [dict(entry) for entry in self._log]

    # -- helpers (all run on the server's event loop)

    def _record(self, rid: str | None, outcome: str, auth: bool, source: str = "http", t: float | None = None) -> None:
        entry = {
            "t": time.monotonic() if t is None else t,
            "request_id": rid,
            "outcome": outcome,
            "auth": auth,
            "source": source,
        }
        with self._log_lock:
            self._log.append(entry)
        if self._log_file is not None:
            self._log_file.write(json.dumps(entry) + "\n")
            self._log_file.flush()

    def _over_rate_limit(self, now: float) -> float | None:
        """Seconds until the window frees a slot when this request is over the limit, else None (and count it)."""
        while self._window and self._window[0] <= now - RATE_WINDOW_S:
            self._window.popleft()
        if self.requests_per_minute is not None and len(self._window) >= max(1, int(self.requests_per_minute)):
            return self._window[0] + RATE_WINDOW_S - now
        self._window.append(now)
        return None

    def _draw_fault(self) -> str:
        draw, edge = self._rng.random(), 0.0
        for kind, rate in self.faults.rates().items():
            edge += rate
            if draw < edge:
                return kind
        return "ok"

    def _completion(self, body: dict[str, Any], text: str, finish_reason: str = "stop") -> dict[str, Any]:
        """An OpenAI chat.completion object; `max_tokens` / `max_completion_tokens` cut the text."""
        limits = [body.get(k) for k in ("max_tokens", "max_completion_tokens")]
        limits = [v for v in limits if isinstance(v, int) and not isinstance(v, bool) and v > 0]
        if limits and len(text) > CHARS_PER_TOKEN * min(limits):
            text, finish_reason = text[: CHARS_PER_TOKEN * min(limits)], "length"
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        prompt_chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        prompt_tokens, completion_tokens = (
            math.ceil(prompt_chars / CHARS_PER_TOKEN),
            math.ceil(len(text) / CHARS_PER_TOKEN),
        )
        return {
            "id": f"chatcmpl-standin-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # -- routes

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/files", self._create_file, methods=["POST"]),
                Route("/v1/files/{file_id}", self._get_file, methods=["GET"]),
                Route("/v1/files/{file_id}/content", self._file_content, methods=["GET"]),
                Route("/v1/batches", self._create_batch, methods=["POST"]),
                Route("/v1/batches/{batch_id}", self._get_batch, methods=["GET"]),
            ]
        )

    async def _chat(self, request: Request) -> Response:
        arrival = time.monotonic()
        auth = _has_bearer(request)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._record(hashlib.sha256(raw).hexdigest(), "bad_request", auth, t=arrival)
            return _error(400, "the body must be a JSON object with a 'messages' list", "invalid_request_error")
        rid = request_id_of(body)
        wait_s = None if not auth else self._over_rate_limit(arrival)
        outcome = "unauthorized" if not auth else "rate_limited" if wait_s is not None else self._draw_fault()
        self._record(rid, outcome, auth, t=arrival)
        await asyncio.sleep(self.latency_s)

        if outcome == "unauthorized":
            return _error(401, "missing 'Authorization: Bearer <key>' header", "invalid_api_key")
        if outcome in ("rate_limited", "429"):
            # A refused request waits whole seconds until a slot frees; an injected 429 says what it was told.
            retry_after = math.ceil(max(0.0, wait_s)) if wait_s is not None else self.faults.retry_after_s
            headers = {"Retry-After": _retry_after_header(retry_after)}
            return _error(429, f"stand-in teacher: too many requests ({outcome})", "rate_limit_exceeded", headers)
        if outcome == "500":
            return _error(500, "stand-in teacher: injected server error", "server_error")
        if outcome == "hang":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), self.faults.hang_s)
                return _error(503, "stand-in teacher: shutting down", "server_error")
            except TimeoutError:
                pass  # hung long enough: answer normally
        if outcome == "malformed":
            return JSONResponse(self._completion(body, MALFORMED_TEXT))
        text = judge_trace(body["messages"], str(body.get("model")))
        if outcome == "truncated":
            return JSONResponse(self._completion(body, _truncate_before_answer(text), "length"))
        return JSONResponse(self._completion(body, text))

    async def _models(self, request: Request) -> Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "standin"}
        return JSONResponse({"object": "list", "data": [model]})

    def _file_object(self, file_id: str) -> dict[str, Any]:
        meta = self._files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(meta["data"]), "created_at": meta["created_at"],
                "filename": meta["filename"], "purpose": meta["purpose"], "status": "processed"}  # fmt: skip

    def _store_file(self, data: bytes, filename: str, purpose: str) -> str:
        file_id = f"file-standin-{next(self._ids)}"
        self._files[file_id] = {"data": data, "filename": filename, "purpose": purpose, "created_at": int(time.time())}
        return file_id

    async def _create_file(self, request: Request) -> Response:
        if not _has_bearer(request):
            return _error(401, "missing 'Authorization: Bearer <key>' header", "invalid_api_key")
        async with request.form() as form:
            upload, purpose = form.get("file"), form.get("purpose")
            if upload is None or isinstance(upload, str) or not isinstance(purpose, str):
                return _error(400, "multipart fields 'file' and 'purpose' are required", "invalid_request_error")
            data = await upload.read()
            filename = upload.filename or "upload.jsonl"
        return JSONResponse(self._file_object(self._store_file(data, filename, purpose)))

    async def _get_file(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if not _has_bearer(request):
            return _error(401, "missing 'Authorization: Bearer <key>' header", "invalid_api_key")
        if file_id not in self._files:
            return _error(404, f"no file {file_id}", "not_found")
        return JSONResponse(self._file_object(file_id))

    async def _file_content(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if not _has_bearer(request):
            return _error(401, "missing 'Authorization: Bearer <key>' header", "invalid_api_key")
        if file_id not in self._files:
            return _error(404, f"no file {file_id}", "not_found")
        return Response(self._files[file_id]["data"], media_type="application/jsonl")

    def _answer_batch_line(self, line: str, endpoint: str) -> tuple[dict[str, Any], bool]:
        """One output line (ok) or error line for one input line of a batch file; no faults in batches."""
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        body = request.get("body") if isinstance(request, dict) else None
        line_id = f"batch_req_standin_{next(self._ids)}"
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or request.get("url") != endpoint:
            error = {"code": "invalid_request", "message": f"a line needs custom_id, url {endpoint!r} and a chat body"}
            return {"id": line_id, "custom_id": custom_id, "response": None, "error": error}, False
        rid = request_id_of(body)
        self._record(rid, "ok", True, source="batch")
        completion = self._completion(body, judge_trace(body["messages"], str(body.get("model"))))
        response = {"status_code": 200, "request_id": rid, "body": completion}
        return {"id": line_id, "custom_id": custom_id, "response": response, "error": None}, True

    async def _create_batch(self, request: Request) -> Response:
        if not _has_bearer(request):
            return _error(401, "missing 'Authorization: Bearer <key>' header", "invalid_api_key")
        try:
            params = await request.json()
        except ValueError:
            params = None
        if not isinstance(params, dict) or params.get("input_file_id") not in self._files:
            return _error(400, "input_file_id must name an uploaded file", "invalid_request_error")
        endpoint = params.get("endpoint", "/v1/chat/completions")
        if endpoint != "/v1/chat/completions":
            return _error(400, "the stand-in teacher only batches /v1/chat/completions", "invalid_request_error")
        lines = self._files[params["input_file_id"]]["data"].decode("utf-8").splitlines()
        answered = [self._answer_batch_line(line, endpoint) for line in lines if line.strip()]
        ok = [json.dumps(out) for out, good in answered if good]
        failed = [json.dumps(out) for out, good in answered if not good]
        batch_id = f"batch_standin_{next(self._ids)}"
        output_file_id = self._store_file(
            ("\n".join(ok) + "\n").encode() if ok else b"", f"{batch_id}_output.jsonl", "batch_output"
        )
        error_file_id = (
            self._store_file(("\n".join(failed) + "\n").encode(), f"{batch_id}_error.jsonl", "batch_output")
            if failed
            else None
        )
        now = int(time.time())
        self._batches[batch_id] = {
            "view": {
                "id": batch_id,
                "object": "batch",
                "endpoint": endpoint,
                "input_file_id": params["input_file_id"],
                "completion_window": params.get("completion_window", "24h"),
                "created_at": now,
                "expires_at": now + 86400,
                "metadata": params.get("metadata"),
                "model": self.model,
                "status": "validating",
                "request_counts": {"total": len(answered), "completed": 0, "failed": 0},
            },
            "t0": time.monotonic(),
            "done": {
                "output_file_id": output_file_id,
                "error_file_id": error_file_id,
                "request_counts": {"total": len(answered), "completed": len(ok), "failed": len(failed)},
            },
        }
        return JSONResponse(self._batches[batch_id]["view"])

    async def _get_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        if not _has_bearer(request):
            return _error(401, "missing 'Authorization: Bearer <key>' header", "invalid_api_key")
        if batch_id not in self._batches:
            return _error(404, f"no batch {batch_id}", "not_found")
        batch = self._batches[batch_id]
        view = dict(batch["view"], status="in_progress", in_progress_at=batch["view"]["created_at"])
        if time.monotonic() - batch["t0"] >= self.batch_delay_s:
            view.update(
                batch["done"], status="completed", finalizing_at=int(time.time()), completed_at=int(time.time())
            )
        return JSONResponse(view)


def _has_bearer(request: Request) -> bool:
    """Whether an `Authorization: Bearer <something>` header came; the key itself is never kept."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(key.strip())


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    """Serve a stand-in teacher until Ctrl-C."""
    parser = argparse.ArgumentParser(description=f"Serve the {STANDIN_NOTICE} on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every answer waits")
    parser.add_argument("--rpm", type=float, default=None, help="server-side requests per minute (sliding 60 s)")
    parser.add_argument("--log-path", default=None, help="append one JSON line per chat request to this file")
    parser.add_argument("--model", default=STANDIN_MODEL, help="model name the server reports")
    parser.add_argument("--batch-delay", type=float, default=0.5, help="seconds before a batch completes")
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-hang", type=float, default=0.0)
    parser.add_argument("--hang-s", type=float, default=3600.0)
    parser.add_argument("--rate-malformed", type=float, default=0.0)
    parser.add_argument("--rate-truncated", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faults = Faults(
        rate_429=args.rate_429, retry_after_s=args.retry_after, rate_500=args.rate_500, rate_hang=args.rate_hang,
        hang_s=args.hang_s, rate_malformed=args.rate_malformed, rate_truncated=args.rate_truncated, seed=args.seed,
    )  # fmt: skip
    teacher = StandinTeacher(args.latency, faults, args.rpm, args.log_path, args.model, args.batch_delay, args.port)
    base_url = teacher.start()
    print(base_url, flush=True)
    print(STANDIN_NOTICE, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        teacher.stop()


if __name__ == "__main__":
    main()
