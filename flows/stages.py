"""Prefect flows: one per stage and the pipeline, a thin layer over the plan (`flows/plan.py`).

The plan decides what runs; the flows only give each step a flow run, a task, a progress artifact and
its tables in the UI. A stage flow run alone plans the stage and what it needs (upstream stages run first
as their own flow runs); called by the pipeline (or a deployment run it dispatched) it is given its
inputs, and its versions when in the same process. A published stage runs no flow at all in a pipeline
run. Flows take the typed recipe, or a recipe file plus `dotted.key=value` overrides (what a deployment
passes), so a deployment's parameter form in the UI is typed.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from data_contracts import ArtifactRef, ArtifactStore
from data_contracts.errors import UserError
from data_contracts.kinds import FOLDER_KINDS
from flows.plan import BY_NAME, Plan, Step, execute, make_plan, pin, plan_step, run_here
from flows.recipe import load_recipe, recipe_from_dict
from tasks.distill.stage import OutcomeCallback, Shard, run_shard
from tasks.hub import HubRevisions
from tasks.recipe import Recipe
from tasks.stage import ProgressCallback, StageResult
from tasks.train.common import CURVES_PNG


def resolve_recipe(recipe: Recipe | str, overrides: list[str] | None) -> Recipe:
    """A flow's `recipe` parameter as a Recipe: a recipe file (what deployments pass) or the typed recipe,
    with `dotted.key=value` overrides applied (validated once more only when there are overrides)."""
    if isinstance(recipe, str):
        return load_recipe(recipe, overrides or [])
    return recipe_from_dict(recipe.to_dict(), overrides) if overrides else recipe


class DispatchFailed(UserError):
    """A stage handed to a deployment did not complete (or the deployment does not exist)."""


# ---------------------------------------------------------------- one step, in Prefect


@task(name="run-stage", cache_policy=NONE, task_run_name="{step.name}")
def run_step_task(step: Step, plan: Plan) -> StageResult:
    """A plan step as one Prefect task, with a progress artifact; distill shards become tasks of their own."""
    progress = prefect_progress(f"{step.name}-progress", f"{step.name}: work done")
    result = run_here(plan, progress, distill_shard_task)(step)
    progress(1, 1)  # stages that report no progress of their own end at 100% too
    return result


@task(name="distill-shard", cache_policy=NONE, task_run_name="{shard.name}")
def distill_shard_task(shard: Shard, on_outcome: OutcomeCallback | None) -> Any:
    """One shard of teacher requests: one Prefect task, never one per request."""
    return run_shard(shard, on_outcome)


def prefect_progress(key: str, description: str) -> ProgressCallback:
    """A progress callback that keeps a Prefect progress artifact (0-100%) up to date."""
    artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)

    def update(done: int, total: int) -> None:
        update_progress_artifact(artifact_id, progress=100.0 * done / total if total else 100.0)

    return update


def report_stage(step: Step, result: StageResult | None, store: ArtifactStore) -> None:
    """Leave the stage's tables, artifact links, curves, markdown (reports, sample traces) and a summary in the
    Prefect UI (a skipped stage: the summary only, which names the versions and folders it reused; its tables
    are on the run that made them)."""
    key = step.name.replace("_", "-")
    if result is not None and result.outputs:
        describe = result.describe()
        for name, table in step.stage.tables(result).items():
            create_table_artifact(key=f"{key}-{name}", table=table, description=describe)
        for kind, ref in result.outputs.items():
            link = ref.uri if "://" in ref.uri else f"file://{ref.uri}"
            create_link_artifact(
                key=f"{key}-{kind.replace('_', '-')}", link=link, link_text=str(ref), description=f"{kind} folder"
            )
            curves = store.file(ref, CURVES_PNG) if kind in FOLDER_KINDS else None
            if curves is not None:
                create_markdown_artifact(key=f"{key}-curves", markdown=_png_markdown(store, ref, curves, step.name))
        for name, markdown in step.stage.markdown(result, store).items():
            create_markdown_artifact(key=f"{key}-{name}", markdown=markdown, description=describe)
    rows = "\n".join(f"| {kind} | `{ref.version}` | {ref.uri} |" for kind, ref in step.outputs.items())
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=f"### {step.name}: {'published' if result is not None else 'skipped (already published)'}\n\n"
        f"| artifact | version | folder |\n|---|---|---|\n{rows}\n",
    )


def _png_markdown(store: ArtifactStore, ref: ArtifactRef, path: str, stage: str) -> str:
    """The checkpoint's training curves, inlined as a data URI so the Prefect UI shows them without file access."""
    with store.fs.open(path, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    title = f"{stage} curves"
    return f"### {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n`{ref}`: {store.uri(path)}\n"


# ---------------------------------------------------------------- the stage flows and the pipeline


def _stage_flow(
    name: str,
    recipe: Recipe | str,
    artifacts: str | None,
    upstream: dict[str, str] | None,
    versions: dict[str, str] | None,
    overrides: list[str] | None,
) -> dict[str, str]:
    parsed = resolve_recipe(recipe, overrides)
    store = ArtifactStore(artifacts)
    if upstream is None:  # alone: plan the stage and what it needs; upstream stages run as their own flow runs
        plan = make_plan(parsed, store, target=name)
    else:  # called by the pipeline (versions given) or a dispatched deployment run (versions computed here)
        parsed = pin(parsed, [name], HubRevisions())  # the pipeline passes a pinned recipe: no Hub call then
        inputs = {kind: store.require(kind, version) for kind, version in upstream.items()}
        plan = Plan(parsed, store, (plan_step(BY_NAME[name], parsed, store, inputs, versions=versions),))

    def run_step(step: Step) -> StageResult:
        if step.name != name:
            return _run_as_stage_flow(step, plan)
        return run_step_task(step, plan)

    def on_step(step: Step, result: StageResult | None) -> None:
        if step.name == name:
            report_stage(step, result, store)
            get_run_logger().info(f"{name}: {'published' if result else 'skipped, already published'}: "
                                  + ", ".join(map(str, step.outputs.values())))  # fmt: skip

    outputs = execute(plan, run_step, on_step)
    return {kind: outputs[kind].version for kind in BY_NAME[name].writes if kind in outputs}


def _run_as_stage_flow(step: Step, plan: Plan) -> StageResult:
    """Run a step as its own stage flow run in this process (inputs and planned versions handed over)."""
    upstream = {kind: ref.version for kind, ref in step.inputs.items()}
    stage_flow(step.name)(plan.recipe, plan.store.uri(plan.store.root), upstream=upstream, versions=step.versions)
    return StageResult(step.name, {k: plan.store.require(k, v) for k, v in step.versions.items()})


def _run_name(stage: str) -> Callable[[], str]:
    def name() -> str:
        recipe = flow_run.parameters.get("recipe")
        if isinstance(recipe, Recipe):
            return f"{stage} · {recipe.name} · {recipe.fingerprint}"
        if isinstance(recipe, dict):
            return f"{stage} · {recipe.get('name', '?')}"
        return f"{stage} · {recipe}"

    return name


def _make_stage_flow(name: str, description: str) -> Flow[..., dict[str, str]]:
    def stage_flow(
        recipe: Recipe | str,
        artifacts: str | None = None,
        upstream: dict[str, str] | None = None,
        versions: dict[str, str] | None = None,
        overrides: list[str] | None = None,
    ) -> dict[str, str]:
        return _stage_flow(name, recipe, artifacts, upstream, versions, overrides)

    stage_flow.__doc__ = (
        f"{description}\n\n`recipe`: the typed recipe or a recipe file; `upstream`: the input versions by kind (left "
        "out: upstream stages are planned and run first); `versions`: the planned output versions (the pipeline "
        "passes them in-process); `overrides`: `dotted.key=value` strings applied to the recipe."
    )
    return flow(name=name, flow_run_name=_run_name(name), description=description)(stage_flow)


@functools.cache
def stage_flow(name: str) -> Flow[..., dict[str, str]]:
    """The flow of the registered stage `name`, built on first use.

    Building a flow makes its typed parameter schema (the whole recipe), ~0.25 s each: a process builds only
    the flows it runs, and `prefect deploy` loads one entrypoint at a time without building the others.
    """
    return _make_stage_flow(name, BY_NAME[name].description)


def __getattr__(attribute: str) -> Flow[..., dict[str, str]]:
    """`pull_flow`, `split_flow`, ... `learning_flow`: the `prefect deploy` entrypoints of infra/prefect.yaml
    (`flows/stages.py:pull_flow`), one per registered stage, none written by hand."""
    name = attribute.removesuffix("_flow")
    if attribute.endswith("_flow") and name in BY_NAME:
        return stage_flow(name)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


@flow(name="rm-r1 pipeline", flow_run_name=_run_name("pipeline"), description="The RM-R1 stages in order.")
def pipeline_flow(
    recipe: Recipe | str,
    artifacts: str | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    """Run stages `from_stage`..`to_stage`; stages before `from_stage` must already be published.

    `recipe` is the typed recipe or a recipe file (deployments pass a path); `overrides` are
    `dotted.key=value` strings applied on top.
    """
    parsed = resolve_recipe(recipe, overrides)
    plan = make_plan(parsed, ArtifactStore(artifacts), from_stage=from_stage, to_stage=to_stage)
    hows: dict[str, str] = {}

    def run_step(step: Step) -> StageResult:
        result, hows[step.name] = _dispatch(step, plan)
        return result

    def on_step(step: Step, result: StageResult | None) -> None:
        how = hows.get(step.name) or ("reused (before --from)" if step.reuse else "skipped, already published")
        hows[step.name] = how
        if how != "ran":  # a stage flow that ran logs its own result
            get_run_logger().info(f"{step.name}: {how}: " + ", ".join(str(ref) for ref in step.outputs.values()))

    try:
        outputs = execute(plan, run_step, on_step)
    finally:  # also when a gate fails the run: every stage that ran or was skipped is listed
        table = [{"stage": step.name, "how": hows[step.name], "artifact": str(ref), "folder": ref.uri}
                 for step in plan.steps if step.name in hows for ref in step.outputs.values()]  # fmt: skip
        if table:
            create_table_artifact(key="pipeline-stages", table=table,
                                  description=f"{parsed.name} ({parsed.fingerprint})")  # fmt: skip
    return {kind: ref.version for kind, ref in outputs.items()}


def _dispatch(step: Step, plan: Plan) -> tuple[StageResult, str]:
    """Run one step as its stage flow in this process or, when the recipe's `dispatch` names a deployment for
    it, as a run of that deployment (on its work pool, e.g. GPU workers), waited for and read back from the
    shared artifact root."""
    store, deployment = plan.store, plan.recipe.dispatch.get(step.name)
    if deployment is None:
        return _run_as_stage_flow(step, plan), "ran"
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    root = store.uri(store.root)
    if store.local:
        get_run_logger().warning(
            f"{step.name} runs on deployment {deployment}: its worker must see the artifact folder {root}"
        )
    upstream = {kind: ref.version for kind, ref in step.inputs.items()}
    try:
        run = run_deployment(
            deployment, parameters={"recipe": plan.recipe.to_dict(), "artifacts": root, "upstream": upstream},
            timeout=None,
        )  # fmt: skip
    except ObjectNotFound:
        raise DispatchFailed(
            f"recipe dispatch.{step.name}: no deployment {deployment!r} on this Prefect server; create it with "
            "`prefect deploy --all --prefect-file infra/prefect.yaml` (and set PREFECT_API_URL), or remove the entry"
        ) from None
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise DispatchFailed(f"stage {step.name}: deployment {deployment} run {run.name!r} ended {state}; see its logs")
    missing = [f"{k}/{v}" for k, v in step.versions.items() if store.get(k, v) is None]
    if missing:
        raise DispatchFailed(f"stage {step.name}: deployment {deployment} finished but {', '.join(missing)} is not "
                             f"published under {root}: does its worker see the same artifact root?")  # fmt: skip
    outputs = {k: store.require(k, v) for k, v in step.versions.items()}
    return StageResult(step.name, outputs), f"ran on deployment {deployment} ({run.name})"
