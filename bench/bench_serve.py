"""`rmr1 serve` with the openai backend beside the raw client: the same pairs judged through the reward server
(POST /v1/judge, concurrent HTTP clients) and sent straight to the endpoint with `AsyncOpenAI`.

    python bench/bench_serve.py [--pairs 400] [--latency 0.2] [--concurrency 32] [--batch 1]

The stand-in teacher (its own process, answering after `--latency` s) is the judge's endpoint. The raw
client sends the judge's exact messages with a semaphore of `--concurrency`; the server (`rmr1 serve` in its
own process, `--max-in-flight` the same) gets `--concurrency` requests at once from one pooled async httpx
client, each pair once (a fresh cache per run). Raw, server, raw, server in one run; the ratio uses the means.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
from bench_distill import start_server  # this folder is on sys.path when a script here runs

from tasks.judge.protocol import load_template_set, render_judge_messages

KEY = "sk-bench-not-a-secret"


def pairs(count: int) -> list[tuple[str, str, str]]:
    return [(f"Question {k}: explain item {k}.", "short answer " * (1 + k % 3), "a longer answer " * (1 + k % 5))
            for k in range(count)]  # fmt: skip


async def raw(base_url: str, items: list[tuple[str, str, str]], concurrency: int) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    template = load_template_set("cor-instruct-v1")
    gate = asyncio.Semaphore(concurrency)

    async def one(item: tuple[str, str, str]) -> None:
        messages = render_judge_messages(template, [{"role": "user", "content": item[0]}], item[1], item[2])
        async with gate:
            await client.chat.completions.create(model="judge", messages=messages, max_tokens=8192, temperature=0.0)  # type: ignore[arg-type]

    started = time.perf_counter()
    await asyncio.gather(*(one(item) for item in items))
    elapsed = time.perf_counter() - started
    await client.close()
    return len(items) / elapsed


def served(base_url: str, items: list[tuple[str, str, str]], concurrency: int, work: Path, batch: int = 1) -> float:
    """`rmr1 serve --endpoint` in its own process, as deployed; the clients share one pooled httpx client. With
    `batch` > 1, OpenRLHF's way: POST /get_reward with `batch` responses each (judged against their labels),
    `concurrency // batch` requests at once, so as many pairs are in flight."""
    command = [sys.executable, "-m", "flows.cli", "serve", "--endpoint", base_url, "--served-model", "judge",
               "--port", "0", "--artifacts", str(work), "--max-concurrency", str(concurrency),
               "--max-in-flight", str(concurrency)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", process.stdout.readline())
    assert match, "rmr1 serve did not start"
    url = match.group(1)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def drive() -> float:  # one pooled async client, as the raw side has
        gate = asyncio.Semaphore(max(1, concurrency // batch))
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one(chunk: list[tuple[str, str, str]]) -> None:
                if batch == 1:
                    (prompt, a, b), route = chunk[0], "/v1/judge"
                    body: dict[str, object] = {"prompt": prompt, "a": a, "b": b}
                else:
                    route = "/get_reward"
                    body = {"query": [p + a for p, a, _ in chunk], "prompts": [p for p, _, _ in chunk],
                            "labels": [b for _, _, b in chunk]}  # fmt: skip
                async with gate:
                    response = await client.post(url + route, json=body)
                assert response.status_code == 200, response.text
                answer = response.json()
                assert answer["verdict"] != "error" if batch == 1 else not answer["extra_logs"]["judge_errors"][0]

            started = time.perf_counter()
            await asyncio.gather(*(one(items[k : k + batch]) for k in range(0, len(items), batch)))
            return time.perf_counter() - started

    try:
        elapsed = asyncio.run(drive())
    finally:
        process.terminate()
        process.wait(timeout=30)
    return len(items) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32, help="Pairs in flight at once.")
    parser.add_argument("--batch", type=int, default=1, help="Pairs per request: 1 is /v1/judge, more /get_reward.")
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = KEY
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    process, base_url = start_server(args.latency, None, work / "server.jsonl")
    items = pairs(args.pairs)
    raws, serves = [], []
    try:
        for attempt in range(2):
            raws.append(asyncio.run(raw(base_url, items, args.concurrency)))
            serves.append(served(base_url, items, args.concurrency, work / f"artifacts-{attempt}", args.batch))
    finally:
        process.terminate()
    mean_raw, mean_served = sum(raws) / 2, sum(serves) / 2
    print(f"{args.pairs} pairs, {args.concurrency} at once, stand-in latency {args.latency:g} s")
    print(f"raw AsyncOpenAI      {mean_raw:7.1f} pairs/s  ({', '.join(f'{r:.1f}' for r in raws)})")
    ratio = mean_served / mean_raw
    route = "/v1/judge  " if args.batch == 1 else f"/get_reward x{args.batch}"
    print(f"rmr1 serve {route}{mean_served:7.1f} pairs/s  ({', '.join(f'{r:.1f}' for r in serves)})  "
          f"{ratio:.2f}x raw; target >= 0.95: {'MET' if ratio >= 0.95 else 'NOT MET'}")  # fmt: skip


if __name__ == "__main__":
    main()
