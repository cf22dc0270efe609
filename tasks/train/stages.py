"""The two training stages as the plan sees them: sft (`sft_examples` → `sft_checkpoint`) and rl (GRPO).

Each declares what it reads and writes, how its version follows from the recipe, how it runs (given that
version) and the tables it shows: its totals and its training curve as rows. The training itself lives
in `sft.py` and `rl.py`; torch and TRL load only when a stage runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from data_contracts import ArtifactRef, ArtifactStore
from data_contracts.kinds import RL_CHECKPOINT, RL_SET, SFT_CHECKPOINT, SFT_EXAMPLES
from tasks.hub import HubRevisions, is_hub_repo
from tasks.recipe import NO_DISTILLATION, Recipe
from tasks.stage import Stage, StageResult, StageRun, Tables, reads
from tasks.train import rl, sft
from tasks.train.common import StartingPoint, student_start
from tasks.train.config import TINY
from tasks.train.rl import rl_rows, rl_version, train_rl
from tasks.train.sft import sft_version, train_sft

TRAINING_COLUMNS = {
    "sft": ("step", "loss", "mean_token_accuracy", "learning_rate", "grad_norm", "num_tokens"),
    "rl": ("step", "reward", "reward_std", "accuracy", "parse_error_rate", "completions/mean_length", "kl",
           "learning_rate"),
}  # fmt: skip


def training_tables(result: StageResult) -> Tables:
    """The run's totals and one row per logged step (the curves' numbers)."""
    columns = TRAINING_COLUMNS[result.stage]
    metrics = [{c: row.get(c) for c in columns} for row in result.stats.get("metrics", [])]
    summary = {k: v for k, v in result.stats.items() if k != "metrics" and not isinstance(v, dict | list)}
    return {"totals": [summary], "metrics": metrics}  # "-summary" is the markdown key


def pin_student(recipe: Recipe, hub: HubRevisions) -> Recipe:
    """The recipe with a Hub student's branch or tag resolved to its commit sha (the stages' `resolve`); a local
    folder and the tiny model as they are."""
    student = recipe.student
    if student.model == TINY or not is_hub_repo(student.model):
        return recipe
    pinned = hub.pin(student, student.model, "model")
    return recipe if pinned == student else dataclasses.replace(recipe, student=pinned)


def _pin_rl_student(recipe: Recipe, hub: HubRevisions) -> Recipe:
    """rl reads the student only when it starts from it (`sft: null`); otherwise it starts from the checkpoint."""
    return pin_student(recipe, hub) if recipe.sft is None else recipe


def _sft_versions(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    assert recipe.sft is not None
    return {SFT_CHECKPOINT.kind: sft_version(recipe.student, recipe.sft, inputs[SFT_EXAMPLES.kind])}


def _sft_run(run: StageRun) -> StageResult:
    assert run.recipe.sft is not None
    return train_sft(
        run.inputs[SFT_EXAMPLES.kind],
        run.recipe.student,
        run.recipe.sft,
        run.store,
        version=run.versions[SFT_CHECKPOINT.kind],
        on_progress=run.on_progress,
    )


def _rl_reads(recipe: Recipe) -> tuple[str, ...]:
    return (RL_SET.kind, SFT_CHECKPOINT.kind) if recipe.sft is not None else (RL_SET.kind,)


def _rl_versions(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    version = rl_version(recipe.student, recipe.rl, inputs[RL_SET.kind], inputs.get(SFT_CHECKPOINT.kind))
    return {RL_CHECKPOINT.kind: version}


def _rl_run(run: StageRun) -> StageResult:
    return train_rl(
        run.inputs[RL_SET.kind],
        run.inputs.get(SFT_CHECKPOINT.kind),
        run.recipe.student,
        run.recipe.rl,
        run.store,
        version=run.versions[RL_CHECKPOINT.kind],
        on_progress=run.on_progress,
    )


def first_training_input(recipe: Recipe) -> str:
    """The kind the first training stage reads: sft_examples (instruct family) or rl_set (`sft: null`)."""
    return SFT_EXAMPLES.kind if recipe.distills else RL_SET.kind


def starting_student(
    recipe: Recipe, inputs: Mapping[str, ArtifactRef], store: ArtifactStore, work_dir: str
) -> StartingPoint:
    """The model the first training stage started from, untrained: a local folder or Hub id as it is; the tiny
    student built again in `work_dir` from the same texts, which gives the same folder (`tasks.models.tiny`)."""
    data = inputs[first_training_input(recipe)]
    if recipe.distills:
        examples = store.read_table(data).to_pylist()
        return student_start(recipe.student, lambda: sft.tokenizer_texts(examples), work_dir, data)
    prompts = rl_rows(store.read_table(data).to_pylist(), recipe.rl.template)
    return student_start(recipe.student, lambda: rl.tokenizer_texts(prompts), work_dir, data)


SFT = Stage(
    name="sft",
    description="Fine-tune the student on sft_examples.",
    writes=(SFT_CHECKPOINT.kind,),
    reads=reads(SFT_EXAMPLES.kind),
    versions=_sft_versions,
    run=_sft_run,
    enabled=lambda recipe: recipe.distills,
    tables=training_tables,
    left_out=NO_DISTILLATION,
    resolve=pin_student,
)
RL = Stage(
    name="rl",
    description="GRPO with the verdict reward on rl_set.",
    writes=(RL_CHECKPOINT.kind,),
    reads=_rl_reads,
    versions=_rl_versions,
    run=_rl_run,
    tables=training_tables,
    resolve=_pin_rl_student,
)
