"""The artifact store: versioned Parquet and checkpoint-folder artifacts under `<root>/<kind>/<version>/`.

An artifact is a folder of `part-*.parquet` files plus `_manifest.json`, which is written last: a folder
without a manifest is not published and no reader ever looks inside it. On a local disk the whole folder
is written under a hidden temporary name and renamed into place, so a killed writer leaves nothing
visible and two concurrent publishers of the same version leave exactly one artifact (the loser of the
rename drops its copy). On object stores (any fsspec URL) rename is not atomic, so each publisher puts its
files under its own attempt prefix (`<version>/<attempt>/part-*.parquet`; the manifest's `key` of each file)
and then creates the manifest with a conditional write that fails when it exists (S3's `If-None-Match: *`,
fsspec's `pipe_file(mode="create")`). Exactly one create succeeds: its manifest lists only its own, complete
files; a loser removes its attempt. This relies on the store honouring conditional creates (AWS S3 since
2024, MinIO, moto; fsspec's memory and local filesystems); readers only ever follow a manifest.

Folder artifacts (model checkpoints, `FolderKind`) follow the same rules: files first, manifest last,
one rename on local disks.

The store never decides versions (see `versioning.py`) and never interprets rows beyond the contract.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from data_contracts.contract import REJECTS_SCHEMA, Contract, validate
from data_contracts.errors import UserError
from data_contracts.kinds import FolderKind
from data_contracts.scratch import locked_scratch
from data_contracts.versioning import file_sha256, plain

MANIFEST = "_manifest.json"
DEFAULT_ROOT = "./artifacts"
ROOT_ENV = "RMR1_ARTIFACTS"
ROWS_PER_PART = 100_000
TEMP_PREFIX = ".tmp-"  # a writer's folder until commit; hidden from readers
TAGS = ".tags"  # names for versions (`tags.py`), under the root: hidden, never a kind, never a gc candidate
ATTEMPT_PREFIX = "attempt-"  # object stores: one publisher's files under <version>/, listed by the manifest that won
STALE_TEMP_SECONDS = 24 * 3600  # a temporary folder this old belongs to a writer that was killed
CACHE_ENV = "RMR1_CACHE"  # downloads of remote folder artifacts, scratch space for remote roots


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.expanduser("~/.cache/rmr1")


class ArtifactMissing(UserError, FileNotFoundError):
    """The artifact asked for is not published under this root."""


class PublishedMeanwhile(Exception):
    """What a run was about to publish was published by another run while this one waited for the scratch lock."""

    def __init__(self, refs: list[ArtifactRef]) -> None:
        super().__init__(", ".join(map(str, refs)) + ": published by another run while this one waited")
        self.refs = refs


class ArtifactNotFound(UserError, LookupError):
    """No single published artifact matches a KIND/VERSION-prefix a user typed."""

    exit_code = 2


@dataclass(frozen=True)
class ArtifactRef:
    """A small, serialisable pointer to a published artifact: what stages pass to each other."""

    kind: str
    version: str
    uri: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.version}"


class ArtifactStore:
    """Publish, find and read artifacts under one root (a local folder or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        root = os.fspath(root) if root is not None else os.environ.get(ROOT_ENV) or DEFAULT_ROOT
        self.fs, path = fsspec.core.url_to_fs(root)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = os.path.abspath(path) if self.local else path.rstrip("/")

    def __repr__(self) -> str:
        return f"ArtifactStore({self.uri(self.root)!r})"

    def uri(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)

    def folder(self, kind: str, version: str) -> str:
        return f"{self.root}/{kind}/{version}"

    def ref(self, kind: str, version: str) -> ArtifactRef:
        """Where the artifact of this kind and version is, or will be once published."""
        return ArtifactRef(kind, version, self.uri(self.folder(kind, version)))

    def get(self, kind: str, version: str) -> ArtifactRef | None:
        """The published artifact of this kind and version, or None."""
        if self.fs.exists(f"{self.folder(kind, version)}/{MANIFEST}"):
            return self.ref(kind, version)
        return None

    def require(self, kind: str, version: str) -> ArtifactRef:
        ref = self.get(kind, version)
        if ref is None:
            raise ArtifactMissing(f"artifact {kind}/{version} is not published under {self.uri(self.root)}")
        return ref

    def manifest(self, ref: ArtifactRef) -> dict[str, Any]:
        with self.fs.open(f"{self.folder(ref.kind, ref.version)}/{MANIFEST}", "r") as handle:
            return json.load(handle)

    def read_table(self, ref: ArtifactRef, columns: list[str] | None = None) -> pa.Table:
        manifest = self.manifest(ref)
        folder = self.folder(ref.kind, ref.version)
        tables = []
        for part in manifest["files"]:
            path = f"{folder}/{file_key(part)}"
            if self.local:
                tables.append(pq.read_table(path, columns=columns))
            else:  # whole part in memory first: pyarrow's reader threads never call back into a Python file object
                with self.fs.open(path, "rb") as handle:
                    tables.append(pq.read_table(pa.BufferReader(handle.read()), columns=columns))
        return pa.concat_tables(tables)

    def batches(
        self, ref: ArtifactRef, columns: list[str] | None = None, batch_size: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """The artifact's rows in order, a batch at a time, and only `columns`: each part is opened when the
        reader gets to it and its row groups are read as they are consumed, so a reader that stops early pays
        for what it read (on object stores too: ranged reads of the footer and of those row groups)."""
        folder = self.folder(ref.kind, ref.version)
        for part in self.manifest(ref)["files"]:
            path = f"{folder}/{file_key(part)}"
            with self.fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle, pre_buffer=False)
                yield from parquet.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)

    def column_names(self, ref: ArtifactRef) -> list[str]:
        """The artifact's columns, from its first part's footer (no rows read)."""
        files = self.manifest(ref)["files"]
        if not files:
            return []
        with self.fs.open(f"{self.folder(ref.kind, ref.version)}/{file_key(files[0])}", "rb") as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)

    def file(self, ref: ArtifactRef, name: str) -> str | None:
        """Where the artifact's file `name` (its path in the manifest) lies, or None when it has no such file."""
        for entry in self.manifest(ref)["files"]:
            if entry["path"] == name:
                return f"{self.folder(ref.kind, ref.version)}/{file_key(entry)}"
        return None

    def verify(self, ref: ArtifactRef) -> list[str]:
        """Names of part files whose sha256 no longer matches the manifest (empty when intact)."""
        folder = self.folder(ref.kind, ref.version)
        bad = []
        for part in self.manifest(ref)["files"]:
            digest = hashlib.sha256()
            with self.fs.open(f"{folder}/{file_key(part)}", "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != part["sha256"]:
                bad.append(part["path"])
        return bad

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Manifests of every published artifact (of one kind), oldest first."""
        if not self.fs.exists(self.root):
            return []
        kinds = [kind] if kind else sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        manifests = []
        for name in kinds:
            kind_folder = f"{self.root}/{name}"
            if name.startswith(".") or not self.fs.isdir(kind_folder):
                continue
            for folder in self.fs.ls(kind_folder, detail=False):
                version = folder.rstrip("/").rsplit("/", 1)[-1]
                if version.startswith("."):
                    continue
                ref = self.get(name, version)
                if ref is not None:
                    manifests.append(self.manifest(ref))
        return sorted(manifests, key=lambda m: (m["created_at"], m["kind"]))

    def lineage(self, ref: ArtifactRef) -> list[tuple[int, dict[str, Any], bool]]:
        """(depth, manifest, already shown) from `ref` down to its sources, depth first, upstream kinds sorted.

        An artifact reached twice (a shared ancestor) is listed again with `already shown` true, not expanded.
        """
        lines: list[tuple[int, dict[str, Any], bool]] = []
        seen: set[tuple[str, str]] = set()

        def walk(current: ArtifactRef, depth: int) -> None:
            key = (current.kind, current.version)
            manifest = self.manifest(current)
            lines.append((depth, manifest, key in seen))
            if key in seen:
                return
            seen.add(key)
            for kind, version in sorted(manifest.get("upstream", {}).items()):
                walk(self.require(kind, version), depth + 1)

        walk(ref, 0)
        return lines

    def find(self, kind: str, version_prefix: str) -> ArtifactRef:
        """The artifact of `kind` whose version starts with `version_prefix` (unique prefixes only)."""
        matches = [m for m in self.list(kind) if m["version"].startswith(version_prefix)]
        if len(matches) != 1:
            found = "none" if not matches else ", ".join(m["version"] for m in matches)
            raise ArtifactNotFound(f"{kind}/{version_prefix}: expected one published artifact, found {found}")
        return self.require(kind, matches[0]["version"])

    def resolve(self, target: str, option: str = "") -> ArtifactRef:
        """KIND/VERSION (a unique version prefix will do), KIND@TAG (the version a tag names, `tags.py`) or KIND
        alone (the newest of that kind); `option` is the command-line option that named it, for the error."""
        if "@" in target and "/" not in target:
            kind, _, name = target.partition("@")
            moves = self.tag_moves(kind, name)
            if not moves:
                folder = f"{self.root}/{TAGS}/{kind}"
                known = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)) if (
                    self.fs.exists(folder)) else []  # fmt: skip
                raise ArtifactNotFound(f"{target}: no such tag under {self.uri(self.root)}; tags of {kind}: "
                                       f"{', '.join(known) or 'none'}")  # fmt: skip
            return self.require(kind, moves[-1]["version"])
        kind, _, prefix = target.partition("/")
        said = f"{option} " if option else ""
        if not kind:
            raise ArtifactNotFound(f"{said}{target!r}: expected KIND[/VERSION] or KIND@TAG, e.g. eval_scores/3e97f04a")
        if not prefix:
            published = self.list(kind)
            if not published:
                raise ArtifactNotFound(f"{said}{kind}: nothing of that kind is published under {self}")
            prefix = max(published, key=lambda manifest: manifest["created_at"])["version"]
        return self.find(kind, prefix)

    def tag_moves(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Every move of the tag `kind@name`, oldest first; empty when there is no such tag (see `tags.py`)."""
        folder = f"{self.root}/{TAGS}/{kind}/{name}"
        self.fs.invalidate_cache(folder)
        if not self.fs.exists(folder):
            return []
        paths = sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".json"))
        return [json.loads(self.fs.cat_file(path)) for path in paths]

    def writer(
        self,
        contract: Contract,
        version: str,
        *,
        upstream: Mapping[str, str] | None = None,
        config: Any = None,
        code_version: str = "",
        rows_per_part: int = ROWS_PER_PART,
    ) -> ArtifactWriter:
        self.remove_stale_temporaries(contract.kind)
        return ArtifactWriter(self, contract, version, dict(upstream or {}), config, code_version, rows_per_part)

    def folder_writer(
        self, kind: FolderKind, version: str, *, upstream: Mapping[str, str] | None = None, config: Any = None,
        code_version: str = "",
    ) -> FolderWriter:  # fmt: skip
        """A writer for a folder artifact (a model checkpoint); see FolderWriter."""
        self.remove_stale_temporaries(kind.kind)
        return FolderWriter(self, kind, version, dict(upstream or {}), config, code_version)

    def local_copy(self, ref: ArtifactRef) -> str:
        """A local folder holding the artifact's files: the folder itself on a local root, else a download whose
        files are checked against the manifest's sha256 (cached under $RMR1_CACHE or ~/.cache/rmr1)."""
        folder = self.folder(ref.kind, ref.version)
        if self.local:
            return folder
        target = os.path.join(cache_dir(), "artifacts", ref.kind, ref.version)
        if os.path.exists(os.path.join(target, MANIFEST)):
            return target
        partial = f"{target}{TEMP_PREFIX}{uuid.uuid4().hex[:8]}"
        try:
            os.makedirs(partial)
            manifest = self.manifest(ref)
            for entry in manifest["files"]:  # the manifest's files only, at their paths: never a losing attempt's
                local = os.path.join(partial, entry["path"])
                os.makedirs(os.path.dirname(local), exist_ok=True)
                self.fs.get_file(f"{folder}/{file_key(entry)}", local)
                if file_sha256(local) != entry["sha256"]:
                    source = self.uri(folder)
                    raise OSError(f"{ref}: {entry['path']} downloaded from {source} does not match its sha256")
            with open(os.path.join(partial, MANIFEST), "w") as handle:  # last: marks the download complete
                json.dump(manifest, handle, indent=2)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(partial, target)
        except OSError:
            if not os.path.exists(os.path.join(target, MANIFEST)):  # not a concurrent download that won
                raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def work_dir(self, stage: str, version: str) -> str:
        """A local scratch folder that survives a killed run (resumable training checkpoints live here)."""
        base = f"{self.root}/.work" if self.local else os.path.join(cache_dir(), "work")
        path = os.path.join(base, f"{stage}-{version}")
        os.makedirs(path, exist_ok=True)
        return path

    @contextlib.contextmanager
    def scratch(
        self,
        stage: str,
        version: str,
        wait_s: float | None = None,
        *,
        node: int = 0,
        publishes: Mapping[str, str] | None = None,
    ) -> Iterator[str]:
        """`work_dir` held under an exclusive lock for a `with` block: how stages enter their scratch
        (a second run of the same version waits or fails naming the holder; see `scratch.py`).

        `publishes` (kind -> version): what the run will publish. Checked again once the lock is held: a run
        that waited while another published all of it raises `PublishedMeanwhile` instead of doing the work again
        (the runner reports the step skipped)."""
        with locked_scratch(self.work_dir(stage, version), wait_s, node=node) as work_dir:
            if publishes:
                self.fs.invalidate_cache()
                found = [self.get(kind, v) for kind, v in publishes.items()]
                if all(ref is not None for ref in found):
                    raise PublishedMeanwhile([ref for ref in found if ref is not None])
            yield work_dir

    def remove_stale_temporaries(self, kind: str, max_age_seconds: float = STALE_TEMP_SECONDS) -> list[str]:
        """Delete temporary folders of writers killed long ago (local roots); return what was removed."""
        kind_folder = f"{self.root}/{kind}"
        if not self.local or not os.path.isdir(kind_folder):
            return []
        removed = []
        for entry in os.scandir(kind_folder):
            if entry.name.startswith(TEMP_PREFIX) and time.time() - entry.stat().st_mtime > max_age_seconds:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
        return removed


class _HashingFile:
    """A write-only file wrapper that hashes bytes as Parquet writes them (no second read of the file)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        if not self.closed:
            self.handle.close()
            self.closed = True


class ArtifactWriter:
    """Writes one artifact: validate batches, stream valid rows to parts, then commit or abort.

    Use as a context manager: leaving the block with an exception aborts (the temporary folder is removed
    and nothing is published); `commit` writes the manifest last and moves the folder into place.
    """

    def __init__(
        self,
        store: ArtifactStore,
        contract: Contract,
        version: str,
        upstream: dict[str, str],
        config: Any,
        code_version: str,
        rows_per_part: int,
    ) -> None:
        self.store = store
        self.contract = contract
        self.version = version
        self.upstream = upstream
        self.config = config
        self.code_version = code_version
        self.rows_per_part = rows_per_part
        self.folder = f"{store.root}/{contract.kind}/{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        self.files: list[dict[str, Any]] = []
        self.rows = 0
        self._part: tuple[pq.ParquetWriter, _HashingFile] | None = None
        self._part_rows = 0
        self._done = False
        store.fs.makedirs(self.folder, exist_ok=True)

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()

    def write(self, table: pa.Table, source_refs: pa.Array | None = None) -> pa.Table:
        """Validate `table`; write the rows that keep the contract; return the rejected rows."""
        valid, rejects = validate(table, self.contract, source_refs)
        self.write_valid(valid)
        return rejects

    def write_valid(self, table: pa.Table) -> None:
        """Write rows already validated against this writer's contract, rolling to a new part as needed."""
        offset = 0
        while offset < table.num_rows:
            if self._part is None:
                self._open_part()
            take = min(self.rows_per_part - self._part_rows, table.num_rows - offset)
            assert self._part is not None
            self._part[0].write_table(table.slice(offset, take))
            self._part_rows += take
            self.rows += take
            offset += take
            if self._part_rows >= self.rows_per_part:
                self._close_part()

    def _open_part(self) -> None:
        name = f"part-{len(self.files):05d}.parquet"
        handle = _HashingFile(self.store.fs.open(f"{self.folder}/{name}", "wb"))
        writer = pq.ParquetWriter(handle, self.contract.schema, compression="zstd")
        self.files.append({"path": name})
        self._part = (writer, handle)
        self._part_rows = 0

    def _close_part(self) -> None:
        if self._part is None:
            return
        writer, handle = self._part
        writer.close()
        handle.close()
        self.files[-1].update(rows=self._part_rows, bytes=handle.size, sha256=handle.sha256.hexdigest())
        self._part = None

    def commit(self, stats: Mapping[str, Any] | None = None) -> ArtifactRef:
        """Write the manifest last and publish; a version already published by someone else wins."""
        if not self.files:
            self._open_part()  # an empty artifact still carries its schema
        self._close_part()
        manifest = _manifest(
            self.contract.kind, self.version, self.contract.version, self.files, self.upstream, self.config,
            self.code_version, stats, rows=self.rows,
        )  # fmt: skip
        _publish(self.store, self.contract.kind, self.version, self.folder, self.files, manifest)
        self._done = True
        return self.store.require(self.contract.kind, self.version)

    def abort(self) -> None:
        if self._part is not None:
            try:
                self._part[0].close()
                self._part[1].close()
            except Exception:  # the folder is removed anyway
                pass
            self._part = None
        self._done = True
        _remove(self.store, self.folder)


def _manifest(
    kind: str,
    version: str,
    kind_version: int,
    files: list[dict[str, Any]],
    upstream: Mapping[str, str],
    config: Any,
    code_version: str,
    stats: Mapping[str, Any] | None,
    rows: int | None = None,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {"kind": kind, "version": version, "contract_version": kind_version}
    if rows is not None:
        manifest["rows"] = rows
    manifest.update(
        files=files,
        upstream=dict(upstream),
        config=plain(config),
        code_version=code_version,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        flow_run_id=_current_flow_run_id(),
        stats=dict(stats or {}),
    )
    return manifest


def _publish(
    store: ArtifactStore,
    kind: str,
    version: str,
    folder: str,
    files: list[dict[str, Any]],
    manifest: dict[str, Any],
    *,
    upload: bool = False,
) -> None:
    """Move a finished temporary folder into place with its manifest last; an earlier publisher wins.

    `upload`: on an object store, `folder` is a local folder whose files are uploaded straight into place
    (one transfer of the weights, not an upload then a remote move).
    """
    final = store.folder(kind, version)
    if store.local:
        with open(f"{folder}/{MANIFEST}", "w") as handle:
            json.dump(manifest, handle, indent=2)
        try:
            os.rename(folder, final)  # atomic: readers see all of it or nothing
        except OSError:
            # Another publisher renamed the same version first: theirs stands, ours is dropped.
            if store.get(kind, version) is None:
                raise
            shutil.rmtree(folder, ignore_errors=True)
        return
    # Object stores cannot rename a folder atomically: this attempt's files go under their own prefix, then the
    # manifest is created only if no other publisher created it first (a conditional write).
    if store.get(kind, version) is None:
        attempt = f"{ATTEMPT_PREFIX}{uuid.uuid4().hex[:12]}"
        for entry in files:
            source, target = f"{folder}/{entry['path']}", f"{final}/{attempt}/{entry['path']}"
            store.fs.put_file(source, target) if upload else store.fs.mv(source, target)
        listed = {**manifest, "files": [{**entry, "key": f"{attempt}/{entry['path']}"} for entry in files]}
        try:
            store.fs.pipe_file(f"{final}/{MANIFEST}", json.dumps(listed, indent=2).encode(), mode="create")
        except Exception as error:
            # Lost the race, or won it and a retried request then met our own manifest: the manifest in place says.
            store.fs.invalidate_cache(final)
            if store.get(kind, version) is None:
                raise OSError(f"{store.uri(final)}: creating {MANIFEST} failed ({error}); publishing to an object "
                              "store needs conditional creates (If-None-Match)") from error  # fmt: skip
            winner = store.manifest(store.ref(kind, version))["files"]
            if not any(str(entry.get("key", "")).startswith(f"{attempt}/") for entry in winner):
                store.fs.rm(f"{final}/{attempt}", recursive=True)  # theirs stands, ours goes
    if upload:
        shutil.rmtree(folder, ignore_errors=True)
    elif store.fs.exists(folder):
        store.fs.rm(folder, recursive=True)


def file_key(entry: Mapping[str, Any]) -> str:
    """Where a manifest's file lies under its artifact folder: its attempt's key on object stores, else its path."""
    return str(entry.get("key") or entry["path"])


def _remove(store: ArtifactStore, folder: str) -> None:
    if store.local:
        shutil.rmtree(folder, ignore_errors=True)
    elif store.fs.exists(folder):
        store.fs.rm(folder, recursive=True)


class FolderWriter:
    """Publishes one folder artifact (a model checkpoint): fill `path` with files, then `commit`.

    `path` is always a local directory. On a local root it is a hidden temporary folder inside the store,
    renamed into place on commit (no copy of multi-GB weights); on an object store it is a local scratch
    folder whose files are uploaded into place on commit, the manifest last. Leaving the `with` block with an
    exception removes everything.
    """

    def __init__(
        self, store: ArtifactStore, kind: FolderKind, version: str, upstream: dict[str, str], config: Any, code: str
    ) -> None:
        self.store, self.kind, self.version = store, kind, version
        self.upstream, self.config, self.code_version = upstream, config, code
        name = f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        if store.local:
            self.path = f"{store.root}/{kind.kind}/{name}"
            os.makedirs(self.path)
        else:
            self.path = tempfile.mkdtemp(prefix=f"rmr1-{kind.kind}-")
        self._done = False

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()

    def commit(self, stats: Mapping[str, Any] | None = None) -> ArtifactRef:
        missing = [
            names.replace("|", " or ")
            for names in self.kind.required
            if not any(os.path.exists(os.path.join(self.path, name)) for name in names.split("|"))
        ]
        if missing:
            raise FileNotFoundError(f"{self.kind.kind}/{self.version}: {', '.join(missing)} missing in {self.path}")
        paths = sorted(
            os.path.relpath(os.path.join(directory, name), self.path).replace(os.sep, "/")
            for directory, _, names in os.walk(self.path)
            for name in names
        )
        files = [
            {"path": p, "bytes": os.path.getsize(f"{self.path}/{p}"), "sha256": file_sha256(f"{self.path}/{p}")}
            for p in paths
        ]
        manifest = _manifest(
            self.kind.kind, self.version, self.kind.version, files, self.upstream, self.config, self.code_version, stats
        )
        _publish(self.store, self.kind.kind, self.version, self.path, files, manifest, upload=not self.store.local)
        self._done = True
        return self.store.require(self.kind.kind, self.version)

    def abort(self) -> None:
        self._done = True
        shutil.rmtree(self.path, ignore_errors=True)  # nothing reaches an object store before commit


def rejects_contract(contract: Contract) -> Contract:
    """The contract of `<kind>_rejects`: one row per rejected input row with the reason."""
    return Contract(contract.rejects_kind, 1, REJECTS_SCHEMA)


def publish_table(
    store: ArtifactStore,
    contract: Contract,
    version: str,
    table: pa.Table,
    *,
    upstream: Mapping[str, str] | None = None,
    config: Any = None,
    code_version: str = "",
    stats: Mapping[str, Any] | None = None,
) -> ArtifactRef:
    """Publish an already-valid table in one call (a no-op returning the existing ref if published)."""
    existing = store.get(contract.kind, version)
    if existing is not None:
        return existing
    with store.writer(contract, version, upstream=upstream, config=config, code_version=code_version) as writer:
        valid, rejects = validate(table, contract)
        if rejects.num_rows:
            raise ValueError(
                f"{contract.kind}/{version}: {rejects.num_rows} rows break the contract, e.g. "
                f"{rejects.column('reason')[0].as_py()}"
            )
        writer.write_valid(valid)
        return writer.commit(stats)


def _current_flow_run_id() -> str | None:
    if "prefect" not in sys.modules:  # never import Prefect just to ask
        return None
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None
