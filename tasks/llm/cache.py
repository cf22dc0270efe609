"""The request cache: every teacher answer is on disk, committed, the moment it arrives.

A SQLite file in WAL mode keyed by request id (a hash of model, messages and sampling parameters), so a
killed run loses at most the requests that were in flight and a re-run — or a changed recipe that sends
the same request — never pays for an answer twice. Several processes may read and write one file at
once; each thread (and each process) gets its own connection. Only successful answers belong here: a
failure must be retried by the next run, never remembered.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_contracts import ArtifactStore
from data_contracts.kinds import CONTRACTS

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0  # another process holding the write lock; commits are tiny, so this is generous
_LOOKUP_CHUNK = 500  # ids per `IN (...)` query, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class CachedAnswer:
    """One teacher answer as it arrived: its text, why it stopped, its token usage and when."""

    request_id: str
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    created_at: float  # seconds since the epoch


_COLUMNS = "request_id, text, finish_reason, prompt_tokens, completion_tokens, model, created_at"


class RequestCache:
    """Durable answers keyed by request id: an answer is on disk (committed) as soon as it arrives."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []  # (pid that opened it, connection)
        self._lock = threading.Lock()
        self._connection()  # create the file and the table now, so a bad path fails here

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again in a forked child)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            return connection
        # Autocommit mode: every `put` is its own transaction, committed before it returns.
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (it is in the OS's hands once
        # written); only a power cut could lose the last few. That is what "durable" means here.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS answers ("
            " request_id TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT,"
            " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
            " model TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        if connection.execute("PRAGMA user_version").fetchone()[0] == 0:
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._local.connection = connection
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append((os.getpid(), connection))
        return connection

    def get_many(self, request_ids: Iterable[str]) -> dict[str, CachedAnswer]:
        """The cached answers among `request_ids`, by id; ids without an answer are simply absent."""
        connection = self._connection()
        found: dict[str, CachedAnswer] = {}
        for chunk in _chunks(list(dict.fromkeys(request_ids)), _LOOKUP_CHUNK):
            marks = ",".join("?" * len(chunk))
            rows = connection.execute(f"SELECT {_COLUMNS} FROM answers WHERE request_id IN ({marks})", chunk)
            for row in rows:
                found[row[0]] = CachedAnswer(*row)
        return found

    def get(self, request_id: str) -> CachedAnswer | None:
        return self.get_many([request_id]).get(request_id)

    def put(self, answer: CachedAnswer) -> None:
        """Store and commit one answer before returning; the first answer stored for an id is kept."""
        self._connection().execute(
            f"INSERT OR IGNORE INTO answers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                answer.request_id,
                answer.text,
                answer.finish_reason,
                int(answer.prompt_tokens),
                int(answer.completion_tokens),
                answer.model,
                float(answer.created_at),
            ),
        )

    def compact(self, keep: Iterable[str], older_than_s: float, *, dry_run: bool = False) -> int:
        """Delete answers older than `older_than_s` seconds whose id is not in `keep`; how many (would) go.

        Younger answers always stay: they may belong to a run that has not published yet (or was killed and
        will resume), which must not pay for them again. The file keeps its size: later answers reuse the
        freed pages (a `VACUUM` while no run has the file open gives them back to the disk)."""
        connection = self._connection()
        where = "created_at < ? AND request_id NOT IN (SELECT request_id FROM kept)"
        cutoff = (time.time() - older_than_s,)
        connection.execute("BEGIN")  # one transaction: the ids in, the delete, the ids out
        try:
            connection.execute("CREATE TEMP TABLE kept (request_id TEXT PRIMARY KEY)")
            connection.executemany("INSERT OR IGNORE INTO kept VALUES (?)", ((request_id,) for request_id in keep))
            if dry_run:
                count = connection.execute(f"SELECT COUNT(*) FROM answers WHERE {where}", cutoff).fetchone()[0]
            else:
                count = connection.execute(f"DELETE FROM answers WHERE {where}", cutoff).rowcount
            connection.execute("DROP TABLE kept")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return int(count)

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def __contains__(self, request_id: object) -> bool:
        return isinstance(request_id, str) and self.get(request_id) is not None

    def close(self) -> None:
        """Close every connection this object opened in this process."""
        pid = os.getpid()
        with self._lock:
            connections = [connection for owner, connection in self._connections if owner == pid]
            self._connections = []  # a forked child never closes its parent's connections
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RequestCache({self.path!r})"


def default_cache_path(store: ArtifactStore, cache_dir: str | None, file_name: str = "teacher_requests.sqlite") -> str:
    """Where a request cache lives: `cache_dir`, else <artifact root>/.request_cache (~/.cache/rmr1 for URLs)."""
    if cache_dir is not None:
        folder = cache_dir
    elif store.local:
        folder = os.path.join(store.root, ".request_cache")
    else:
        folder = os.path.join(os.path.expanduser("~"), ".cache", "rmr1")
    return os.path.join(folder, file_name)


def referenced_request_ids(store: ArtifactStore, manifests: Iterable[dict[str, Any]]) -> set[str]:
    """The teacher request ids the rows of these artifacts name (the kinds whose contract has `request_id`)."""
    ids: set[str] = set()
    for manifest in manifests:
        contract = CONTRACTS.get(manifest["kind"])
        if contract is not None and "request_id" in contract.schema.names:
            ref = store.require(manifest["kind"], manifest["version"])
            ids.update(store.read_table(ref, columns=["request_id"]).column("request_id").to_pylist())
    return ids


def compact_request_cache(
    store: ArtifactStore, kept: Iterable[dict[str, Any]], older_than_s: float, *, dry_run: bool = False
) -> tuple[str, int]:
    """Delete the answers of the store's default teacher cache that no `kept` artifact names and that are
    older than `older_than_s` (`rmr1 artifacts gc --compact-cache`); (its path, answers removed)."""
    path = default_cache_path(store, None)
    if not os.path.exists(path):
        return path, 0
    with RequestCache(path) as cache:
        return path, cache.compact(referenced_request_ids(store, kept), older_than_s, dry_run=dry_run)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
