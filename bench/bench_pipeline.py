"""The smoke pipeline end to end: a cold run, a re-run with nothing changed against an empty Prefect flow,
and a run with one recipe value changed.

Every number is the wall time of a fresh process, as a user types it (`rmr1 run ...`), so each includes
Python start-up, imports and Prefect's temporary server. The cached re-run and the empty flow alternate
in one session so both see the same machine. Which stages ran is read from the artifact store: a stage
that re-ran published a new version; a skipped one left every manifest untouched.

    python bench/bench_pipeline.py [--recipe recipes/smoke.yaml] [--artifacts DIR] [--repeats 3]
        [--change evaluate.order_seed=1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_contracts import ArtifactStore

EMPTY_FLOW = "from prefect import flow\n\n@flow\ndef empty() -> None:\n    pass\n\nempty()\n"


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def manifests(store: ArtifactStore) -> dict[str, str]:
    return {f"{m['kind']}/{m['version']}": m["created_at"] for m in store.list()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/smoke.yaml")
    parser.add_argument("--artifacts", help="Reuse an artifact root that already holds a finished run.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--change", default="evaluate.order_seed=1", help="The one value changed at the end.")
    args = parser.parse_args()
    root = args.artifacts or tempfile.mkdtemp(prefix="rmr1-bench-pipeline-")
    store = ArtifactStore(root)
    run = [sys.executable, "-m", "flows.cli", "run", "--recipe", args.recipe, "--artifacts", root]

    if not args.artifacts:
        seconds, output = timed(run)
        print(f"cold run:   {seconds:6.1f} s  ({len(store.list())} artifacts published under {root})")
        print("            " + next((line for line in output.splitlines() if "scores:" in line), "no scores line"))

    before = manifests(store)
    empty_times, cached_times = [], []
    for _ in range(args.repeats):
        empty_times.append(timed([sys.executable, "-c", EMPTY_FLOW])[0])
        seconds, output = timed(run)
        cached_times.append(seconds)
        assert manifests(store) == before, "a re-run with nothing changed published something"
    empty, cached = statistics.median(empty_times), statistics.median(cached_times)
    print(f"empty flow: {empty:6.1f} s  (median of {' '.join(f'{t:.1f}' for t in empty_times)})")
    print(f"re-run:     {cached:6.1f} s  (median of {' '.join(f'{t:.1f}' for t in cached_times)}); "
          f"{cached / empty:.2f}x the empty flow")  # fmt: skip
    print("            0 artifacts published: 0 teacher requests, 0 training steps")

    seconds, _ = timed([*run, "--set", args.change])
    after = manifests(store)
    new = sorted(key for key in after if key not in before)
    touched = sorted(key for key in before if after.get(key) != before[key])
    print(f"--set {args.change}: {seconds:6.1f} s; published {', '.join(new) or 'nothing'}; "
          f"rewrote {', '.join(touched) or 'nothing else'}")  # fmt: skip


if __name__ == "__main__":
    main()
