"""`rmr1 show KIND --rows 3` on a 100k-row artifact beside a 1k-row one: wall time and peak RSS of the command,
and beside it the old way (the whole table read, then 3 rows taken), each in a fresh process.

    python bench/bench_show.py [--rows 100000] [--small 1000] [--text 2000]

Rows are preference pairs with answers of about `--text` characters of varied words (100k rows: ~400 MB of
text; parts of 100k rows). Each measurement is a child of a fresh wrapper (`resource` RUSAGE_CHILDREN gives
its peak RSS), so imports are counted alike on both sides.
"""

from __future__ import annotations

import argparse
import random
import string
import subprocess
import sys
import tempfile

import pyarrow as pa

from data_contracts import ArtifactStore
from data_contracts.kinds import PREFERENCE_PAIRS

OLD_WAY = """
import sys
from data_contracts import ArtifactStore
store = ArtifactStore(sys.argv[1])
table = store.read_table(store.resolve(sys.argv[2], "show"))
print(table.num_rows, len(table.slice(0, 3).to_pylist()))
"""


def build(store: ArtifactStore, version: str, rows: int, text: int) -> None:
    rng = random.Random(version)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(5000)]

    def prose() -> str:  # different words in every answer, so the parts compress as real answers do
        return " ".join(rng.choices(words, k=text // 6))[:text]

    with store.writer(PREFERENCE_PAIRS, version) as writer:
        for start in range(0, rows, 10_000):
            batch = [{"pair_id": f"p{i:07d}", "source": "bench", "domain": ("chat", "math")[i % 2],
                      "conversation": [{"role": "user", "content": f"question {i}"}],
                      "chosen": f"{i} {prose()}", "rejected": f"{i} {prose()}", "source_ref": f"bench:{i}"}
                     for i in range(start, min(rows, start + 10_000))]  # fmt: skip
            writer.write_valid(pa.Table.from_pylist(batch, schema=PREFERENCE_PAIRS.schema))
        writer.commit()


WRAPPER = """
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of `command`, run by a fresh wrapper whose only child it is."""
    done = subprocess.run([sys.executable, "-c", WRAPPER, *command], check=True, capture_output=True, text=True)
    wall, peak_kib = done.stdout.split()
    return float(wall), int(peak_kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--text", type=int, default=2_000, help="Characters per answer.")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-show-")
    store = ArtifactStore(root)
    build(store, "small", args.small, args.text)
    build(store, "large", args.rows, args.text)
    size = {v: sum(int(f["bytes"]) for f in store.manifest(store.require(PREFERENCE_PAIRS.kind, v))["files"])
            for v in ("small", "large")}  # fmt: skip
    show = [sys.executable, "-m", "flows.cli", "show", "--artifacts", root, "--rows", "3"]
    old = [sys.executable, "-c", OLD_WAY, root]
    results = {}
    for name, command in (("show small", [*show, "preference_pairs/small"]),
                          ("show large", [*show, "preference_pairs/large"]),
                          ("whole-table read, small", [*old, "preference_pairs/small"]),
                          ("whole-table read, large", [*old, "preference_pairs/large"])):  # fmt: skip
        results[name] = measure(command)
    print(f"artifacts: {args.small:,} rows ({size['small'] / 2**20:.1f} MiB) and {args.rows:,} rows "
          f"({size['large'] / 2**20:.1f} MiB)")  # fmt: skip
    print(f"{'command':<26} {'wall s':>7} {'peak RSS MiB':>13}")
    for name, (wall, peak) in results.items():
        print(f"{name:<26} {wall:7.2f} {peak:13.0f}")
    (small_wall, small_peak), (large_wall, large_peak) = results["show small"], results["show large"]
    old_wall, old_peak = results["whole-table read, large"]
    ratio = f"wall {large_wall / small_wall:.2f}x, peak RSS {large_peak / small_peak:.2f}x"
    print(f"rmr1 show --rows 3, large / small: {ratio}")
    print(f"large artifact, whole-table read / rmr1 show: wall {old_wall / large_wall:.2f}x, "
          f"peak RSS {old_peak / large_peak:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
