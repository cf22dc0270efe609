"""Benchmark the evaluate stage's openai backend beside the raw `AsyncOpenAI` client, and the length baseline.

    python bench/bench_evaluate.py [--benchmarks ../shared/data/benchmarks] [--pairs 500] [--latency 0.2]
                                   [--in-flight 64] [--samples 1] [--no-baseline]

1. Throughput: RMB pairwise pairs (a seeded sample of `--pairs`) judged through a local OpenAI-compatible
   server, the stand-in teacher in its own process answering after `--latency` seconds. The raw client
   sends the stage's exact judge messages with a semaphore of `--in-flight`; the stage (`evaluate_judge`,
   no Prefect, fresh store and request cache) sends them with the same concurrency. Raw, stage, raw,
   stage in one run; the ratio uses the means. The stage's rate is its judging phase (rendering prompts,
   sending, parsing verdicts); end to end adds loading RMB's files and publishing both artifacts. With
   `--samples K` the judge samples K verdicts per pair (temperature 0.7, a seed per sample) and the raw
   client sends the same K seeded requests per pair: rates are requests per second.
2. Length baseline ("longer answer wins", ties 0.5) through the same stage on the whole offline
   RewardBench (LLMBar subsets), RM-Bench and RMB, and two offline preference sets read as custom
   benchmarks (PandaLM's human test set, a Code-Preference-Pairs sample): RM-Bench hard / normal / easy,
   the RMB numbers and each set's accuracy.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: progress bars would time themselves

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import openai
from bench_distill import start_server  # this folder is on sys.path when a script here runs

from data_contracts import ArtifactStore
from tasks.evaluate.benchmarks import load_benchmark
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.report import headline_line
from tasks.evaluate.stage import evaluate_judge, evaluate_versions, judge_input, judgements
from tasks.judge.backends import JudgeInput
from tasks.judge.config import JudgeConfig
from tasks.judge.protocol import load_template_set
from tasks.llm.config import EndpointConfig
from tasks.records.fields import FieldMap

KEY = "sk-bench-not-a-secret"
ROOT = Path(__file__).resolve().parents[1]


async def raw_client(base_url: str, inputs: list[JudgeInput], in_flight: int, judge: JudgeConfig) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    gate = asyncio.Semaphore(in_flight)

    async def one(judged: JudgeInput) -> None:
        seed = {} if judged.seed is None else {"seed": judged.seed}
        async with gate:
            await client.chat.completions.create(
                model="judge",
                messages=judged.messages,  # type: ignore[arg-type]
                max_tokens=judge.max_new_tokens,
                temperature=judge.temperature,
                **seed,  # type: ignore[arg-type]
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(m) for m in inputs))
    elapsed = time.perf_counter() - started
    await client.close()
    return len(inputs) / elapsed


def rmb_sample(rmb: Path, pairs: int) -> BenchmarkConfig:
    """A seeded sample of about `pairs` RMB pairwise pairs (items_per_subset over the two goals)."""
    return BenchmarkConfig(name="rmb", path=str(rmb / "Pairwise_set"), items_per_subset=pairs // 2, sample_seed=1)


def throughput(args: argparse.Namespace) -> None:
    os.environ["OPENAI_API_KEY"] = KEY
    work = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    benchmark = rmb_sample(Path(args.benchmarks) / "rmb", args.pairs)
    server, base_url = start_server(args.latency, None, work / "server.jsonl")
    try:
        endpoint = EndpointConfig(base_url=base_url, max_in_flight=args.in_flight)
        sampled = {"samples": args.samples, "temperature": 0.7} if args.samples > 1 else {}
        judge = JudgeConfig(backend="openai", model="judge", max_new_tokens=1024, endpoint=endpoint, **sampled)
        config = EvaluateConfig(judge=judge, benchmarks=(benchmark,))
        template = load_template_set(judge.template)
        items = judgements(load_benchmark(benchmark), config.order_seed, False, judge.samples)
        inputs = [judge_input(item, template, judge) for item in items]
        raws, stages, ends = [], [], []
        for attempt in range(2):
            raws.append(asyncio.run(raw_client(base_url, inputs, args.in_flight, judge)))
            started = time.perf_counter()
            store = ArtifactStore(work / f"stage-{attempt}")
            result = evaluate_judge(config, store, versions=evaluate_versions(config, None))
            ends.append(len(items) / (time.perf_counter() - started))
            stages.append(result.stats["comparisons_per_s"])
    finally:
        server.terminate()
    raw, stage, end = (sum(v) / len(v) for v in (raws, stages, ends))
    pairs = len(items) // judge.samples
    print(f"{pairs} RMB pairs x {judge.samples} sample(s) = {len(items)} requests, {args.in_flight} in flight, "
          f"stand-in latency {args.latency:g} s")  # fmt: skip
    print(f"{'client':<34} {'req/s':>8} {'vs raw':>8}")
    print(f"{'raw AsyncOpenAI (mean of 2)':<34} {raw:8.1f} {'1.00':>8}   ({', '.join(f'{r:.1f}' for r in raws)})")
    print(
        f"{'evaluate stage, judging':<34} {stage:8.1f} {stage / raw:8.2f}   ({', '.join(f'{s:.1f}' for s in stages)})"
    )
    print(f"{'evaluate stage, end to end':<34} {end:8.1f} {end / raw:8.2f}")
    print(f"target: judging >= 0.95 x raw: {'MET' if stage / raw >= 0.95 else 'NOT MET'}")


def length_baseline(args: argparse.Namespace) -> None:
    data = Path(args.benchmarks)
    preferences = data.parent / "preferences"
    pandalm = FieldMap(prompt="instruction,input", first="response1", second="response2", label="annotator1",
                       first_wins=(1,), second_wins=(2,), tie=(0,))  # fmt: skip
    benchmarks = (
        BenchmarkConfig(name="rewardbench", path=str(data / "llmbar")),
        BenchmarkConfig(name="rm_bench", path=str(data / "rm_bench")),
        BenchmarkConfig(name="rmb", path=str(data / "rmb")),
        # Two of the offline preference sets as custom benchmarks (60 PandaLM rows hold an empty or bool answer).
        BenchmarkConfig(
            name="pandalm", path=str(preferences / "pandalm_human_testset"), fields=pandalm, max_bad_rows=0.1
        ),
        BenchmarkConfig(
            name="code-preference",
            path=str(preferences / "code_preference_pairs_sample_agentrubric"),
            fields=FieldMap(prompt="prompt", chosen="chosen", rejected="rejected"),
        ),
    )
    config = EvaluateConfig(judge=JudgeConfig(backend="length", allow_tie=True), benchmarks=benchmarks)
    started = time.perf_counter()
    store = ArtifactStore(tempfile.mkdtemp(prefix="bench-length-"))
    result = evaluate_judge(config, store, versions=evaluate_versions(config, None))
    rows = {(r["benchmark"], r["level"], r["name"]): r for r in result.stats["scores"]}
    print(f"\nlength baseline on the offline data ({result.stats['comparisons']} comparisons, "
          f"{time.perf_counter() - started:.1f} s)")  # fmt: skip
    for name in ("hard", "normal", "easy", "chat", "code", "safety"):
        print(f"  RM-Bench {name:<8} {100 * rows['rm_bench', 'section', name]['score']:5.1f}")
    for name in ("pairwise/Helpfulness", "pairwise/Harmlessness", "bon/Helpfulness", "bon/Harmlessness"):
        row = rows["rmb", "section", name]
        print(f"  RMB {name:<22} {100 * row['score']:5.1f}  (n={row['count']})")
    for name in ("pandalm", "code-preference"):
        row = rows[name, "benchmark", "score"]
        print(f"  {name} (custom set) {100 * row['score']:5.1f}  (n={row['count']})")
    print(f"  scores: {headline_line(result.stats['scores'])}")
    print("  RewardBench here is Chat Hard's five LLMBar subsets only.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", default=str(ROOT.parent / "shared" / "data" / "benchmarks"))
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--samples", type=int, default=1, help="verdicts sampled per pair (judge.samples)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    throughput(args)
    if not args.no_baseline:
        length_baseline(args)


if __name__ == "__main__":
    main()
