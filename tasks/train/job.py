"""Run one training job in this process, or across processes with torchrun / `accelerate launch`.

A `TrainJob` is everything a training process needs, as JSON: the stage name, the starting model, the
prepared rows (a Parquet file), the stage config, where resumable checkpoints go and where the final model is
saved. Whoever runs a job hands over the function that builds its TRL trainer (`sft.build_sft_trainer`,
`rl.build_grpo_trainer`); this module knows no algorithm, and must never import `sft.py`, `rl.py`,
`common.py` or `runner.py`: it only trains.

Resuming: the trainer writes a checkpoint every `save_steps` into `output_dir`; a job started again over
the same `output_dir` resumes from the last complete one (optimizer, scheduler, RNG and data position
included), so a killed run finishes at the same step count as one that was never interrupted.

More than one process: the job re-launches `RANK_MODULE` (`tasks/train/runner.py`, which picks the trainer
by the job's stage) on every rank (`accelerate launch` with the recipe's accelerate config from
infra/accelerate/ on GPUs, torchrun on CPU). Under plain data parallelism every rank holds the full
weights, and the job checks that the ranks agree on them at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.stage import ProgressCallback

if TYPE_CHECKING:  # transformers (and torch) load only when a job trains: flows import this module at start-up
    from transformers import TrainerCallback

log = logging.getLogger(__name__)

TRAINING_LOG = "training_log.json"  # written into the final model folder: the trainer's log history
RANK_MODULE = "tasks.train.runner"  # what every launched rank runs: `python -m RANK_MODULE JOB.json`


@dataclass(frozen=True)
class TrainJob:
    """One training run, serialisable so `accelerate launch` can hand it to every rank."""

    stage: str  # "sft" or "rl"
    model: str  # starting model: local folder or Hub id
    revision: str | None
    data: str  # Parquet file of prepared rows
    config: dict[str, Any]  # the stage config as plain values (SftConfig / RlConfig)
    output_dir: str  # resumable trainer checkpoints
    final_dir: str  # the trained model and tokenizer, plus TRAINING_LOG

    @property
    def num_processes(self) -> int:
        return int(self.config["launch"]["num_processes"])

    def save(self, path: str) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, path: str) -> TrainJob:
        return cls(**json.loads(Path(path).read_text()))


TrainerBuilder = Callable[[TrainJob], Any]  # the TRL trainer of a job, built on every rank


@dataclass(frozen=True)
class TrainOutcome:
    """What a finished job reports: the trainer's log history and how many steps it ran."""

    log_history: list[dict[str, Any]]
    global_step: int
    resumed_from_step: int
    ranks: int
    ranks_agree: bool | None  # None when weights are sharded (ZeRO-3 / FSDP) and not compared


def progress_callback(on_progress: ProgressCallback, every_s: float = 5.0) -> TrainerCallback:
    """A trainer callback reporting optimizer steps done / total to a stage progress callback (bars, Prefect
    progress): at most one report per `every_s` seconds, plus the last step, since each can be an API call."""
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

    class ProgressToCallback(TrainerCallback):
        def __init__(self) -> None:
            self.last_report = 0.0

        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            now = time.monotonic()
            last_step = state.global_step >= state.max_steps
            if state.is_world_process_zero and (last_step or now - self.last_report >= every_s):
                self.last_report = now
                on_progress(state.global_step, state.max_steps)

    return ProgressToCallback()


def run_job(
    job: TrainJob,
    build: TrainerBuilder,
    callbacks: Sequence[TrainerCallback] = (),
    on_progress: ProgressCallback | None = None,
) -> TrainOutcome:
    """Train `job` here with the trainer `build` makes, or launch `RANK_MODULE` on every rank when the job asks
    for more processes than this one (each rank then picks the same builder by the job's stage)."""
    if job.num_processes > int(os.environ.get("WORLD_SIZE", "1")):  # not yet inside `accelerate launch`
        return _launch(job)
    extra = list(callbacks) + ([progress_callback(on_progress)] if on_progress else [])
    return train(job, build, extra)


def launch_command(job: TrainJob, job_file: str) -> list[str]:
    """The command that starts every rank of `job` on this node.

    GPUs: `accelerate launch` with the recipe's accelerate config (DeepSpeed / FSDP / DDP). CPU: torchrun,
    which is what accelerate's multi-GPU launcher runs underneath; accelerate has no multi-process CPU
    launcher without MPI. The Trainer then picks the gloo backend.
    """
    launch = job.config["launch"]
    machines = int(launch.get("num_machines", 1))
    node: list[str] = []
    if machines > 1:
        for variable in ("MACHINE_RANK", "MASTER_ADDR", "MASTER_PORT"):
            if variable not in os.environ:
                raise RuntimeError(f"{job.stage}: {machines} nodes need ${variable} set on every node")
    if launch["device"] == "cpu":
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(job.num_processes // machines),
        ]
        if machines > 1:
            node = ["--nnodes", str(machines), "--node_rank", os.environ["MACHINE_RANK"],
                    "--master_addr", os.environ["MASTER_ADDR"], "--master_port", os.environ["MASTER_PORT"]]  # fmt: skip
        else:
            node = ["--standalone"]  # a free local rendezvous port: concurrent jobs do not collide
        return [*command, *node, "-m", RANK_MODULE, job_file]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(job.num_processes)]
    if launch.get("accelerate_config"):
        command += ["--config_file", launch["accelerate_config"]]
    if machines > 1:
        node = ["--num_machines", str(machines), "--machine_rank", os.environ["MACHINE_RANK"],
                "--main_process_ip", os.environ["MASTER_ADDR"],
                "--main_process_port", os.environ["MASTER_PORT"]]  # fmt: skip
    return [*command, *node, "-m", RANK_MODULE, job_file]


def _launch(job: TrainJob) -> TrainOutcome:
    os.makedirs(job.output_dir, exist_ok=True)
    job_file = os.path.join(job.output_dir, "job.json")
    job.save(job_file)
    command = launch_command(job, job_file)
    log.info("%s: launching %d processes: %s", job.stage, job.num_processes, " ".join(command))
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{job.stage}: the {job.num_processes}-process launch exited with {completed.returncode}")
    return read_outcome(job.final_dir)


def score_labelled_positions_only() -> None:
    """Make TRL's fused LM head score only the positions that carry a label, on every device.

    TRL does so on Triton devices (CUDA, XPU) and scores every position elsewhere, so that tile shapes stay
    fixed for compiled backends. Nothing is compiled on CPU, where scoring the prompt positions too (~80%
    of an SFT batch: the judge's system prompt and the pair) is half of an SFT step of the smoke student.
    The loss is the same either way (tested); only which rows enter the tiled projection changes.
    """
    import trl.trainer.utils as trl_utils

    if not hasattr(trl_utils, "_use_triton"):  # a TRL that decides this differently: leave it alone
        log.warning("TRL no longer has trainer.utils._use_triton: CPU training scores every position")
        return
    device_types = ("cuda", "xpu", "cpu")
    trl_utils._use_triton = lambda device: device.type in device_types


def train(job: TrainJob, build: TrainerBuilder, callbacks: Sequence[TrainerCallback] = ()) -> TrainOutcome:
    """Build the stage's TRL trainer, train (resuming from the last checkpoint), save the final model."""
    score_labelled_positions_only()
    trainer = build(job)
    for callback in callbacks:
        trainer.add_callback(callback)
    last = last_complete_checkpoint(job.output_dir)
    resumed_from = int(last.rsplit("-", 1)[-1]) if last else 0
    if last:
        log.info("%s: resuming from %s", job.stage, last)
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(job.final_dir)

    sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled  # each rank holds a shard: not comparable
    ranks = trainer.accelerator.num_processes
    from accelerate.utils import gather_object

    digests = [] if sharded else gather_object([weights_digest(trainer.model)])
    outcome = TrainOutcome(
        log_history=list(trainer.state.log_history),
        global_step=trainer.state.global_step,
        resumed_from_step=resumed_from,
        ranks=ranks,
        ranks_agree=None if sharded else len(set(digests)) == 1,
    )
    if trainer.accelerator.is_main_process:  # save_model wrote the weights and the tokenizer
        Path(job.final_dir, TRAINING_LOG).write_text(json.dumps(dataclasses.asdict(outcome), indent=1))
    trainer.accelerator.wait_for_everyone()
    if outcome.ranks_agree is False:
        raise RuntimeError(f"{job.stage}: the {ranks} processes ended with different weights: {sorted(set(digests))}")
    return outcome


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` a resume can load: one killed mid-save lacks trainer_state.json and is skipped."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not os.path.isdir(output_dir):
        return None
    complete = [
        entry.path
        for entry in os.scandir(output_dir)
        if entry.name.startswith(PREFIX_CHECKPOINT_DIR + "-")
        and entry.name.rsplit("-", 1)[-1].isdigit()
        and os.path.exists(os.path.join(entry.path, TRAINER_STATE_NAME))
    ]
    return max(complete, key=lambda path: int(path.rsplit("-", 1)[-1]), default=None)


def weights_digest(model: Any) -> str:
    """sha256 over every parameter's name and bytes: equal digests mean equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_outcome(final_dir: str) -> TrainOutcome:
    """The outcome a finished job left in its final model folder."""
    return TrainOutcome(**json.loads(Path(final_dir, TRAINING_LOG).read_text()))
