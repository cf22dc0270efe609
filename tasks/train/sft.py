"""The SFT stage: `sft_examples` → `sft_checkpoint`, TRL's SFTTrainer with loss on the assistant turn only.

Each example becomes a conversational prompt/completion pair (system + user messages → the teacher's
trace), so TRL's completion-only loss trains exactly the assistant tokens with any model's chat template;
the chat template closes the assistant turn, so the student also learns to stop. Examples longer than
`max_length` tokens are dropped and counted per domain, never truncated (a cut trace loses its verdict).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from data_contracts import ArtifactRef, ArtifactStore, artifact_version
from data_contracts.kinds import SFT_CHECKPOINT, SFT_EXAMPLES
from tasks.stage import ProgressCallback, StageResult
from tasks.train.common import (
    drop_overlong,
    published,
    start_model,
    token_counts,
    train_and_publish,
    versioned_config,
    versioned_student,
    write_rows,
)
from tasks.train.config import TINY, SftConfig, StudentConfig, from_plain
from tasks.train.runner import TrainJob, TrainOutcome

# Bump when the same inputs and config would train different weights.
CODE_VERSION = "sft-1"
CURVES = {"loss": "training loss", "mean_token_accuracy": "token accuracy", "learning_rate": "learning rate",
          "grad_norm": "gradient norm"}  # fmt: skip

log = logging.getLogger(__name__)


def sft_version(student: StudentConfig, config: SftConfig, examples: ArtifactRef) -> str:
    return artifact_version(
        SFT_CHECKPOINT.kind,
        SFT_CHECKPOINT.version,
        {"student": versioned_student(student), "sft": versioned_config(config)},
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
    on_cpu = config.launch.device == "cpu"
    bf16 = config.bf16 and not on_cpu
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
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": bf16,
        "use_cpu": on_cpu,
        "activation_checkpointing": config.gradient_checkpointing,  # transformers 5 name
        "packing": config.packing,
        "completion_only_loss": True,  # loss on the assistant turn only
        "model_init_kwargs": {"dtype": "bfloat16" if bf16 else "float32", "revision": revision},
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "report_to": "none",
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


def train_sft(
    examples: ArtifactRef,
    student: StudentConfig,
    config: SftConfig,
    store: ArtifactStore,
    *,
    on_progress: ProgressCallback | None = None,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """Fine-tune the student on `examples`; publish `sft_checkpoint` (skipped when already published)."""
    version = sft_version(student, config, examples)
    done = published(store, SFT_CHECKPOINT, version, "sft")
    if done is not None:
        return done
    from transformers import AutoTokenizer

    work_dir = store.work_dir("sft", version)
    examples_rows = store.read_table(examples).to_pylist()
    rows = sft_rows(examples_rows)
    base = start_model(student, lambda: tokenizer_texts(examples_rows), work_dir)
    tokenizer = AutoTokenizer.from_pretrained(base, revision=student.revision)
    lengths = token_counts(tokenizer, [row["prompt"] + row["completion"] for row in rows])
    kept, dropped = drop_overlong(rows, lengths, config.max_length)
    if not kept:
        raise ValueError(f"sft: none of the {len(rows)} examples of {examples} fits sft.max_length={config.max_length}")
    log.info(
        "sft: %d examples, %d dropped as longer than %d tokens", len(kept), len(rows) - len(kept), config.max_length
    )

    def summarize(outcome: TrainOutcome) -> dict[str, Any]:
        losses = [e["loss"] for e in outcome.log_history if "loss" in e]
        return {
            "examples": len(kept),
            "dropped_overlong": len(rows) - len(kept),
            "dropped_overlong_by_domain": dropped,
            "tokens_median": sorted(lengths)[len(lengths) // 2],
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
        }

    return train_and_publish(
        stage="sft",
        kind=SFT_CHECKPOINT,
        version=version,
        store=store,
        work_dir=work_dir,
        base_model=base,
        base_label=base if student.model != TINY else f"tiny (built from {examples})",
        revision=student.revision,
        data_path=write_rows(kept, f"{work_dir}/data/sft_rows.parquet"),
        config=config,
        upstream={SFT_EXAMPLES.kind: examples.version},
        record={"student": student, "sft": config},
        code_version=CODE_VERSION,
        curves=CURVES,
        summarize=summarize,
        callbacks=callbacks,
        on_progress=on_progress,
    )
