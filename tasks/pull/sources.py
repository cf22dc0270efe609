"""Open one recipe source: local files read row by row (`tasks.records.reader`), a Hub split, or synthetic rows.

Returns the rows to normalise, each with a reference back to where it came from (file and row, or Hub id,
revision, split and row), and a fingerprint of the input that goes into the artifact version: the content
hash of local files, or the pinned Hub revision. Local files are copied into a scratch folder the caller
owns; a Hub split goes through the `datasets` cache. Nothing else is written.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from data_contracts.versioning import file_sha256
from tasks.pull.config import SourceConfig
from tasks.records.reader import BadRow, Record, RowFile, SourceError, file_format, open_file, open_rows
from tasks.standins.refusal_task import refusal_records
from tasks.standins.synthetic_pairs import synthetic_records

BATCH_ROWS = 5_000

__all__ = ["LoadedSource", "SourceError", "load_source", "resolve_files", "source_fingerprint"]


@dataclass
class LoadedSource:
    """A source's inputs (files or a Hub split) and the row indices to read, in order."""

    source: SourceConfig
    inputs: list[RowFile]
    order: np.ndarray  # global row indices (inputs concatenated) to normalise, in this order

    def __len__(self) -> int:
        return len(self.order)

    def planned(self) -> dict[str, int]:
        """How many rows each input will give (after shuffle / first_n), by input name."""
        starts = np.cumsum([0] + [len(f) for f in self.inputs])
        counts = np.bincount(np.searchsorted(starts, self.order, side="right") - 1, minlength=len(self.inputs))
        return {f.name: int(n) for f, n in zip(self.inputs, counts, strict=True)}

    def iter_records(self) -> Iterator[tuple[RowFile, int, Record | BadRow]]:
        """(input, row in that input, record or BadRow) in order; reads in batches, never a whole input."""
        starts = np.cumsum([0] + [len(f) for f in self.inputs])
        for begin in range(0, len(self.order), BATCH_ROWS):
            indices = self.order[begin : begin + BATCH_ROWS]
            which = np.searchsorted(starts, indices, side="right") - 1
            for file_index in np.unique(which):  # within a batch, rows are grouped by input (as ever)
                rows = (indices[which == file_index] - starts[file_index]).tolist()
                input_file = self.inputs[file_index]
                yield from ((input_file, row, record) for row, record in zip(rows, input_file.read(rows), strict=True))


def resolve_files(path: str) -> list[str]:
    """The data files a `path` names: one file, a glob, or every supported file in a folder (sorted)."""
    if os.path.isdir(path):
        candidates = sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True))
        files = [c for c in candidates if os.path.isfile(c) and file_format(c, strict=False)]
    else:
        files = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not files:
        raise SourceError(f"{path}: no json, jsonl or parquet files found")
    for file in files:
        if not os.path.isfile(file):
            raise SourceError(f"{file}: file not found")
        file_format(file)
    return files


def source_fingerprint(source: SourceConfig) -> dict[str, Any]:
    """What identifies a source's input data in artifact versions: file contents or the pinned revision."""
    if source.path is not None:
        files = resolve_files(source.path)
        root = os.path.dirname(files[0]) if len(files) == 1 else os.path.commonpath(files)
        return {os.path.relpath(f, root): file_sha256(f) for f in files}
    if source.hub_id is not None:
        return {"hub_id": source.hub_id, "revision": source.revision, "subset": source.subset, "split": source.split}
    return {}  # synthetic: the config (rows, seed) is the whole input


def load_source(source: SourceConfig, scratch: str) -> LoadedSource:
    """Open a source's inputs (local files are copied into `scratch`) and decide which rows to read."""
    if source.adapter == "synthetic":
        generate = refusal_records if source.task == "refusal" else synthetic_records
        records = pa.Table.from_pylist(generate(source.rows, source.seed))
        task = "" if source.task == "mixed" else f",task={source.task}"
        inputs = [open_rows(f"synthetic(rows={source.rows},seed={source.seed}{task})", records, source.max_chars)]
    elif source.path is not None:
        inputs = [open_file(file, scratch, source.max_chars) for file in resolve_files(source.path)]
    else:
        import datasets  # heavy import, kept off the CLI's start-up path

        dataset = datasets.load_dataset(source.hub_id, source.subset, revision=source.revision, split=source.split)
        name = f"hf://{source.hub_id}@{source.revision}/{source.split}"
        inputs = [open_rows(name, dataset.with_format("arrow"), source.max_chars)]
    total = sum(len(f) for f in inputs)
    if source.shuffle_seed is not None:
        # Identical to `Dataset.shuffle(seed=...)` (datasets draws the same permutation), which is how the
        # authors pick Code-Preference-Pairs' 8,000 rows (docs/method.md §4); tested against datasets itself.
        order = np.random.default_rng(source.shuffle_seed).permutation(total)
    else:
        order = np.arange(total)
    if source.first_n is not None:
        order = order[: source.first_n]
    return LoadedSource(source, inputs, order)
