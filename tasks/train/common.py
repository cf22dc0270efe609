"""What the SFT and GRPO stages share: the starting model, overlong-example dropping, curves and publishing.

Both stages read a table artifact, prepare rows, run a `TrainJob` (see `runner.py`) whose resumable
checkpoints live in the store's work folder for that output version, and publish the final model as a
checkpoint artifact whose manifest names the base model, the data version, the config and the metrics.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts import ArtifactStore, FolderKind
from data_contracts.versioning import plain, versioned
from tasks.stage import ProgressCallback, StageResult
from tasks.train.config import TINY, StudentConfig
from tasks.train.runner import TrainJob, TrainOutcome, run_job

log = logging.getLogger(__name__)

CURVES_PNG = "training_curves.png"


def versioned_config(config: Any) -> dict[str, Any]:
    """The config fields that change the trained weights (how often checkpoints are written does not)."""
    return versioned(config)


def versioned_student(student: StudentConfig) -> dict[str, Any]:
    """The student fields that matter: the tiny model's size only when the tiny model is used."""
    fields = plain(student)
    if student.model != TINY:
        fields.pop("tiny")
    return fields


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
    *,
    stage: str,
    kind: FolderKind,
    version: str,
    store: ArtifactStore,
    work_dir: str,
    base_model: str,
    base_label: str,
    revision: str | None,
    data_path: str,
    config: Any,
    upstream: dict[str, str],
    record: dict[str, Any],
    code_version: str,
    curves: dict[str, str],
    summarize: Callable[[TrainOutcome], dict[str, Any]],
    callbacks: Sequence[Any] = (),
    on_progress: ProgressCallback | None = None,
) -> StageResult:
    """Run the job over `work_dir` (resuming if it was killed), then publish the model folder with its stats."""
    job = TrainJob(
        stage=stage,
        model=base_model,
        revision=revision,
        data=data_path,
        config=plain(config),
        output_dir=os.path.join(work_dir, "trainer"),
        final_dir=os.path.join(work_dir, "final"),
    )
    outcome = run_job(job, callbacks, on_progress)
    machine = int(os.environ.get("MACHINE_RANK", "0"))
    if machine != 0:  # multi-node: every node trained its share; node 0 alone holds the model and publishes
        log.info("%s: node %d done; node 0 publishes %s/%s", stage, machine, kind.kind, version)
        return StageResult(stage, {}, False, {"machine_rank": machine, "steps": outcome.global_step})
    with store.folder_writer(kind, version, upstream=upstream, config=record, code_version=code_version) as writer:
        for entry in os.listdir(job.final_dir):
            shutil.move(os.path.join(job.final_dir, entry), os.path.join(writer.path, entry))
        metrics = metric_rows(outcome.log_history)
        plot_curves(metrics, curves, os.path.join(writer.path, CURVES_PNG), stage)
        stats = {
            "base_model": base_label,
            "steps": outcome.global_step,
            "resumed_from_step": outcome.resumed_from_step,
            "processes": outcome.ranks,
            "ranks_agree": outcome.ranks_agree,
            **summarize(outcome),
            "metrics": metrics,
        }
        ref = writer.commit(stats)
    shutil.rmtree(work_dir, ignore_errors=True)  # published: the resumable checkpoints are no longer needed
    return StageResult(stage, {kind.kind: ref}, False, stats)


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


def published(store: ArtifactStore, kind: FolderKind, version: str, stage: str) -> StageResult | None:
    """The StageResult of an already published checkpoint (the stage is skipped), or None."""
    ref = store.get(kind.kind, version)
    if ref is None:
        return None
    return StageResult(stage, {kind.kind: ref}, True, store.manifest(ref)["stats"])
