"""The evaluation report: a run's scores in markdown, beside the paper's published rows (docs/method.md §9).

Pure text from `eval_scores` rows and a few facts about where they came from; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.evaluate.benchmarks.rm_bench import DIFFICULTY
from tasks.evaluate.scoring import ScoreRow, missing_parts

# docs/method.md §9: RewardBench / RM-Bench / RMB / average, in points.
PAPER_ROWS: dict[str, tuple[float | None, float | None, float | None, float | None]] = {
    "RM-R1-Qwen2.5-Instruct-7B": (85.2, 70.2, 66.4, 73.9),
    "RM-R1-Qwen2.5-Instruct-14B": (88.2, 76.1, 69.2, 77.8),
    "RM-R1-Qwen2.5-Instruct-32B": (91.4, 79.1, 73.0, 81.2),
    "RM-R1-DeepSeek-Distilled-Qwen-7B": (80.1, 72.4, 55.1, 69.2),
    "RM-R1-DeepSeek-Distilled-Qwen-14B": (88.9, 81.5, 68.5, 79.6),
    "RM-R1-DeepSeek-Distilled-Qwen-32B": (90.9, 83.9, 69.8, 81.5),
    "GPT-4o-0806 (judge)": (86.7, 72.5, 73.8, 77.7),
    "INF-ORM-Llama3.1-70B (scalar)": (95.1, 70.9, 70.5, 78.8),
    "Skywork-Reward-Llama-3.1-8B (scalar)": (92.5, 70.1, 69.3, 77.5),
    "ReasonGRM-QwQ-32B": (92.3, 86.3, 71.3, 83.3),
    "J1-Llama-70B": (93.3, 82.7, None, None),
}
COLUMNS = ("rewardbench", "rm_bench", "rmb", "overall")
TITLES = {"rewardbench": "RewardBench", "rm_bench": "RM-Bench", "rmb": "RMB", "overall": "avg"}


def _points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _find(rows: list[ScoreRow], benchmark: str, level: str, name: str) -> ScoreRow | None:
    return next((r for r in rows if (r["benchmark"], r["level"], r["name"]) == (benchmark, level, name)), None)


def run_scores(rows: list[ScoreRow]) -> dict[str, float | None]:
    """The four numbers the paper reports (fractions), None where a benchmark was not judged."""
    found = {b: _find(rows, b, "benchmark", "score") for b in COLUMNS[:3]}
    headline = _find(rows, "overall", "headline", "score")
    scores = {b: r["score"] if r else None for b, r in found.items()}
    return {**scores, "overall": headline["score"] if headline else None}


def _paper_table(run: Mapping[str, float | None], run_name: str) -> list[str]:
    header = "| model | " + " | ".join(TITLES[c] for c in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 1) + "|", f"| **{run_name}** | " + " | ".join(
        f"**{_points(run[c])}**" for c in COLUMNS) + " |"]  # fmt: skip
    for model, published in PAPER_ROWS.items():
        cells = []
        for column, value in zip(COLUMNS, published, strict=True):
            mine = run[column]
            delta = "" if value is None or mine is None else f" ({100 * mine - value:+.1f})"
            cells.append(("–" if value is None else f"{value:.1f}") + delta)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _detail(rows: list[ScoreRow], benchmark: str, level: str, names: list[str] | None = None) -> list[str]:
    chosen = [r for r in rows if r["benchmark"] == benchmark and r["level"] == level]
    if names is not None:
        chosen = [r for name in names for r in chosen if r["name"] == name]
    lines = ["| name | score | n | error rate |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {_points(r['score'])} | {r['count']} | {100 * r['error_rate']:.1f}% |" for r in chosen]
    return lines if chosen else []


def markdown_report(rows: list[ScoreRow], facts: Mapping[str, Any]) -> str:
    """Headline beside the paper's rows (Δ = this run − paper, in points), then each benchmark's detail.

    `facts`: judge, judge_model, predictions and scores versions, order_seed, both_orders, per-benchmark
    comparison counts and sampling, notes (prompts not judged, by reason).
    """
    run = run_scores(rows)
    judged = [TITLES[b] for b in COLUMNS[:3] if run[b] is not None]
    lines = [
        f"# Evaluation: {facts.get('judge', '?')}",
        "",
        f"Judge model: `{facts.get('judge_model', '?')}`; predictions `{facts.get('eval_predictions', '?')}`, scores "
        f"`{facts.get('eval_scores', '?')}`; A/B order seed {facts.get('order_seed', '?')}"
        + (", both orders judged" if facts.get("both_orders") else "")
        + ".",
        "",
    ]
    if len(judged) < 3:
        lines += [f"Only {', '.join(judged)} judged here: avg is the mean over {len(judged)} benchmark(s).", ""]
    for benchmark, parts in missing_parts(rows).items():
        lines += [f"**{TITLES[benchmark]} is partial**: no {', '.join(parts)} judged, so its score is the official "
                  "rule over fewer parts, not comparable with the paper's number.", ""]  # fmt: skip
    sampled = [b for b, spec in facts.get("benchmarks", {}).items() if spec.get("items_per_subset") is not None]
    if sampled:
        lines += [f"Sampled (items_per_subset), so not comparable with the paper as is: {', '.join(sampled)}.", ""]
    lines += ["## Beside the paper (docs/method.md §9; Δ = this run − paper, points)", "",
              *_paper_table(run, "this run"), ""]  # fmt: skip
    lines += ["## RewardBench", "", *_detail(rows, "rewardbench", "section"), "",
              *_detail(rows, "rewardbench", "benchmark"), ""]  # fmt: skip
    domains = sorted({r["name"].split("/")[0] for r in rows if r["benchmark"] == "rm_bench" and r["level"] == "cell"})
    lines += ["## RM-Bench (hard: chosen less styled than rejected)", "",
              *_detail(rows, "rm_bench", "section", [*DIFFICULTY, *domains]), ""]  # fmt: skip
    lines += ["## RMB", "", *_detail(rows, "rmb", "section"), ""]
    position = [r for r in rows if r["level"] == "position"]
    if position:
        lines += ["## Position bias", "", "| benchmark | name | value | n |", "|---|---|---|---|"]
        lines += [f"| {r['benchmark']} | {r['name']} | {_points(r['score'])} | {r['count']} |" for r in position]
        lines.append("")
    notes = facts.get("notes") or {}
    if notes:
        lines += ["Not judged (scored as errors): " + ", ".join(f"{k} {v}" for k, v in sorted(notes.items())), ""]
    return "\n".join(lines)
