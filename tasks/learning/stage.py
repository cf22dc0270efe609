"""The learning stage: the same held-out benchmark judged by the student before training, after SFT, after
GRPO and by the length baseline → `learning_scores`, one row per judge; then the gates.

It answers the question plumbing cannot: did training make the judge better? Each judge decodes greedily
with the template the student was trained on, every pair in the same seeded A/B order, judged in resumable
chunks (`tasks.evaluate.stage.judge_all`); the rows give accuracy, the unparseable share and the share of
`[[A]]` verdicts (a judge stuck on one letter scores about 0.5 with about 1.0 here). The untrained student is
the first training stage's starting model, rebuilt (`tasks.train.stages.starting_student`).

`gate_failures` reads the published rows against `learning.gates`; the plan's executor calls it after every
run, including one whose stages were all skipped, so a judge that did not learn fails the run each time.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from data_contracts import ArtifactRef, ArtifactStore, artifact_version, publish_table
from data_contracts.kinds import LEARNING_SCORES, RL_CHECKPOINT, SFT_CHECKPOINT
from data_contracts.versioning import versioned
from tasks.evaluate.benchmarks import load_benchmark
from tasks.evaluate.config import EvaluateConfig
from tasks.evaluate.stage import judge_all, judgements, versioned_benchmark
from tasks.judge.backends import make_judge
from tasks.judge.config import JudgeConfig
from tasks.judge.protocol import load_template_set
from tasks.learning.config import LearningConfig
from tasks.llm.cache import default_cache_path
from tasks.recipe import Recipe
from tasks.stage import ProgressCallback, Stage, StageResult, StageRun, Tables
from tasks.trace_samples import inline
from tasks.train.common import StartingPoint, plot_curves
from tasks.train.config import versioned_student
from tasks.train.stages import first_training_input, starting_student

# Bump when the rows this stage writes for the same inputs would change.
CODE_VERSION = "learning-1"
UNTRAINED, SFT, RL, LENGTH = "untrained", "sft", "rl", "length"
TITLES = {UNTRAINED: "untrained student", SFT: "after SFT", RL: "after GRPO", LENGTH: "length baseline"}
SAMPLE_CHARS = 600


def _reads(recipe: Recipe) -> tuple[str, ...]:
    """The first training stage's data (to rebuild the untrained student) and the checkpoints."""
    checkpoints = (SFT_CHECKPOINT.kind, RL_CHECKPOINT.kind) if recipe.distills else (RL_CHECKPOINT.kind,)
    return (first_training_input(recipe), *checkpoints)


def learning_version(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    """The `learning_scores` version: the benchmark (by content), how the judges decode, the student, the inputs."""
    config = recipe.learning
    assert config is not None
    judged = {
        "benchmark": versioned_benchmark(config.benchmark),
        "decoding": {k: v for k, v in versioned(config).items() if k != "benchmark"},
        "template": load_template_set(recipe.rl.template).fingerprint,
        "student": versioned_student(recipe.student),
    }
    upstream = {kind: ref.version for kind, ref in inputs.items()}
    return {LEARNING_SCORES.kind: artifact_version(LEARNING_SCORES.kind, LEARNING_SCORES.version, judged, upstream,
                                                   CODE_VERSION)}  # fmt: skip


def summary_row(judge: str, model: str, benchmark: str, predictions: pd.DataFrame) -> dict[str, Any]:
    """One `learning_scores` row from a judge's prediction rows (`verdict` A / B / error, `score` 1 / 0)."""
    n = len(predictions)
    return {
        "judge": judge,
        "model": model,
        "benchmark": benchmark,
        "comparisons": n,
        "accuracy": float(predictions["score"].mean()) if n else 0.0,
        "unparseable": float((predictions["verdict"] == "error").mean()) if n else 0.0,
        "verdict_a": float((predictions["verdict"] == "A").mean()) if n else 0.0,
    }


def _judge_config(config: LearningConfig, recipe: Recipe, judge: str, start: StartingPoint) -> JudgeConfig:
    """How `judge` decodes: the untrained student at its own revision, the checkpoints as their kinds."""
    if judge == LENGTH:
        return JudgeConfig(backend="length", model=LENGTH)
    model = {UNTRAINED: start.model, SFT: SFT_CHECKPOINT.kind, RL: RL_CHECKPOINT.kind}[judge]
    return JudgeConfig(backend=config.backend, model=model, revision=start.revision if judge == UNTRAINED else None,
                       template=recipe.rl.template, max_new_tokens=config.max_new_tokens,
                       batch_size=config.batch_size)  # fmt: skip


def measure_learning(
    recipe: Recipe,
    store: ArtifactStore,
    inputs: Mapping[str, ArtifactRef],
    *,
    version: str,
    on_progress: ProgressCallback | None = None,
) -> StageResult:
    """Judge the held-out benchmark with every judge and publish `learning_scores` as `version`."""
    config = recipe.learning
    assert config is not None
    items = judgements(load_benchmark(config.benchmark), config.order_seed, both_orders=False)
    cache_path = default_cache_path(store, None, "judge_requests.sqlite")
    judges = [UNTRAINED, *([SFT] if SFT_CHECKPOINT.kind in inputs else []), RL, LENGTH]
    rows, samples = [], {}
    # One run per version at a time; a run that waited while another published this version skips.
    with store.scratch("learning", version, publishes={LEARNING_SCORES.kind: version}) as work_dir:
        start = starting_student(recipe, inputs, store, os.path.join(work_dir, "student"))
        models: dict[str, tuple[Callable[[], str], str]] = {
            UNTRAINED: (lambda: start.model, start.label),
            SFT: (lambda: store.local_copy(inputs[SFT_CHECKPOINT.kind]), str(inputs.get(SFT_CHECKPOINT.kind))),
            RL: (lambda: store.local_copy(inputs[RL_CHECKPOINT.kind]), str(inputs[RL_CHECKPOINT.kind])),
            LENGTH: (lambda: LENGTH, "none (longer answer wins)"),
        }
        for judge in judges:
            model, label = models[judge]
            judge_config = _judge_config(config, recipe, judge, start)
            evaluate = EvaluateConfig(judge=judge_config, benchmarks=(config.benchmark,), order_seed=config.order_seed)

            def open_judge(
                settings: JudgeConfig = judge_config, model: Callable[[], str] = model, name: str = judge
            ) -> Any:
                return make_judge(settings, model(), name, cache_path)

            judging = judge_all(items, evaluate, open_judge, os.path.join(work_dir, judge), label, on_progress)
            predictions = pd.DataFrame(judging.rows)
            rows.append(summary_row(judge, label, config.benchmark.name, predictions))
            samples[judge] = predictions.head(2)[["comparison_id", "chosen_position", "verdict", "output"]].to_dict(
                "records"
            )
        stats = {"scores": rows, "samples": samples, "rl_rewards": _rl_rewards(store, inputs)}
        ref = publish_table(
            store,
            LEARNING_SCORES,
            version,
            pa.Table.from_pylist(rows, schema=LEARNING_SCORES.schema),
            upstream={kind: ref.version for kind, ref in inputs.items()},
            config=config,
            code_version=CODE_VERSION,
            stats=stats,
        )
        shutil.rmtree(work_dir, ignore_errors=True)
    return StageResult("learning", {LEARNING_SCORES.kind: ref}, stats)


def _rl_rewards(store: ArtifactStore, inputs: Mapping[str, ArtifactRef]) -> list[dict[str, Any]]:
    """GRPO's mean reward per logged step, from the rl_checkpoint's manifest (the curve beside the table)."""
    metrics = store.manifest(inputs[RL_CHECKPOINT.kind]).get("stats", {}).get("metrics", [])
    return [{"step": row["step"], "reward": row["reward"]} for row in metrics if row.get("reward") is not None]


# ---------------------------------------------------------------- what people read


def learning_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The learning table: one line per judge, in points."""
    return [
        {
            "judge": TITLES.get(r["judge"], r["judge"]),
            "held-out accuracy": round(100 * r["accuracy"], 1),
            "unparseable %": round(100 * r["unparseable"], 1),
            "[[A]] verdicts %": round(100 * r["verdict_a"], 1),
            "n": r["comparisons"],
            "model": r["model"],
        }
        for r in rows
    ]


def learning_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The learning table as aligned terminal lines (what `rmr1 run` ends with)."""
    lines = [f"{'judge':<18} {'held-out acc':>12} {'unparseable':>11} {'[[A]] share':>11}"]
    for r in rows:
        lines.append(f"{TITLES.get(r['judge'], r['judge']):<18} {100 * r['accuracy']:>11.1f}% "
                     f"{100 * r['unparseable']:>10.1f}% {100 * r['verdict_a']:>10.1f}%")  # fmt: skip
    return lines


def learning_markdown(result: StageResult, store: ArtifactStore) -> dict[str, str]:
    """The table, GRPO's reward per step, and the first judgments of each judge, as one markdown report."""
    rows = result.stats["scores"]
    benchmark = rows[0]["benchmark"] if rows else "?"
    lines = [f"### Learning: held-out `{benchmark}` judged before and after training", "",
             "| judge | held-out accuracy | unparseable | [[A]] verdicts | n |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {TITLES.get(r['judge'], r['judge'])} | {100 * r['accuracy']:.1f} | {100 * r['unparseable']:.1f}% "
              f"| {100 * r['verdict_a']:.1f}% | {r['comparisons']} |" for r in rows]  # fmt: skip
    rewards = result.stats.get("rl_rewards", [])
    if rewards:
        lines += ["", f"![GRPO mean reward per step](data:image/png;base64,{_reward_png(rewards)})", "",
                  "GRPO mean reward per step (the ±1 verdict reward): "
                  + " ".join(f"{r['reward']:+.2f}" for r in rewards)]  # fmt: skip
    for judge, picked in result.stats.get("samples", {}).items():
        lines += ["", f"#### {TITLES.get(judge, judge)}"]
        for sample in picked:
            output = inline(str(sample["output"])[:SAMPLE_CHARS]) if sample["output"] is not None else "(none)"
            lines.append(f"- `{sample['comparison_id']}` chosen at {sample['chosen_position']}, verdict "
                         f"**{sample['verdict']}**: {output}")  # fmt: skip
    return {"report": "\n".join(lines) + "\n"}


def _reward_png(rewards: list[dict[str, Any]]) -> str:
    """GRPO's reward curve as a base64 PNG (the training stages' plotting, one panel)."""
    with tempfile.TemporaryDirectory(prefix="rmr1-learning-") as folder:
        path = plot_curves(rewards, {"reward": "GRPO mean reward (±1 verdict reward)"}, f"{folder}/reward.png", "rl")
        with open(path, "rb") as png:
            return base64.b64encode(png.read()).decode()


def learning_tables(result: StageResult) -> Tables:
    return {"table": learning_table(result.stats["scores"]), "rl-reward": result.stats.get("rl_rewards", [])}


# ---------------------------------------------------------------- the gates


def gate_failures(recipe: Recipe, store: ArtifactStore, outputs: Mapping[str, ArtifactRef]) -> list[str]:
    """One line per gate of `learning.gates` the published scores miss: the gate, the number, the threshold."""
    gates = recipe.learning.gates if recipe.learning is not None else None
    ref = outputs.get(LEARNING_SCORES.kind)
    if gates is None or ref is None:
        return []
    rows = {r["judge"]: r for r in store.read_table(ref).to_pylist()}
    failures = []

    def below(gate: str, judge: str, what: str, value: float, bound: float) -> None:
        failures.append(f"gate learning.gates.{gate}: {what} {TITLES[judge]} {value:.3f} < {bound:.3f} ({ref})")

    for judge, gate in ((SFT, gates.min_sft_accuracy), (RL, gates.min_rl_accuracy)):
        if gate is not None and judge in rows and rows[judge]["accuracy"] < gate:
            below(f"min_{judge}_accuracy", judge, "held-out accuracy", rows[judge]["accuracy"], gate)
    if gates.max_unparseable is not None:
        for judge in (SFT, RL):
            if judge in rows and rows[judge]["unparseable"] > gates.max_unparseable:
                failures.append(
                    f"gate learning.gates.max_unparseable: unparseable share {TITLES[judge]} "
                    f"{rows[judge]['unparseable']:.3f} > {gates.max_unparseable:.3f} ({ref})"
                )
    start = SFT if SFT in rows else UNTRAINED
    if gates.max_rl_drop is not None and RL in rows and start in rows:
        floor = rows[start]["accuracy"] - gates.max_rl_drop
        if rows[RL]["accuracy"] < floor - 1e-9:  # a float sum must not fail a judge that sits on the bound
            failures.append(
                f"gate learning.gates.max_rl_drop: held-out accuracy {TITLES[RL]} {rows[RL]['accuracy']:.3f} < "
                f"{floor:.3f} ({TITLES[start]} {rows[start]['accuracy']:.3f} minus {gates.max_rl_drop:.3f}) ({ref})"
            )
    return failures


def _run(run: StageRun) -> StageResult:
    return measure_learning(run.recipe, run.store, run.inputs, version=run.versions[LEARNING_SCORES.kind],
                            on_progress=run.on_progress)  # fmt: skip


STAGE = Stage(
    name="learning",
    description="Judge a held-out benchmark with the student before training, after SFT, after GRPO and the "
    "length baseline; fail the run when a gate is missed.",
    writes=(LEARNING_SCORES.kind,),
    reads=_reads,
    versions=learning_version,
    run=_run,
    enabled=lambda recipe: recipe.trains and recipe.learning is not None,
    tables=learning_tables,
    markdown=learning_markdown,
    left_out="the recipe has no learning section",
    gates=gate_failures,
)
