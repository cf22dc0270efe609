"""The evaluate stage: judge the benchmarks' pairs, publish `eval_predictions`, score them into `eval_scores`.

Each benchmark's comparisons get a seeded A/B order (`order_of`; IF-RewardBench fixes its own; with
`both_orders`, or when the benchmark's rule asks for it, also the reverse), `judge.samples` seeded samples
each, are rendered with the judge template and judged in chunks. A finished chunk is written to the stage's
work folder at once, so a killed run re-judges at most one chunk (the openai backend's request cache keeps even
that chunk's answers). Requests that fail for good score as errors, unless more than `max_failure_rate` of
them failed: then nothing is published and a re-run sends only what is missing. The scores follow the
official rules (`scoring`) and come with a markdown report beside published numbers (`report`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts import ArtifactRef, ArtifactStore, artifact_version, publish_table
from data_contracts.errors import UserError
from data_contracts.kinds import EVAL_PREDICTIONS, EVAL_SCORES
from data_contracts.versioning import versioned
from tasks.evaluate.benchmarks import (
    SYNTHETIC,
    Comparison,
    benchmark_fingerprint,
    benchmark_of,
    load_benchmark,
    order_of,
    rm_bench,
    split_of,
)
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.report import markdown_report
from tasks.evaluate.scoring import SAMPLE_SUFFIX, SWAPPED_SUFFIX, comparison_score, score_predictions
from tasks.hub import HubRevisions, describe, is_hub_repo
from tasks.judge.backends import LENGTH_JUDGE, Judge, JudgeInput, hash_seed, make_judge
from tasks.judge.config import JudgeConfig
from tasks.judge.protocol import TemplateSet, load_template_set, parse_eval_verdict, place_pair, render_judge_messages
from tasks.llm.cache import default_cache_path
from tasks.recipe import Recipe
from tasks.stage import Progress, ProgressCallback, Stage, StageResult, StageRun, Tables
from tasks.trace_samples import Sample, inline, pick, samples_markdown

# Bump when the predictions (CODE_VERSION) or the scores (SCORING_VERSION) for the same inputs would change.
CODE_VERSION = "evaluate-1"
SCORING_VERSION = "scoring-1"
# scoring-2 added both_correct and flip_rate to the position rows of both orders; other scores are as scoring-1
# made them, so only evaluations with both_orders take the new version.
BOTH_ORDERS_SCORING_VERSION = "scoring-2"
CHUNK = "chunk-{size}-{index:05d}.parquet"  # the size in the name: a resume with another chunk_size starts over
TOKENS_KEY = "rmr1.output_tokens"  # chunk files' metadata: the output tokens of each row
# Request failures a re-run may fix: while any remains, nothing is published (the cache keeps the answers).
TRANSIENT_FAILURES = ("timeout", "connection", "rate_limited", "server_error", "invalid_response", "budget_exhausted")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One comparison in the order it is shown: where the chosen answer is, and whether it is the reverse."""

    comparison: Comparison
    chosen_position: str
    swapped: bool
    sample: int = 0  # judge.samples: the sample's index (0 for the first or only one)

    @property
    def comparison_id(self) -> str:
        swapped = SWAPPED_SUFFIX if self.swapped else ""
        return self.comparison.comparison_id + swapped + (f"{SAMPLE_SUFFIX}{self.sample}" if self.sample else "")


def judgements(comparisons: list[Comparison], order_seed: int, both_orders: bool, samples: int = 1) -> list[Judgement]:
    """The seeded order for every comparison, followed by the reverse of each when `both_orders` (or when
    the comparison's benchmark judges both orders by its official rule, as JudgeBench does); with several
    `samples`, all of those again for sample 1, 2, ..."""
    primary = [Judgement(c, c.position or order_of(c.comparison_id, order_seed), False) for c in comparisons]
    both = {c.benchmark for c in comparisons if both_orders or benchmark_of(c.benchmark).orders == "both"}
    swapped = [
        Judgement(j.comparison, "B" if j.chosen_position == "A" else "A", True)
        for j in primary
        if j.comparison.benchmark in both
    ]
    first = primary + swapped
    return first + [dataclasses.replace(j, sample=n) for n in range(1, samples) for j in first]


def judge_input(judgement: Judgement, template: TemplateSet, judge: JudgeConfig | None = None) -> JudgeInput:
    """The judge messages with the answers in the judgement's order; with several samples, the seed of this
    sample of this comparison in this order (derived from `judge.seed`). One sample keeps the backend's own
    seeding (vLLM's 0; none for hf and endpoints), as before samples existed."""
    c = judgement.comparison
    answer_a, answer_b, _ = place_pair(c.chosen, c.rejected, judgement.chosen_position)  # type: ignore[arg-type]
    seed = hash_seed(judge.seed, judgement.comparison_id) if judge is not None and judge.samples > 1 else None
    return JudgeInput(render_judge_messages(template, c.conversation, answer_a, answer_b), answer_a, answer_b, seed)


def prediction_row(judgement: Judgement, output: str | None, judge: str, config: EvaluateConfig) -> dict[str, Any]:
    c = judgement.comparison
    verdict = parse_eval_verdict(output, allow_tie=config.judge.allow_tie) if output is not None else "error"
    return {
        "benchmark": c.benchmark, "subset": c.subset, "item_id": c.item_id, "comparison_id": judgement.comparison_id,
        "group_id": c.group_id, "category": c.category, "chosen_style": c.chosen_style,
        "rejected_style": c.rejected_style, "chosen_position": judgement.chosen_position,
        "swapped": judgement.swapped, "judge": judge, "order_seed": config.order_seed, "output": output,
        "verdict": str(verdict), "score": comparison_score(str(verdict), judgement.chosen_position),
    }  # fmt: skip


# ---------------------------------------------------------------- versions


def _versioned_judge(judge: JudgeConfig, checkpoint: ArtifactRef | None) -> dict[str, Any]:
    if judge.backend == "length":  # no model, no prompt, no decoding
        return {"backend": judge.backend, "allow_tie": judge.allow_tie}
    fields = versioned(judge)  # without batch size, GPU memory share and the endpoint
    fields["template"] = load_template_set(judge.template).fingerprint
    if checkpoint is not None:
        fields["model"] = checkpoint.kind  # its version is in the upstream versions
    return fields


def versioned_benchmark(benchmark: BenchmarkConfig) -> dict[str, Any]:
    """What of a benchmark entry versions its judgments: files by content (the fingerprint), not by where they
    are; the split read; the sample seed when it picks the items."""
    sampled = benchmark.items_per_subset is not None or benchmark.path == SYNTHETIC
    return {
        **versioned(benchmark),
        "split": split_of(benchmark),
        "sample_seed": benchmark.sample_seed if sampled else None,
        "data": benchmark_fingerprint(benchmark),
    }


def evaluate_versions(config: EvaluateConfig, checkpoint: ArtifactRef | None) -> dict[str, str]:
    """The `eval_predictions` and `eval_scores` versions: the judge, the data (by content), the order seed."""
    benchmarks = [versioned_benchmark(b) for b in config.benchmarks]
    judged = {
        "judge": _versioned_judge(config.judge, checkpoint),
        "benchmarks": benchmarks,
        "order_seed": config.order_seed,
        "both_orders": config.both_orders,
    }
    upstream = {checkpoint.kind: checkpoint.version} if checkpoint is not None else {}
    predictions = artifact_version(EVAL_PREDICTIONS.kind, EVAL_PREDICTIONS.version, judged, upstream, CODE_VERSION)
    scores = artifact_version(EVAL_SCORES.kind, EVAL_SCORES.version, {}, {EVAL_PREDICTIONS.kind: predictions},
                              scoring_version(config))  # fmt: skip
    return {EVAL_PREDICTIONS.kind: predictions, EVAL_SCORES.kind: scores}


def scoring_version(config: EvaluateConfig) -> str:
    """The code version of `eval_scores`: the one that changed only what both_orders reports moves on."""
    return BOTH_ORDERS_SCORING_VERSION if config.both_orders else SCORING_VERSION


def judge_name(judge: JudgeConfig, checkpoint: ArtifactRef | None) -> str:
    """What the `judge` column records: the checkpoint artifact, the model (and revision), or the baseline."""
    if judge.backend == "length":
        return LENGTH_JUDGE
    if checkpoint is not None:
        return str(checkpoint)
    return judge.model + (f"@{judge.revision}" if judge.revision else "")


# ---------------------------------------------------------------- judging in resumable chunks


class EvaluationIncomplete(UserError, RuntimeError):
    """Too many judge requests failed to publish; the answers so far are kept for the re-run."""


def _chunks(items: list[Judgement], size: int) -> Iterator[tuple[int, list[Judgement]]]:
    for index, start in enumerate(range(0, len(items), size)):
        yield index, items[start : start + size]


def _write_chunk(path: str, rows: list[dict[str, Any]], tokens: list[int]) -> None:
    """The chunk's prediction rows, with the tokens each output took in the file's metadata."""
    partial = f"{path}.partial"
    table = pa.Table.from_pylist(rows, schema=EVAL_PREDICTIONS.schema)
    pq.write_table(table.replace_schema_metadata({TOKENS_KEY: json.dumps(tokens)}), partial)
    os.replace(partial, path)  # a chunk file is complete or absent


def _read_chunk(path: str) -> tuple[list[dict[str, Any]], list[int]]:
    table = pq.read_table(path)
    tokens = json.loads((table.schema.metadata or {}).get(TOKENS_KEY.encode(), b"null")) or [0] * table.num_rows
    return table.replace_schema_metadata(None).to_pylist(), tokens


@dataclasses.dataclass
class Judging:
    """What `judge_all` returns: prediction rows in order, notes by reason (prompts not judged, request
    failures), how many were judged in this run, and the output tokens per benchmark and sample index."""

    rows: list[dict[str, Any]]
    notes: Counter[str]
    judged_now: int
    tokens: dict[str, list[int]]


def judge_all(
    items: list[Judgement],
    config: EvaluateConfig,
    open_judge: Callable[[], Judge],
    work_dir: str,
    name: str,
    on_progress: ProgressCallback | None = None,
) -> Judging:
    """Prediction rows for every judgement, in order; the judge is opened only if some chunk is not done yet.

    A chunk with failed requests is not saved, so a re-run asks again (cached answers are free).
    """
    template = load_template_set(config.judge.template)
    os.makedirs(work_dir, exist_ok=True)
    rows: list[dict[str, Any]] = []
    notes: Counter[str] = Counter()
    tokens: Counter[tuple[str, int]] = Counter()
    judge: Judge | None = None
    judged_now = 0
    # The openai backend's request cache already keeps every answer: one chunk keeps all requests in flight.
    size = max(len(items), 1) if config.judge.backend == "openai" else config.chunk_size
    progress = Progress(len(items), on_progress, "evaluate", "cmp")
    try:
        for index, chunk in _chunks(items, size):
            path = os.path.join(work_dir, CHUNK.format(size=size, index=index))
            if os.path.exists(path):
                chunk_rows, chunk_tokens = _read_chunk(path)
                notes.update(overlong_prompt=sum(row["output"] is None for row in chunk_rows))  # no failures saved
                notes = +notes  # drop zero counts
                progress.advance(len(chunk))
            else:
                judge = judge or open_judge()
                before = Counter(judge.notes)
                outputs = judge.judge([judge_input(j, template, config.judge) for j in chunk], progress.advance)
                new_notes = Counter(judge.notes) - before
                notes += new_notes
                chunk_rows = [prediction_row(j, o.text, name, config) for j, o in zip(chunk, outputs, strict=True)]
                chunk_tokens = [o.tokens for o in outputs]
                if not any(reason.startswith("request_") for reason in new_notes):
                    _write_chunk(path, chunk_rows, chunk_tokens)
                judged_now += len(chunk)
            rows += chunk_rows
            for judgement, count in zip(chunk, chunk_tokens, strict=True):
                tokens[judgement.comparison.benchmark, judgement.sample] += count
    finally:
        progress.close()
        if judge is not None:
            judge.close()
    per_sample = {b: [tokens[b, n] for n in range(config.judge.samples)] for b in sorted({b for b, _ in tokens})}
    return Judging(rows, notes, judged_now, per_sample)


# ---------------------------------------------------------------- the stage


def evaluate_judge(
    config: EvaluateConfig,
    store: ArtifactStore,
    checkpoint: ArtifactRef | None = None,
    *,
    versions: Mapping[str, str],
    max_failure_rate: float = 0.05,
    on_progress: ProgressCallback | None = None,
) -> StageResult:
    """Publish `eval_predictions` and `eval_scores` as `versions` (`evaluate_versions`, computed by the plan).

    `checkpoint` is the sft/rl checkpoint to judge with when `config.judge.model` names one; otherwise the
    judge is `config.judge.model` itself (a folder, a Hub id, a served model) or the length baseline.
    Predictions published by an earlier run that stopped before scoring are scored, not judged again.
    """
    name = judge_name(config.judge, checkpoint)
    facts: dict[str, Any] = {
        "judge": name,
        "judge_model": checkpoint.uri
        if checkpoint is not None
        else "none (longer answer wins)"
        if config.judge.backend == "length"
        else config.judge.model,
        "backend": config.judge.backend,
        "order_seed": config.order_seed,
        "both_orders": config.both_orders,
        "benchmarks": {
            b.name: {
                "source": b.path or describe(str(b.hub_id), b.revision, b.requested_revision),
                "items_per_subset": b.items_per_subset,
                "split": split_of(b),
            }
            for b in config.benchmarks
        },
        **versions,
    }
    predictions_ref = store.get(EVAL_PREDICTIONS.kind, versions[EVAL_PREDICTIONS.kind])
    if predictions_ref is None:
        predictions_ref = _judge_and_publish(config, store, checkpoint, versions, name, facts, max_failure_rate,
                                             on_progress)  # fmt: skip
    facts.update({k: v for k, v in store.manifest(predictions_ref)["stats"].items() if k not in facts})
    predictions = store.read_table(predictions_ref).to_pandas()
    rows = score_predictions(predictions)
    stats = {**facts, "scores": rows, "report": markdown_report(rows, facts)}
    scores_ref = publish_table(
        store,
        EVAL_SCORES,
        versions[EVAL_SCORES.kind],
        pa.Table.from_pylist(rows, schema=EVAL_SCORES.schema),
        upstream={EVAL_PREDICTIONS.kind: predictions_ref.version},
        config={},  # the scores follow from the predictions alone
        code_version=scoring_version(config),
        stats=stats,
    )
    headline = next((r["score"] for r in rows if r["level"] == "headline"), None)
    log.info("evaluate: %s: headline %s", scores_ref, "n/a" if headline is None else f"{100 * headline:.1f}")
    return StageResult("evaluate", {EVAL_PREDICTIONS.kind: predictions_ref, EVAL_SCORES.kind: scores_ref}, stats)


def _judge_and_publish(
    config: EvaluateConfig,
    store: ArtifactStore,
    checkpoint: ArtifactRef | None,
    versions: Mapping[str, str],
    name: str,
    facts: dict[str, Any],
    max_failure_rate: float,
    on_progress: ProgressCallback | None,
) -> ArtifactRef:
    comparisons = [c for benchmark in config.benchmarks for c in load_benchmark(benchmark)]
    items = judgements(comparisons, config.order_seed, config.both_orders, config.judge.samples)
    # One run per version at a time; a run that waited while another published these versions skips.
    with store.scratch("evaluate", versions[EVAL_PREDICTIONS.kind], publishes=versions) as work_dir:
        cache_path = default_cache_path(store, None, "judge_requests.sqlite")

        def open_judge() -> Judge:
            model = store.local_copy(checkpoint) if checkpoint is not None else config.judge.model
            return make_judge(config.judge, model, name, cache_path)

        started = time.monotonic()
        judging = judge_all(items, config, open_judge, work_dir, name, on_progress)
        rows, notes, judged_now = judging.rows, judging.notes, judging.judged_now
        wall_s = time.monotonic() - started
        transient = sum(notes[f"request_{category}"] for category in TRANSIENT_FAILURES)
        failed = sum(count for reason, count in notes.items() if reason.startswith("request_"))
        if transient or failed > max_failure_rate * len(rows):
            raise EvaluationIncomplete(
                f"evaluate: {failed} of {len(rows)} judge requests failed ({dict(notes)}); nothing was published "
                f"(any failure a retry may fix, such as a timeout, a 429 or a 5xx, blocks publishing, and so do "
                f"more than {max_failure_rate:.0%} refused requests). Answers so far are in {cache_path} and finished "
                f"chunks in {work_dir}: fix the endpoint and re-run; only what is missing is sent."
            )
        counts = pd.DataFrame(rows).groupby(["benchmark", "subset"]).size()
        stats = {
            "comparisons": len(rows),
            "by_subset": [{"benchmark": b, "subset": s, "comparisons": int(n)} for (b, s), n in counts.items()],
            "notes": dict(notes),
            "judged_this_run": judged_now,
            "wall_s": round(wall_s, 2),
            "comparisons_per_s": round(judged_now / wall_s, 2) if wall_s > 0 and judged_now else 0.0,
            "output_tokens": judging.tokens,  # per benchmark, per sample index: what each vote point costs
        }
        facts.update(stats)
        ref = publish_table(
            store,
            EVAL_PREDICTIONS,
            versions[EVAL_PREDICTIONS.kind],
            pa.Table.from_pylist(rows, schema=EVAL_PREDICTIONS.schema),
            upstream={checkpoint.kind: checkpoint.version} if checkpoint is not None else {},
            config=config,
            code_version=CODE_VERSION,
            stats=stats,
        )
        shutil.rmtree(work_dir, ignore_errors=True)
        return ref


def evaluate_tables(result: StageResult) -> Tables:
    """One table per benchmark (every score row: subsets, sections, cells, position, samples), the headline,
    and RM-Bench's 3x3 matrices as the paper draws them."""
    tables: Tables = {}
    for row in result.stats["scores"]:
        shown = {"level": row["level"], "name": row["name"], "score": round(100 * row["score"], 2),
                 "n": row["count"], "error_rate_%": round(100 * row["error_rate"], 2)}  # fmt: skip
        key = "headline" if row["benchmark"] == "overall" else row["benchmark"].replace("_", "-")
        tables.setdefault(key, []).append(shown)
    matrices = rm_bench.matrix(result.stats["scores"])
    if matrices:
        tables["rm-bench-matrix"] = matrices
    return tables


# Sample judgments in the UI, by outcome (docs/method.md §3: unparseable = neither tag or both).
RIGHT, WRONG, TIE, UNPARSEABLE = "right", "wrong", "tie", "unparseable"
_SAMPLE_COLUMNS = ["benchmark", "subset", "comparison_id", "chosen_position", "swapped", "output", "verdict", "score"]


def judgment_outcome(row: Mapping[str, Any]) -> str:
    if row["verdict"] == "error":
        return UNPARSEABLE
    if row["verdict"] == "tie":
        return TIE
    return RIGHT if row["score"] == 1.0 else WRONG


def _judgment_sample(row: Mapping[str, Any]) -> Sample:
    facts = {"chosen answer shown as": row["chosen_position"], "verdict": row["verdict"], "score": row["score"],
             "order": "reversed (both orders)" if row["swapped"] else None}  # fmt: skip
    return Sample(f"{inline(row['subset'])} · {inline(row['comparison_id'])}", facts, row["output"])


def judgments_markdown(rows: list[dict[str, Any]], ref: str) -> str:
    """A few judgments per benchmark and outcome (right, wrong, unparseable; ties when the judge may call one)."""
    picked = pick(rows, lambda r: (r["benchmark"], judgment_outcome(r)), key=lambda r: r["comparison_id"])
    intro = f"Judgments of `{ref}` (all of them: `rmr1 show {ref} --where benchmark=NAME --where verdict=error`)."
    return samples_markdown("evaluate: sample judgments", intro, picked, _judgment_sample, (RIGHT, WRONG, UNPARSEABLE),
                            per="benchmark", key="comparison id")  # fmt: skip


def evaluate_markdown(result: StageResult, store: ArtifactStore) -> dict[str, str]:
    """The report, and sample judgments read back from the published predictions."""
    ref = result.outputs[EVAL_PREDICTIONS.kind]
    rows = store.read_table(ref, columns=_SAMPLE_COLUMNS).to_pylist()
    return {"report": result.stats["report"], "judgments": judgments_markdown(rows, str(ref))}


def _reads(recipe: Recipe) -> tuple[str, ...]:
    """The checkpoint kind the judge uses (sft_checkpoint or rl_checkpoint), if it judges with one."""
    assert recipe.evaluate is not None
    checkpoint = recipe.evaluate.judge.checkpoint
    return (checkpoint,) if checkpoint is not None else ()


def _checkpoint(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> ArtifactRef | None:
    kinds = _reads(recipe)
    return inputs[kinds[0]] if kinds else None


def _versions(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    assert recipe.evaluate is not None
    return evaluate_versions(recipe.evaluate, _checkpoint(recipe, inputs))


def pin_hub_references(recipe: Recipe, hub: HubRevisions) -> Recipe:
    """The recipe with the Hub benchmarks' and a Hub judge model's branch or tag resolved to its commit sha (the
    stage's `resolve`); local files, checkpoints, served (openai) models and the length baseline as they are."""
    config = recipe.evaluate
    if config is None:
        return recipe
    benchmarks = tuple(hub.pin_dataset(benchmark) for benchmark in config.benchmarks)
    judge = config.judge
    if judge.backend in ("hf", "vllm") and judge.checkpoint is None and is_hub_repo(judge.model):
        judge = hub.pin(judge, judge.model, "model")
    if benchmarks == config.benchmarks and judge == config.judge:
        return recipe
    return dataclasses.replace(recipe, evaluate=dataclasses.replace(config, benchmarks=benchmarks, judge=judge))


def _run(run: StageRun) -> StageResult:
    assert run.recipe.evaluate is not None
    return evaluate_judge(
        run.recipe.evaluate,
        run.store,
        _checkpoint(run.recipe, run.inputs),
        versions=run.versions,
        max_failure_rate=run.recipe.max_reject_rate,
        on_progress=run.on_progress,
    )


STAGE = Stage(
    name="evaluate",
    description="Judge the benchmarks (RewardBench, RM-Bench, RMB, RewardBench 2, JudgeBench, your own sets); "
    "official scores and a report beside published numbers.",
    writes=(EVAL_PREDICTIONS.kind, EVAL_SCORES.kind),
    reads=_reads,
    versions=_versions,
    run=_run,
    enabled=lambda recipe: recipe.evaluate is not None,
    tables=evaluate_tables,
    markdown=evaluate_markdown,
    left_out="the recipe has no evaluate section",
    resolve=pin_hub_references,
)
