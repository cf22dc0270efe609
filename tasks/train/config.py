"""The recipe sections of the training stages: the student model, SFT (docs/method.md §6) and GRPO (docs/method.md §7).

Defaults are the paper's values for a 7B instruct model, so a recipe that leaves a field out trains like
the paper, never like TRL's defaults (TRL's SFT lr 2e-5 / max length 1,024 and GRPO β = 0 differ).
`tasks/train/sft.py` and `tasks/train/rl.py` map these fields onto TRL's config classes; the mapping is
shown by `rmr1 stage sft --dry-run`. Which fields change the trained weights (and so the checkpoint's
version) is decided here too. Recipes parse this module: it must never import torch, TRL or another
module of tasks/train.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Literal, TypeVar

from data_contracts.versioning import versioned
from tasks.config import ConfigError, Float, Int, config_section
from tasks.hub import requested_revision_field, revision_field
from tasks.models import TinyModelConfig

TINY = "tiny"  # StudentConfig.model value that builds the offline tiny model
TrainingSection = TypeVar("TrainingSection", "SftConfig", "RlConfig")


@config_section
class StudentConfig:
    """The model training starts from."""

    model: str = field(
        default=TINY,
        metadata={
            "help": "Hugging Face id or local folder of the starting model (e.g. Qwen/Qwen2.5-7B-Instruct). "
            f"'{TINY}' builds a tiny random-init Qwen2 with a tokenizer trained on the stage's own text (smoke runs)."
        },
    )
    revision: str | None = revision_field("a Hub `model` only; ignored for local folders")
    requested_revision: str | None = requested_revision_field()
    tiny: TinyModelConfig = field(
        default_factory=TinyModelConfig, metadata={"help": f"Size and seed of the tiny model (model: {TINY})."}
    )


@config_section
class LaunchConfig:
    """Where and on how many processes a training stage runs."""

    device: Literal["cuda", "cpu"] = field(
        default="cuda", metadata={"help": "cuda on GPU workers; cpu for smoke runs and tests (forces fp32)."}
    )
    num_processes: Int = field(
        default=1,
        metadata={
            "help": "Processes (GPUs) over all nodes. Above 1 the stage re-launches itself with `accelerate "
            "launch`; the global batch is split over them (accumulation steps shrink)."
        },
    )
    num_machines: Int = field(
        default=1,
        metadata={
            "help": "Nodes. Above 1 every node runs the stage; MACHINE_RANK, MASTER_ADDR and MASTER_PORT from the "
            "job's environment tell `accelerate launch` which one it is."
        },
    )
    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "accelerate config file (infra/accelerate/*.yaml: DeepSpeed ZeRO-3, FSDP, multi-node, CPU); "
            "used when num_processes > 1."
        },
    )

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ConfigError("num_processes", f"must be at least 1, got {self.num_processes}")
        if self.num_machines < 1 or self.num_processes % self.num_machines:
            raise ConfigError(
                "num_machines", f"{self.num_machines} nodes cannot share {self.num_processes} processes evenly"
            )


# Fields marked `"versioned": False` only change where or how often things are written, never the weights.


def versioned_student(student: StudentConfig) -> dict[str, Any]:
    """The student fields that matter: the tiny model's size only when the tiny model is used."""
    fields = versioned(student)  # the commit sha, not the branch it was resolved from
    if student.model != TINY:
        fields.pop("tiny")
    return fields


@config_section
class SftConfig:
    """Supervised fine-tuning on the kept teacher traces (docs/method.md §6); loss on assistant tokens only."""

    learning_rate: Float = field(
        default=5e-6, metadata={"help": "Peak learning rate. Paper: 5e-6 / 3e-6 / 2e-6 for 7B / 14B / 32B."}
    )
    global_batch_size: Int = field(
        default=128, metadata={"help": "Sequences per optimizer step = micro × accumulation × processes (paper 128)."}
    )
    micro_batch_size: Int = field(default=1, metadata={"help": "Sequences per device per forward pass (paper 1)."})
    epochs: Float = field(default=1.0, metadata={"help": "Passes over the SFT examples (paper 1)."})
    max_steps: Int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: run the epochs). Smoke runs only."}
    )
    max_length: Int = field(
        default=12288,
        metadata={"help": "Longest example in tokens (paper 12,288); longer examples are dropped and counted."},
    )
    warmup_ratio: Float = field(default=0.03, metadata={"help": "Linear warm-up share of all steps (paper 3%)."})
    lr_scheduler: str = field(
        default="cosine", metadata={"help": "Learning-rate schedule after warm-up (paper cosine)."}
    )
    adam_beta1: Float = field(default=0.9, metadata={"help": "Adam β1 (paper 0.9)."})
    adam_beta2: Float = field(default=0.95, metadata={"help": "Adam β2 (paper 0.95)."})
    weight_decay: Float = field(default=0.0, metadata={"help": "AdamW weight decay (paper 0)."})
    max_grad_norm: Float = field(default=1.0, metadata={"help": "Gradient clipping norm (paper 1.0)."})
    seed: Int = field(default=42, metadata={"help": "Seed of data order and initialisation (paper 42)."})
    bf16: bool = field(default=True, metadata={"help": "bfloat16 mixed precision (paper: bf16). Forced off on CPU."})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "Recompute activations to save memory."})
    packing: bool = field(
        default=False,
        metadata={
            "help": "TRL packing: several examples per max_length sequence. The paper packed with OpenRLHF, which "
            "still counts 128 examples per batch; TRL's batch would become 128 packs, so off by default."
        },
    )
    save_steps: Int = field(
        default=50,
        metadata={"versioned": False, "help": "Write a resumable checkpoint every this many optimizer steps."},
    )
    save_total_limit: Int = field(
        default=2, metadata={"versioned": False, "help": "Resumable checkpoints kept (older ones deleted)."}
    )
    logging_steps: Int = field(
        default=1, metadata={"versioned": False, "help": "Log loss and learning rate every this many steps."}
    )
    launch: LaunchConfig = field(default_factory=LaunchConfig, metadata={"help": "Device and processes."})

    def __post_init__(self) -> None:
        _check_batch(self.global_batch_size, self.micro_batch_size, self.launch.num_processes, "global_batch_size",
                     "global_batch_size")  # fmt: skip
        _check_positive(self, ("learning_rate", "epochs", "max_length", "save_steps", "logging_steps"))
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.launch.num_processes)


@config_section
class RlConfig:
    """GRPO with the verifiable ±1 reward (docs/method.md §7), expressed in veRL's terms and mapped onto TRL's.

    veRL → TRL: `prompts_per_rollout` × `num_generations` = TRL `generation_batch_size` (completions per
    rollout); `mini_batch_prompts` × `num_generations` completions per optimizer step = TRL
    per_device_train_batch_size × gradient_accumulation_steps × processes, so one rollout batch gives
    prompts_per_rollout / mini_batch_prompts optimizer steps (paper 1,024 / 128 = 8). veRL's KL loss with the
    "low_var_kl" (k3) estimator is TRL's `beta` (TRL's KL term is k3 and always a loss term, never in the
    reward). veRL's token-mean loss aggregation is TRL's `loss_type: dapo`. Advantage normalisation by the
    group's std is TRL's `scale_rewards: group` (TRL adds 1e-4 to the std, veRL 1e-6). Entropy bonus 0 is
    TRL's default. The "prompts per optimizer step" batch is counted in prompts, TRL's in completions.
    """

    learning_rate: Float = field(
        default=1e-6,
        metadata={
            "help": "Constant learning rate, no warm-up. Paper: instruct 1e-6 / 7e-7 / 5e-7, DeepSeek-distilled "
            "1e-6 / 1e-6 / 8e-7 for 7B / 14B / 32B."
        },
    )
    template: str = field(
        default="cor-instruct-v1",
        metadata={"help": "Judge template set for the RL prompts; the one the SFT data was distilled with."},
    )
    num_generations: Int = field(default=7, metadata={"help": "Completions sampled per prompt (paper 7)."})
    temperature: Float = field(default=1.0, metadata={"help": "Sampling temperature of rollouts (paper 1.0)."})
    top_p: Float = field(default=1.0, metadata={"help": "Nucleus sampling of rollouts (paper 1.0)."})
    beta: Float = field(default=1e-3, metadata={"help": "KL loss coefficient, k3 estimator (paper 1e-3)."})
    clip_epsilon: Float = field(default=0.2, metadata={"help": "PPO ratio clip (paper 0.2)."})
    loss_type: str = field(
        default="dapo", metadata={"help": "TRL loss aggregation; dapo = veRL's token-mean (paper default)."}
    )
    prompts_per_rollout: Int = field(default=1024, metadata={"help": "Prompts per rollout batch (paper 1,024)."})
    mini_batch_prompts: Int = field(
        default=128, metadata={"help": "Prompts per optimizer step (paper 128: 8 updates per rollout batch)."}
    )
    micro_batch_size: Int = field(
        default=7, metadata={"help": "Completions per device per forward pass (a multiple of num_generations helps)."}
    )
    epochs: Float = field(default=1.0, metadata={"help": "Passes over the RL prompts (paper 1)."})
    max_steps: Int = field(
        default=-1, metadata={"help": "Stop after this many optimizer steps (-1: run the epochs). Smoke runs only."}
    )
    max_prompt_length: Int = field(
        default=4096,
        metadata={"help": "Longest prompt in tokens (paper 4,096); longer prompts are dropped and counted."},
    )
    max_completion_length: Int = field(default=8192, metadata={"help": "Longest completion in tokens (paper 8,192)."})
    max_grad_norm: Float = field(default=1.0, metadata={"help": "Gradient clipping norm (paper 1.0)."})
    seed: Int = field(default=42, metadata={"help": "Seed of prompt order and sampling."})
    bf16: bool = field(default=True, metadata={"help": "bfloat16 mixed precision. Forced off on CPU."})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "Recompute activations to save memory."})
    rollout_engine: Literal["vllm-colocate", "vllm-server", "transformers"] = field(
        default="vllm-colocate",
        metadata={
            "help": "vllm-colocate: vLLM shares the training GPUs (TRL colocate mode); vllm-server: a separate "
            "`trl vllm-serve` process; transformers: plain generate (CPU, tests)."
        },
    )
    vllm_tensor_parallel_size: Int = field(default=1, metadata={"help": "vLLM tensor parallel size (colocate mode)."})
    vllm_gpu_memory_utilization: Float = field(
        default=0.3, metadata={"versioned": False, "help": "Share of GPU memory vLLM may take."}
    )
    vllm_server_base_url: str | None = field(
        default=None, metadata={"versioned": False, "help": "URL of `trl vllm-serve` (vllm-server mode)."}
    )
    save_steps: Int = field(
        default=8,
        metadata={
            "versioned": False,
            "help": "Write a resumable checkpoint every this many steps; a multiple of prompts_per_rollout / "
            "mini_batch_prompts, so a resume never starts inside a rollout batch.",
        },
    )
    save_total_limit: Int = field(
        default=2, metadata={"versioned": False, "help": "Resumable checkpoints kept (older ones deleted)."}
    )
    logging_steps: Int = field(
        default=1, metadata={"versioned": False, "help": "Log reward, KL and lengths every this many steps."}
    )
    launch: LaunchConfig = field(default_factory=LaunchConfig, metadata={"help": "Device and processes."})

    def __post_init__(self) -> None:
        _check_positive(
            self, ("learning_rate", "num_generations", "prompts_per_rollout", "mini_batch_prompts", "epochs",
                   "max_prompt_length", "max_completion_length", "save_steps", "logging_steps")
        )  # fmt: skip
        if self.num_generations < 2:
            raise ConfigError("num_generations", "GRPO needs at least 2 completions per prompt to compare")
        if self.prompts_per_rollout % self.mini_batch_prompts:
            raise ConfigError(
                "prompts_per_rollout",
                f"{self.prompts_per_rollout} is not a multiple of mini_batch_prompts ({self.mini_batch_prompts})",
            )
        completions = self.mini_batch_prompts * self.num_generations
        _check_batch(completions, self.micro_batch_size, self.launch.num_processes, "micro_batch_size",
                     "mini_batch_prompts × num_generations")  # fmt: skip
        steps_per_rollout = self.prompts_per_rollout // self.mini_batch_prompts
        if self.save_steps % steps_per_rollout:
            raise ConfigError(
                "save_steps",
                f"{self.save_steps} is not a multiple of the {steps_per_rollout} optimizer steps of one rollout batch "
                "(prompts_per_rollout / mini_batch_prompts): a resume mid-rollout would shift every later batch",
            )
        if self.rollout_engine == "vllm-server" and not self.vllm_server_base_url:
            raise ConfigError("vllm_server_base_url", "required when rollout_engine is vllm-server")

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.mini_batch_prompts * self.num_generations // (self.micro_batch_size * self.launch.num_processes)


def from_plain(cls: type[TrainingSection], values: dict[str, Any]) -> TrainingSection:
    """A training section back from its plain values (what a `TrainJob` carries to every rank)."""
    return cls(**{**values, "launch": LaunchConfig(**values["launch"])})


def _check_batch(total: int, micro: int, processes: int, name: str, total_is: str) -> None:
    if micro < 1 or total < 1 or total % (micro * processes):
        raise ConfigError(
            name,
            f"{total_is} ({total}) is not micro_batch_size ({micro}) × launch.num_processes ({processes}) × an integer",
        )


def _check_positive(config: object, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(name, f"must be positive, got {getattr(config, name)}")
