"""`rmr1 serve`'s server on 127.0.0.1 through real HTTP clients (sync, async, raw sockets): OpenRLHF's /get_reward,
/v1/judge, /health, a bearer token, body limits, refusals on kept-alive connections, malformed requests under load,
and no secret in the log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.judge import PairwiseJudge
from tasks.judge.backends import LengthJudge
from tasks.judge.config import JudgeConfig
from tasks.judge.server import make_server

TOKEN = "s3cret-token-never-logged"
Q = [{"role": "user", "content": "Which answer is better?"}]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    judge = PairwiseJudge(JudgeConfig(backend="length", allow_tie=True), "length", engine=LengthJudge(),
                          cache_path=str(tmp_path / "cache.sqlite"))  # fmt: skip
    http = make_server(judge, token=TOKEN, max_body=20_000, max_concurrency=4)
    assert http.host == "127.0.0.1"
    yield http.start()
    http.stop()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_health_judge_and_get_reward(server: str) -> None:
    with httpx.Client(base_url=server, headers=AUTH) as client:
        assert client.get("/health").json() == {"status": "ok", "judge": "length"}
        answer = client.post("/v1/judge", json={"prompt": "q", "a": "short", "b": "a longer answer"}).json()
        assert answer["verdict"] == "b" and answer["winner"] == 1 and answer["traces"][0].endswith("</answer>")
        conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                        {"role": "user", "content": "and?"}]  # fmt: skip
        assert client.post("/v1/judge", json={"conversation": conversation, "a": "xx", "b": "xx"}).json()[
            "verdict"] == "tie"  # fmt: skip
        body = {
            "query": ["Q: one. A: long response here", "Q: two. A: no", "Q: three. A: same"],
            "prompts": ["Q: one. A: ", "Q: two. A: ", "Q: three. A: "],
            "labels": ["ref", "reference", "four"],  # the responses are judged against these references
        }
        reward = client.post("/get_reward", json=body).json()
        assert reward["rewards"] == [1.0, -1.0, 0.0] and reward["scores"] == reward["rewards"]
        assert reward["extra_logs"]["judge_errors"] == [0.0] * 3


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "message"),
    [
        ("POST", "/v1/judge", b'{"prompt": "q", "a": "x", "b": "y"}', {}, 401, "bearer token"),
        ("POST", "/v1/judge", b'{"prompt": "q", "a": "x", "b": "y"}', {"Authorization": "Bearer nope"}, 401, "token"),
        ("POST", "/v1/judge", b"{not json", AUTH, 422, "JSON"),
        ("POST", "/v1/judge", b"[1, 2]", AUTH, 422, "valid dictionary"),
        ("POST", "/v1/judge", b'{"prompt": "q", "a": "x"}', AUTH, 422, "b: Field required"),
        ("POST", "/v1/judge", b'{"conversation": [{"role": "robot", "content": "x"}], "a": "x", "b": "y"}', AUTH,
         422, "conversation.0.role"),
        ("POST", "/v1/judge", b'{"a": "x", "b": "y"}', AUTH, 422, "give 'conversation'"),
        ("POST", "/get_reward", b'{"query": ["a"], "prompts": [], "labels": ["x"]}', AUTH, 422, "'prompts' has 0"),
        ("POST", "/nowhere", b"{}", AUTH, 404, "no POST /nowhere"),
        ("GET", "/v1/judge", None, AUTH, 405, "GET is not allowed"),
        ("POST", "/v1/judge", b"x" * 30_000, AUTH, 413, "over the 20000 byte limit"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_and_a_message(
    server: str, method: str, path: str, content: bytes | None, headers: dict[str, str], status: int, message: str
) -> None:
    response = httpx.request(method, server + path, content=content, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"], response.json()
    assert httpx.get(server + "/health", headers=AUTH).status_code == 200  # still serving


def test_health_answers_a_probe_without_the_token_and_names_the_judge_only_with_it(server: str) -> None:
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    assert httpx.get(server + "/health", headers=AUTH).json() == {"status": "ok", "judge": "length"}
    assert httpx.get(server + "/openapi.json").status_code == 401  # the schema is the API's: behind the token
    schema = httpx.get(server + "/openapi.json", headers=AUTH).json()
    assert {"/get_reward", "/v1/judge", "/health"} <= set(schema["paths"])
    assert "RewardRequest" in schema["components"]["schemas"]


def raw(path: str, body: bytes | None, token: str | None = TOKEN) -> bytes:
    """A request as bytes: a Content-Length when there is a body, the bearer token unless None."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer {token}\r\n" if token else ""
    head += f"Content-Length: {len(body)}\r\n" if body is not None else ""
    return (head + "\r\n").encode() + (body or b"")


REFUSED = [  # (request, status, words in the error); each is sent whole, as a client does, then a good request
    (raw("/get_reward", b'{"query": ["a"], "prompts": ["a"], "labels": ["b"]}', token=None), 401, "bearer token"),
    (raw("/nowhere", b'{"x": 12}'), 404, "no POST /nowhere"),
    (raw("/v1/judge", None), 411, "Content-Length"),
    (raw("/v1/judge", b"x" * 30_000), 413, "byte limit"),
    (raw("/v1/judge", b'{"a": "x"}'), 422, "Field required"),
    (raw("/v1/judge", b"{not json"), 422, "JSON"),
]


def _read_response(sock: socket.socket, buffered: bytes) -> tuple[int, dict[str, Any], bytes]:
    """One HTTP/1.1 response with a Content-Length from `sock`: status, JSON body, and the bytes after it."""
    while b"\r\n\r\n" not in buffered:
        buffered += sock.recv(65536) or pytest.fail(f"connection closed mid-response: {buffered!r}")
    head, _, rest = buffered.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(rest) < length:
        rest += sock.recv(65536) or pytest.fail("connection closed mid-body")
    return int(head.split()[1]), json.loads(rest[:length]), rest[length:]


@pytest.mark.parametrize(("request_bytes", "status", "words"), REFUSED, ids=[str(r[1]) for r in REFUSED])
def test_a_refused_request_leaves_its_kept_alive_connection_usable(
    server: str, request_bytes: bytes, status: int, words: str
) -> None:
    """The defect of the hand-written server: a refused request's unread body was parsed as the start of the next
    request on the connection (`400 Bad request syntax`). Here the refusal and a good request share one socket,
    sent back to back, and the good one is answered."""
    follow = raw("/v1/judge", json.dumps({"prompt": "q", "a": "x", "b": "yy"}).encode())
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request_bytes + follow)
        first, payload, rest = _read_response(sock, b"")
        assert first == status and words in payload["error"], payload
        second, payload, _ = _read_response(sock, rest)
        assert second == 200 and payload["verdict"] == "b", payload


def test_an_async_client_reads_every_refusal_and_keeps_its_one_connection(server: str) -> None:
    """Through httpx.AsyncClient on one kept-alive connection: each refusal is read as a JSON 4xx (the 5 MB body
    too: the hand-written server answered and closed, and the async client got `ReadError('')`), and the
    connection is the same one from the first request to the last."""

    async def main() -> list[tuple[int, str, object]]:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=server, limits=limits, timeout=30) as client:
            calls = [
                ("POST", "/get_reward", {}, b'{"query": []}'),
                ("POST", "/v1/judge", AUTH, b"x" * (5 << 20)),
                ("POST", "/nowhere", AUTH, b"{}"),
                ("POST", "/v1/judge", AUTH, b'{"prompt": 3, "a": "x", "b": "y"}'),
                ("POST", "/v1/judge", AUTH, b"z" * 25_000),
                ("POST", "/v1/judge", AUTH, json.dumps({"prompt": "q", "a": "xxx", "b": "y"}).encode()),
            ]
            seen = []
            for method, path, headers, content in calls:
                response = await client.request(method, path, headers=headers, content=content)
                stream = response.extensions["network_stream"]
                seen.append((response.status_code, response.json().get("error") or response.json()["verdict"],
                             stream.get_extra_info("client_addr")))  # fmt: skip
            return seen

    seen = asyncio.run(main())
    assert [(status, text if status == 200 else text.split()[0]) for status, text, _ in seen] == [
        (401, "missing"), (413, "body"), (404, "no"), (422, "prompt:"), (413, "body"), (200, "a")]  # fmt: skip
    assert len({address for _, _, address in seen}) == 1  # one connection throughout


def test_hundreds_of_get_reward_requests_at_64_in_flight_a_quarter_malformed(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """300 good and 100 malformed /get_reward requests through one async client, 64 in flight: every good one
    answered with its rewards, every bad one a JSON 4xx, no connection error (gather raises on the first), no
    5xx, the server healthy afterwards and the token nowhere in the log."""
    caplog.set_level(logging.DEBUG)
    bad = [  # (headers, body, status)
        (AUTH, json.dumps({"query": ["q"], "prompts": ["q"]}).encode(), 422),  # no labels
        (AUTH, json.dumps({"query": "q", "prompts": ["q"], "labels": ["r"]}).encode(), 422),  # not a list
        (AUTH, b"{not json", 422),
        (AUTH, json.dumps({"query": ["q" * 30_000], "prompts": ["q"], "labels": ["r"]}).encode(), 413),
        ({"Authorization": "Bearer wrong"}, json.dumps({"query": [], "prompts": [], "labels": []}).encode(), 401),
    ]

    def good(k: int) -> tuple[bytes, list[float]]:
        prompts = [f"Q{k}.{i} A: " for i in range(3)]
        responses = ["a" * (k % 5), "bb", "c" * (4 - k % 5)]
        body = {"query": [p + r for p, r in zip(prompts, responses, strict=True)], "prompts": prompts,
                "labels": ["xx"] * 3}  # fmt: skip
        expected = [1.0 if len(r) > 2 else 0.0 if len(r) == 2 else -1.0 for r in responses]
        return json.dumps(body).encode(), expected

    async def main() -> list[tuple[int, int, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=server, limits=limits, timeout=60) as client:
            slots = asyncio.Semaphore(64)

            async def call(k: int) -> tuple[int, int, dict[str, Any]]:
                headers, body = (bad[k // 4 % 5][0], bad[k // 4 % 5][1]) if k % 4 == 3 else (AUTH, good(k)[0])
                async with slots:
                    response = await client.post("/get_reward", content=body, headers=headers)
                return k, response.status_code, response.json()

            return await asyncio.gather(*(call(k) for k in range(400)))

    results = asyncio.run(main())
    assert sum(k % 4 != 3 for k, _, _ in results) == 300
    for k, status, payload in results:
        if k % 4 == 3:
            assert status == bad[k // 4 % 5][2] and payload["error"], (k, status, payload)
        else:
            assert status == 200 and payload["rewards"] == good(k)[1], (k, status, payload)
    assert httpx.get(server + "/health", headers=AUTH).json()["status"] == "ok"
    assert TOKEN not in caplog.text


def test_rmr1_serve_serves_a_model_folder_and_requires_its_token(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    from tasks.models.config import TinyModelConfig
    from tasks.models.tiny import build_tiny_model

    config = TinyModelConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1)
    model = build_tiny_model(["which answer is better", "short", "longer answer"], config, str(tmp_path / "tiny"))
    env = {**os.environ, "JUDGE_TOKEN": TOKEN}
    command = [sys.executable, "-m", "flows.cli", "serve", "--model", model, "--port", "0", "--max-new-tokens", "4",
               "--token-env", "JUDGE_TOKEN"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving (\S+) on (http://127\.0\.0\.1:\d+) \(bearer token required\)", line)
        assert match, line
        url = match.group(2)
        assert httpx.post(url + "/v1/judge", json={"prompt": "q", "a": "x", "b": "y"}).status_code == 401
        answer = httpx.post(url + "/v1/judge", json={"prompt": "q", "a": "short", "b": "longer answer"},
                            headers=AUTH, timeout=60).json()  # fmt: skip
        assert answer["verdict"] in ("a", "b", "tie", "error") and answer["tokens"] > 0
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert TOKEN not in errors


def test_an_endpoint_judge_answers_concurrent_requests_within_one_in_flight_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests to an endpoint judge are not batched together: each sends its own calls through the judge's one
    connection, whose `max_in_flight` holds across all of them; a pair asked again is answered from the cache."""
    from tasks.standins.teacher import StandinTeacher

    monkeypatch.setenv("JUDGE_KEY", "sk-test-not-a-secret")
    teacher = StandinTeacher(latency_s=0.3)
    base_url = teacher.start()
    judge = PairwiseJudge.from_endpoint(base_url, "standin", api_key_env="JUDGE_KEY", max_in_flight=3,
                                        cache_path=str(tmp_path / "cache.sqlite"))  # fmt: skip
    http = make_server(judge, max_concurrency=16)
    url = http.start() + "/v1/judge"

    def call(k: int) -> str:
        body = {"prompt": f"question {k}", "a": "brief", "b": "a much longer answer " * (1 + k % 3)}
        return httpx.post(url, json=body, timeout=60).json()["verdict"]

    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            assert list(pool.map(call, range(12))) == ["b"] * 12  # the stand-in prefers the longer answer
            arrivals = sorted(entry["t"] for entry in teacher.request_log())
            assert len(arrivals) == judge.calls == 12
            # each slot sends its next request only after an answer (0.3 s later): any 0.29 s holds <= 3 arrivals
            assert max(sum(1 for t in arrivals if start <= t < start + 0.29) for start in arrivals) <= 3
            assert list(pool.map(call, range(12))) == ["b"] * 12
        assert len(teacher.request_log()) == judge.calls == 12  # nothing sent twice
    finally:
        http.stop()
        judge.close()
        teacher.stop()


def test_a_local_model_judges_requests_waiting_together_in_one_batch(tmp_path: Path) -> None:
    """`LocalBatches`: one worker thread calls the judge; requests that arrive meanwhile share its next call."""
    from tasks.judge.server import LocalBatches

    calls: list[int] = []
    gate = threading.Event()

    class Slow(LengthJudge):
        def judge(self, inputs: Any, on_done: Any = None) -> Any:
            calls.append(len(inputs))
            gate.wait(10)  # the first call holds the worker until every request is waiting
            return super().judge(inputs, on_done)

    judge = PairwiseJudge(JudgeConfig(backend="length", allow_tie=True), "length", engine=Slow())
    batches = LocalBatches(judge)

    async def main() -> list[str]:
        first = asyncio.create_task(batches.compare_many([(Q, "", "yyy")]))
        while not calls:  # the worker is inside its first call
            await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batches.compare_many([(Q, "x" * k, "yyy")])) for k in range(1, 9)]
        while len(batches.waiting) < 8:  # the other eight wait together
            await asyncio.sleep(0.01)
        gate.set()
        return [(await task)[0].verdict for task in [first, *rest]]

    assert asyncio.run(main()) == ["b", "b", "b", "tie", "a", "a", "a", "a", "a"]
    assert calls == [1, 8]  # two calls to the model for nine requests
    batches.close()
