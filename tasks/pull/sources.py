"""Load one recipe source through `datasets`: Hub ids at a pinned revision, or local json/jsonl/parquet(.gz).

Returns the records to normalise together with a reference back to where each came from (file and row,
or Hub id, revision, split and row), and a fingerprint of the input that goes into the artifact version:
the content hash of local files, or the pinned Hub revision. Never writes anywhere but the `datasets`
cache.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_contracts.errors import UserError
from data_contracts.versioning import file_sha256
from tasks.pull.config import SourceConfig
from tasks.standins.synthetic_pairs import synthetic_records

FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
BATCH_ROWS = 5_000


class SourceError(UserError, ValueError):
    """A source that cannot be read at all (missing file, unknown format)."""


@dataclass(frozen=True)
class InputFile:
    """One input of a source: a local file (with its content hash) or a Hub split."""

    name: str  # what error messages and `source_ref` call it
    rows: int


@dataclass
class LoadedSource:
    """A source's records, the inputs they came from and the record indices to read, in order."""

    source: SourceConfig
    inputs: list[InputFile]
    datasets: list[Any]  # one `datasets.Dataset` per input, in arrow format
    order: np.ndarray  # global record indices (concatenated inputs) to normalise, in this order

    def __len__(self) -> int:
        return len(self.order)

    def iter_records(self) -> Iterator[tuple[InputFile, int, dict[str, Any]]]:
        """(input, row in that input, record) in order; reads in batches, never the whole source at once."""
        starts = np.cumsum([0] + [f.rows for f in self.inputs])
        for begin in range(0, len(self.order), BATCH_ROWS):
            indices = self.order[begin : begin + BATCH_ROWS]
            which = np.searchsorted(starts, indices, side="right") - 1
            for file_index in np.unique(which):
                rows = (indices[which == file_index] - starts[file_index]).tolist()
                batch = self.datasets[file_index][rows]  # a pa.Table: no `select`, which fingerprints each call
                input_file = self.inputs[file_index]
                yield from ((input_file, row, record) for row, record in zip(rows, batch.to_pylist(), strict=True))


def resolve_files(path: str) -> list[str]:
    """The data files a `path` names: one file, a glob, or every supported file in a folder (sorted)."""
    if os.path.isdir(path):
        candidates = sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True))
        files = [c for c in candidates if os.path.isfile(c) and _format(c, strict=False)]
    else:
        files = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not files:
        raise SourceError(f"{path}: no json, jsonl or parquet files found")
    for file in files:
        if not os.path.isfile(file):
            raise SourceError(f"{file}: file not found")
        _format(file)
    return files


def _format(file: str, strict: bool = True) -> str | None:
    name = file[:-3] if file.endswith(".gz") else file
    fmt = FORMATS.get(os.path.splitext(name)[1].lower())
    if fmt is None and strict:
        raise SourceError(f"{file}: unsupported format (expected .json, .jsonl or .parquet, optionally .gz)")
    return fmt


def source_fingerprint(source: SourceConfig) -> dict[str, Any]:
    """What identifies a source's input data in artifact versions: file contents or the pinned revision."""
    if source.path is not None:
        files = resolve_files(source.path)
        root = os.path.dirname(files[0]) if len(files) == 1 else os.path.commonpath(files)
        return {os.path.relpath(f, root): file_sha256(f) for f in files}
    if source.hub_id is not None:
        return {"hub_id": source.hub_id, "revision": source.revision, "subset": source.subset, "split": source.split}
    return {}  # synthetic: the config (rows, seed) is the whole input


def load_source(source: SourceConfig) -> LoadedSource:
    """Open a source through `datasets` and decide which records to read (shuffle / first_n)."""
    import datasets  # heavy import, kept off the CLI's start-up path

    if source.adapter == "synthetic":
        records = synthetic_records(source.rows, source.seed)
        inputs = [InputFile(f"synthetic(rows={source.rows},seed={source.seed})", len(records))]
        loaded = [datasets.Dataset.from_list(records)]
    elif source.path is not None:
        loaded, inputs = [], []
        for file in resolve_files(source.path):
            try:
                dataset = datasets.load_dataset(_format(file), data_files=file, split="train")
            except Exception as error:  # datasets wraps parse errors without naming the file
                cause = error.__cause__ or error
                raise SourceError(
                    f"{file}: cannot be read as {_format(file)}: {type(cause).__name__}: {cause}"
                ) from error
            loaded.append(dataset)
            inputs.append(InputFile(file, len(dataset)))
    else:
        dataset = datasets.load_dataset(source.hub_id, source.subset, revision=source.revision, split=source.split)
        loaded = [dataset]
        inputs = [InputFile(f"hf://{source.hub_id}@{source.revision}/{source.split}", len(dataset))]
    total = sum(f.rows for f in inputs)
    if source.shuffle_seed is not None:
        # Identical to `Dataset.shuffle(seed=...)` (datasets draws the same permutation), which is how the
        # authors pick Code-Preference-Pairs' 8,000 rows (docs/method.md §4); tested against datasets itself.
        order = np.random.default_rng(source.shuffle_seed).permutation(total)
    else:
        order = np.arange(total)
    if source.first_n is not None:
        order = order[: source.first_n]
    return LoadedSource(source, inputs, [dataset.with_format("arrow") for dataset in loaded], order)
