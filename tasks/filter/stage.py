"""The filter stage: teacher traces → `sft_examples` (kept) and `filter_rejects` (with the reason).

A trace is kept when it was answered, its verdict matches the label by the distillation filter rule
(docs/method.md §3: the label's tag in the last 100 characters) and, under `format` strictness, it has the
Chain-of-Rubrics layout. Per pair the pass-1 trace is kept when it passes, else the pass-2 trace; the
SFT prompt is always the pass-1 prompt (the pass-2 hint is not part of what the student learns from).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from data_contracts import ArtifactRef, ArtifactStore, artifact_version, publish_table
from data_contracts.kinds import FILTER_REJECTS, SFT_EXAMPLES, TEACHER_TRACES
from tasks.filter.config import FilterConfig
from tasks.judge.protocol import filter_verdict_matches, trace_format_problem
from tasks.judge.protocol.verdicts import VERDICT_TAGS
from tasks.recipe import NO_DISTILLATION, Recipe
from tasks.stage import Stage, StageResult, StageRun, reads
from tasks.trace_samples import Sample, inline, pick, samples_markdown

# Bump when the rows this stage writes for the same inputs would change.
CODE_VERSION = "filter-1"

log = logging.getLogger(__name__)


def filter_versions(config: FilterConfig, traces: ArtifactRef) -> dict[str, str]:
    upstream = {TEACHER_TRACES.kind: traces.version}
    return {
        c.kind: artifact_version(c.kind, c.version, config, upstream, CODE_VERSION)
        for c in (SFT_EXAMPLES, FILTER_REJECTS)
    }


def rejection_reason(trace: dict[str, Any], strictness: str) -> str | None:
    """Why a trace row cannot become an SFT example, or None when it can."""
    if trace["status"] != "ok":
        return f"request failed: {trace['failure_reason']}"
    text = trace["response"] or ""
    if not filter_verdict_matches(text, trace["winner"]):
        return "verdict: label tag not in the last 100 characters"
    if strictness == "format":
        return trace_format_problem(text)
    return None


def filter_traces(
    traces: ArtifactRef, config: FilterConfig, store: ArtifactStore, *, versions: Mapping[str, str]
) -> StageResult:
    """Publish `sft_examples` and `filter_rejects` from `traces` as `versions` (`filter_versions`, by the plan)."""
    rows = store.read_table(traces).to_pylist()
    by_pair: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_pair[row["pair_id"]][row["teacher_pass"]] = row
    examples, rejects = [], []
    for pair_id, passes in by_pair.items():
        kept = None
        for teacher_pass in sorted(passes):
            trace = passes[teacher_pass]
            reason = rejection_reason(trace, config.strictness) if kept is None else "superseded by an earlier pass"
            if reason is None:
                kept = trace
            else:
                rejects.append({**_lineage(trace), "reason": reason})
        if kept is not None:
            first = passes[min(passes)]  # the prompt without the pass-2 hint
            examples.append(
                {
                    "pair_id": pair_id,
                    "system": first["system"],
                    "user": first["user"],
                    "assistant": kept["response"],
                    "winner": kept["winner"],
                    "domain": kept["domain"],
                    "source": kept["source"],
                    "teacher_pass": kept["teacher_pass"],
                    "teacher_model": kept["teacher_model"],
                    "request_id": kept["request_id"],
                }
            )
    stats = {"pass_rates": pass_rates(rows, examples), "kept": len(examples), "rejected": len(rejects)}
    upstream = {TEACHER_TRACES.kind: traces.version}
    outputs = {}
    for contract, table_rows in ((FILTER_REJECTS, rejects), (SFT_EXAMPLES, examples)):
        outputs[contract.kind] = publish_table(
            store,
            contract,
            versions[contract.kind],
            pa.Table.from_pylist(table_rows, schema=contract.schema),
            upstream=upstream,
            config=config,
            code_version=CODE_VERSION,
            stats=stats,
        )
    log.info("filter: kept %d of %d pairs", len(examples), len(by_pair))
    return StageResult("filter", outputs, stats)


def _lineage(trace: dict[str, Any]) -> dict[str, Any]:
    keys = ("pair_id", "request_id", "teacher_pass", "teacher_model", "domain", "source")
    return {key: trace[key] for key in keys}


def pass_rates(traces: list[dict[str, Any]], examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kept / judged by (domain, source, pass, teacher): how often each teacher's traces survive."""
    kept = {(e["pair_id"], e["teacher_pass"]) for e in examples}
    groups: dict[tuple[str, str, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for trace in traces:
        key = (trace["domain"], trace["source"], trace["teacher_pass"], trace["teacher_model"])
        groups[key][0] += 1
        groups[key][1] += (trace["pair_id"], trace["teacher_pass"]) in kept
    return [
        {"domain": d, "source": s, "pass": p, "teacher": t, "traces": n, "kept": k, "pass_rate": round(k / n, 4)}
        for (d, s, p, t), (n, k) in sorted(groups.items())
    ]


KEPT, REJECTED = "kept", "rejected"


def _trace_sample(row: Mapping[str, Any]) -> Sample:
    facts = {"reason": row.get("reason"), "label": VERDICT_TAGS.get(row["winner"]), "teacher": row["teacher_model"],
             "source": row["source"]}  # fmt: skip
    return Sample(f"pair {inline(row['pair_id'])} · pass {row['teacher_pass']}", facts, row["response"])


def traces_markdown(kept: list[dict[str, Any]], rejected: list[dict[str, Any]],
                    traces: Mapping[str, Mapping[str, Any]], refs: Mapping[str, str]) -> str:  # fmt: skip
    """A few kept and rejected traces per domain, each rejected one with its reason; `traces` holds the rejected
    ones' teacher_traces rows (response, winner) by request id, as filter_rejects keeps lineage and reason only."""
    rows = [{**row, "outcome": KEPT, "response": row["assistant"]} for row in kept]
    rows += [{**traces.get(row["request_id"], {"winner": None, "response": None}), **row, "outcome": REJECTED}
             for row in rejected]  # fmt: skip
    picked = pick(rows, lambda r: (r["domain"], r["outcome"]), key=lambda r: f"{r['pair_id']}:{r['teacher_pass']}")
    rejects = refs[FILTER_REJECTS.kind]
    intro = f"Kept (`{refs[SFT_EXAMPLES.kind]}`) and rejected (`{rejects}`, with the reason; `rmr1 show {rejects}`)."
    return samples_markdown("filter: sample traces", intro, picked, _trace_sample, (KEPT, REJECTED), per="domain",
                            key="pair id and pass")  # fmt: skip


def filter_markdown(result: StageResult, store: ArtifactStore) -> dict[str, str]:
    """Sample traces, read back from what the run published (the rejected ones' text from its teacher_traces)."""
    kept_ref, rejects_ref = result.outputs[SFT_EXAMPLES.kind], result.outputs[FILTER_REJECTS.kind]
    kept = store.read_table(kept_ref, columns=[c for c in SFT_EXAMPLES.schema.names if c not in ("system", "user")])
    rejected = store.read_table(rejects_ref).to_pylist()
    traces_ref = store.require(TEACHER_TRACES.kind, store.manifest(rejects_ref)["upstream"][TEACHER_TRACES.kind])
    traces = store.read_table(traces_ref, columns=["request_id", "response", "winner"])
    ids = pa.array([row["request_id"] for row in rejected], pa.string())
    by_id = {row["request_id"]: row for row in traces.filter(pc.is_in(traces["request_id"], ids)).to_pylist()}
    refs = {kind: str(ref) for kind, ref in result.outputs.items()}
    return {"traces": traces_markdown(kept.to_pylist(), rejected, by_id, refs)}


def _versions(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    return filter_versions(recipe.filter, inputs[TEACHER_TRACES.kind])


def _run(run: StageRun) -> StageResult:
    return filter_traces(run.inputs[TEACHER_TRACES.kind], run.recipe.filter, run.store, versions=run.versions)


STAGE = Stage(
    name="filter",
    description="Kept traces into sft_examples.",
    writes=(SFT_EXAMPLES.kind, FILTER_REJECTS.kind),
    reads=reads(TEACHER_TRACES.kind),
    versions=_versions,
    run=_run,
    enabled=lambda recipe: recipe.distills,
    tables=lambda result: {"pass-rates": result.stats["pass_rates"]},
    markdown=filter_markdown,
    left_out=NO_DISTILLATION,
)
