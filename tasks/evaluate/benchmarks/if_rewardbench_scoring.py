"""IF-RewardBench's official overall-assessment scoring, as pure functions (thu-coai/IF-RewardBench,
`metrics/analysis_overall_assessment.py` at c192fe9; arXiv 2603.04738).

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

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

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
