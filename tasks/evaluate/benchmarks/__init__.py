"""Benchmarks: one module each, listed in `REGISTRY`, and what is done to any of them (load, sample, fingerprint).

Each module declares a `Benchmark` (`base`): its loader reads the official layout into `Comparison`s (one
chosen and one rejected answer to one conversation, with the ids its official scoring needs to put them
back together), its scorer applies the official rule to the judged comparisons, its report section shows
the result. The order the judge sees the answers in is decided later (`order_of`). A recipe benchmark
whose name is not in the registry is a team's own pairwise set, read through a field mapping (`pairwise`).
Adding a benchmark: write its module and add one line to `REGISTRY`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from typing import Any, Literal

from data_contracts.versioning import file_sha256
from tasks.evaluate.benchmarks import (
    if_rewardbench,
    judgebench,
    pairwise,
    ppe_human,
    refusal_task,
    rewardbench,
    rewardbench2,
    rm_bench,
    rmb,
)
from tasks.evaluate.benchmarks.base import Benchmark, BenchmarkError, BenchmarkSource, Comparison, benchmark_files

REGISTRY: dict[str, Benchmark] = {
    rewardbench.NAME: rewardbench.BENCHMARK,
    rm_bench.NAME: rm_bench.BENCHMARK,
    rmb.NAME: rmb.BENCHMARK,
    rewardbench2.NAME: rewardbench2.BENCHMARK,
    judgebench.NAME: judgebench.BENCHMARK,
    refusal_task.NAME: refusal_task.BENCHMARK,
    if_rewardbench.NAME: if_rewardbench.BENCHMARK,
    ppe_human.NAME: ppe_human.BENCHMARK,
}
SYNTHETIC = "synthetic"

__all__ = ["REGISTRY", "SYNTHETIC", "Benchmark", "BenchmarkError", "Comparison", "benchmark_of", "load_benchmark"]


def benchmark_of(name: str) -> Benchmark:
    """The registered benchmark called `name`; any other name is a custom pairwise set."""
    return REGISTRY.get(name) or pairwise.benchmark(name)


def order_of(comparison_id: str, seed: int) -> Literal["A", "B"]:
    """Where the chosen answer is shown: a seeded coin per comparison, the same whatever else is judged."""
    digest = hashlib.sha256(f"{seed}:{comparison_id}".encode()).digest()
    return "A" if digest[0] % 2 == 0 else "B"


def sample_items(comparisons: list[Comparison], per_subset: int | None, seed: int) -> list[Comparison]:
    """At most `per_subset` whole items per subset, picked by a seeded hash of the item id (stable order)."""
    if per_subset is None:
        return comparisons
    items: dict[str, set[str]] = {}
    for comparison in comparisons:
        items.setdefault(comparison.subset, set()).add(comparison.item_id)

    def rank(item_id: str) -> str:
        return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()

    kept = {(subset, item) for subset, ids in items.items() for item in sorted(ids, key=rank)[:per_subset]}
    return [c for c in comparisons if (c.subset, c.item_id) in kept]


def local_files(config: BenchmarkSource) -> list[str]:
    """The local files a benchmark reads (empty for the Hub)."""
    if config.path is None:
        return []
    return benchmark_files(config.path, benchmark_of(config.name).files)


def benchmark_fingerprint(config: BenchmarkSource) -> dict[str, Any]:
    """What identifies the benchmark's data in versions: file contents (not paths), or the pinned revision."""
    if config.path == SYNTHETIC:
        return {"synthetic": True}
    if config.hub_id is not None:
        return {"hub_id": config.hub_id, "revision": config.revision, "split": split_of(config)}
    files = local_files(config)
    root = config.path if os.path.isdir(str(config.path)) else os.path.dirname(files[0])
    return {os.path.relpath(f, root): file_sha256(f) for f in files}


def split_of(config: BenchmarkSource) -> str:
    """The Hub split read: the recipe's, else the benchmark's own. 'filtered' (RewardBench's) was every
    benchmark's default before each had its own, and stays what versions record for those without one."""
    return config.split or benchmark_of(config.name).split or "filtered"


def load_benchmark(config: BenchmarkSource) -> list[Comparison]:
    """All comparisons of one benchmark (or its sample); comparison ids are checked to be unique."""
    benchmark = benchmark_of(config.name)
    if config.path == SYNTHETIC:
        if benchmark.write_synthetic is None:
            raise BenchmarkError(f"{config.name}: has no synthetic copy; give it a path or a hub_id")
        with tempfile.TemporaryDirectory(prefix="rmr1-synthetic-") as folder:
            path = benchmark.write_synthetic(folder, config.sample_seed)
            return load_benchmark(dataclasses.replace(config, path=path))
    comparisons = sample_items(benchmark.load(config), config.items_per_subset, config.sample_seed)
    seen: set[str] = set()
    for comparison in comparisons:
        if comparison.comparison_id in seen:
            raise BenchmarkError(
                f"{config.path or config.hub_id}: two records share the id behind {comparison.comparison_id!r}"
            )
        seen.add(comparison.comparison_id)
    if not comparisons:
        raise BenchmarkError(f"{config.path or config.hub_id}: no {config.name} comparisons found")
    return comparisons
