"""Users' files read row by row: JSON Lines and JSON arrays (optionally gzipped), and Parquet.

`open_file` copies one file, in bounded memory, into an Arrow IPC file in a scratch folder and maps it, so
that any row can be read by index (a seeded shuffle needs that) without the file in memory. JSON rows stay
raw bytes until they are read, one at a time: a row that is not JSON, not an object, nested too deeply,
or whose text (all its string values) is longer than `max_chars` characters is read as a `BadRow` (one
reject) and every other row is kept. A JSON line too long to hold that little text (over 12 bytes per
character) is never held whole: the reader skips the rest of it. Parquet keeps its own typed columns; its
records are held to `max_chars` alike. A file that cannot be read at all (missing,
a truncated gzip, broken Parquet, a JSON array whose syntax breaks) is a `SourceError` naming the file.
Blank lines are not rows; rows are numbered from 0 in the order of the file, as `datasets` numbers them.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.errors import UserError

MAX_CHARS = 1_000_000  # generous: RM-R1's longest prompts and answers are tens of thousands of characters
FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SHOWN_CHARS = 2_000  # how much of a bad row the rejects artifact keeps
SPILL_ROWS = 4_096  # rows per Arrow batch in the scratch copy
SPILL_BYTES = 64 << 20  # ... or fewer, when they are big
READ_BLOCK = 1 << 20
# A JSON line of more than BYTES_PER_CHAR * max_chars bytes is too long whatever it holds: the longest
# spelling of one character of text is 12 bytes (an emoji as two \uXXXX escapes).
BYTES_PER_CHAR = 12
BOM = b"\xef\xbb\xbf"
NEAR_END = 16  # characters: a JSON error or end this close to what has been read may just need more

JSON_SCHEMA = pa.schema(
    [
        ("text", pa.large_binary()),  # the row's bytes; only its first SHOWN_CHARS when it is too long to keep
        ("line", pa.int64()),  # where the row starts in the file (1-based)
        ("size", pa.int64()),  # the row's length in bytes
    ]
)

Record = dict[str, Any]


class SourceError(UserError, ValueError):
    """A file that cannot be read at all (missing, unknown format, truncated, broken): nothing is published."""


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be read as a record: one reject, with the field, the reason, where and what it held."""

    field: str
    reason: str  # the same words for the same fault, so reasons can be counted
    where: str  # e.g. "line 41, column 27"
    text: str


def file_format(file: str, strict: bool = True) -> str | None:
    """'json' or 'parquet' by the file's name (a .gz suffix allowed); SourceError (or None) for others."""
    name = file[:-3] if file.endswith(".gz") else file
    fmt = FORMATS.get(os.path.splitext(name)[1].lower())
    if fmt is None and strict:
        raise SourceError(f"{file}: unsupported format (expected .json, .jsonl or .parquet, optionally .gz)")
    return fmt


class RowFile:
    """One input's rows by index: `read(rows)` gives a record or a `BadRow` for each."""

    def __init__(self, name: str, rows: int, take: Callable[[list[int]], pa.Table], json_rows: bool, max_chars: int):
        self.name, self.rows, self.take, self.json_rows, self.max_chars = name, rows, take, json_rows, max_chars

    def __len__(self) -> int:
        return self.rows

    def read(self, rows: list[int]) -> list[Record | BadRow]:
        table = self.take(rows)
        if self.json_rows:
            columns = (table.column(name).to_pylist() for name in ("text", "line", "size"))
            return [self._parse(text, line, size) for text, line, size in zip(*columns, strict=True)]
        return [self._check_size(record) for record in table.to_pylist()]

    def _parse(self, text: bytes, line: int, size: int) -> Record | BadRow:
        where = f"line {line}"
        if size > BYTES_PER_CHAR * self.max_chars:
            return self._too_long(text, where, f"{size:,} bytes")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            return BadRow("record", f"not valid JSON: {error.msg}", f"{where}, column {error.colno}", _shown(text))
        except UnicodeDecodeError as error:
            return BadRow("record", "not UTF-8 text", f"{where}, byte {error.start}", _shown(text))
        except RecursionError:
            return BadRow("record", "JSON nested too deeply", where, _shown(text))
        if not isinstance(value, dict):
            return BadRow("record", f"expected a JSON object, got {type(value).__name__}", where, _shown(text))
        return self._check_size(value, where, text)

    def _check_size(self, record: Record, where: str = "record", text: bytes | None = None) -> Record | BadRow:
        chars = _text_chars(record)
        if chars > self.max_chars:
            shown = text if text is not None else json.dumps(record, ensure_ascii=False, default=str)[:SHOWN_CHARS]
            return self._too_long(shown, where, f"{chars:,} characters of text")
        return record

    def _too_long(self, text: bytes | str, where: str, size: str) -> BadRow:
        reason = f"over max_chars {self.max_chars:,} (raise the source's max_chars to read it)"
        return BadRow("record", reason, f"{where}: {size}", _shown(text))


def open_rows(name: str, table: pa.Table | Any, max_chars: int) -> RowFile:
    """Rows of an Arrow table or a `datasets.Dataset` (arrow format): a Hub split, synthetic records."""
    take = table.take if isinstance(table, pa.Table) else table.__getitem__
    return RowFile(name, len(table), take, json_rows=False, max_chars=max_chars)


def open_file(file: str, scratch: str, max_chars: int = MAX_CHARS) -> RowFile:
    """Copy `file` (json, jsonl or parquet, optionally .gz) into `scratch` as Arrow and map it."""
    if not os.path.isfile(file):
        raise SourceError(f"{file}: file not found")
    fmt = file_format(file)
    target = os.path.join(scratch, f"{len(os.listdir(scratch))}.arrow")
    try:
        if fmt == "json":
            array = not file.removesuffix(".gz").lower().endswith(".jsonl") and _starts_with(file, b"[")
            with _open_binary(file) as handle:
                rows = _array_rows(handle, file, max_chars) if array else _line_rows(handle, max_chars)
                take = _spill(_json_batches(rows), JSON_SCHEMA, target)
        else:
            take = _spill_parquet(file, target)
    except (EOFError, OSError, zlib.error, pa.ArrowInvalid) as error:  # truncated gzip, broken parquet, I/O
        raise SourceError(f"{file}: cannot be read: {type(error).__name__}: {error}; nothing was published") from error
    return RowFile(file, len(take), take, json_rows=fmt == "json", max_chars=max_chars)


def _open_binary(file: str) -> BinaryIO:
    return gzip.open(file, "rb") if file.endswith(".gz") else open(file, "rb")  # type: ignore[return-value]


def _starts_with(file: str, first: bytes) -> bool:
    """Whether the file's first character after white space (and a byte-order mark) is `first`."""
    with _open_binary(file) as handle:
        head = handle.read(len(BOM)).removeprefix(BOM)
        while not (head := head.lstrip()):
            if not (head := handle.read(READ_BLOCK)):
                return False
        return head[:1] == first


def _spill(batches: Iterator[pa.RecordBatch], schema: pa.Schema, target: str) -> Callable[[list[int]], pa.Table]:
    """Write the batches to an Arrow IPC file; return how to take rows from it, memory-mapped."""
    with pa.OSFile(target, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return _MappedRows(pa.ipc.open_file(pa.memory_map(target)).read_all())


class _MappedRows:
    """`take(rows)` on a memory-mapped table that copies only the batches the rows are in.

    (`Table.take` would first gather every chunk of a column into one array: the whole file in memory.)"""

    def __init__(self, table: pa.Table) -> None:
        self.batches = table.to_batches()
        self.starts = np.cumsum([0] + [batch.num_rows for batch in self.batches])
        self.schema = table.schema

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __call__(self, rows: list[int]) -> pa.Table:
        wanted = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.starts, wanted, side="right") - 1
        by_batch = np.argsort(which, kind="stable")
        wanted, which = wanted[by_batch], which[by_batch]
        pieces = [self.batches[b].take(pa.array(wanted[which == b] - self.starts[b])) for b in np.unique(which)]
        gathered = pa.Table.from_batches(pieces, schema=self.schema).combine_chunks()  # only the rows asked for
        return gathered.take(pa.array(np.argsort(by_batch)))  # back in the order asked


def _spill_parquet(file: str, target: str) -> _MappedRows:
    if file.endswith(".gz"):  # Parquet needs to seek: unpack first, in blocks
        unpacked = target + ".parquet"
        with gzip.open(file, "rb") as source, open(unpacked, "wb") as sink:
            shutil.copyfileobj(source, sink, READ_BLOCK)
        file = unpacked
    parquet = pq.ParquetFile(file)
    return _spill(parquet.iter_batches(batch_size=SPILL_ROWS), parquet.schema_arrow, target)


def _json_batches(rows: Iterator[tuple[bytes, int, int]]) -> Iterator[pa.RecordBatch]:
    """(bytes, line, size) rows as batches of JSON_SCHEMA."""
    texts: list[bytes] = []
    lines: list[int] = []
    sizes: list[int] = []
    pending = 0
    for text, line, size in rows:
        texts.append(text)
        lines.append(line)
        sizes.append(size)
        pending += len(text)
        if len(texts) >= SPILL_ROWS or pending >= SPILL_BYTES:
            yield pa.record_batch([texts, lines, sizes], schema=JSON_SCHEMA)
            texts, lines, sizes, pending = [], [], [], 0
    if texts:
        yield pa.record_batch([texts, lines, sizes], schema=JSON_SCHEMA)


def _line_rows(handle: BinaryIO, max_chars: int) -> Iterator[tuple[bytes, int, int]]:
    """(bytes, line number, size) of every non-blank line; a line over the limit is skipped, not held."""
    limit = BYTES_PER_CHAR * max_chars
    number = 0
    while line := handle.readline(limit + 1):
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            head, size = line[: BYTES_PER_CHAR * SHOWN_CHARS], len(line)
            while rest := handle.readline(READ_BLOCK):
                size += len(rest)
                if rest.endswith(b"\n"):
                    break
            yield head, number, size
            continue
        text = line.strip()
        if text:
            yield text, number, len(text)


def _array_rows(handle: BinaryIO, file: str, max_chars: int) -> Iterator[tuple[bytes, int, int]]:
    """(bytes, line number, size) of each element of a top-level JSON array, parsed a block at a time."""
    decoder, utf8 = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8-sig")()
    text, pos, line, done, read = "", 0, 1, False, 0

    def fill() -> bool:
        nonlocal text, pos, done, read
        if done:
            return False
        block = handle.read(READ_BLOCK)
        done = not block
        try:
            text = text[pos:] + utf8.decode(block, final=done)
        except UnicodeDecodeError as error:
            raise SourceError(f"{file}: not UTF-8 text near byte {read + error.start:,} (line {line})") from None
        read += len(block)
        pos = 0
        return not done

    def skip_space() -> str:
        """The next non-space character ('' at the end of the file), counting lines."""
        nonlocal pos, line
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                line += text[pos] == "\n"
                pos += 1
            if pos < len(text) or not fill():
                return text[pos] if pos < len(text) else ""

    def broken(row: int, why: str) -> SourceError:
        return SourceError(
            f"{file}: row {row} (line {line}) {why}; a JSON array cannot skip a broken row (JSON lines can): "
            "fix the row or write the file as JSON lines"
        )

    if skip_space() != "[":
        raise SourceError(f"{file}: expected a JSON array or JSON lines")
    pos += 1
    row = 0
    while True:
        char = skip_space()
        if char == "":
            raise SourceError(f"{file}: the JSON array ends before its ']' after {row} rows (line {line}): truncated?")
        if char == "]":
            pos += 1
            if skip_space() != "":
                raise SourceError(f"{file}: text after the end of the JSON array (line {line})")
            return
        if row:
            if char != ",":
                raise broken(row, "is not followed by ',' or ']'")
            pos += 1
            skip_space()
        while True:  # decode one element; read on while it may run past what has been read
            try:
                _, end = decoder.raw_decode(text, pos)
                if done or end < len(text) - NEAR_END:  # a number or literal may go on in the next block
                    break
            except RecursionError:
                raise broken(row, "is nested too deeply") from None
            except json.JSONDecodeError as error:
                incomplete = error.pos >= len(text) - NEAR_END or error.msg.startswith("Unterminated string")
                if done or not incomplete:
                    raise broken(row, f"is not valid JSON: {error.msg}") from None
                if len(text) - pos > BYTES_PER_CHAR * max_chars:
                    raise broken(row, f"is longer than max_chars {max_chars:,}") from None
            fill()
        raw = text[pos:end].encode()
        yield raw, line, len(raw)
        line += text.count("\n", pos, end)
        pos = end
        row += 1


def _text_chars(value: Any) -> int:
    """All characters of the strings in a record, at any depth."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    return 0


def _shown(text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text[: BYTES_PER_CHAR * SHOWN_CHARS].decode(errors="replace")
    return text[:SHOWN_CHARS]
