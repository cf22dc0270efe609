"""What SFT and GRPO do to the tiny smoke student, and how long each stage takes on this machine.

Runs the smoke recipe's stages as plain functions (no Prefect) into a fresh artifact root, timing each,
then asks the student judge prompts from the RL set that it never trained on (greedy, evaluation rule):
the tiny base model before SFT, and the SFT checkpoint after it. GRPO's per-step mean reward comes from
its checkpoint's manifest.

    python bench/bench_training.py [--recipe recipes/smoke.yaml] [--held-out 60] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_contracts import ArtifactStore
from data_contracts.kinds import RL_CHECKPOINT, RL_SET, SFT_CHECKPOINT, SFT_EXAMPLES
from flows.plan import execute, make_plan, run_here
from flows.recipe import load_recipe
from tasks.train.common import start_model
from tasks.train.probe import verdict_probe
from tasks.train.rl import rl_rows
from tasks.train.sft import tokenizer_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/smoke.yaml")
    parser.add_argument("--held-out", type=int, default=60, help="RL-set prompts to probe before and after SFT.")
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    root = tempfile.mkdtemp(prefix="rmr1-bench-training-")
    store = ArtifactStore(root)
    print(f"recipe {recipe.name} ({recipe.fingerprint}), artifacts {root}, {os.cpu_count()} cores")

    seconds = {}
    plan = make_plan(recipe, store)
    run_step = run_here(plan)

    def timed(step):  # each stage in this process, timed
        started = time.perf_counter()
        result = run_step(step)
        seconds[step.name] = time.perf_counter() - started
        print(f"{step.name:<8} {seconds[step.name]:7.1f} s  {result.describe()}")
        return result

    refs = execute(plan, timed)

    held_out = rl_rows(store.read_table(refs[RL_SET.kind]).to_pylist()[: args.held_out], recipe.rl.template)
    rows = {}
    if SFT_CHECKPOINT.kind in refs:
        examples = store.read_table(refs[SFT_EXAMPLES.kind]).to_pylist()
        base = start_model(recipe.student, lambda: tokenizer_texts(examples), tempfile.mkdtemp())
        rows["before SFT (tiny base)"] = verdict_probe(base, held_out, args.max_new_tokens)
        rows["after SFT"] = verdict_probe(store.local_copy(refs[SFT_CHECKPOINT.kind]), held_out, args.max_new_tokens)
    rows["after GRPO"] = verdict_probe(store.local_copy(refs[RL_CHECKPOINT.kind]), held_out, args.max_new_tokens)

    print(f"\nheld-out judge prompts (rl_set, never trained on as SFT data): {len(held_out)}, greedy")
    print(f"{'model':<24} {'parseable':>9} {'accuracy':>9}")
    for label, probe in rows.items():
        print(f"{label:<24} {probe.parseable_rate:>9.1%} {probe.accuracy:>9.1%}")

    metrics = store.manifest(refs[RL_CHECKPOINT.kind])["stats"]["metrics"]
    rewards = [row["reward"] for row in metrics]
    half = max(1, len(rewards) // 2)
    print(f"\nGRPO mean reward per step: {' '.join(f'{r:+.2f}' for r in rewards)}")
    print(
        f"first half {sum(rewards[:half]) / half:+.3f} -> second half "
        f"{sum(rewards[half:]) / max(1, len(rewards) - half):+.3f}"
    )
    print("\nstage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
