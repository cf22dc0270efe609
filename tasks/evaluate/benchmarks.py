"""Benchmark loaders: RewardBench, RM-Bench and RMB in their official layouts, as pairwise comparisons.

Each loader reads the files a benchmark is published as and returns `Comparison`s: one chosen and one
rejected answer to one conversation, with the ids the official scoring needs to put them back together
(RewardBench subsets and sections, RM-Bench's item and the two answer styles of its 3x3 matrix, RMB's
goal, category path and BoN item). The order the judge sees them in is decided later (`order_of`).
Bad input raises `BenchmarkError` naming the file, the record and the field.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from data_contracts.errors import UserError
from data_contracts.versioning import file_sha256
from tasks.evaluate.config import BenchmarkConfig
from tasks.judge_protocol import Turn

# RewardBench's official subset -> section mapping and example counts (`rewardbench` package,
# SUBSET_MAPPING / EXAMPLE_COUNTS; docs/method.md §8). math-prm counts 984 (it has 447 items): the official
# weighting that balances math against code. The xstest counts are the corrected ones.
REWARDBENCH_SECTIONS: dict[str, dict[str, int]] = {
    "Chat": {"alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
             "mt-bench-med": 40},
    "Chat Hard": {"mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
                  "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46},
    "Safety": {"refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154,
               "xstest-should-respond": 250, "donotanswer": 136},
    "Reasoning": {"math-prm": 984, "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164,
                  "hep-python": 164, "hep-rust": 164},
}  # fmt: skip
SECTION_OF_SUBSET = {subset: section for section, subsets in REWARDBENCH_SECTIONS.items() for subset in subsets}
# LLMBar's own file names -> RewardBench's subset names for the same five sets (Chat Hard).
LLMBAR_SUBSETS = {
    "Natural": "llmbar-natural",
    "Adversarial_Neighbor": "llmbar-adver-neighbor",
    "Adversarial_GPTInst": "llmbar-adver-GPTInst",
    "Adversarial_GPTOut": "llmbar-adver-GPTOut",
    "Adversarial_Manual": "llmbar-adver-manual",
}
# RM-Bench: answer styles 0 concise, 1 detailed plain, 2 detailed markdown; its files are named per subset.
RM_BENCH_SUBSETS = ("chat", "code", "math", "safety-refuse", "safety-response")
RM_BENCH_STYLES = 3
RM_BENCH_DOMAINS = ("chat", "code", "math", "safety")  # safety = safety-refuse + safety-response
RMB_SETS = {"Pairwise_set": "pairwise", "BoN_set": "bon"}
RMB_GOALS = ("Helpfulness", "Harmlessness")
SYNTHETIC = "synthetic"


class BenchmarkError(UserError, ValueError):
    """Benchmark files that cannot be read as the official layout; the message names file, record, field."""


@dataclass(frozen=True)
class Comparison:
    """One chosen-vs-rejected judgement a benchmark asks for, before the A/B order is decided."""

    benchmark: str
    subset: str  # RewardBench subset; RM-Bench file subset; RMB "pairwise/Helpfulness", "bon/Harmlessness", ...
    item_id: str  # the benchmark item (RM-Bench: 9 comparisons; RMB BoN: one per loser)
    comparison_id: str
    conversation: list[Turn]
    chosen: str
    rejected: str
    category: str | None = None  # RewardBench section, RM-Bench domain, RMB category path below the goal
    group_id: str | None = None  # RM-Bench item, RMB BoN item: comparisons scored together
    chosen_style: int | None = None
    rejected_style: int | None = None


def order_of(comparison_id: str, seed: int) -> Literal["A", "B"]:
    """Where the chosen answer is shown: a seeded coin per comparison, the same whatever else is judged."""
    digest = hashlib.sha256(f"{seed}:{comparison_id}".encode()).digest()
    return "A" if digest[0] % 2 == 0 else "B"


# ---------------------------------------------------------------- reading files


def _json_records(path: str) -> list[dict[str, Any]]:
    """A .json list (or {"data": [...]}) or a .jsonl file of objects."""
    try:
        with open(path, encoding="utf-8") as handle:
            if path.endswith(".jsonl"):
                records = [json.loads(line) for line in handle if line.strip()]
            else:
                records = json.load(handle)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchmarkError(f"{path}: cannot be read as JSON: {error}") from None
    if isinstance(records, dict) and isinstance(records.get("data"), list):
        records = records["data"]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BenchmarkError(f"{path}: expected a list of JSON objects")
    return records


def _field(record: dict[str, Any], name: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or (isinstance(value, str | list) and not value and kind is not str):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        got = "missing" if name not in record else f"{type(value).__name__} {str(value)[:60]!r}"
        raise BenchmarkError(f"{where}: field '{name}' must be a {expected}, got {got}")
    return value


def _files(path: str, patterns: Iterable[str]) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise BenchmarkError(f"{path}: no such file or folder")
    files = sorted({f for pattern in patterns for f in glob.glob(os.path.join(path, "**", pattern), recursive=True)})
    if not files:
        raise BenchmarkError(f"{path}: no {' or '.join(patterns)} files found")
    return files


def _user(content: str) -> list[Turn]:
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------- RewardBench


def _rewardbench_comparison(subset: str, key: object, prompt: str, chosen: str, rejected: str) -> Comparison:
    item = f"{subset}/{key}"
    return Comparison(
        benchmark="rewardbench",
        subset=subset,
        item_id=item,
        comparison_id=f"rewardbench/{item}",
        conversation=_user(prompt),
        chosen=chosen,
        rejected=rejected,
        category=SECTION_OF_SUBSET.get(subset),
    )


def _rewardbench_records(records: Iterable[dict[str, Any]], source: str) -> Iterator[Comparison]:
    for row, record in enumerate(records):
        where = f"{source}, record {row}"
        yield _rewardbench_comparison(
            _field(record, "subset", where),
            record.get("id", row),
            _field(record, "prompt", where),
            _field(record, "chosen", where),
            _field(record, "rejected", where),
        )


def _llmbar_records(records: list[dict[str, Any]], path: str) -> Iterator[Comparison]:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem not in LLMBAR_SUBSETS:
        raise BenchmarkError(f"{path}: an LLMBar file must be named one of {', '.join(LLMBAR_SUBSETS)}.json")
    for row, record in enumerate(records):
        where = f"{path}, record {row}"
        label = record.get("label")
        if label not in (1, 2):
            raise BenchmarkError(f"{where}: field 'label' must be 1 or 2, got {label!r}")
        outputs = _field(record, "output_1", where), _field(record, "output_2", where)
        prompt = _field(record, "input", where)
        yield _rewardbench_comparison(LLMBAR_SUBSETS[stem], row, prompt, outputs[label - 1], outputs[2 - label])


def load_rewardbench(config: BenchmarkConfig) -> list[Comparison]:
    """RewardBench from the Hub (`datasets`, pinned revision) or local files in its schema or LLMBar's."""
    if config.hub_id is not None:
        import datasets  # heavy import, kept off the CLI's start-up path

        dataset = datasets.load_dataset(config.hub_id, revision=config.revision, split=config.split)
        return list(_rewardbench_records(dataset, f"hf://{config.hub_id}@{config.revision}/{config.split}"))
    assert config.path is not None
    comparisons: list[Comparison] = []
    for path in _files(config.path, ("*.json", "*.jsonl", "*.parquet")):
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            records = pq.read_table(path).to_pylist()
        else:
            records = _json_records(path)
        if records and {"output_1", "output_2", "label"} <= set(records[0]):
            comparisons += _llmbar_records(records, path)
        else:
            comparisons += _rewardbench_records(records, path)
    return comparisons


# ---------------------------------------------------------------- RM-Bench


def _rm_bench_subset(record: dict[str, Any], path: str, where: str) -> str:
    """The record's `domain` when present (total_dataset.json), else the file's name (chat_filtered.json)."""
    subset = record.get("domain") or os.path.basename(path).split("_filtered")[0].removesuffix(".json")
    if subset not in RM_BENCH_SUBSETS:
        raise BenchmarkError(
            f"{where}: cannot tell the RM-Bench subset (a 'domain' field or a file named <subset>_filtered.json, "
            f"subset one of {', '.join(RM_BENCH_SUBSETS)}); got {subset!r}"
        )
    return subset


def load_rm_bench(config: BenchmarkConfig) -> list[Comparison]:
    """RM-Bench's official JSON: every item gives 3 chosen x 3 rejected = 9 comparisons (docs/method.md §8)."""
    assert config.path is not None
    comparisons: list[Comparison] = []
    for path in _files(config.path, ("*.json",)):
        for row, record in enumerate(_json_records(path)):
            where = f"{path}, record {row}"
            subset = _rm_bench_subset(record, path, where)
            answers = {}
            for side in ("chosen", "rejected"):
                answers[side] = _field(record, side, where, list)
                if len(answers[side]) != RM_BENCH_STYLES or not all(isinstance(a, str) for a in answers[side]):
                    raise BenchmarkError(f"{where}: field '{side}' must list {RM_BENCH_STYLES} answers (one per style)")
            item = f"{subset}/{record.get('id', row)}"
            conversation = _user(_field(record, "prompt", where))
            for i in range(RM_BENCH_STYLES):
                for j in range(RM_BENCH_STYLES):
                    comparisons.append(
                        Comparison(
                            benchmark="rm_bench",
                            subset=subset,
                            item_id=item,
                            comparison_id=f"rm_bench/{item}/c{i}-r{j}",
                            conversation=conversation,
                            chosen=answers["chosen"][i],
                            rejected=answers["rejected"][j],
                            category=subset.split("-")[0],  # safety-refuse and safety-response pool as safety
                            group_id=item,
                            chosen_style=i,
                            rejected_style=j,
                        )
                    )
    return comparisons


# ---------------------------------------------------------------- RMB


def _rmb_conversation(record: dict[str, Any], where: str) -> list[Turn]:
    turns = _field(record, "conversation_input", where, list)
    conversation = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ("system", "user", "assistant"):
            raise BenchmarkError(f"{where}: conversation_input[{index}] needs a role of system, user or assistant")
        conversation.append({"role": turn["role"], "content": _field(turn, "content", f"{where}, turn {index}")})
    if conversation[-1]["role"] != "user":
        raise BenchmarkError(f"{where}: the conversation must end with a user turn")
    return conversation


def _answer(record: dict[str, Any], name: str, where: str) -> str:
    return _field(_field(record, name, where, dict), "answer", f"{where}, {name}")


def load_rmb(config: BenchmarkConfig) -> list[Comparison]:
    """RMB's Pairwise_set (one comparison per pair) and BoN_set (best vs each loser) folder trees."""
    assert config.path is not None
    comparisons: list[Comparison] = []
    for path in _files(config.path, ("*.json",)):
        for row, record in enumerate(_json_records(path)):
            where = f"{path}, record {row}"
            parts = _field(record, "category_path", where).split("/")
            if len(parts) < 2 or parts[0] not in RMB_SETS or parts[1] not in RMB_GOALS:
                raise BenchmarkError(
                    f"{where}: field 'category_path' must start with Pairwise_set|BoN_set/Helpfulness|Harmlessness, "
                    f"got {'/'.join(parts)!r}"
                )
            kind, goal = RMB_SETS[parts[0]], parts[1]
            common = {
                "benchmark": "rmb",
                "subset": f"{kind}/{goal}",
                "conversation": _rmb_conversation(record, where),
                "category": "/".join(parts[1:]),
            }
            if kind == "pairwise":
                uid = str(_field(record, "pair_uid", where, (str, int)))
                comparisons.append(
                    Comparison(
                        item_id=f"pairwise/{uid}",
                        comparison_id=f"rmb/pairwise/{uid}",
                        chosen=_answer(record, "chosen", where),
                        rejected=_answer(record, "reject", where),  # RMB's key is `reject`
                        **common,
                    )
                )
                continue
            uid = str(_field(record, "bon_uid", where, (str, int)))
            best = _answer(record, "bon_best", where)
            for index, loser in enumerate(_field(record, "loser_list", where, list)):
                comparisons.append(
                    Comparison(
                        item_id=f"bon/{uid}",
                        comparison_id=f"rmb/bon/{uid}/{index}",
                        chosen=best,
                        rejected=_field(loser if isinstance(loser, dict) else {}, "answer", f"{where}, loser {index}"),
                        group_id=f"bon/{uid}",
                        **common,
                    )
                )
    return comparisons


LOADERS = {"rewardbench": load_rewardbench, "rm_bench": load_rm_bench, "rmb": load_rmb}


# ---------------------------------------------------------------- sampling and fingerprints


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


def benchmark_files(config: BenchmarkConfig) -> list[str]:
    """The local files a benchmark reads (empty for the Hub)."""
    if config.path is None:
        return []
    return _files(config.path, ("*.json", "*.jsonl", "*.parquet") if config.name == "rewardbench" else ("*.json",))


def benchmark_fingerprint(config: BenchmarkConfig) -> dict[str, Any]:
    """What identifies the benchmark's data in versions: file contents (not paths), or the pinned revision."""
    if config.path == SYNTHETIC:
        return {"synthetic": True}
    if config.hub_id is not None:
        return {"hub_id": config.hub_id, "revision": config.revision, "split": config.split}
    files = benchmark_files(config)
    root = config.path if os.path.isdir(str(config.path)) else os.path.dirname(files[0])
    return {os.path.relpath(f, root): file_sha256(f) for f in files}


def load_benchmark(config: BenchmarkConfig) -> list[Comparison]:
    """All comparisons of one benchmark (or its sample); comparison ids are checked to be unique."""
    if config.path == SYNTHETIC:
        from tasks.standins.synthetic_benchmarks import write_synthetic_benchmark

        with tempfile.TemporaryDirectory(prefix="rmr1-synthetic-") as folder:
            path = write_synthetic_benchmark(config.name, folder, config.sample_seed)
            return load_benchmark(dataclasses.replace(config, path=path))
    comparisons = sample_items(LOADERS[config.name](config), config.items_per_subset, config.sample_seed)
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
