"""The RL stage: GRPO on `rl_set` judge prompts with the verifiable ±1 reward → `rl_checkpoint`.

Each RL pair is rendered with the judge template into system + user messages (the same messages the
teacher saw in distillation). The reward is the judge protocol's RL rule (docs/method.md §3: +1 when the last
80 characters of the completion, decoded with special tokens, hold the correct `<answer>[[X]]</answer>`
and not the other; else -1); this module only decodes and calls it. Prompts longer than
`max_prompt_length` tokens are dropped and counted per domain.

The run starts from the SFT checkpoint (instruct family) or straight from the student model (the
DeepSeek-distilled family, a recipe without an `sft` section). Rollouts use vLLM on GPU workers (TRL's
colocate or server mode, imported by TRL only then) and plain `generate` on CPU. This module defines the
GRPO stage only: it builds on `common.py` and `job.py` and must never import `sft.py` or `runner.py`; it
does not decide whether its output is already published (the caller does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from statistics import fmean
from typing import Any

from data_contracts import ArtifactRef, ArtifactStore, artifact_version
from data_contracts.kinds import RL_CHECKPOINT, RL_SET, SFT_CHECKPOINT
from tasks.judge.protocol import Verdict, load_template_set, parse_eval_verdict, render_judge_messages, rl_reward
from tasks.stage import ProgressCallback, StageResult
from tasks.train.common import (
    FittingRows,
    StartingPoint,
    TrainingStage,
    precision_kwargs,
    saving_kwargs,
    student_start,
    train_and_publish,
)
from tasks.train.config import RlConfig, StudentConfig, from_plain, versioned_student
from tasks.train.job import TrainJob, TrainOutcome

# Bump when the same inputs and config would train different weights.
CODE_VERSION = "rl-1"
CURVES = {
    "reward": "mean reward",
    "reward_std": "reward std",
    "accuracy": "accuracy (reward +1)",
    "parse_error_rate": "parse-error rate",
    "completions/mean_length": "completion length (tokens)",
    "kl": "KL to the start model",
}


def rl_upstream(pairs: ArtifactRef, sft: ArtifactRef | None) -> dict[str, str]:
    return {RL_SET.kind: pairs.version} | ({SFT_CHECKPOINT.kind: sft.version} if sft else {})


def rl_version(student: StudentConfig, config: RlConfig, pairs: ArtifactRef, sft: ArtifactRef | None) -> str:
    upstream = rl_upstream(pairs, sft)
    template = load_template_set(config.template).fingerprint
    return artifact_version(
        RL_CHECKPOINT.kind,
        RL_CHECKPOINT.version,
        {"student": None if sft else versioned_student(student), "rl": config, "template": template},
        upstream,
        CODE_VERSION,
    )


def rl_rows(pairs: list[dict[str, Any]], template_name: str) -> list[dict[str, Any]]:
    """Conversational prompts (the judge protocol's messages) with the label the reward needs."""
    template = load_template_set(template_name)
    return [
        {
            "prompt": render_judge_messages(template, row["conversation"], row["answer_a"], row["answer_b"]),
            "winner": row["winner"],
            "pair_id": row["pair_id"],
            "domain": row["domain"],
        }
        for row in pairs
    ]


def tokenizer_texts(rows: list[dict[str, Any]]) -> Iterator[str]:
    """The text a tiny student's tokenizer is trained on when RL starts from it: every prompt's messages."""
    return ("\n".join(turn["content"] for turn in row["prompt"]) for row in rows)


class VerdictReward:
    """TRL reward function: the RL verdict rule on each completion decoded with its special tokens.

    Also logs, per step, the share of completions rewarded +1 (`accuracy`) and the share with no single
    verdict by the evaluation rule (`parse_error_rate`).
    """

    __name__ = "verdict_reward"  # TRL names the logged reward column after it

    def __init__(self, decode: Callable[[list[list[int]]], list[str]]) -> None:
        self.decode = decode

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]],
        winner: list[str],
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float]:
        texts = self.decode(completion_ids)
        rewards = [rl_reward(text, label) for text, label in zip(texts, winner, strict=True)]  # type: ignore[arg-type]
        if log_metric is not None and texts:
            log_metric("accuracy", fmean(r > 0 for r in rewards))
            log_metric("parse_error_rate", fmean(parse_eval_verdict(t) is Verdict.ERROR for t in texts))
        return rewards


def decoder_with_special_tokens(tokenizer: Any) -> Callable[[list[list[int]]], list[str]]:
    """Decode completions keeping special tokens (the EOS string counts toward the reward window, docs/method.md §3)."""

    def decode(ids: list[list[int]]) -> list[str]:
        return tokenizer.batch_decode(ids, skip_special_tokens=False)

    return decode


def trl_grpo_kwargs(config: RlConfig, output_dir: str, revision: str | None = None) -> dict[str, Any]:
    """Keyword arguments of `trl.GRPOConfig` for this recipe section (printed by `--dry-run`)."""
    precision = precision_kwargs(config)
    engine = config.rollout_engine
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "constant",  # docs/method.md §7: constant, no warm-up
        "warmup_steps": 0,
        "per_device_train_batch_size": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "generation_batch_size": config.prompts_per_rollout * config.num_generations,
        "num_generations": config.num_generations,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": 0,
        "beta": config.beta,
        "epsilon": config.clip_epsilon,
        "loss_type": config.loss_type,
        "scale_rewards": "group",
        "num_iterations": 1,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "max_completion_length": config.max_completion_length,
        "max_grad_norm": config.max_grad_norm,
        **precision,
        "model_init_kwargs": {"dtype": "bfloat16" if precision["bf16"] else "float32", "revision": revision},
        "use_vllm": engine != "transformers",
        **saving_kwargs(config),
    }
    if engine == "vllm-colocate":
        kwargs.update(
            vllm_mode="colocate",
            vllm_tensor_parallel_size=config.vllm_tensor_parallel_size,
            vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        )
    elif engine == "vllm-server":
        kwargs.update(vllm_mode="server", vllm_server_base_url=config.vllm_server_base_url)
    return kwargs


def build_grpo_trainer(job: TrainJob) -> Any:
    """TRL's GRPOTrainer for a job (called on every rank by the runner)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    config = from_plain(RlConfig, job.config)
    tokenizer = AutoTokenizer.from_pretrained(job.model, revision=job.revision)
    tokenizer.padding_side = "left"  # generation pads prompts on the left

    dataset = Dataset.from_parquet(job.data).select_columns(["prompt", "winner"])
    args = GRPOConfig(**trl_grpo_kwargs(config, job.output_dir, job.revision))
    reward = VerdictReward(decoder_with_special_tokens(tokenizer))
    return GRPOTrainer(
        model=job.model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tokenizer
    )


RL = TrainingStage("rl", RL_CHECKPOINT, CODE_VERSION, build_grpo_trainer, CURVES, unit="prompts")


def train_rl(
    pairs: ArtifactRef,
    sft: ArtifactRef | None,
    student: StudentConfig,
    config: RlConfig,
    store: ArtifactStore,
    *,
    version: str,
    on_progress: ProgressCallback | None = None,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """GRPO from the SFT checkpoint (or the student when `sft` is None); publish `rl_checkpoint` as `version`
    (`rl_version` of the inputs)."""
    rows = rl_rows(store.read_table(pairs).to_pylist(), config.template)

    def start(work_dir: str) -> StartingPoint:
        if sft is not None:
            return StartingPoint(store.local_copy(sft), None, str(sft))
        return student_start(student, lambda: tokenizer_texts(rows), work_dir, pairs)

    def refuse(fitting: FittingRows) -> str | None:
        if len(fitting.kept) >= config.prompts_per_rollout:
            return None
        return (  # TRL drops an incomplete rollout batch: nothing would train
            f"{len(fitting.kept)} usable prompts in {pairs} (after dropping {fitting.dropped} longer than "
            f"rl.max_prompt_length={config.max_prompt_length} tokens), fewer than one rollout batch "
            f"(rl.prompts_per_rollout={config.prompts_per_rollout})"
        )

    def summarize(fitting: FittingRows, outcome: TrainOutcome) -> dict[str, Any]:
        rewards = [e["reward"] for e in outcome.log_history if "reward" in e]
        half = len(rewards) // 2
        return {
            "reward_first_half": round(fmean(rewards[:half]), 4) if half else None,  # single steps are noisy
            "reward_second_half": round(fmean(rewards[half:]), 4) if half else None,
        }

    return train_and_publish(
        RL,
        store,
        version,
        rows=rows,
        messages=lambda row: row["prompt"],
        add_generation_prompt=True,
        max_length=config.max_prompt_length,
        start=start,
        refuse=refuse,
        summarize=summarize,
        config=config,
        upstream=rl_upstream(pairs, sft),
        record={"student": None if sft else student, "rl": config},
        callbacks=callbacks,
        on_progress=on_progress,
    )
