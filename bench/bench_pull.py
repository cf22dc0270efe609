"""Benchmark the pull stage on synthetic Skywork-Reward-Preference-80K-v0.2 data beside plain pyarrow.

Writes the same Skywork-format rows twice: a parquet file (`chosen`/`rejected` = list<struct<content, role>>,
`source`; snappy, like the Hub's single file) and a JSON Lines file. Then, for each, in a fresh subprocess
each, so peak RSS is per measurement:

  baseline  plain pyarrow: `pq.read_table` (or `pyarrow.json.read_json`) of the file + `pq.write_table` of
            the same rows (zstd, like the store)
  stage     `pull_preferences` (plain function, no Prefect): read the file row by row (a scratch Arrow
            copy, memory-mapped), normalise, dedupe, validate, publish into a fresh `ArtifactStore`
  profile   the stage on the JSON Lines file under cProfile (time not counted; top 15 cumulative entries)

Targets (issue): stage time <= 3x baseline, stage peak RSS <= 2 GB.
Usage: python bench/bench_pull.py [--rows 100000] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SOURCES = {  # share of rows per `source` value; magpie_ultra rows are dropped by the skywork adapter
    "magpie_ultra": 0.30,
    "magpie_pro_llama3.1": 0.20,
    "magpie_pro": 0.15,
    "magpie_air": 0.10,
    "helpsteer2": 0.10,
    "offsetbias": 0.08,
    "wildguard": 0.07,
}
MAX_TEXT = 16_000
TIME_TARGET, RSS_TARGET_MB = 3.0, 2048.0


def _corpus(rng: np.random.Generator, size: int) -> str:
    """Pseudo-text: Zipf-distributed words from a 100k-word random vocabulary with some punctuation."""
    lengths = rng.integers(1, 11, 100_000)
    letters = rng.integers(97, 123, int(lengths.sum()), dtype=np.uint8).tobytes().decode()
    ends = np.cumsum(lengths)
    suffix = rng.choice(["", ",", ".", ".\n\n"], size=len(lengths), p=[0.85, 0.07, 0.06, 0.02])
    words = np.array([letters[e - n : e] + s for e, n, s in zip(ends, lengths, suffix, strict=True)], dtype=object)
    tokens = np.minimum(rng.zipf(1.15, size // 5), len(words)) - 1
    return " ".join(words[tokens].tolist())[:size]


def _texts(rng: np.random.Generator, corpus: str, n: int, mean: float) -> list[str]:
    """`n` slices of the corpus with log-normal lengths of the given mean (characters)."""
    sigma = 0.8
    lengths = np.clip(rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n), 16, MAX_TEXT).astype(np.int64)
    starts = rng.integers(0, len(corpus) - MAX_TEXT, n)
    return [corpus[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]


def make_skywork(path: Path, rows: int, seed: int = 0) -> pa.Table:
    """Write `rows` Skywork-format pairs: 85% [user, assistant], 15% 4 or 6 turns; last turns differ."""
    rng = np.random.default_rng(seed)
    corpus = _corpus(rng, 32 << 20)
    turns = rng.choice([2, 4, 6], size=rows, p=[0.85, 0.10, 0.05])
    users = iter(_texts(rng, corpus, int(turns.sum()) // 2, mean=420))
    assistants = iter(_texts(rng, corpus, int(turns.sum()) // 2 + rows, mean=1_800))
    chosen, rejected, roles = [], [], []
    for n in turns.tolist():
        prefix = [next(users) if j % 2 == 0 else next(assistants) for j in range(n - 1)]
        chosen += [*prefix, next(assistants)]
        rejected += [*prefix, next(assistants)]
        roles += ["user", "assistant"] * (n // 2)
    offsets = pa.array(np.concatenate([[0], np.cumsum(turns)]).astype(np.int32))
    role_array = pa.array(roles)

    def messages(contents: list[str]) -> pa.ListArray:
        return pa.ListArray.from_arrays(
            offsets, pa.StructArray.from_arrays([pa.array(contents), role_array], ["content", "role"])
        )

    source = rng.choice(list(SOURCES), size=rows, p=list(SOURCES.values()))
    table = pa.table({"chosen": messages(chosen), "rejected": messages(rejected), "source": source.tolist()})
    row_group = max(1, int(100e6 * rows / table.nbytes))  # datasets' default: ~100 MB row groups
    pq.write_table(table, path, compression="snappy", row_group_size=row_group)
    with open(path.with_suffix(".jsonl"), "w") as out:  # the same rows as JSON Lines
        for batch in table.to_batches(max_chunksize=10_000):
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in batch.to_pylist())
    return table


class AnonPeak:
    """Peak anonymous memory (heap, not file pages) of this process, sampled every 20 ms from /proc.

    ru_maxrss also counts the pages of memory-mapped files (the stage's scratch copies), which the kernel
    can drop at any time; RssAnon is what the process really holds."""

    def __init__(self) -> None:
        import threading

        self.peak, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            with open("/proc/self/status") as status:
                anon = next((int(line.split()[1]) for line in status if line.startswith("RssAnon:")), 0)
            self.peak = max(self.peak, anon)

    def mb(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak / 1024


def child(mode: str, file: str, workdir: Path, rows: int) -> dict[str, float]:
    """One step in this (fresh) process: rows out, seconds, peak RSS and peak anonymous memory (MB)."""
    if mode == "generate":
        start = time.perf_counter()
        table = make_skywork(Path(file), rows)
        return {"seconds": time.perf_counter() - start, "arrow_mb": table.nbytes / 1e6}
    anon = AnonPeak()
    if mode == "baseline":
        import pyarrow.json as pj

        start = time.perf_counter()
        block = pj.ReadOptions(block_size=16 << 20)  # a block must hold the longest line
        table = pq.read_table(file) if file.endswith(".parquet") else pj.read_json(file, read_options=block)
        pq.write_table(table, workdir / "baseline.parquet", compression="zstd")
        rows = table.num_rows
    else:
        import cProfile
        import pstats

        from data_contracts import ArtifactStore
        from tasks.pull.config import PullConfig, SourceConfig
        from tasks.pull.stage import pull_preferences, pull_version

        config = PullConfig(sources=(SourceConfig(name="skywork", adapter="skywork", path=file),))
        profiler = cProfile.Profile() if mode == "profile" else None
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        store = ArtifactStore(workdir / "store")  # the version (hashing the file) stays timed, as before
        result = pull_preferences(config, store, version=pull_version(config), max_reject_rate=0.05)
        if profiler is not None:
            profiler.disable()
            with open(workdir / "profile.txt", "w") as out:
                pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
        rows = result.stats["rows_out"]
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "seconds": seconds, "rss_mb": rss, "anon_mb": anon.mb()}


def run_child(mode: str, file: Path, workdir: Path, rows: int = 0) -> dict[str, float]:
    """Run `child(mode)` in a new interpreter; return its result.

    Every step, generation included, runs in a child: on Linux an exec'd child's ru_maxrss starts from the
    parent's peak RSS (the kernel carries it over execve), so the parent must stay small.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_DATASETS_CACHE": str(workdir / "hf-cache"), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    flags = {"--child": mode, "--file": file, "--workdir": workdir, "--rows": rows}
    command = [sys.executable, __file__, *(str(item) for flag in flags.items() for item in flag)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic Skywork pairs to generate")
    parser.add_argument("--workdir", type=Path, help="where files go (default: a new temp dir, removed at exit)")
    parser.add_argument("--keep", action="store_true", help="keep the temp workdir (a given --workdir is kept)")
    parser.add_argument("--child", choices=("generate", "baseline", "stage", "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.file, args.workdir, args.rows)))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pull-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run = workdir / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    run.mkdir()
    try:
        file = run / "train-00000-of-00001.parquet"
        made = run_child("generate", file, run, args.rows)
        print(
            f"input: {file} | {args.rows:,} rows | {file.stat().st_size / 1e6:.0f} MB snappy parquet | "
            f"{made['arrow_mb']:.0f} MB in Arrow ({made['arrow_mb'] / args.rows * 1e3:.1f} KB/row) | "
            f"generated in {made['seconds']:.1f} s"
        )
        jsonl = file.with_suffix(".jsonl")
        print(f"input: {jsonl} | the same rows | {jsonl.stat().st_size / 1e6:.0f} MB JSON Lines")
        results = {
            (fmt, mode): run_child(mode, path, run / f"{mode}-{fmt}")
            for fmt, path in (("parquet", file), ("jsonl", jsonl))
            for mode in ("baseline", "stage")
        }
        run_child("profile", jsonl, run / "profile")
        profile = run / "profile" / "profile.txt"
        gone = " (removed at exit; --keep keeps it)" if args.workdir is None and not args.keep else ""
        print(f"\nstage profile (cProfile, top 15 cumulative): {profile}{gone}")
        print("\n".join(line for line in profile.read_text().splitlines() if line.strip()))

        met = {True: "MET", False: "NOT MET"}
        header = f"{'rows out':>10}{'seconds':>10}{'peak RSS MB':>13}{'peak anon MB':>14}"
        print(f"\n{'format':<9}{'measurement':<18}{header}")
        for fmt in ("parquet", "jsonl"):
            for name, mode in (("pyarrow baseline", "baseline"), ("pull stage", "stage")):
                r = results[(fmt, mode)]
                row = f"{r['rows']:>10,}{r['seconds']:>10.2f}{r['rss_mb']:>13.0f}{r['anon_mb']:>14.0f}"
                print(f"{fmt:<9}{name:<18}{row}")
        for fmt in ("parquet", "jsonl"):
            base, stage = results[(fmt, "baseline")], results[(fmt, "stage")]
            ratio, rss = stage["seconds"] / base["seconds"], stage["rss_mb"]
            print(
                f"{fmt}: stage/baseline time {ratio:.2f}x (target <= {TIME_TARGET:g}x: {met[ratio <= TIME_TARGET]}); "
                f"stage peak RSS {rss:.0f} MB vs baseline {base['rss_mb']:.0f} MB "
                f"(target <= {RSS_TARGET_MB:g} MB: {met[rss <= RSS_TARGET_MB]})"
            )
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept: {run}")  # a --workdir the user named is never deleted


if __name__ == "__main__":
    main()
