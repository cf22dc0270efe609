"""The stage registry, the plan and its executor: what a run needs, each version computed once, what runs.

`STAGES` is the registry: every stage object, in pipeline order (adding a stage = its package + one line
here + its deployment in `infra/prefect.yaml`). `make_plan` walks the stages a run needs, pins the moving
references they read (Hub branches and tags, resolved to commit shas now: each stage's `resolve`), computes
each output version exactly once from that pinned recipe and the planned upstream versions, and looks each
one up in the store: published (skipped), will run, reused (before `--from`) or blocked (reused but missing).
`Plan.recipe` is the pinned recipe, so every step loads exactly the commits its version was computed from.
`execute` runs the steps that need it, in order, through a step runner: in this process by default; the
Prefect flows pass one that wraps a step in a flow run or hands it to a deployment. Nothing here imports
Prefect, and no stage decides for itself whether it is already done: a run that waited for a stage version's
scratch lock while another run published it is told so by the store (`PublishedMeanwhile`) and reported
skipped here, as the plan would have.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from data_contracts import ArtifactRef, ArtifactStore
from data_contracts.errors import UserError
from data_contracts.store import PublishedMeanwhile
from tasks.distill.stage import STAGE as DISTILL
from tasks.evaluate.stage import STAGE as EVALUATE
from tasks.filter.stage import STAGE as FILTER
from tasks.hub import HubRevisions, describe
from tasks.learning.stage import STAGE as LEARNING
from tasks.pull.stage import STAGE as PULL
from tasks.recipe import Recipe
from tasks.split.stage import STAGE as SPLIT
from tasks.stage import ProgressCallback, Stage, StageResult, StageRun
from tasks.train.stages import RL, SFT

# The registry, in pipeline order.
STAGES: tuple[Stage, ...] = (PULL, SPLIT, DISTILL, FILTER, SFT, RL, EVALUATE, LEARNING)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
BY_NAME = {stage.name: stage for stage in STAGES}
PRODUCER = {kind: stage.name for stage in STAGES for kind in stage.writes}

log = logging.getLogger(__name__)


class MissingUpstream(UserError):
    """A run reuses artifacts (stages before `--from`) that are not published."""


class GateFailed(UserError):
    """A published output misses a gate of the recipe (`learning.gates`): the run fails, its artifacts stay."""


class StageLeftOut(UserError):
    """A stage was asked for that the recipe leaves out."""

    exit_code = 2


@dataclass(frozen=True)
class Step:
    """One stage of a plan: its inputs and output versions, and whether it runs."""

    stage: Stage
    inputs: dict[str, ArtifactRef]  # by kind: published artifacts or where a planned one will be
    versions: dict[str, str]  # its outputs, by kind
    outputs: dict[str, ArtifactRef]  # where they are (or will be)
    published: bool  # every output is published: the step is skipped
    reuse: bool = False  # before --from: never run here, must be published

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def runs(self) -> bool:
        return not self.published and not self.reuse

    @property
    def blocked(self) -> bool:
        return self.reuse and not self.published

    @property
    def status(self) -> str:
        if self.published:
            return "reused (before --from)" if self.reuse else "published"
        return "blocked: not published, and before --from" if self.reuse else "will run"


@dataclass(frozen=True)
class Plan:
    """The steps of one run, in pipeline order, and the stages the recipe leaves out (with the reason).

    `recipe` is pinned: the Hub branches and tags its steps read are commit shas (`pinned` lists them)."""

    recipe: Recipe
    store: ArtifactStore
    steps: tuple[Step, ...]
    left_out: tuple[tuple[str, str], ...] = ()
    pinned: tuple[tuple[str, str, str, str], ...] = ()  # (repo type, repo, branch or tag asked for, commit sha)

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)

    def describe(self) -> str:
        """The plan as people read it: one line per output artifact, then the stages left out."""
        lines = [f"{'stage':<9} {'artifact':<37} status"]
        for step in self.steps:
            for kind, version in step.versions.items():
                lines.append(f"{step.name:<9} {kind + '/' + version:<37} {step.status}")
        lines += [f"{name:<9} {'-':<37} left out: {reason}" for name, reason in self.left_out]
        if self.pinned:
            lines.append("Hub revisions resolved now (the steps load these commits):")
            lines += [f"  {kind:<7} {describe(repo, sha, asked)}" for kind, repo, asked, sha in self.pinned]
        return "\n".join(lines)


def plan_step(
    stage: Stage, recipe: Recipe, store: ArtifactStore, inputs: Mapping[str, ArtifactRef], *, reuse: bool = False,
    versions: Mapping[str, str] | None = None,
) -> Step:  # fmt: skip
    """A step for `stage` on these inputs: its versions computed here (or given), then looked up in the store."""
    versions = dict(versions) if versions is not None else stage.versions(recipe, inputs)
    outputs = {kind: store.ref(kind, version) for kind, version in versions.items()}
    published = all(store.get(kind, version) is not None for kind, version in versions.items())
    return Step(stage, dict(inputs), versions, outputs, published, reuse)


def make_plan(
    recipe: Recipe,
    store: ArtifactStore,
    *,
    target: str | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
) -> Plan:
    """The plan of a pipeline run (`from_stage`..`to_stage`) or of one stage and what it needs (`target`)."""
    for name in (target, from_stage, to_stage):
        if name is not None and name not in BY_NAME:
            raise StageLeftOut(f"no stage {name!r}; stages are {', '.join(STAGE_NAMES)}")
    left_out = tuple((s.name, s.left_out) for s in STAGES if not s.enabled(recipe))
    if target is not None:
        if not BY_NAME[target].enabled(recipe):
            raise StageLeftOut(f"recipe {recipe.name} leaves out stage {target!r}: {BY_NAME[target].left_out}")
        names = [*_needed(target, recipe), target]
        first = 0
    else:
        last = STAGE_NAMES.index(to_stage or STAGE_NAMES[-1])
        names = [s.name for s in STAGES[: last + 1] if s.enabled(recipe)]
        first = STAGE_NAMES.index(from_stage or STAGE_NAMES[0])
    hub = HubRevisions()  # one per plan: a branch is asked of the Hub again by the next plan
    recipe = pin(recipe, names, hub)
    outputs: dict[str, ArtifactRef] = {}
    steps = []
    for name in names:
        stage = BY_NAME[name]
        step = plan_step(stage, recipe, store, {kind: outputs[kind] for kind in stage.reads(recipe)},
                         reuse=STAGE_NAMES.index(name) < first)  # fmt: skip
        outputs.update(step.outputs)
        steps.append(step)
    return Plan(recipe, store, tuple(steps), left_out, tuple(hub.pinned()))


def pin(recipe: Recipe, names: Sequence[str], hub: HubRevisions) -> Recipe:
    """The recipe with the moving references these stages read pinned: each stage's `resolve`, in turn."""
    for name in names:
        recipe = BY_NAME[name].resolve(recipe, hub)
    return recipe


def _needed(name: str, recipe: Recipe) -> list[str]:
    """The stages `name` depends on, directly or not, in pipeline order."""
    needed: set[str] = set()
    pending = list(BY_NAME[name].reads(recipe))
    while pending:
        producer = PRODUCER[pending.pop()]
        if producer not in needed:
            needed.add(producer)
            pending += BY_NAME[producer].reads(recipe)
    return [stage for stage in STAGE_NAMES if stage in needed]


StepRunner = Callable[[Step], StageResult | None]  # None: published by another run meanwhile (skipped)


def run_here(plan: Plan, on_progress: ProgressCallback | None = None, shard_runner: Any = None) -> StepRunner:
    """A step runner that runs each stage in this process."""

    def run(step: Step) -> StageResult | None:
        stage_run = StageRun(plan.recipe, plan.store, step.inputs, step.versions, on_progress, shard_runner)
        try:
            return step.stage.run(stage_run)
        except PublishedMeanwhile as published:  # it waited for the scratch lock while another run published
            log.info("%s: %s; skipped, nothing redone", step.name, published)
            return None

    return run


def execute(
    plan: Plan, run_step: StepRunner | None = None, on_step: Callable[[Step, StageResult | None], None] | None = None
) -> dict[str, ArtifactRef]:
    """Run the plan's steps that need it, in order; every planned output, by kind.

    Refuses to start when a reused step is not published. `on_step` hears of every step (with the result of
    the ones that ran) as it finishes. Then every step's gates are read from what is published, whether it ran
    or was skipped: any miss raises GateFailed, one line per gate."""
    blocked = [step for step in plan.steps if step.blocked]
    if blocked:
        step = blocked[0]
        missing = ", ".join(f"{kind}/{version}" for kind, version in step.versions.items())
        raise MissingUpstream(
            f"stage {step.name!r} has not published {missing} for this recipe; run without --from, "
            f"or run `rmr1 stage {step.name}` first"
        )
    run_step = run_step or run_here(plan)
    for step in plan.steps:
        result = run_step(step) if step.runs else None
        if result is not None and result.outputs and {k: r.version for k, r in result.outputs.items()} != step.versions:
            raise RuntimeError(f"stage {step.name} published {result.outputs}, not the planned {step.versions}")
        if on_step is not None:
            on_step(step, result)
    failures = [line for step in plan.steps for line in step.stage.gates(plan.recipe, plan.store, step.outputs)]
    if failures:
        raise GateFailed("; ".join(failures))
    return {kind: ref for step in plan.steps for kind, ref in step.outputs.items()}
