"""The pull stage: load every recipe source, normalise it into `preference_pairs`, dedupe, publish.

Reads sources in the recipe's order (which fixes row order downstream), adapts each record, drops exact
duplicates by content hash (the first occurrence wins, across sources), validates rows against the
contract and streams them into one artifact. Rows that cannot be normalised or break the contract go to
`preference_pairs_rejects` with the file, row, field and rule; if one input's reject rate passes the
threshold the stage stops, naming that input, and publishes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from data_contracts import (
    ArtifactRef,
    ArtifactStore,
    ArtifactWriter,
    artifact_version,
    check_reject_rate,
    rejects_contract,
)
from data_contracts.contract import REJECTS_SCHEMA
from data_contracts.kinds import PREFERENCE_PAIRS
from tasks.hub import HubRevisions
from tasks.pull.adapters import DEFAULT_DOMAIN, RowError, Skip, adapt_record
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.sources import LoadedSource, load_source, source_fingerprint
from tasks.recipe import Recipe
from tasks.records.reader import BadRow, RowFile
from tasks.stage import ProgressCallback, Stage, StageResult, StageRun, reads

# Bump when the rows this stage writes for the same inputs would change.
CODE_VERSION = "pull-1"
WRITE_BATCH_ROWS = 20_000

log = logging.getLogger(__name__)


def pull_version(config: PullConfig) -> str:
    """The version `preference_pairs` gets for this config and these input files (hashes file contents)."""
    # Where the files lie is not part of the version (`path` is versioned by content): their bytes are.
    versioned = {"sources": [{"config": s, "input": source_fingerprint(s)} for s in config.sources]}
    return artifact_version(PREFERENCE_PAIRS.kind, PREFERENCE_PAIRS.version, versioned, {}, CODE_VERSION)


def pair_content_hash(conversation: list[dict[str, str]], chosen: str, rejected: str) -> str:
    """Hash of the pair's content: equal pairs from different sources or rows dedupe to one.

    Each part is length-prefixed, so no two different pairs feed the same bytes to the hash.
    """
    digest = hashlib.sha256()
    for part in (*(x for turn in conversation for x in (turn["role"], turn["content"])), chosen, rejected):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:16]


class _Counts:
    """Rows in / dropped / rejected / out by (source, domain), with drop and reject reasons."""

    def __init__(self) -> None:
        self.table: Counter[tuple[str, str, str]] = Counter()
        self.dropped: Counter[str] = Counter()
        self.reject_reasons: Counter[str] = Counter()

    def add(self, source: str, domain: str, what: str, n: int = 1) -> None:
        self.table[(source, domain, what)] += n

    def rows(self) -> list[dict[str, Any]]:
        keys = sorted({(s, d) for s, d, _ in self.table})
        whats = ("rows_in", "dropped", "rejected", "rows_out")
        return [{"source": s, "domain": d, **{w: self.table[(s, d, w)] for w in whats}} for s, d in keys]


def pull_preferences(
    config: PullConfig,
    store: ArtifactStore,
    *,
    version: str,
    max_reject_rate: float = 0.05,
    on_progress: ProgressCallback | None = None,
) -> StageResult:
    """Publish `preference_pairs` for `config` as `version` (`pull_version(config)`, computed by the plan)."""
    with (
        store.writer(PREFERENCE_PAIRS, version, config=config, code_version=CODE_VERSION) as writer,
        tempfile.TemporaryDirectory(prefix="rmr1-pull-") as scratch,  # local copies of the input files
    ):
        run = _PullRun(writer, max_reject_rate, on_progress)
        loaded = [load_source(source, scratch) for source in config.sources]
        run.total = sum(len(source) for source in loaded)
        for source in loaded:
            run.pull_source(source)
        stats = {
            "counts": run.counts.rows(),
            "dropped": dict(run.counts.dropped),
            "reject_reasons": dict(run.counts.reject_reasons.most_common(20)),
            "rows_out": writer.rows,
        }
        if run.rejects:
            with store.writer(rejects_contract(PREFERENCE_PAIRS), version, config=config) as rejects_writer:
                rejects_writer.write_valid(pa.Table.from_pylist(run.rejects, schema=REJECTS_SCHEMA))
                rejects_writer.commit()
        ref = writer.commit(stats)
    log.info("pull: published %s with %d rows", ref, stats["rows_out"])
    return StageResult("pull", {PREFERENCE_PAIRS.kind: ref}, stats)


class _PullRun:
    """The state of one pull: the writer, the pair ids seen so far (for dedupe), counts and rejects."""

    def __init__(self, writer: ArtifactWriter, max_reject_rate: float, on_progress: ProgressCallback | None) -> None:
        self.writer = writer
        self.max_reject_rate = max_reject_rate
        self.on_progress = on_progress
        self.seen: set[str] = set()
        self.counts = _Counts()
        self.rejects: list[dict[str, Any]] = []  # REJECTS_SCHEMA rows
        # by (source name, input name): two sources may read one file
        self.examples: dict[tuple[str, str], list[str]] = {}  # "ref: reason" of its rejects
        self.per_input: Counter[tuple[str, str, str]] = Counter()
        self.pending: list[tuple[dict[str, Any], RowFile, int]] = []  # (pair row, input, row in input)
        self.planned: dict[tuple[str, str], int] = {}  # rows each input gives: the reject rate's denominator
        self.read = 0
        self.total = 0

    def pull_source(self, loaded: LoadedSource) -> None:
        """Normalise one source into the writer; raise when one of its inputs rejects too many rows."""
        source = loaded.source
        self.planned.update({(source.name, name): rows for name, rows in loaded.planned().items()})
        default_domain = source.domain or DEFAULT_DOMAIN[source.adapter]
        records = tqdm(loaded.iter_records(), total=len(loaded), desc=f"pull {source.name}", unit="row", leave=False)
        for input_file, row, record in records:
            self.per_input[(source.name, input_file.name, "rows_in")] += 1
            self.read += 1
            ref = f"{input_file.name}#row={row}"
            if isinstance(record, BadRow):
                self.counts.add(source.name, "unknown", "rows_in")
                reason = f"read: {record.field}: {record.reason}"  # counted without the line and column
                shown = f"read: {record.field}: {record.where}: {record.reason}"
                self._reject(source, input_file, row, ref, reason, "unknown", record.text, shown=shown)
                continue
            try:
                result = adapt_record(record, source)
            except RowError as error:
                self.counts.add(source.name, "unknown", "rows_in")
                self._reject(source, input_file, row, ref, f"adapter: {error}", "unknown", _json(record))
                continue
            domain = default_domain if isinstance(result, Skip) else result.domain or default_domain
            self.counts.add(source.name, domain, "rows_in")
            if isinstance(result, Skip):
                self._drop(source, domain, result.reason)
                continue
            pair_id = pair_content_hash(result.conversation, result.chosen, result.rejected)
            if pair_id in self.seen:
                self._drop(source, domain, "duplicate pair")
                continue
            self.seen.add(pair_id)
            self.counts.add(source.name, domain, "rows_out")
            pair = {
                "pair_id": pair_id,
                "source": source.name,
                "domain": domain,
                "conversation": result.conversation,
                "chosen": result.chosen,
                "rejected": result.rejected,
                "source_ref": ref,
            }
            self.pending.append((pair, input_file, row))
            if len(self.pending) >= WRITE_BATCH_ROWS:
                self._flush(source)
        self._flush(source)
        for input_file in loaded.inputs:
            check_reject_rate(
                input_file.name,
                self.per_input[(source.name, input_file.name, "rejected")],
                self.per_input[(source.name, input_file.name, "rows_in")],
                self.max_reject_rate,
                self.examples.get((source.name, input_file.name), []),
            )

    def _drop(self, source: SourceConfig, domain: str, reason: str) -> None:
        self.counts.add(source.name, domain, "dropped")
        self.counts.dropped[f"{source.name}: {reason}"] += 1

    def _reject(
        self,
        source: SourceConfig,
        input_file: RowFile,
        row: int,
        ref: str,
        reason: str,
        domain: str,
        row_json: str,
        shown: str | None = None,
    ) -> None:
        """Record one reject; stop at once when its input can no longer stay under the reject threshold.

        `shown` is the reason with where it lies (a line and column), for the reject itself; `reason` is counted."""
        key = (source.name, input_file.name)
        self.per_input[(*key, "rejected")] += 1
        self.counts.add(source.name, domain, "rejected")
        self.counts.reject_reasons[reason] += 1
        reason = shown or reason
        self.examples.setdefault(key, []).append(f"{ref}: {reason}")
        self.rejects.append({"row_index": row, "source_ref": ref, "reason": reason, "row_json": row_json})
        check_reject_rate(
            input_file.name,
            self.per_input[(*key, "rejected")],
            self.planned[key],
            self.max_reject_rate,
            self.examples[key],
            read=self.per_input[(*key, "rows_in")],
        )

    def _flush(self, source: SourceConfig) -> None:
        """Validate and write the pending pairs; rows breaking the contract become rejects."""
        if self.pending:
            table = pa.Table.from_pylist([pair for pair, _, _ in self.pending])
            contract_rejects = self.writer.write(table, table.column("source_ref"))
            columns = (contract_rejects.column(c).to_pylist() for c in ("row_index", "reason", "row_json"))
            for index, reason, row_json in zip(*columns, strict=True):
                pair, input_file, row = self.pending[index]
                self.counts.add(source.name, pair["domain"], "rows_out", -1)
                self._reject(
                    source, input_file, row, pair["source_ref"], f"contract: {reason}", pair["domain"], row_json
                )
            self.pending.clear()
        if self.on_progress is not None:
            self.on_progress(self.read, self.total)


def _json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str)


def _run(run: StageRun) -> StageResult:
    assert run.recipe.pull is not None
    version, max_reject_rate = run.versions[PREFERENCE_PAIRS.kind], run.recipe.max_reject_rate
    return pull_preferences(
        run.recipe.pull, run.store, version=version, max_reject_rate=max_reject_rate, on_progress=run.on_progress
    )


def _versions(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    assert recipe.pull is not None
    return {PREFERENCE_PAIRS.kind: pull_version(recipe.pull)}


def pin_sources(recipe: Recipe, hub: HubRevisions) -> Recipe:
    """The recipe with each Hub source's branch or tag resolved to its commit sha (the stage's `resolve`)."""
    if recipe.pull is None:
        return recipe
    sources = tuple(hub.pin_dataset(source) for source in recipe.pull.sources)
    if sources == recipe.pull.sources:
        return recipe
    return dataclasses.replace(recipe, pull=dataclasses.replace(recipe.pull, sources=sources))


STAGE = Stage(
    name="pull",
    description="Load preference sources into preference_pairs.",
    writes=(PREFERENCE_PAIRS.kind,),
    reads=reads(),
    versions=_versions,
    run=_run,
    tables=lambda result: {"counts": list(result.stats["counts"])},
    resolve=pin_sources,
)
