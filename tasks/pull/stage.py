"""The pull stage: load every recipe source, normalise it into `preference_pairs`, dedupe, publish.

Reads sources in the recipe's order (which fixes row order downstream), adapts each record, drops exact
duplicates by content hash (the first occurrence wins, across sources), validates rows against the
contract and streams them into one artifact. Rows that cannot be normalised or break the contract go to
`preference_pairs_rejects` with the file, row, field and rule; if one input's reject rate passes the
threshold the stage stops, naming that input, and publishes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from data_contracts import ArtifactStore, artifact_version, check_reject_rate, rejects_contract
from data_contracts.contract import REJECTS_SCHEMA
from data_contracts.kinds import PREFERENCE_PAIRS
from tasks.pull.adapters import DEFAULT_DOMAIN, RowError, Skip, adapt_record
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.sources import InputFile, load_source, source_fingerprint
from tasks.stage import StageResult

# Bump when the rows this stage writes for the same inputs would change.
CODE_VERSION = "pull-1"
WRITE_BATCH_ROWS = 20_000

log = logging.getLogger(__name__)


def pull_version(config: PullConfig) -> str:
    """The version `preference_pairs` gets for this config and these input files (hashes file contents)."""
    # Where the files lie is not part of the version (moving them changes nothing); their content is.
    versioned = {
        "sources": [{"config": asdict(s) | {"path": None}, "input": source_fingerprint(s)} for s in config.sources]
    }
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
    """Rows in / dropped / rejected / out by (source, domain), and rejects by input file."""

    def __init__(self) -> None:
        self.table: Counter[tuple[str, str, str]] = Counter()
        self.dropped: Counter[str] = Counter()
        self.reject_reasons: Counter[str] = Counter()

    def add(self, source: str, domain: str, what: str, n: int = 1) -> None:
        self.table[(source, domain, what)] += n

    def rows(self) -> list[dict[str, Any]]:
        keys = sorted({(s, d) for s, d, _ in self.table})
        return [
            {
                "source": s,
                "domain": d,
                **{what: self.table[(s, d, what)] for what in ("rows_in", "dropped", "rejected", "rows_out")},
            }
            for s, d in keys
        ]


def pull_preferences(config: PullConfig, store: ArtifactStore, max_reject_rate: float = 0.05) -> StageResult:
    """Publish `preference_pairs` for `config` (skipped when that version is already published)."""
    version = pull_version(config)
    existing = store.get(PREFERENCE_PAIRS.kind, version)
    if existing is not None:
        return StageResult("pull", {PREFERENCE_PAIRS.kind: existing}, True, store.manifest(existing)["stats"])

    counts = _Counts()
    seen: set[str] = set()
    all_rejects: list[pa.Table] = []
    with store.writer(PREFERENCE_PAIRS, version, config=config, code_version=CODE_VERSION) as writer:
        for source in config.sources:
            rejects = _pull_source(source, writer, seen, counts, max_reject_rate)
            all_rejects.extend(rejects)
        stats = {
            "counts": counts.rows(),
            "dropped": dict(counts.dropped),
            "reject_reasons": dict(counts.reject_reasons.most_common(20)),
            "rows_out": writer.rows,
        }
        if all_rejects:
            with store.writer(rejects_contract(PREFERENCE_PAIRS), version, config=config) as rejects_writer:
                rejects_writer.write_valid(pa.concat_tables(all_rejects))
                rejects_writer.commit()
        ref = writer.commit(stats)
    log.info("pull: published %s with %d rows", ref, stats["rows_out"])
    return StageResult("pull", {PREFERENCE_PAIRS.kind: ref}, False, stats)


def _pull_source(
    source: SourceConfig,
    writer: Any,
    seen: set[str],
    counts: _Counts,
    max_reject_rate: float,
) -> list[pa.Table]:
    """Normalise one source into `writer`; return its rejects; raise when an input rejects too many rows."""
    loaded = load_source(source)
    default_domain = source.domain or DEFAULT_DOMAIN[source.adapter]
    per_input: Counter[tuple[str, str]] = Counter()
    rejects: list[pa.Table] = []
    reject_rows: list[dict[str, Any]] = []
    examples: dict[str, list[str]] = {}
    pairs: list[dict[str, Any]] = []

    def reject(input_file: InputFile, row: int, ref: str, reason: str, domain: str, row_json: str) -> None:
        per_input[(input_file.name, "rejected")] += 1
        counts.add(source.name, domain, "rejected")
        counts.reject_reasons[reason] += 1
        examples.setdefault(input_file.name, []).append(f"{ref}: {reason}")
        reject_rows.append({"row_index": row, "source_ref": ref, "reason": reason, "row_json": row_json})

    def flush() -> None:
        if pairs:
            table = pa.Table.from_pylist(pairs)
            contract_rejects = writer.write(table, table.column("source_ref"))
            for index, reason, row_json in zip(
                *(contract_rejects.column(c).to_pylist() for c in ("row_index", "reason", "row_json")), strict=True
            ):
                row = pairs[index]
                counts.add(source.name, row["domain"], "rows_out", -1)
                input_file, file_row = origins[index]
                reject(input_file, file_row, row["source_ref"], f"contract: {reason}", row["domain"], row_json)
            pairs.clear()
            origins.clear()
        if reject_rows:
            rejects.append(pa.Table.from_pylist(reject_rows, schema=REJECTS_SCHEMA))
            reject_rows.clear()

    origins: list[tuple[InputFile, int]] = []  # (input, row) of each pending pair
    progress = tqdm(loaded.iter_records(), total=len(loaded), desc=f"pull {source.name}", unit="row", leave=False)
    for input_file, row, record in progress:
        per_input[(input_file.name, "rows_in")] += 1
        ref = f"{input_file.name}#row={row}"
        try:
            result = adapt_record(record, source)
        except RowError as error:
            counts.add(source.name, "unknown", "rows_in")
            reject(input_file, row, ref, f"adapter: {error}", "unknown", _json(record))
            continue
        if isinstance(result, Skip):
            counts.add(source.name, default_domain, "rows_in")
            counts.add(source.name, default_domain, "dropped")
            counts.dropped[f"{source.name}: {result.reason}"] += 1
            continue
        domain = result.domain or default_domain
        counts.add(source.name, domain, "rows_in")
        pair_id = pair_content_hash(result.conversation, result.chosen, result.rejected)
        if pair_id in seen:
            counts.add(source.name, domain, "dropped")
            counts.dropped[f"{source.name}: duplicate pair"] += 1
            continue
        seen.add(pair_id)
        counts.add(source.name, domain, "rows_out")
        origins.append((input_file, row))
        pairs.append(
            {
                "pair_id": pair_id,
                "source": source.name,
                "domain": domain,
                "conversation": result.conversation,
                "chosen": result.chosen,
                "rejected": result.rejected,
                "source_ref": ref,
            }
        )
        if len(pairs) >= WRITE_BATCH_ROWS:
            flush()
    flush()
    for input_file in loaded.inputs:
        check_reject_rate(
            input_file.name,
            per_input[(input_file.name, "rejected")],
            per_input[(input_file.name, "rows_in")],
            max_reject_rate,
            examples.get(input_file.name, []),
        )
    return rejects


def _json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str)
