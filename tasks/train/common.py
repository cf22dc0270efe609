"""What the SFT and GRPO stages share: the stage skeleton, the starting model, overlong rows, curves, publishing.

Both stages read a table artifact into conversational rows and hand them to `train_and_publish`, which builds
or finds the starting model, drops the rows longer than the stage's limit, runs a `TrainJob` (see `job.py`)
whose resumable checkpoints live in the store's work folder for the given output version, and publishes the
final model as a checkpoint artifact whose manifest names the base model, the data version, the config and
the metrics. This module must never import `sft.py`, `rl.py` or `runner.py`: they build on it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts import ArtifactRef, ArtifactStore, FolderKind
from data_contracts.versioning import plain
from tasks.stage import ProgressCallback, StageResult
from tasks.train.config import TINY, RlConfig, SftConfig, StudentConfig
from tasks.train.job import TrainerBuilder, TrainJob, TrainOutcome, run_job

log = logging.getLogger(__name__)

CURVES_PNG = "training_curves.png"

Row = dict[str, Any]
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class TrainingStage:
    """What a training stage is apart from its inputs: one per algorithm, defined next to its TRL trainer."""

    name: str  # the job's stage, the work folder's prefix, the log and error prefix ("sft", "rl")
    kind: FolderKind  # the checkpoint artifact it publishes
    code_version: str  # bumped when the same inputs and config would train different weights
    build: TrainerBuilder  # the job's TRL trainer, on every rank
    curves: dict[str, str]  # metric key -> panel title of the published training curves
    unit: str  # what a row is called in the stats and logs ("examples", "prompts")


@dataclass(frozen=True)
class StartingPoint:
    """The model a run starts from: a local folder or Hub id, its revision, and how the manifest names it."""

    model: str
    revision: str | None
    label: str


@dataclass(frozen=True)
class FittingRows:
    """The rows that fit the stage's length limit, and the token counts of all of them."""

    kept: list[Row]
    lengths: list[int]  # of every row, kept or not
    dropped_by_domain: dict[str, int]

    @property
    def dropped(self) -> int:
        return len(self.lengths) - len(self.kept)


def precision_kwargs(config: SftConfig | RlConfig) -> dict[str, Any]:
    """The TRL config fields both stages set alike from their section: seeds, precision, device, memory."""
    on_cpu = config.launch.device == "cpu"
    return {
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": config.bf16 and not on_cpu,  # fp32 on CPU
        "use_cpu": on_cpu,
        "activation_checkpointing": config.gradient_checkpointing,  # transformers 5 name
    }


def saving_kwargs(config: SftConfig | RlConfig) -> dict[str, Any]:
    """The TRL config fields both stages set alike from their section: resumable checkpoints and logging."""
    return {
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "report_to": "none",
    }


def start_model(student: StudentConfig, texts: Callable[[], Iterable[str]], work_dir: str) -> str:
    """The starting model's folder or Hub id; the tiny model is built once per work folder from `texts`."""
    if student.model != TINY:
        return student.model
    folder = os.path.join(work_dir, "tiny-base")
    if not os.path.exists(os.path.join(folder, "config.json")):
        from tasks.models.tiny import build_tiny_model  # torch and transformers load only when a model is built

        partial = f"{folder}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        build_tiny_model(texts(), student.tiny, partial)
        os.replace(partial, folder)
    return folder


def student_start(
    student: StudentConfig, texts: Callable[[], Iterable[str]], work_dir: str, data: ArtifactRef
) -> StartingPoint:
    """The student as the starting point; a tiny one is built from `texts` and named after `data`."""
    model = start_model(student, texts, work_dir)
    return StartingPoint(model, student.revision, model if student.model != TINY else f"tiny (built from {data})")


def drop_overlong(
    rows: list[dict[str, Any]], lengths: Sequence[int], max_length: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows of at most `max_length` tokens, and how many were dropped per domain."""
    kept = [row for row, n in zip(rows, lengths, strict=True) if n <= max_length]
    dropped = Counter(row["domain"] for row, n in zip(rows, lengths, strict=True) if n > max_length)
    return kept, dict(sorted(dropped.items()))


def token_counts(
    tokenizer: Any, conversations: Sequence[list[dict[str, str]]], add_generation_prompt: bool = False
) -> list[int]:
    """Tokens of each conversation under the chat template (rendered, then encoded as one batch)."""
    texts = [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        for messages in conversations
    ]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def write_rows(rows: list[dict[str, Any]], path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def train_and_publish(
    stage: TrainingStage,
    store: ArtifactStore,
    version: str,
    *,
    rows: list[Row],
    messages: Callable[[Row], Messages],
    add_generation_prompt: bool,
    max_length: int,
    start: Callable[[str], StartingPoint],
    refuse: Callable[[FittingRows], str | None],
    summarize: Callable[[FittingRows, TrainOutcome], dict[str, Any]],
    config: Any,
    upstream: dict[str, str],
    record: dict[str, Any],
    callbacks: Sequence[Any] = (),
    on_progress: ProgressCallback | None = None,
) -> StageResult:
    """Train `stage` on `rows` and publish its checkpoint as `version`: the skeleton both stages share.

    The starting model comes from `start(work_dir)`; rows whose `messages` are longer than `max_length`
    tokens under its chat template are dropped; `refuse` names why the rest cannot train (a ValueError), or
    None. The job runs over the work folder of `version` (resuming if it was killed), held under its lock, then
    the model folder is published with the row counts, what `summarize` adds, and the logged metrics.
    """
    from transformers import AutoTokenizer

    machine = int(os.environ.get("MACHINE_RANK", "0"))
    publishes = {stage.kind.kind: version}  # re-checked once the lock is held: a run that waited skips
    with store.scratch(stage.name, version, node=machine, publishes=publishes) as work_dir:
        base = start(work_dir)
        tokenizer = AutoTokenizer.from_pretrained(base.model, revision=base.revision)
        lengths = token_counts(tokenizer, [messages(row) for row in rows], add_generation_prompt=add_generation_prompt)
        kept, dropped = drop_overlong(rows, lengths, max_length)
        fitting = FittingRows(kept, lengths, dropped)
        reason = refuse(fitting)
        if reason is not None:
            raise ValueError(f"{stage.name}: {reason}")
        log.info(
            "%s: %d %s, %d dropped as longer than %d tokens",
            stage.name,
            len(kept),
            stage.unit,
            fitting.dropped,
            max_length,
        )
        job = TrainJob(
            stage=stage.name,
            model=base.model,
            revision=base.revision,
            data=write_rows(kept, f"{work_dir}/data/{stage.name}_rows.parquet"),
            config=plain(config),
            output_dir=os.path.join(work_dir, "trainer"),
            final_dir=os.path.join(work_dir, "final"),
        )
        outcome = run_job(job, stage.build, callbacks, on_progress)
        return publish_checkpoint(
            stage,
            store,
            version,
            work_dir,
            job,
            outcome,
            {
                "base_model": base.label,
                "steps": outcome.global_step,
                "resumed_from_step": outcome.resumed_from_step,
                "processes": outcome.ranks,
                "ranks_agree": outcome.ranks_agree,
                stage.unit: len(kept),
                "dropped_overlong": fitting.dropped,
                "dropped_overlong_by_domain": dropped,
                **summarize(fitting, outcome),
            },
            upstream=upstream,
            record=record,
        )


def publish_checkpoint(
    stage: TrainingStage,
    store: ArtifactStore,
    version: str,
    work_dir: str,
    job: TrainJob,
    outcome: TrainOutcome,
    stats: dict[str, Any],
    *,
    upstream: dict[str, str],
    record: dict[str, Any],
) -> StageResult:
    """Publish the job's final model folder as `version` with `stats`, the metrics and their curves (node 0),
    then remove `work_dir`, the job's scratch."""
    machine = int(os.environ.get("MACHINE_RANK", "0"))
    if machine != 0:  # multi-node: every node trained its share; node 0 alone holds the model and publishes
        log.info("%s: node %d done; node 0 publishes %s/%s", stage.name, machine, stage.kind.kind, version)
        return StageResult(stage.name, {}, {"machine_rank": machine, "steps": outcome.global_step})
    with store.folder_writer(
        stage.kind, version, upstream=upstream, config=record, code_version=stage.code_version
    ) as writer:
        for entry in os.listdir(job.final_dir):
            shutil.move(os.path.join(job.final_dir, entry), os.path.join(writer.path, entry))
        metrics = metric_rows(outcome.log_history)
        plot_curves(metrics, stage.curves, os.path.join(writer.path, CURVES_PNG), stage.name)
        stats = {**stats, "metrics": metrics}
        ref = writer.commit(stats)
    shutil.rmtree(work_dir, ignore_errors=True)  # published: the resumable checkpoints are no longer needed
    return StageResult(stage.name, {stage.kind.kind: ref}, stats)


def metric_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged training step (the final summary entry left out), numbers rounded for tables."""
    rows = []
    for entry in log_history:
        if "train_runtime" in entry or "step" not in entry:
            continue
        rows.append({k: (round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()})
    return rows


def plot_curves(rows: list[dict[str, Any]], curves: dict[str, str], path: str, title: str) -> str:
    """A PNG with one panel per curve (`metric key -> panel title`) over optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {key: name for key, name in curves.items() if any(key in row for row in rows)}
    columns = max(1, min(3, len(present)))
    lines = max(1, math.ceil(len(present) / columns))
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.0 * lines), squeeze=False)
    for axis in axes.flat[len(present) :]:
        axis.set_visible(False)
    for axis, (key, name) in zip(axes.flat, present.items(), strict=False):
        points = [(row["step"], row[key]) for row in rows if key in row and row[key] is not None]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 40 else None)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("step", fontsize=8)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
