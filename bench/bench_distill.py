"""Benchmark the distill stage beside the raw `AsyncOpenAI` client, against the stand-in teacher.

    python bench/bench_distill.py [--pairs 2000] [--latency 0.2] [--in-flight 64] [--rpm-requests 90]

1. Throughput: the stand-in runs in its own process (as a real endpoint would be) answering after
   `--latency` seconds. The raw client sends the distill stage's exact requests with a semaphore of
   `--in-flight`; the stage (`distill_traces`, no Prefect, fresh cache and store) sends the same
   requests with the same concurrency. Raw, stage, raw again, in one run; the ratio uses the mean raw.
   The stage is timed twice: its send phase (what the client machinery achieves) and end to end (reading
   `distill_set`, rendering prompts, publishing `teacher_traces`).
2. Rate limit: the stand-in enforces `--rpm` over a sliding 60 s window (answering 429 beyond it); the
   stage sends `--rpm-requests` requests with `requests_per_minute=--rpm`; the achieved rate is measured
   from the server's arrival times, and the server's log must hold no 429.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: progress bars would time themselves

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from data_contracts import ArtifactRef, ArtifactStore
from tasks.distill.config import DistillConfig, TeacherConfig
from tasks.distill.stage import distill_traces, distill_version, judge_request
from tasks.judge.protocol import load_template_set
from tasks.llm.client import Connection
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.stage import pull_preferences, pull_version
from tasks.split.config import SplitConfig
from tasks.split.stage import split_pairs, split_versions
from tasks.stage import StageResult

KEY = "sk-bench-not-a-secret"


def start_server(latency: float, rpm: float | None, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "tasks.standins.teacher", "--port", "0", "--latency", str(latency)]
    command += ["--log-path", str(log_path)] + (["--rpm", str(rpm)] if rpm else [])
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("http://"):
            return server, line.split()[0]
    raise RuntimeError("the stand-in teacher did not start")


def make_distill_set(store: ArtifactStore, pairs: int) -> ArtifactRef:
    pull = PullConfig(sources=(SourceConfig(name="syn", adapter="synthetic", rows=2 * pairs, seed=1),))
    preference_pairs = pull_preferences(pull, store, version=pull_version(pull)).outputs["preference_pairs"]
    split = SplitConfig(distill_fraction=0.5, stratify_by_domain=False)
    versions = split_versions(split, preference_pairs)
    return split_pairs(preference_pairs, split, store, versions=versions).outputs["distill_set"]


def distill(distill_set: ArtifactRef, config: DistillConfig, store: ArtifactStore) -> StageResult:
    return distill_traces(distill_set, config, store, version=distill_version(config, distill_set))


async def raw_client(
    base_url: str, messages: list[list[dict[str, str]]], in_flight: int, max_tokens: int, post: bool = False
) -> float:
    """Requests per second of a bare client: `chat.completions.create`, or (post=True) the stage's own path,
    one POST on the SDK's pool with its headers (`tasks.llm.client.Connection`), without cache or bookkeeping."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    connection = Connection.open(TeacherConfig(base_url=base_url, max_in_flight=in_flight), KEY)
    gate = asyncio.Semaphore(in_flight)

    async def one(message: list[dict[str, str]]) -> None:
        async with gate:
            body = {"model": "teacher", "messages": message, "max_tokens": max_tokens}
            if post:
                await connection.post(body)
            else:
                await client.chat.completions.create(**body)  # type: ignore[call-overload]

    started = time.perf_counter()
    await asyncio.gather(*(one(m) for m in messages))
    elapsed = time.perf_counter() - started
    await client.close()
    await connection.close()
    return len(messages) / elapsed


def stage_run(
    base_url: str, store: ArtifactStore, distill_set: ArtifactRef, teacher: TeacherConfig
) -> tuple[float, float]:
    started = time.perf_counter()
    result = distill(distill_set, DistillConfig(teacher=teacher, shard_rows=100_000), store)
    end_to_end = result.stats["totals"]["requests"] / (time.perf_counter() - started)
    return float(result.stats["totals"]["requests_per_s"]), end_to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--rpm", type=float, default=120.0)
    parser.add_argument("--rpm-requests", type=int, default=90, help="0 skips the rate-limit check")
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = KEY
    work = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    teacher = TeacherConfig(base_url=None, model="teacher", max_tokens=1024, max_in_flight=args.in_flight)

    server, base_url = start_server(args.latency, None, work / "server.jsonl")
    try:
        source_store = ArtifactStore(work / "source")
        distill_set = make_distill_set(source_store, args.pairs)
        rows = source_store.read_table(distill_set).to_pylist()
        template = load_template_set("cor-instruct-v1")
        teacher = TeacherConfig(**{**teacher.__dict__, "base_url": base_url})
        messages = [list(judge_request(row, template, teacher).messages) for row in rows]
        raw_first = asyncio.run(raw_client(base_url, messages, args.in_flight, teacher.max_tokens))
        runs = []
        for attempt in range(2):
            store = ArtifactStore(work / f"stage-{attempt}")
            runs.append(stage_run(base_url, store, make_distill_set(store, args.pairs), teacher))
        raw_second = asyncio.run(raw_client(base_url, messages, args.in_flight, teacher.max_tokens))
        raw_post = asyncio.run(raw_client(base_url, messages, args.in_flight, teacher.max_tokens, post=True))
    finally:
        server.terminate()
    raw = (raw_first + raw_second) / 2
    send = sum(r[0] for r in runs) / len(runs)
    end_to_end = sum(r[1] for r in runs) / len(runs)
    print(f"{len(messages)} requests, {args.in_flight} in flight, stand-in latency {args.latency:g} s")
    print(f"{'client':<34} {'req/s':>8} {'vs raw':>8}")
    print(f"{'raw AsyncOpenAI (mean of 2)':<34} {raw:8.1f} {'1.00':>8}   ({raw_first:.1f}, {raw_second:.1f})")
    print(
        f"{'distill stage, send phase':<34} {send:8.1f} {send / raw:8.2f}   ({', '.join(f'{r[0]:.1f}' for r in runs)})"
    )
    print(f"{'distill stage, end to end':<34} {end_to_end:8.1f} {end_to_end / raw:8.2f}")
    print(
        f"{'bare POST (the stage path)':<34} {raw_post:8.1f} {raw_post / raw:8.2f}"
        f"   stage / this: {send / raw_post:.2f}"
    )
    print(f"target: send phase >= 0.95 x raw: {'MET' if send / raw >= 0.95 else 'NOT MET'}")

    if args.rpm_requests:
        log_path = work / "rpm.jsonl"
        server, base_url = start_server(0.05, args.rpm, log_path)
        try:
            store = ArtifactStore(work / "rpm")
            distill_set = make_distill_set(store, args.rpm_requests)
            limited = TeacherConfig(**{**teacher.__dict__, "base_url": base_url, "requests_per_minute": args.rpm})
            distill(distill_set, DistillConfig(teacher=limited), store)
        finally:
            server.terminate()
        entries = [json.loads(line) for line in log_path.read_text().splitlines()]
        arrivals = sorted(e["t"] for e in entries)
        achieved = 60 * (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        refused = sum(e["outcome"] in ("429", "rate_limited") for e in entries)
        print(f"rate limit {args.rpm:g} RPM, {len(arrivals)} requests: achieved {achieved:.1f} RPM "
              f"({achieved / args.rpm:.1%} of the limit), 429s seen by the server: {refused}")  # fmt: skip


if __name__ == "__main__":
    main()
