"""IF-RewardBench (thu-coai, ACL 2026; arXiv 2603.04738; 842 instructions: single-turn, multi-turn, system prompt),
its official overall assessment (`metrics/analysis_overall_assessment.py` at c192fe9) for a pairwise judge.

Local copies in the official repository's layout: `data/if_rewardbench.json` (the items) and
`inference/position_maps.json` (who is shown first) anywhere under the benchmark's `path`. Not loaded from the
Hub yet, and no published numbers yet (the paper's tables were not reachable where this was written).
The judge sees our own template (the evaluate stage's `judge.template`); the official prompt is a Chinese
critique template with the history in numbered turn blocks and the system prompt in its own slot.

An item is one instruction with N responses and a preference graph over them. Every unordered pair of responses
is judged once, in the position `inference/position_maps.json` gives it (`0`: the lower index is shown as A).
The judged games feed an Elo fit (start 1200, K 32 decaying linearly to at least 1 over the last 80% of 100
epochs, the games shuffled each epoch), and each preference-graph edge is predicted from the Elo scores: right,
wrong, or a tie. Per item: accuracy (right / edges) and Kendall τ_b = (C − D) / √((C + D)(C + D + T)). Groups
are the means of their items; the overall numbers are the mean over the three instruction types of their means.

Exactness, random numbers included: the official script seeds Python's `random` once (42) and then walks the
items in file order, so every item's shuffles depend on the games of all the items before it. `score_items`
takes the items in file order and one `random.Random(42)`, and performs the same float operations in the same
order (numpy means), so its numbers equal the official script's. A sample of the items is not the official
number: the shuffles of the items kept differ.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tasks.evaluate.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkSource,
    Comparison,
    ScoreRow,
    benchmark_files,
    detail_table,
    file_records,
    record_field,
    score_row,
)
from tasks.judge.protocol import Verdict

ELO_SEED = 42
INSTRUCTION_TYPES = ("Single_Turn", "Multi_Turn", "System_Prompt")
# The response models by size, as the official script groups them.
MODEL_SIZES = {
    "Small": ("MiniCPM4.1-8B", "Qwen3-8B", "GLM-4-9B-0414", "Llama-3.1-Tulu-3.1-8B"),
    "Middle": ("GLM-4.5-Air", "LLama-3.3-70B-Instruct", "GPT-OSS-20B", "Qwen3-32B"),
    "Large": ("Qwen-3-235B-A22B-Instruct-2507", "Kimi-K2", "GLM-4.5", "DeepSeek-R1"),
    "API": ("Gemini-2.5-Pro", "Doubao-1.6-Seed", "GPT-5", "Claude-4.5-Sonnet"),
}
GROUPS = ("model_type", "instruction_type", "turn", "constraint_count")
Preference = Literal["A", "B", "C"]  # A: the answer shown first won; B: the second; C: neither or both


def shown_pairs(responses: int, positions: Mapping[str, int]) -> list[tuple[int, int]]:
    """(u, v) with u shown as A, one per unordered pair, in the official script's loop order."""
    shown = []
    for u in range(responses):
        for v in range(responses):
            if u == v:
                continue
            position = positions[f"{min(u, v)}_{max(u, v)}"]
            if (position == 0 and u < v) or (position == 1 and u > v):
                shown.append((u, v))
    return shown


def elo(responses: int, games: Sequence[tuple[int, int]], rng: random.Random, k_factor: float = 32,
        initial: float = 1200, epochs: int = 100) -> list[float]:  # fmt: skip
    """Elo ratings from (loser, winner) games, the official fit: `rng` shuffles the games every epoch."""
    ratings = [float(initial)] * responses
    data = list(games)
    for epoch in range(epochs):
        rng.shuffle(data)
        k = k_factor
        if epoch > epochs * 0.2:
            k = max(1.0, k_factor * (1 - (epoch - epochs * 0.2) / (epochs * 0.8)))
        for loser, winner in data:
            r_loser, r_winner = ratings[loser], ratings[winner]
            expected_winner = 1 / (1 + 10 ** ((r_loser - r_winner) / 400))
            expected_loser = 1 / (1 + 10 ** ((r_winner - r_loser) / 400))
            ratings[winner] = r_winner + k * (1 - expected_winner)
            ratings[loser] = r_loser + k * (0 - expected_loser)
    return ratings


def games(shown: Sequence[tuple[int, int]], preferences: Sequence[Preference]) -> list[tuple[int, int]]:
    """(loser, winner) per decided game; a tie or an unparseable verdict is no game."""
    played = []
    for (u, v), preference in zip(shown, preferences, strict=True):
        if preference == "A":
            played.append((v, u))
        elif preference == "B":
            played.append((u, v))
    return played


def edge_metrics(ratings: Sequence[float], graph: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """Accuracy and Kendall τ_b of the (chosen, rejected) edges predicted from `ratings`."""
    right = wrong = tied = 0
    for chosen, rejected in graph:
        if ratings[chosen] > ratings[rejected]:
            right += 1
        elif ratings[rejected] > ratings[chosen]:
            wrong += 1
        else:
            tied += 1
    return right / max(len(graph), 1), (right - wrong) / max(1, math.sqrt((right + wrong) * (right + wrong + tied)))


@dataclass(frozen=True)
class Item:
    """What scoring needs of one IF-RewardBench item, its verdicts included (in `shown_pairs` order)."""

    responses: int
    positions: Mapping[str, int]
    preferences: Sequence[Preference]
    graph: Sequence[tuple[int, int]]  # (chosen, rejected) response ids
    groups: Mapping[str, Any]  # model_type, instruction_type, turn, constraint_count


def model_size(model: str) -> str:
    return next((size for size, models in MODEL_SIZES.items() if model in models), "Unknown")


def constraint_bucket(count: int) -> str:
    return "<=3" if count <= 3 else ">=7" if count >= 7 else str(count)


def turn_count(messages: Sequence[Mapping[str, Any]]) -> int:
    """User turns, system prompt aside, capped at 5 (the official `get_turn`)."""
    if messages and messages[0]["role"] == "system":
        messages = messages[1:]
    return min((len(messages) + 1) // 2, 5)


def score_items(items: Sequence[Item], rng: random.Random | None = None) -> dict[str, Any]:
    """Per item accuracy and τ_b, per group and overall, exactly as the official script (items in file order)."""
    rng = random.Random(ELO_SEED) if rng is None else rng
    per_item = []
    stats: dict[str, dict[Any, dict[str, list[float]]]] = {group: {} for group in GROUPS}
    for item in items:
        shown = shown_pairs(item.responses, item.positions)
        ratings = elo(item.responses, games(shown, item.preferences), rng)
        accuracy, tau = edge_metrics(ratings, item.graph)
        per_item.append({"accuracy": accuracy, "kendall_tau_b": tau})
        for group in GROUPS:
            target = stats[group].setdefault(item.groups[group], {"accuracy": [], "kendall_tau_b": []})
            target["accuracy"].append(accuracy)
            target["kendall_tau_b"].append(tau)
    groups = {
        group: {key: {m: float(np.mean(v)) if v else 0.0 for m, v in values.items()} for key, values in table.items()}
        for group, table in stats.items()
    }
    by_type = groups["instruction_type"]
    overall = {
        metric: float(np.mean([by_type[t][metric] for t in INSTRUCTION_TYPES if t in by_type]))
        if any(t in by_type for t in INSTRUCTION_TYPES) else 0.0
        for metric in ("accuracy", "kendall_tau_b")
    }  # fmt: skip
    return {"items": per_item, "groups": groups, "overall": overall}


# ---------------------------------------------------------------- the evaluate stage's benchmark

NAME = "if_rewardbench"
DATA_FILE, POSITIONS_FILE = "if_rewardbench.json", "position_maps.json"
EDGES = {"first": 1, "second": -1, "none": 0}  # the preference graph on a judged pair: which shown answer it prefers


def _one_file(path: str, name: str) -> str:
    found = benchmark_files(path, (name,))
    if len(found) != 1:
        raise BenchmarkError(f"{path}: expected one {name} (the official layout), found {len(found)}")
    return found[0]


def load(config: BenchmarkSource) -> list[Comparison]:
    """Every pair of every item once, shown as the position map says; the preference graph's verdict on the
    pair and the item's groups ride in `category` (`<first|second|none>/<model size>/<turn>/<constraints>`),
    the item's place in the file in `group_id` (the Elo fits run in file order), the two answers' indices in
    `chosen_style` / `rejected_style`."""
    assert config.path is not None
    data, positions_path = _one_file(config.path, DATA_FILE), _one_file(config.path, POSITIONS_FILE)
    with open(positions_path, encoding="utf-8") as handle:
        maps = json.load(handle)
    comparisons = []
    for index, record in file_records(data):
        where = f"{data}, record {index}"
        item = record_field(record, "id", where, int)
        responses = [
            record_field(r, "response", f"{where}, responses") for r in record_field(record, "responses", where, list)
        ]
        messages = record_field(record, "messages", where, list)
        positions = maps.get(str(item))
        if not isinstance(positions, dict):
            raise BenchmarkError(f"{positions_path}: no position map for item {item} ({where})")
        edges = {}
        for edge in record_field(record, "preference_graph", where, list):
            chosen, rejected = edge["chosen"]["response_id"], edge["rejected"]["response_id"]
            edges[(chosen, rejected)], edges[(rejected, chosen)] = "first", "second"
        groups = (model_size(record_field(record, "response_generation_model", where)), turn_count(messages),
                  constraint_bucket(len(record_field(record, "checklist", where, list))))  # fmt: skip
        kind = record_field(record, "instruction_type", where)
        for u, v in shown_pairs(len(responses), positions):
            comparisons.append(Comparison(
                benchmark=NAME, subset=kind, item_id=str(item), comparison_id=f"{NAME}/{item}/{u}-{v}",
                conversation=messages, chosen=responses[u], rejected=responses[v],
                category="/".join(map(str, (edges.get((u, v), "none"), *groups))), group_id=str(index),
                chosen_style=u, rejected_style=v, position="A",
            ))  # fmt: skip
    return comparisons


def _items(judged: pd.DataFrame) -> list[Item]:
    """The judged rows back into items, in file order, games in the official loop order."""
    items = []
    for _, rows in sorted(judged.groupby("group_id"), key=lambda group: int(group[0])):
        rows = rows.sort_values(["chosen_style", "rejected_style"])
        shown = list(zip(rows["chosen_style"].astype(int), rows["rejected_style"].astype(int), strict=True))
        responses = max(max(pair) for pair in shown) + 1
        parts = [category.split("/") for category in rows["category"]]
        graph = [(u, v) if part[0] == "first" else (v, u) for (u, v), part in zip(shown, parts, strict=True)
                 if part[0] != "none"]  # fmt: skip
        preferences = [
            "A" if verdict == position else "B" if verdict in (Verdict.A, Verdict.B) else "C"
            for verdict, position in zip(rows["verdict"], rows["chosen_position"], strict=True)
        ]
        size, turn, constraints = parts[0][1:]
        groups = {"model_type": size, "instruction_type": rows["subset"].iloc[0], "turn": int(turn),
                  "constraint_count": constraints}  # fmt: skip
        positions = {f"{min(u, v)}_{max(u, v)}": int(u > v) for u, v in shown}
        items.append(Item(responses, positions, preferences, graph, groups))  # type: ignore[arg-type]
    return items


def score(judged: pd.DataFrame) -> list[ScoreRow]:
    """The official numbers: accuracy (the score) and Kendall τ_b overall, and per group (`subset` rows named
    `<group>/<key>` and `<group>/<key>/τ_b`; groups: model_type, instruction_type, turn, constraint_count)."""
    if judged.empty:
        return []
    items = _items(judged)
    result = score_items(items)
    count = len(result["items"])
    rows = []
    for group in GROUPS:
        sizes = Counter(item.groups[group] for item in items)
        for key, metrics in result["groups"][group].items():
            rows.append(score_row(NAME, "subset", f"{group}/{key}", metrics["accuracy"], sizes[key], judged))
            rows.append(score_row(NAME, "subset", f"{group}/{key}/τ_b", metrics["kendall_tau_b"], sizes[key], judged))
    rows.append(score_row(NAME, "benchmark", "kendall_tau_b", result["overall"]["kendall_tau_b"], count, judged))
    rows.append(score_row(NAME, "benchmark", "score", result["overall"]["accuracy"], count, judged))
    return rows


def write_synthetic(folder: str, seed: int) -> str:
    """A small seeded copy in the official layout (12 items, 3 to 5 responses each); the folder."""
    rng = random.Random(seed)
    root = os.path.join(folder, "if_rewardbench")
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    os.makedirs(os.path.join(root, "inference"), exist_ok=True)
    data, maps = [], {}
    for index in range(12):
        n = rng.randint(3, 5)
        kind = INSTRUCTION_TYPES[index % 3]
        messages = [{"role": "system", "content": "Answer in English."}] if kind == "System_Prompt" else []
        if kind == "Multi_Turn":
            messages += [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
        messages.append({"role": "user", "content": f"Write {index + 2} words about rivers, no commas."})
        responses = [" ".join(["rivers"] * (k + 1)) for k in range(n)]  # longer follows more of the rule here
        maps[str(index)] = {f"{u}_{v}": rng.randint(0, 1) for u in range(n) for v in range(u + 1, n)}
        data.append({
            "id": index, "response_generation_model": rng.choice(MODEL_SIZES["Small"] + MODEL_SIZES["API"]),
            "instruction_type": kind, "messages": messages, "checklist": ["word count", "no commas"],
            "constraint_type": [], "responses": [{"response": r, "judgements": []} for r in responses],
            "preference_graph": [{"chosen": {"response_id": v}, "rejected": {"response_id": u}}
                                 for u in range(n) for v in range(u + 1, n)],
        })  # fmt: skip
    with open(os.path.join(root, "data", DATA_FILE), "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
    with open(os.path.join(root, "inference", POSITIONS_FILE), "w", encoding="utf-8") as out:
        json.dump(maps, out, indent=1)
    return root


BENCHMARK = Benchmark(
    name=NAME,
    title="IF-RewardBench",
    rule="listwise: Elo over each item's judged pairs, graph edges predicted; mean over instruction types",
    load=load,
    score=score,
    files=(DATA_FILE, POSITIONS_FILE),
    needs=("group_id", "category", "chosen_style", "rejected_style"),
    report=lambda rows: [*detail_table(rows, NAME, "subset"), "", *detail_table(rows, NAME, "benchmark")],
    write_synthetic=write_synthetic,
)
