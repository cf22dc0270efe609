"""The evaluation report: a run's scores in markdown, beside the numbers published for each benchmark.

Pure text from `eval_scores` rows and a few facts about where they came from; no I/O. The paper's table
(docs/method.md §9) spans its three benchmarks; every other benchmark brings its own published rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import fmean
from typing import Any

from tasks.evaluate.benchmarks import benchmark_of
from tasks.evaluate.benchmarks.base import Published, ScoreRow, find_row, points
from tasks.evaluate.scoring import PAPER, missing_parts

PAPER_SOURCE = "RM-R1 (arXiv 2505.02387), Tables 1-2"
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
COLUMNS = (*PAPER, "overall")


def title(name: str) -> str:
    return "avg" if name == "overall" else benchmark_of(name).title


def judged_benchmarks(rows: list[ScoreRow]) -> list[str]:
    """The benchmarks with a score, in the order their rows come."""
    names = [r["benchmark"] for r in rows if r["level"] == "benchmark" and r["name"] == "score"]
    return list(dict.fromkeys(names))


def run_scores(rows: list[ScoreRow]) -> dict[str, float | None]:
    """The paper's four numbers (fractions; None where a benchmark was not judged): its three benchmarks and
    their mean ("overall", the paper's avg), from the rows of a run."""
    scores: dict[str, float | None] = {}
    for name in PAPER:
        row = find_row(rows, name, "benchmark", "score")
        scores[name] = row["score"] if row else None
    present = [v for v in scores.values() if v is not None]
    return {**scores, "overall": fmean(present) if present else None}


def headline_line(rows: list[ScoreRow]) -> str:
    """Every benchmark's score and the headline (avg: the mean of them all), in points."""
    shown = [f"{title(name)} {points(find_row(rows, name, 'benchmark', 'score')['score'])}"  # type: ignore[index]
             for name in judged_benchmarks(rows)]  # fmt: skip
    headline = find_row(rows, "overall", "headline", "score")
    if headline is not None and len(shown) > 1:
        shown.append(f"avg {points(headline['score'])}")
    return ", ".join(shown)


def _paper_table(run: Mapping[str, float | None], run_name: str) -> list[str]:
    header = "| model | " + " | ".join(title(c) for c in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 1) + "|", f"| **{run_name}** | " + " | ".join(
        f"**{points(run[c])}**" for c in COLUMNS) + " |"]  # fmt: skip
    for model, published in PAPER_ROWS.items():
        cells = []
        for column, value in zip(COLUMNS, published, strict=True):
            mine = run[column]
            delta = "" if value is None or mine is None else f" ({100 * mine - value:+.1f})"
            cells.append(("–" if value is None else f"{value:.1f}") + delta)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _published_table(name: str, rows: list[ScoreRow], published: tuple[Published, ...]) -> list[str]:
    """This run's score and parts beside each published row (Δ = this run − published, points), with sources."""
    parts = list(dict.fromkeys(part for p in published for part in p.parts))
    mine = find_row(rows, name, "benchmark", "score")
    mine_parts = {r["name"]: r["score"] for r in rows if r["benchmark"] == name and r["level"] == "section"}
    lines = ["| model | score | " + " | ".join(parts) + " | source |", "|---" * (len(parts) + 3) + "|",
             f"| **this run** | **{points(mine['score'] if mine else None)}** | "
             + " | ".join(points(mine_parts.get(part)) for part in parts) + " | |"]  # fmt: skip
    for p in published:
        delta = f" ({100 * mine['score'] - p.score:+.1f})" if mine else ""
        cells = [f"{p.parts[part]:.1f}" if part in p.parts else "–" for part in parts]
        lines.append(f"| {p.model} | {p.score:.1f}{delta} | " + " | ".join(cells) + f" | {p.source} |")
    return lines


def _samples_table(rows: list[ScoreRow], tokens: Mapping[str, list[int]]) -> list[str]:
    """Each benchmark's score from the first k samples (majority vote), and the output tokens they took."""
    at_k = [r for r in rows if r["level"] == "samples"]
    if not at_k:
        return []
    names = judged_benchmarks(rows)
    ks = sorted({int(r["name"].split("@")[1]) for r in at_k})
    lines = ["## Scores by number of samples (majority vote)", "",
             "| samples | " + " | ".join(title(n) for n in names) + " | output tokens |",
             "|---" * (len(names) + 2) + "|"]  # fmt: skip
    for k in ks:
        cells = [points((find_row(at_k, n, "samples", f"score@{k}") or {}).get("score")) for n in names]
        spent = sum(sum(per_sample[:k]) for per_sample in tokens.values())
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {spent:,} |")
    return [*lines, ""]


def markdown_report(rows: list[ScoreRow], facts: Mapping[str, Any]) -> str:
    """Facts, the paper's table (for its benchmarks), then each benchmark's detail beside its published rows,
    scores by number of samples, position bias and prompts not judged.

    `facts`: judge, judge_model, predictions and scores versions, order_seed, both_orders, per-benchmark
    sampling, notes (prompts not judged, by reason), output_tokens (per benchmark and sample index).
    """
    run = run_scores(rows)
    names = judged_benchmarks(rows)
    paper = [title(b) for b in PAPER if run[b] is not None]
    lines = [
        f"# Evaluation: {facts.get('judge', '?')}",
        "",
        f"Judge model: `{facts.get('judge_model', '?')}`; predictions `{facts.get('eval_predictions', '?')}`, scores "
        f"`{facts.get('eval_scores', '?')}`; A/B order seed {facts.get('order_seed', '?')}"
        + (", both orders judged" if facts.get("both_orders") else "")
        + ".",
        "",
    ]
    for benchmark, parts in missing_parts(rows).items():
        lines += [f"**{title(benchmark)} is partial**: no {', '.join(parts)} judged, so its score is the official "
                  "rule over fewer parts, not comparable with the published numbers.", ""]  # fmt: skip
    sampled = [b for b, spec in facts.get("benchmarks", {}).items() if spec.get("items_per_subset") is not None]
    if sampled:
        lines += [f"Sampled (items_per_subset), so not comparable with published numbers as is: {', '.join(sampled)}.",
                  ""]  # fmt: skip
    if paper:
        if len(paper) < len(PAPER):
            lines += [f"Only {', '.join(paper)} of the paper's benchmarks judged here: avg is the mean over "
                      f"{len(paper)} benchmark(s).", ""]  # fmt: skip
        lines += [f"## Beside the paper ({PAPER_SOURCE}; docs/method.md §9; Δ = this run − paper, points)", "",
                  *_paper_table(run, "this run"), ""]  # fmt: skip
    for name in names:
        benchmark = benchmark_of(name)
        lines += [f"## {benchmark.title}", ""]
        if benchmark.report is not None:
            lines += [*benchmark.report(rows), ""]
        split = facts.get("benchmarks", {}).get(name, {}).get("split")
        published = tuple(p for p in benchmark.published if None in (p.split, split) or p.split == split)
        if published:
            lines += ["Published (Δ = this run − published, points):", "",
                      *_published_table(name, rows, published), ""]  # fmt: skip
        elif benchmark.published:
            lines += [f"Published numbers are on split {benchmark.published[0].split}, not {split}.", ""]
    if len(names) > 1:
        headline = find_row(rows, "overall", "headline", "score")
        lines += [f"Mean of the {len(names)} benchmark scores: {points(headline['score'] if headline else None)}.", ""]
    lines += _samples_table(rows, facts.get("output_tokens") or {})
    position = [r for r in rows if r["level"] == "position"]
    if position:
        lines += ["## Position bias", "", "| benchmark | name | value | n |", "|---|---|---|---|"]
        lines += [f"| {r['benchmark']} | {r['name']} | {points(r['score'])} | {r['count']} |" for r in position]
        lines.append("")
    notes = facts.get("notes") or {}
    if notes:
        lines += ["Not judged (scored as errors): " + ", ".join(f"{k} {v}" for k, v in sorted(notes.items())), ""]
    return "\n".join(lines)
