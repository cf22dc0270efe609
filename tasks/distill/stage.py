"""The distill stage: Chain-of-Rubrics traces for `distill_set` from a teacher, in one or two passes.

Pass 1 renders every pair with the judge template and asks the main teacher. Pass 2 (optional) sends
only the pairs pass 1 got wrong (its verdict fails the distillation filter rule) to a second teacher,
with the correct verdict and the wrong judgement appended as a hint (docs/method.md §5). Every trace row
records its pass and teacher. Requests go out in shards (one Prefect task each); each answer is in the
request cache the moment it arrives, so a killed run re-run sends only what was not answered, and a
request that fails for good becomes a `status=failed` row with its reason instead of failing the stage.

With no `teacher.base_url` the stage starts the stand-in teacher (a heuristic, not a model) on
127.0.0.1 and says so; its traces are versioned under the stand-in's model name, never the real one's:
`teacher.model` picks one of the stand-in's judges (`STANDIN_MODELS`), any other name means the default one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from data_contracts import ArtifactRef, ArtifactStore, artifact_version, publish_table
from data_contracts.errors import UserError
from data_contracts.kinds import DISTILL_SET, TEACHER_TRACES
from tasks.distill.config import DistillConfig, TeacherConfig
from tasks.judge.protocol import TemplateSet, filter_verdict_matches, load_template_set, render_judge_messages
from tasks.judge.protocol.traces import PASS2_HINT_FILE, render_pass2_hint
from tasks.judge.protocol.verdicts import VERDICT_TAGS
from tasks.llm.batch import send_batch
from tasks.llm.cache import RequestCache, default_cache_path
from tasks.llm.client import Outcome, RunStats, TeacherRequest, resolve_api_key, send_requests
from tasks.recipe import NO_DISTILLATION, Recipe
from tasks.stage import Progress, ProgressCallback, Stage, StageResult, StageRun, Tables, reads
from tasks.standins.teacher import RETIRED_STANDIN_MODELS, STANDIN_MODEL, STANDIN_MODELS, StandinTeacher
from tasks.trace_samples import Sample, inline, pick, samples_markdown

# Bump when the rows this stage writes for the same inputs would change.
CODE_VERSION = "distill-1"
STANDIN_KEY = "standin-needs-no-key"  # the stand-in checks that a key is sent, not which

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """One Prefect task's worth of requests to one teacher."""

    teacher_pass: int
    index: int
    requests: list[TeacherRequest]
    teacher: TeacherConfig  # with the resolved base_url (the stand-in's when it runs)
    cache_path: str
    budget_usd: float | None
    spent_usd: float
    batch_poll_s: float | None = None  # None: stream requests; else send one batch and poll this often

    @property
    def name(self) -> str:
        return f"pass{self.teacher_pass}-shard{self.index:04d}"


OutcomeCallback = Callable[[Outcome], None]
ShardRunner = Callable[[Shard, OutcomeCallback | None], tuple[list[Outcome], RunStats]]


def run_shard(shard: Shard, on_outcome: OutcomeCallback | None = None) -> tuple[list[Outcome], RunStats]:
    """Send one shard's requests (cached answers are not re-sent); the plain, Prefect-free runner."""
    api_key = STANDIN_KEY if shard.teacher.model in STANDIN_MODELS else resolve_api_key(shard.teacher)
    with RequestCache(shard.cache_path) as cache:
        if shard.batch_poll_s is not None:
            ids = hashlib.sha256("".join(sorted(r.request_id for r in shard.requests)).encode()).hexdigest()[:16]
            state_path = os.path.join(os.path.dirname(shard.cache_path), "batches", f"{ids}.json")
            batch = send_batch(
                shard.requests, shard.teacher, cache, api_key=api_key, state_path=state_path, poll_s=shard.batch_poll_s
            )
            outcomes, stats = asyncio.run(batch)
            for outcome in outcomes:
                if on_outcome is not None:
                    on_outcome(outcome)
            return outcomes, stats
        return asyncio.run(
            send_requests(
                shard.requests,
                shard.teacher,
                cache,
                api_key=api_key,
                on_outcome=on_outcome,
                budget_usd=shard.budget_usd,
                spent_usd=shard.spent_usd,
            )
        )


def effective_teacher(teacher: TeacherConfig) -> TeacherConfig:
    """The stand-in's model name when no endpoint is set, so its answers never pass for the real model's: the
    stand-in judge `teacher.model` names, else the default (longer answer wins). A retired stand-in name is
    refused: its traces were versioned by that name."""
    if teacher.base_url is not None:
        return teacher
    if teacher.model in RETIRED_STANDIN_MODELS:
        raise UserError(
            f"teacher.model: the stand-in {teacher.model!r} is retired ({RETIRED_STANDIN_MODELS[teacher.model]}); "
            f"name one of {', '.join(STANDIN_MODELS)}"
        )
    return dataclasses.replace(teacher, model=teacher.model if teacher.model in STANDIN_MODELS else STANDIN_MODEL)


def distill_version(config: DistillConfig, distill_set: ArtifactRef) -> str:
    """The `teacher_traces` version: what is asked of whom, not how fast or at what price."""
    versioned = {
        "teacher": effective_teacher(config.teacher),  # its endpoint fields are not versioned
        "second_teacher": effective_teacher(config.second_teacher) if config.second_teacher else None,
        "template": load_template_set(config.template).fingerprint,
        "pass2_hint": hashlib.sha256(PASS2_HINT_FILE.read_bytes()).hexdigest()[:16] if config.second_teacher else None,
        "attempt": config.attempt,
    }
    upstream = {DISTILL_SET.kind: distill_set.version}
    return artifact_version(TEACHER_TRACES.kind, TEACHER_TRACES.version, versioned, upstream, CODE_VERSION)


@contextlib.contextmanager
def teacher_endpoint(teacher: TeacherConfig) -> Iterator[TeacherConfig]:
    """The teacher to call: as configured, or the stand-in started on 127.0.0.1 for the duration."""
    if teacher.base_url is not None:
        yield teacher
        return
    model = effective_teacher(teacher).model
    with StandinTeacher(model=model) as standin:
        log.warning(
            "teacher.base_url is not set: using the STAND-IN teacher at %s as %s (a heuristic, not a model); set "
            "teacher.base_url for real traces",
            standin.base_url,
            model,
        )
        yield dataclasses.replace(teacher, base_url=standin.base_url, model=model)


def judge_request(
    row: dict[str, Any], template: TemplateSet, teacher: TeacherConfig, hint: str | None = None
) -> TeacherRequest:
    """The teacher request for one judge pair: the template's messages, plus the pass-2 hint if given."""
    messages = render_judge_messages(template, row["conversation"], row["answer_a"], row["answer_b"])
    if hint is not None:
        messages[-1] = {**messages[-1], "content": f"{messages[-1]['content']}\n\n{hint}"}
    return TeacherRequest(
        messages=tuple(messages),
        model=teacher.model,
        max_tokens=teacher.max_tokens,
        temperature=teacher.temperature,
        top_p=teacher.top_p,
    )


def _run_pass(
    teacher_pass: int,
    requests: list[TeacherRequest],
    teacher: TeacherConfig,
    config: DistillConfig,
    cache_path: str,
    runner: ShardRunner | None,
    progress: Progress,
    spent_usd: float,
) -> tuple[list[Outcome], list[RunStats]]:
    outcomes: list[Outcome] = []
    stats: list[RunStats] = []
    for index, begin in enumerate(range(0, len(requests), config.shard_rows)):
        shard = Shard(
            teacher_pass,
            index,
            requests[begin : begin + config.shard_rows],
            teacher,
            cache_path,
            config.budget_usd,
            spent_usd,
            config.batch_poll_s if config.batch_mode else None,
        )
        shard_outcomes, shard_stats = (runner or run_shard)(shard, lambda _: progress.advance())
        outcomes.extend(shard_outcomes)
        stats.append(shard_stats)
        spent_usd += shard_stats.cost_usd
    return outcomes, stats


class DistillIncomplete(UserError, RuntimeError):
    """Too many requests failed (or the budget ran out) to publish; answers so far are in the cache."""


def distill_traces(
    distill_set: ArtifactRef,
    config: DistillConfig,
    store: ArtifactStore,
    *,
    version: str,
    max_failure_rate: float = 0.05,
    runner: ShardRunner | None = None,
    on_progress: ProgressCallback | None = None,
) -> StageResult:
    """Publish `teacher_traces` for `distill_set` as `version` (`distill_version`, computed by the plan).

    Failed requests become `status=failed` rows, but when more than `max_failure_rate` of them failed
    (an unreachable endpoint, a bad key, the budget) nothing is published: DistillIncomplete says why,
    and a re-run of the same recipe resumes from the cache. `runner` sends one shard (default: in this
    process; the Prefect flow passes one task per shard).
    """
    pairs = store.read_table(distill_set).to_pylist()
    template = load_template_set(config.template)
    cache_path = default_cache_path(store, config.cache_dir)
    progress = Progress(len(pairs), on_progress, "distill", "req")
    started = time.monotonic()
    trace_rows: list[dict[str, Any]] = []
    run_stats: list[RunStats] = []
    try:
        with teacher_endpoint(config.teacher) as teacher:
            requests = [judge_request(pair, template, teacher) for pair in pairs]
            outcomes, stats = _run_pass(1, requests, teacher, config, cache_path, runner, progress, 0.0)
        run_stats += stats
        trace_rows += [_trace_row(p, r, o, 1, teacher.model) for p, r, o in zip(pairs, requests, outcomes, strict=True)]
        wrong = [
            (pair, outcome)
            for pair, outcome in zip(pairs, outcomes, strict=True)
            if outcome.status == "ok" and not filter_verdict_matches(outcome.text or "", pair["winner"])
        ]
        if config.second_teacher is not None and wrong:
            progress.add(len(wrong))
            with teacher_endpoint(config.second_teacher) as second:
                hinted = [
                    judge_request(pair, template, second, render_pass2_hint(outcome.text or "", pair["winner"]))
                    for pair, outcome in wrong
                ]
                spent = sum(s.cost_usd for s in run_stats)
                outcomes2, stats2 = _run_pass(2, hinted, second, config, cache_path, runner, progress, spent)
            run_stats += stats2
            trace_rows += [
                _trace_row(pair, request, outcome, 2, second.model)
                for (pair, _), request, outcome in zip(wrong, hinted, outcomes2, strict=True)
            ]
    finally:
        progress.close()

    stats = summarize(trace_rows, run_stats, time.monotonic() - started, len(wrong))
    failed = Counter(r["failure_reason"].split(":")[0] for r in trace_rows if r["status"] == "failed")
    n_failed = sum(failed.values())
    if n_failed > max_failure_rate * len(trace_rows):
        raise DistillIncomplete(
            f"distill: {n_failed} of {len(trace_rows)} teacher requests failed ({dict(failed)}), above the "
            f"{max_failure_rate:.0%} threshold; nothing was published. The {len(trace_rows) - n_failed} answers "
            f"are in the request cache ({cache_path}): fix the cause (endpoint, key, budget_usd) and re-run; only "
            "the unanswered requests are sent."
        )
    ref = publish_table(
        store,
        TEACHER_TRACES,
        version,
        pa.Table.from_pylist(trace_rows, schema=TEACHER_TRACES.schema),
        upstream={DISTILL_SET.kind: distill_set.version},
        config=config,
        code_version=CODE_VERSION,
        stats=stats,
    )
    log.info("distill: published %s: %s", ref, stats["totals"])
    return StageResult("distill", {TEACHER_TRACES.kind: ref}, stats)


def _trace_row(
    pair: dict[str, Any], request: TeacherRequest, outcome: Outcome, teacher_pass: int, model: str
) -> dict[str, Any]:
    system = next((m["content"] for m in request.messages if m["role"] == "system"), None)
    return {
        "pair_id": pair["pair_id"],
        "request_id": outcome.request_id,
        "teacher_pass": teacher_pass,
        "teacher_model": model,
        "status": outcome.status,
        "failure_reason": outcome.failure_reason,
        "system": system,
        "user": request.messages[-1]["content"],
        "response": outcome.text,
        "finish_reason": outcome.finish_reason,
        "winner": pair["winner"],
        "domain": pair["domain"],
        "source": pair["source"],
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cost_usd": outcome.cost_usd,
        "latency_s": outcome.latency_s,
        "attempts": outcome.attempts,
    }


def summarize(rows: list[dict[str, Any]], run_stats: list[RunStats], wall_s: float, pass1_wrong: int) -> dict:
    """Totals and per-pass counts for the manifest and the UI: requests, failures by reason, tokens, cost."""
    by_pass = []
    for teacher_pass in sorted({r["teacher_pass"] for r in rows}):
        mine = [r for r in rows if r["teacher_pass"] == teacher_pass]
        failures = Counter(r["failure_reason"].split(":")[0] for r in mine if r["status"] == "failed")
        by_pass.append(
            {
                "pass": teacher_pass,
                "teacher": mine[0]["teacher_model"],
                "requests": len(mine),
                "ok": sum(r["status"] == "ok" for r in mine),
                "failed": sum(r["status"] == "failed" for r in mine),
                "failed_by_reason": dict(failures),
                "verdict_matches_label": sum(
                    r["status"] == "ok" and filter_verdict_matches(r["response"] or "", r["winner"]) for r in mine
                ),
                "prompt_tokens": sum(r["prompt_tokens"] for r in mine),
                "completion_tokens": sum(r["completion_tokens"] for r in mine),
                "cost_usd": round(sum(r["cost_usd"] or 0.0 for r in mine), 6),
            }
        )
    sent = sum(s.requests - s.cached for s in run_stats)
    send_s = sum(s.wall_s for s in run_stats)
    counts: dict[tuple[str, str], Counter[str]] = {}
    for row in rows:
        counts.setdefault((row["source"], row["domain"]), Counter())[row["status"]] += 1
    totals = {
        "requests": len(rows),
        "sent": sent,
        "cached": sum(s.cached for s in run_stats),
        "retries": sum(s.retries for s in run_stats),
        "failed": sum(r["status"] == "failed" for r in rows),
        "pass1_wrong": pass1_wrong,
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "cost_usd": round(sum(r["cost_usd"] or 0.0 for r in rows), 6),  # what these traces cost
        "spent_usd": round(sum(s.cost_usd for s in run_stats), 6),  # what this run paid (cache hits are free)
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(sent / send_s, 2) if send_s > 0 else 0.0,  # while sending, cache hits excluded
    }
    by_source_domain = [
        {"source": s, "domain": d, "requests": c["ok"] + c["failed"], "ok": c["ok"], "failed": c["failed"]}
        for (s, d), c in sorted(counts.items())
    ]
    return {"totals": totals, "by_pass": by_pass, "counts": by_source_domain}


def distill_tables(result: StageResult) -> Tables:
    """Requests by source/domain, by pass (with failures by reason) and the run's totals."""
    by_pass = [{**row, "failed_by_reason": str(row["failed_by_reason"])} for row in result.stats["by_pass"]]
    return {"counts": result.stats["counts"], "by-pass": by_pass, "totals": [result.stats["totals"]]}


# Sample traces in the UI: by the distillation filter rule (docs/method.md §3), or the request failed.
MATCHES, MISSES, FAILED = "verdict matches the label", "verdict misses the label", "request failed"
_SAMPLE_COLUMNS = ["pair_id", "teacher_pass", "teacher_model", "status", "failure_reason", "response",
                   "finish_reason", "winner", "domain", "source", "completion_tokens"]  # fmt: skip


def trace_outcome(row: Mapping[str, Any]) -> str:
    if row["status"] != "ok":
        return FAILED
    return MATCHES if filter_verdict_matches(row["response"] or "", row["winner"]) else MISSES


def _trace_sample(row: Mapping[str, Any]) -> Sample:
    facts = {"label": VERDICT_TAGS[row["winner"]], "failure": row["failure_reason"], "teacher": row["teacher_model"],
             "source": row["source"], "finish_reason": row["finish_reason"],
             "completion_tokens": row["completion_tokens"]}  # fmt: skip
    return Sample(f"pair {inline(row['pair_id'])} · pass {row['teacher_pass']}", facts, row["response"])


def traces_markdown(rows: list[dict[str, Any]], ref: str) -> str:
    """A few teacher traces per domain and outcome (matches the label, misses it, failed with the reason)."""
    picked = pick(rows, lambda r: (r["domain"], trace_outcome(r)), key=lambda r: f"{r['pair_id']}:{r['teacher_pass']}")
    intro = f"Teacher traces of `{ref}` (every row: `rmr1 show {ref} --where domain=chat`)."
    return samples_markdown("distill: sample traces", intro, picked, _trace_sample, (MATCHES, MISSES, FAILED),
                            per="domain", key="pair id and pass")  # fmt: skip


def distill_markdown(result: StageResult, store: ArtifactStore) -> dict[str, str]:
    ref = result.outputs[TEACHER_TRACES.kind]
    return {"traces": traces_markdown(store.read_table(ref, columns=_SAMPLE_COLUMNS).to_pylist(), str(ref))}


def _versions(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    return {TEACHER_TRACES.kind: distill_version(recipe.distill, inputs[DISTILL_SET.kind])}


def _run(run: StageRun) -> StageResult:
    return distill_traces(
        run.inputs[DISTILL_SET.kind],
        run.recipe.distill,
        run.store,
        version=run.versions[TEACHER_TRACES.kind],
        max_failure_rate=run.recipe.max_reject_rate,
        runner=run.shard_runner,
        on_progress=run.on_progress,
    )


STAGE = Stage(
    name="distill",
    description="Teacher traces for distill_set.",
    writes=(TEACHER_TRACES.kind,),
    reads=reads(DISTILL_SET.kind),
    versions=_versions,
    run=_run,
    enabled=lambda recipe: recipe.distills,
    tables=distill_tables,
    markdown=distill_markdown,
    left_out=NO_DISTILLATION,
)
