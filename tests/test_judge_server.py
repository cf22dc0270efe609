"""`rmr1 serve`'s server on 127.0.0.1 through a real HTTP client: OpenRLHF's /get_reward, /v1/judge, /health,
a bearer token, body limits, malformed requests under load, and no secret in the log."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.evaluate.config import JudgeConfig
from tasks.evaluate.judges import LengthJudge
from tasks.judge import PairwiseJudge
from tasks.judge.server import make_server

TOKEN = "s3cret-token-never-logged"
Q = [{"role": "user", "content": "Which answer is better?"}]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    judge = PairwiseJudge(JudgeConfig(backend="length", allow_tie=True), "length", engine=LengthJudge(),
                          cache_path=str(tmp_path / "cache.sqlite"))  # fmt: skip
    http = make_server(judge, token=TOKEN, max_body=20_000, max_concurrency=4)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    host, port = http.server_address[:2]
    assert host == "127.0.0.1"
    yield f"http://127.0.0.1:{port}"
    http.shutdown()
    http.server_close()


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
        ("GET", "/health", None, {}, 401, "bearer token"),
        ("POST", "/v1/judge", b'{"prompt": "q", "a": "x", "b": "y"}', {"Authorization": "Bearer nope"}, 401, "token"),
        ("POST", "/v1/judge", b"{not json", AUTH, 400, "not JSON"),
        ("POST", "/v1/judge", b"[1, 2]", AUTH, 400, "JSON object"),
        ("POST", "/v1/judge", b'{"prompt": "q", "a": "x"}', AUTH, 400, "'a' and 'b' must be strings"),
        ("POST", "/v1/judge", b'{"conversation": [{"role": "robot", "content": "x"}], "a": "x", "b": "y"}', AUTH,
         400, "conversation"),
        ("POST", "/get_reward", b'{"query": ["a"], "prompts": [], "labels": ["x"]}', AUTH, 400, "'prompts' has 0"),
        ("POST", "/nowhere", b"{}", AUTH, 404, "no POST /nowhere"),
        ("GET", "/v1/judge", None, AUTH, 404, "no GET"),
        ("POST", "/v1/judge", b"x" * 30_000, AUTH, 413, "over the 20000 byte limit"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_and_a_message(
    server: str, method: str, path: str, content: bytes | None, headers: dict[str, str], status: int, message: str
) -> None:
    response = httpx.request(method, server + path, content=content, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert httpx.get(server + "/health", headers=AUTH).status_code == 200  # still serving


def test_hundreds_of_concurrent_requests_some_malformed(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def call(k: int) -> tuple[int, int, Any]:
        with httpx.Client(base_url=server, headers=AUTH, timeout=30) as client:
            if k % 4 == 3:  # malformed: b missing
                response = client.post("/v1/judge", content=json.dumps({"prompt": f"q{k}", "a": "x"}))
            else:
                response = client.post("/v1/judge", json={"prompt": f"q{k}", "a": "x" * (k % 7), "b": "y" * 3})
            return k, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(call, range(300)))
    for k, status, payload in results:
        if k % 4 == 3:
            assert status == 400 and "must be strings" in payload["error"]
        else:
            expected = "a" if k % 7 > 3 else "b" if k % 7 < 3 else "tie"
            assert status == 200 and payload["verdict"] == expected
    assert httpx.get(server + "/health", headers=AUTH).status_code == 200
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
        assert httpx.get(url + "/health").status_code == 401
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
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}/v1/judge"

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
        http.shutdown()
        http.server_close()
        judge.close()
        teacher.stop()


def test_a_local_model_judges_requests_waiting_together_in_one_batch(tmp_path: Path) -> None:
    """`Batched`: one worker thread calls the judge; requests queued meanwhile share its next call."""
    from tasks.judge.server import Batched

    calls: list[int] = []
    gate = threading.Event()

    class Slow(LengthJudge):
        def judge(self, inputs: Any, on_done: Any = None) -> Any:
            calls.append(len(inputs))
            gate.wait(10)  # the first call holds the worker until every request is queued
            return super().judge(inputs, on_done)

    judge = PairwiseJudge(JudgeConfig(backend="length", allow_tie=True), "length", engine=Slow())
    batched = Batched(judge)
    with ThreadPoolExecutor(max_workers=9) as pool:
        futures = [pool.submit(batched.compare, Q, "", "yyy")]
        while not calls:  # the worker is inside its first call
            threading.Event().wait(0.01)
        futures += [pool.submit(batched.compare, Q, "x" * k, "yyy") for k in range(1, 9)]
        while batched.queue.qsize() < 8:  # the other eight wait together
            threading.Event().wait(0.01)
        gate.set()
        verdicts = [future.result(timeout=30).verdict for future in futures]
    assert verdicts == ["b", "b", "b", "tie", "a", "a", "a", "a", "a"]
    assert calls == [1, 8]  # two calls to the model for nine requests
