"""Prefect flows: one per stage and the end-to-end pipeline, thin wrappers around the plain stage functions.

`SPECS` is the one place a stage is wired in: what it reads, the versions it would publish, how to run
it, and the tables it shows. A stage flow resolves its upstream artifacts (running upstream stage flows
first as subflows, or reading the versions the pipeline hands it), runs the stage function as one
Prefect task, and leaves in the UI its tables, a link to each artifact folder and a short summary.
Skipping is decided from artifact versions, so it works the same with or without a Prefect database: a
stage flow whose outputs are all published runs no task and leaves only its summary (cheap re-runs), and
the stage functions check the same versions when called without Prefect.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
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
from data_contracts.kinds import (
    DISTILL_SET,
    EVAL_PREDICTIONS,
    EVAL_SCORES,
    FILTER_REJECTS,
    FOLDER_KINDS,
    PREFERENCE_PAIRS,
    RL_CHECKPOINT,
    RL_SET,
    SFT_CHECKPOINT,
    SFT_EXAMPLES,
    TEACHER_TRACES,
)
from flows.recipe import Recipe, recipe_from_dict, recipe_parameter
from tasks.distill.stage import OutcomeCallback, Shard, ShardRunner, distill_traces, distill_version, run_shard
from tasks.evaluate.stage import evaluate_judge, evaluate_versions
from tasks.filter.stage import filter_traces, filter_versions
from tasks.llm.client import Outcome, RunStats
from tasks.pull.stage import pull_preferences, pull_version
from tasks.split.stage import split_pairs, split_versions
from tasks.stage import ProgressCallback, StageResult
from tasks.train.common import CURVES_PNG
from tasks.train.rl import rl_version, train_rl
from tasks.train.sft import sft_version, train_sft


@dataclass(frozen=True)
class Hooks:
    """What the Prefect layer plugs into a stage: a progress callback and a runner for distill shards."""

    on_progress: ProgressCallback | None = None
    shard_runner: ShardRunner | None = None


@dataclass(frozen=True)
class StageSpec:
    """Everything the flows know about one stage: the one place a stage is wired in."""

    name: str
    produces: tuple[str, ...]  # artifact kinds it publishes
    upstream: Callable[[Recipe], tuple[str, ...]]  # artifact kinds it reads
    versions: Callable[[Recipe, dict[str, ArtifactRef]], dict[str, str]]  # what it would publish
    run: Callable[[Recipe, ArtifactStore, dict[str, ArtifactRef], Hooks], StageResult]
    tables: Callable[[StageResult], dict[str, list[dict[str, Any]]]]  # UI tables, counts first
    enabled: Callable[[Recipe], bool] = lambda recipe: recipe.trains  # False: the recipe leaves this stage out
    markdown: Callable[[StageResult], dict[str, str]] = lambda result: {}  # UI markdown artifacts by key suffix


def _reads(*kinds: str) -> Callable[[Recipe], tuple[str, ...]]:
    return lambda recipe: kinds


def _with_sft(recipe: Recipe) -> bool:
    return recipe.trains and recipe.sft is not None


def _evaluates(recipe: Recipe) -> bool:
    return recipe.evaluate is not None


def _evaluate_reads(recipe: Recipe) -> tuple[str, ...]:
    assert recipe.evaluate is not None
    checkpoint = recipe.evaluate.judge.checkpoint
    return (checkpoint,) if checkpoint is not None else ()


STYLES = ("concise", "detailed", "markdown")  # RM-Bench answer styles 0, 1, 2 (RM-R1.md §8)


def _evaluate_tables(result: StageResult) -> dict[str, list[dict[str, Any]]]:
    """One table per benchmark (every score row: subsets, sections, cells, position) and the headline."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for row in result.stats["scores"]:
        shown = {"level": row["level"], "name": row["name"], "score": round(100 * row["score"], 2),
                 "n": row["count"], "error_rate_%": round(100 * row["error_rate"], 2)}  # fmt: skip
        key = "headline" if row["benchmark"] == "overall" else row["benchmark"].replace("_", "-")
        tables.setdefault(key, []).append(shown)
    cells = {row["name"]: row["score"] for row in result.stats["scores"] if row["level"] == "cell"}
    if cells:  # RM-Bench's 3x3 matrices, as the paper draws them: chosen style (rows) vs rejected style
        domains = sorted({name.split("/")[0] for name in cells})
        tables["rm-bench-matrix"] = [
            {"domain": domain, "chosen": chosen, **{f"vs {rejected}": round(100 * cells[f"{domain}/c{i}-r{j}"], 2)
                                                  for j, rejected in enumerate(STYLES)}}
            for domain in domains for i, chosen in enumerate(STYLES)
        ]  # fmt: skip
    return tables


def _rl_reads(recipe: Recipe) -> tuple[str, ...]:
    return (RL_SET.kind, SFT_CHECKPOINT.kind) if recipe.sft is not None else (RL_SET.kind,)


TRAINING_COLUMNS = {
    "sft": ("step", "loss", "mean_token_accuracy", "learning_rate", "grad_norm", "num_tokens"),
    "rl": ("step", "reward", "reward_std", "accuracy", "parse_error_rate", "completions/mean_length", "kl",
           "learning_rate"),
}  # fmt: skip


def _training_tables(result: StageResult) -> dict[str, list[dict[str, Any]]]:
    columns = TRAINING_COLUMNS[result.stage]
    metrics = [{c: row.get(c) for c in columns} for row in result.stats.get("metrics", [])]
    summary = {k: v for k, v in result.stats.items() if k != "metrics" and not isinstance(v, dict | list)}
    return {"totals": [summary], "metrics": metrics}  # "-summary" is the markdown key


def _split_tables(result: StageResult) -> dict[str, list[dict[str, Any]]]:
    distill, rl = result.stats[DISTILL_SET.kind], result.stats[RL_SET.kind]
    counts = []
    for key in sorted(set(distill["by_source_domain"]) | set(rl["by_source_domain"])):
        source, domain = key.rsplit("/", 1)
        in_distill, in_rl = distill["by_source_domain"].get(key, 0), rl["by_source_domain"].get(key, 0)
        counts.append(
            {"source": source, "domain": domain, "rows_in": in_distill + in_rl, "distill_set": in_distill,
             "rl_set": in_rl, "rejected": 0}
        )  # fmt: skip
    balance = [
        {"artifact": k, "rows": s["rows"], **s["winner"]} for k, s in ((DISTILL_SET.kind, distill), (RL_SET.kind, rl))
    ]
    return {"counts": counts, "label-balance": balance}


def _distill_tables(result: StageResult) -> dict[str, list[dict[str, Any]]]:
    by_pass = [{**row, "failed_by_reason": str(row["failed_by_reason"])} for row in result.stats["by_pass"]]
    return {"counts": result.stats["counts"], "by-pass": by_pass, "totals": [result.stats["totals"]]}


SPECS: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec(
            "pull",
            (PREFERENCE_PAIRS.kind,),
            _reads(),
            lambda recipe, up: {PREFERENCE_PAIRS.kind: pull_version(recipe.pull)},
            lambda recipe, store, up, hooks: pull_preferences(
                recipe.pull, store, recipe.max_reject_rate, hooks.on_progress
            ),
            lambda result: {"counts": list(result.stats["counts"])},
        ),
        StageSpec(
            "split",
            (DISTILL_SET.kind, RL_SET.kind),
            _reads(PREFERENCE_PAIRS.kind),
            lambda recipe, up: split_versions(recipe.split, up[PREFERENCE_PAIRS.kind]),
            lambda recipe, store, up, hooks: split_pairs(up[PREFERENCE_PAIRS.kind], recipe.split, store),
            _split_tables,
        ),
        StageSpec(
            "distill",
            (TEACHER_TRACES.kind,),
            _reads(DISTILL_SET.kind),
            lambda recipe, up: {TEACHER_TRACES.kind: distill_version(recipe.distill, up[DISTILL_SET.kind])},
            lambda recipe, store, up, hooks: distill_traces(
                up[DISTILL_SET.kind],
                recipe.distill,
                store,
                max_failure_rate=recipe.max_reject_rate,
                runner=hooks.shard_runner,
                on_progress=hooks.on_progress,
            ),
            _distill_tables,
            _with_sft,
        ),
        StageSpec(
            "filter",
            (SFT_EXAMPLES.kind, FILTER_REJECTS.kind),
            _reads(TEACHER_TRACES.kind),
            lambda recipe, up: filter_versions(recipe.filter, up[TEACHER_TRACES.kind]),
            lambda recipe, store, up, hooks: filter_traces(up[TEACHER_TRACES.kind], recipe.filter, store),
            lambda result: {"pass-rates": result.stats["pass_rates"]},
            _with_sft,
        ),
        StageSpec(
            "sft",
            (SFT_CHECKPOINT.kind,),
            _reads(SFT_EXAMPLES.kind),
            lambda recipe, up: {SFT_CHECKPOINT.kind: sft_version(recipe.student, recipe.sft, up[SFT_EXAMPLES.kind])},
            lambda recipe, store, up, hooks: train_sft(
                up[SFT_EXAMPLES.kind], recipe.student, recipe.sft, store, on_progress=hooks.on_progress
            ),
            _training_tables,
            _with_sft,
        ),
        StageSpec(
            "rl",
            (RL_CHECKPOINT.kind,),
            _rl_reads,
            lambda recipe, up: {
                RL_CHECKPOINT.kind: rl_version(recipe.student, recipe.rl, up[RL_SET.kind], up.get(SFT_CHECKPOINT.kind))
            },
            lambda recipe, store, up, hooks: train_rl(
                up[RL_SET.kind],
                up.get(SFT_CHECKPOINT.kind),
                recipe.student,
                recipe.rl,
                store,
                on_progress=hooks.on_progress,
            ),
            _training_tables,
        ),
        StageSpec(
            "evaluate",
            (EVAL_PREDICTIONS.kind, EVAL_SCORES.kind),
            _evaluate_reads,
            lambda recipe, up: evaluate_versions(recipe.evaluate, _checkpoint(recipe, up)),
            lambda recipe, store, up, hooks: evaluate_judge(
                recipe.evaluate,
                store,
                _checkpoint(recipe, up),
                max_failure_rate=recipe.max_reject_rate,
                on_progress=hooks.on_progress,
            ),
            _evaluate_tables,
            _evaluates,
            lambda result: {"report": result.stats["report"]},
        ),
    )
}
STAGES = tuple(SPECS)


PRODUCER = {kind: spec.name for spec in SPECS.values() for kind in spec.produces}


def _checkpoint(recipe: Recipe, upstream: dict[str, ArtifactRef]) -> ArtifactRef | None:
    reads = _evaluate_reads(recipe)
    return upstream[reads[0]] if reads else None


def stages_needed(name: str, recipe: Recipe) -> list[str]:
    """The enabled stages that `name` depends on, directly or not, in pipeline order."""
    needed: set[str] = set()
    pending = list(SPECS[name].upstream(recipe))
    while pending:
        stage = PRODUCER[pending.pop()]
        if stage not in needed:
            needed.add(stage)
            pending += SPECS[stage].upstream(recipe)
    return [stage for stage in STAGES if stage in needed]


class MissingUpstream(RuntimeError):
    """A stage asked to reuse upstream artifacts that are not published."""


def run_stage(
    name: str, recipe: Recipe, store: ArtifactStore, upstream: dict[str, ArtifactRef], hooks: Hooks = Hooks()
) -> StageResult:
    """Run one stage as a plain function (no Prefect)."""
    return SPECS[name].run(recipe, store, upstream, hooks)


def already_published(
    name: str, recipe: Recipe, store: ArtifactStore, upstream: dict[str, ArtifactRef]
) -> dict[str, ArtifactRef] | None:
    """The stage's outputs when every one of them is published (the stage would skip itself), else None."""
    try:
        return published_outputs(name, recipe, store, upstream)
    except MissingUpstream:
        return None


def published_outputs(
    name: str, recipe: Recipe, store: ArtifactStore, upstream: dict[str, ArtifactRef]
) -> dict[str, ArtifactRef]:
    """The already published outputs of a stage; MissingUpstream naming the stage when one is absent."""
    outputs = {}
    for kind, version in SPECS[name].versions(recipe, upstream).items():
        ref = store.get(kind, version)
        if ref is None:
            raise MissingUpstream(
                f"stage {name!r} has not published {kind}/{version} for this recipe; run without --from, "
                f"or run `rmr1 stage {name}` first"
            )
        outputs[kind] = ref
    return outputs


@task(name="run-stage", cache_policy=NONE, task_run_name="{name}")
def run_stage_task(name: str, recipe: Recipe, store: ArtifactStore, upstream: dict[str, ArtifactRef]) -> StageResult:
    progress = prefect_progress(f"{name}-progress", f"{name}: work done")
    result = run_stage(name, recipe, store, upstream, Hooks(progress, distill_shard_task))
    progress(1, 1)  # stages that report no progress of their own (or were skipped) end at 100% too
    return result


@task(name="distill-shard", cache_policy=NONE, task_run_name="{shard.name}")
def distill_shard_task(shard: Shard, on_outcome: OutcomeCallback | None) -> tuple[list[Outcome], RunStats]:
    """One shard of teacher requests: one Prefect task, never one per request."""
    return run_shard(shard, on_outcome)


def prefect_progress(key: str, description: str) -> ProgressCallback:
    """A progress callback that keeps a Prefect progress artifact (0-100%) up to date."""
    artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)

    def update(done: int, total: int) -> None:
        update_progress_artifact(artifact_id, progress=100.0 * done / total if total else 100.0)

    return update


def report_stage(result: StageResult, store: ArtifactStore) -> None:
    """Leave the stage's counts table, artifact links and a summary in the Prefect UI (a skipped stage: the
    summary only, which names the versions and folders it reused)."""
    key = result.stage.replace("_", "-")
    if result.skipped and not result.stats:
        _summary(key, result)
        return
    for name, table in SPECS[result.stage].tables(result).items():
        create_table_artifact(key=f"{key}-{name}", table=table, description=result.describe())
    for kind, ref in result.outputs.items():
        link = ref.uri if "://" in ref.uri else f"file://{ref.uri}"
        create_link_artifact(
            key=f"{key}-{kind.replace('_', '-')}", link=link, link_text=str(ref), description=f"{kind} folder"
        )
    for kind, ref in result.outputs.items():
        if kind in FOLDER_KINDS and store.fs.exists(f"{store.folder(ref.kind, ref.version)}/{CURVES_PNG}"):
            create_markdown_artifact(key=f"{key}-curves", markdown=_png_markdown(store, ref, f"{result.stage} curves"))
    for name, markdown in SPECS[result.stage].markdown(result).items():
        create_markdown_artifact(key=f"{key}-{name}", markdown=markdown, description=result.describe())
    _summary(key, result)


def _summary(key: str, result: StageResult) -> None:
    rows = "\n".join(f"| {kind} | `{ref.version}` | {ref.uri} |" for kind, ref in result.outputs.items())
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=f"### {result.stage}: {'skipped (already published)' if result.skipped else 'published'}\n\n"
        f"| artifact | version | folder |\n|---|---|---|\n{rows}\n",
    )


def _png_markdown(store: ArtifactStore, ref: ArtifactRef, title: str) -> str:
    """The checkpoint's training curves, inlined as a data URI so the Prefect UI shows them without file access."""
    with store.fs.open(f"{store.folder(ref.kind, ref.version)}/{CURVES_PNG}", "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    return f"### {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n`{ref}`: {ref.uri}/{CURVES_PNG}\n"


def _stage_flow(
    name: str,
    recipe_param: dict[str, Any] | str,
    artifacts: str | None,
    upstream: dict[str, str] | None,
    overrides: list[str] | None = None,
) -> dict:
    logger = get_run_logger()
    recipe_dict = recipe_parameter(recipe_param, overrides or [])
    recipe = recipe_from_dict(recipe_dict)
    if not SPECS[name].enabled(recipe):
        raise ValueError(
            f"recipe {recipe.name} leaves out stage {name!r} (sft: null leaves out distill, filter and sft; pull: "
            "null every training stage; no evaluate section, evaluate)"
        )
    store = ArtifactStore(artifacts)
    if upstream is None:
        # Run alone: upstream stages first, as subflows (each skips itself when already published).
        refs = {}
        for before in stages_needed(name, recipe):
            needed = {kind: refs[kind] for kind in SPECS[before].upstream(recipe)}
            refs.update(run_stage_flow(before, recipe_dict, recipe, store, needed)[0])
    else:
        refs = {kind: store.require(kind, version) for kind, version in upstream.items()}
    inputs = {kind: refs[kind] for kind in SPECS[name].upstream(recipe)}
    published = already_published(name, recipe, store, inputs)
    if published is not None:  # nothing to do: no task run, only the summary (the tables are on the run that made it)
        result = StageResult(name, published, skipped=True)
    else:
        result = run_stage_task(name, recipe, store, inputs)
    report_stage(result, store)
    logger.info(result.describe())
    return {kind: ref.version for kind, ref in result.outputs.items()}


def _run_name(stage: str) -> Callable[[], str]:
    def name() -> str:
        parameters = flow_run.parameters
        recipe = recipe_from_dict(recipe_parameter(parameters.get("recipe", {}), parameters.get("overrides") or []))
        return f"{stage} · {recipe.name} · {recipe.fingerprint}"

    return name


@flow(name="pull", flow_run_name=_run_name("pull"), description="Load preference sources into preference_pairs.")
def pull_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    upstream: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    return _stage_flow("pull", recipe, artifacts, upstream or {}, overrides)


@flow(name="split", flow_run_name=_run_name("split"), description="Split pairs into distill_set and rl_set.")
def split_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    upstream: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    return _stage_flow("split", recipe, artifacts, upstream, overrides)


@flow(name="distill", flow_run_name=_run_name("distill"), description="Teacher traces for distill_set.")
def distill_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    upstream: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    return _stage_flow("distill", recipe, artifacts, upstream, overrides)


@flow(name="filter", flow_run_name=_run_name("filter"), description="Kept traces into sft_examples.")
def filter_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    upstream: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    return _stage_flow("filter", recipe, artifacts, upstream, overrides)


@flow(name="sft", flow_run_name=_run_name("sft"), description="Fine-tune the student on sft_examples.")
def sft_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    upstream: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    return _stage_flow("sft", recipe, artifacts, upstream, overrides)


@flow(name="rl", flow_run_name=_run_name("rl"), description="GRPO with the verdict reward on rl_set.")
def rl_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    upstream: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    return _stage_flow("rl", recipe, artifacts, upstream, overrides)


@flow(
    name="evaluate",
    flow_run_name=_run_name("evaluate"),
    description="Judge RewardBench, RM-Bench and RMB; official scores and a report beside the paper.",
)
def evaluate_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    upstream: dict[str, str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    return _stage_flow("evaluate", recipe, artifacts, upstream, overrides)


STAGE_FLOWS = {
    "pull": pull_flow,
    "split": split_flow,
    "distill": distill_flow,
    "filter": filter_flow,
    "sft": sft_flow,
    "rl": rl_flow,
    "evaluate": evaluate_flow,
}


@flow(name="rm-r1 pipeline", flow_run_name=_run_name("pipeline"), description="The RM-R1 stages in order.")
def pipeline_flow(
    recipe: dict[str, Any] | str,
    artifacts: str | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    """Run stages `from_stage`..`to_stage`; stages before `from_stage` must already be published.

    `recipe` is a recipe file (deployments pass a path) or a loaded recipe mapping; `overrides` are
    `dotted.key=value` strings applied on top.
    """
    recipe = recipe_parameter(recipe, overrides or [])
    parsed = recipe_from_dict(recipe)
    store = ArtifactStore(artifacts)
    first = STAGES.index(from_stage or STAGES[0])
    last = STAGES.index(to_stage or STAGES[-1])
    refs: dict[str, ArtifactRef] = {}
    stages = []
    for index, name in enumerate(STAGES[: last + 1]):
        if not SPECS[name].enabled(parsed):
            continue
        upstream = {kind: refs[kind] for kind in SPECS[name].upstream(parsed)}
        if index < first:
            outputs, how = published_outputs(name, parsed, store, upstream), "reused (before --from)"
        else:
            outputs, how = run_stage_flow(name, recipe, parsed, store, upstream)
        refs.update(outputs)
        if how != "ran":  # a stage flow that ran logs its own result
            get_run_logger().info(f"{name}: {how}: " + ", ".join(str(ref) for ref in outputs.values()))
        stages += [{"stage": name, "how": how, "artifact": str(ref), "folder": ref.uri} for ref in outputs.values()]
    create_table_artifact(key="pipeline-stages", table=stages, description=f"{parsed.name} ({parsed.fingerprint})")
    return {kind: ref.version for kind, ref in refs.items()}


class DispatchFailed(RuntimeError):
    """A stage handed to a deployment did not complete (or the deployment does not exist)."""


def run_stage_flow(
    name: str, recipe: dict[str, Any], parsed: Recipe, store: ArtifactStore, upstream: dict[str, ArtifactRef]
) -> tuple[dict[str, ArtifactRef], str]:
    """Run one stage flow with the given upstream artifacts; its outputs, and how they came about.

    Already published: no flow run at all (a re-run with nothing changed costs about one empty flow).
    Otherwise a subflow in this process or, when the recipe's `dispatch` names a deployment for the stage,
    a run of that deployment (on its work pool, e.g. GPU workers), waited for and read back from the
    shared artifact root."""
    published = already_published(name, parsed, store, upstream)
    if published is not None:
        return published, "skipped, already published"
    versions = {kind: ref.version for kind, ref in upstream.items()}
    root = store.uri(store.root)
    deployment = parsed.dispatch.get(name)
    if deployment is None:
        outputs = STAGE_FLOWS[name](recipe, root, upstream=versions)
        return {kind: store.require(kind, version) for kind, version in outputs.items()}, "ran"
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    if store.local:
        get_run_logger().warning(
            f"{name} runs on deployment {deployment}: its worker must see the artifact folder {root}"
        )
    try:
        run = run_deployment(
            deployment, parameters={"recipe": recipe, "artifacts": root, "upstream": versions}, timeout=None
        )
    except ObjectNotFound:
        raise DispatchFailed(
            f"recipe dispatch.{name}: no deployment {deployment!r} on this Prefect server; create it with "
            "`prefect deploy --all --prefect-file infra/prefect.yaml` (and set PREFECT_API_URL), or remove the entry"
        ) from None
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise DispatchFailed(f"stage {name}: deployment {deployment} run {run.name!r} ended {state}; see its logs")
    return published_outputs(name, parsed, store, upstream), f"ran on deployment {deployment} ({run.name})"
