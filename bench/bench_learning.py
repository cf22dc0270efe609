"""Does the smoke recipe's judge learn, seed after seed? The whole smoke pipeline once per seed, then one table.

A seed moves everything random at once: the task's training pairs (`pull.sources.0.seed`), the split, the
held-out sample (the benchmark's `sample_seed`), the tiny student's initial weights and tokenizer order, and
SFT's and GRPO's data order and sampling. Each seed runs as a user runs it (`rmr1 run`, a fresh process and
artifact root, gates as the recipe sets them) and its learning table is read back from the store, so a seed
whose judge misses a gate still reports its numbers.

    python bench/bench_learning.py [--recipe recipes/smoke.yaml] [--seeds 1 2 3 4 5] [--root DIR]
        [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_contracts import ArtifactStore

JUDGES = ("untrained", "sft", "rl", "length")


def seed_overrides(seed: int) -> list[str]:
    keys = ("pull.sources.0.seed", "split.seed", "student.tiny.seed", "sft.seed", "rl.seed",
            "learning.benchmark.sample_seed", "evaluate.benchmarks.0.sample_seed")  # fmt: skip
    return [f"{key}={seed}" for key in keys]


def run_seed(recipe: str, seed: int, root: Path, extra: list[str]) -> dict[str, object]:
    overrides = [arg for setting in [*seed_overrides(seed), *extra] for arg in ("--set", setting)]
    command = [sys.executable, "-m", "flows.cli", "run", "--recipe", recipe, "--artifacts", str(root), *overrides]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    gate = next((line for line in done.stderr.splitlines() if line.startswith("rmr1: failed:")), "")
    store = ArtifactStore(str(root))
    rows = {}
    if store.list("learning_scores"):
        rows = {r["judge"]: r for r in store.read_table(store.resolve("learning_scores")).to_pylist()}
    elif done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
    return {"seed": seed, "seconds": seconds, "exit": done.returncode, "gate": gate, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/smoke.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--root", help="Folder for one artifact root per seed (default: a temporary folder).")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="More recipe overrides.")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="rmr1-bench-learning-"))
    print(f"{'seed':>4} {'exit':>4} {'wall s':>7}  " + "  ".join(f"{j + ' acc/unp/[[A]]':>22}" for j in JUDGES))
    results = []
    for seed in args.seeds:
        result = run_seed(args.recipe, seed, root / f"seed-{seed}", args.extra)
        results.append(result)
        cells = []
        for judge in JUDGES:
            row = result["rows"].get(judge)  # type: ignore[union-attr]
            cells.append(f"{row['accuracy']:.3f}/{row['unparseable']:.2f}/{row['verdict_a']:.2f}" if row else "-")
        print(f"{seed:>4} {result['exit']:>4} {result['seconds']:>7.0f}  " + "  ".join(f"{c:>22}" for c in cells))
        if result["gate"]:
            print(f"     {result['gate']}")
        sys.stdout.flush()
    learned = [r for r in results if r["rows"] and r["rows"]["rl"]["accuracy"] >= 0.9]  # type: ignore[index]
    print(f"GRPO judge >= 0.90 held-out accuracy in {len(learned)} of {len(results)} seeds; artifacts under {root}")


if __name__ == "__main__":
    main()
