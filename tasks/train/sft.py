"""The SFT stage: `sft_examples` → `sft_checkpoint`, TRL's SFTTrainer with loss on the assistant turn only.

Each example becomes a conversational prompt/completion pair (system + user messages → the teacher's
trace), so TRL's completion-only loss trains exactly the assistant tokens with any model's chat template;
the chat template closes the assistant turn, so the student also learns to stop. Examples longer than
`max_length` tokens are dropped and counted per domain, never truncated (a cut trace loses its verdict).
This module defines the SFT stage only: it builds on `common.py` and `job.py` and must never import
`rl.py` or `runner.py`; it does not decide whether its output is already published (the caller does).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from data_contracts import ArtifactRef, ArtifactStore, artifact_version
from data_contracts.kinds import SFT_CHECKPOINT, SFT_EXAMPLES
from tasks.stage import ProgressCallback, StageResult
from tasks.train.common import (
    FittingRows,
    TrainingStage,
    precision_kwargs,
    saving_kwargs,
    student_start,
    train_and_publish,
)
from tasks.train.config import SftConfig, StudentConfig, from_plain, versioned_student
from tasks.train.job import TrainJob, TrainOutcome

# Bump when the same inputs and config would train different weights.
CODE_VERSION = "sft-1"
CURVES = {"loss": "training loss", "mean_token_accuracy": "token accuracy", "learning_rate": "learning rate",
          "grad_norm": "gradient norm"}  # fmt: skip


def sft_version(student: StudentConfig, config: SftConfig, examples: ArtifactRef) -> str:
    return artifact_version(
        SFT_CHECKPOINT.kind,
        SFT_CHECKPOINT.version,
        {"student": versioned_student(student), "sft": config},
        {SFT_EXAMPLES.kind: examples.version},
        CODE_VERSION,
    )


def prompt_messages(system: str | None, user: str) -> list[dict[str, str]]:
    """The judge prompt as chat messages (a template without a system prompt has only the user turn)."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def sft_rows(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows for TRL, keeping the ids needed to trace a row back."""
    return [
        {
            "prompt": prompt_messages(row["system"], row["user"]),
            "completion": [{"role": "assistant", "content": row["assistant"]}],
            "pair_id": row["pair_id"],
            "domain": row["domain"],
        }
        for row in examples
    ]


def tokenizer_texts(examples: list[dict[str, Any]]) -> Iterator[str]:
    """The text a tiny student's tokenizer is trained on: every example's prompt and trace."""
    return (f"{row['system'] or ''}\n{row['user']}\n{row['assistant']}" for row in examples)


def trl_sft_kwargs(config: SftConfig, output_dir: str, revision: str | None = None) -> dict[str, Any]:
    """Keyword arguments of `trl.SFTConfig` for this recipe section (printed by `--dry-run`)."""
    precision = precision_kwargs(config)
    return {
        "output_dir": output_dir,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "max_length": config.max_length,
        "warmup_steps": config.warmup_ratio,  # transformers 5: a float below 1 is a share of all steps
        "lr_scheduler_type": config.lr_scheduler,
        "adam_beta1": config.adam_beta1,
        "adam_beta2": config.adam_beta2,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        **precision,
        "packing": config.packing,
        "completion_only_loss": True,  # loss on the assistant turn only
        "model_init_kwargs": {"dtype": "bfloat16" if precision["bf16"] else "float32", "revision": revision},
        **saving_kwargs(config),
        "disable_tqdm": False,
    }


def build_sft_trainer(job: TrainJob) -> Any:
    """TRL's SFTTrainer for a job (called on every rank by the runner)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    config = from_plain(SftConfig, job.config)
    tokenizer = AutoTokenizer.from_pretrained(job.model, revision=job.revision)
    dataset = Dataset.from_parquet(job.data).select_columns(["prompt", "completion"])
    args = SFTConfig(**trl_sft_kwargs(config, job.output_dir, job.revision))
    return SFTTrainer(model=job.model, args=args, train_dataset=dataset, processing_class=tokenizer)


SFT = TrainingStage("sft", SFT_CHECKPOINT, CODE_VERSION, build_sft_trainer, CURVES, unit="examples")


def train_sft(
    examples: ArtifactRef,
    student: StudentConfig,
    config: SftConfig,
    store: ArtifactStore,
    *,
    version: str,
    on_progress: ProgressCallback | None = None,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """Fine-tune the student on `examples`; publish `sft_checkpoint` as `version` (`sft_version` of the inputs)."""
    examples_rows = store.read_table(examples).to_pylist()

    def refuse(fitting: FittingRows) -> str | None:
        if fitting.kept:
            return None
        return f"none of the {len(fitting.lengths)} examples of {examples} fits sft.max_length={config.max_length}"

    def summarize(fitting: FittingRows, outcome: TrainOutcome) -> dict[str, Any]:
        losses = [e["loss"] for e in outcome.log_history if "loss" in e]
        return {
            "tokens_median": sorted(fitting.lengths)[len(fitting.lengths) // 2],
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
        }

    return train_and_publish(
        SFT,
        store,
        version,
        rows=sft_rows(examples_rows),
        messages=lambda row: row["prompt"] + row["completion"],
        add_generation_prompt=False,
        max_length=config.max_length,
        start=lambda work_dir: student_start(student, lambda: tokenizer_texts(examples_rows), work_dir, examples),
        refuse=refuse,
        summarize=summarize,
        config=config,
        upstream={SFT_EXAMPLES.kind: examples.version},
        record={"student": student, "sft": config},
        callbacks=callbacks,
        on_progress=on_progress,
    )
