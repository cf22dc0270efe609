"""Tests of the artifact store: Parquet artifacts on real disk, published atomically, read back intact.

Everything is written under tmp_path (or fsspec's in-memory filesystem for the URL-root case). Crash,
race and reader-isolation tests start real child processes (tests/helpers/store_worker.py) and act on the
lines they print, so a SIGKILL lands mid-write and four publishers really do commit at the same moment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pytest

from data_contracts import (
    REJECTS_SCHEMA,
    ArtifactRef,
    ArtifactStore,
    ContractError,
    publish_table,
    rejects_contract,
)
from data_contracts.kinds import EVAL_SCORES, PREFERENCE_PAIRS, SFT_CHECKPOINT
from data_contracts.store import file_key
from tests.helpers.store_worker import pair_rows

WORKER = Path(__file__).parent / "helpers" / "store_worker.py"
KIND = PREFERENCE_PAIRS.kind
CHILD_TIMEOUT_S = 30.0


def _table(start: int = 0, count: int = 3) -> pa.Table:
    """Valid rows already in the contract schema, as `write_valid` expects."""
    return pa.Table.from_pylist(pair_rows(start, count), schema=PREFERENCE_PAIRS.schema)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder(root: Path, version: str, kind: str = KIND) -> Path:
    return root / kind / version


def _leftovers(root: Path, kind: str = KIND) -> list[str]:
    kind_folder = root / kind
    return sorted(p.name for p in kind_folder.iterdir() if p.name.startswith(".tmp-")) if kind_folder.exists() else []


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def root(store: ArtifactStore) -> Path:
    return Path(store.root)


# --- child processes ----------------------------------------------------------------------------------


class Child:
    """A store_worker.py process whose stdout lines arrive on a queue (read by a thread, never blocking)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, prefix: str, timeout: float = CHILD_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"child printed no {prefix!r} within {timeout}s; saw {self.seen}") from None
            if line is None:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"child exited before printing {prefix!r}; saw {self.seen}; stderr:\n{stderr}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def result(self) -> dict[str, Any]:
        """The `ref` line the child prints after publishing, parsed; the child must exit 0."""
        line = self.wait_for_line("ref ")
        assert self.proc.wait(timeout=CHILD_TIMEOUT_S) == 0
        return json.loads(line.removeprefix("ref "))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=CHILD_TIMEOUT_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


# --- publish and read back ----------------------------------------------------------------------------


def test_published_rows_read_back_equal_with_the_contract_schema(store: ArtifactStore) -> None:
    rows = pair_rows(0, 12)
    ref = publish_table(store, PREFERENCE_PAIRS, "v1", pa.Table.from_pylist(rows))

    assert ref == ArtifactRef(KIND, "v1", f"{store.root}/{KIND}/v1")
    assert str(ref) == f"{KIND}/v1"
    table = store.read_table(ref)
    assert table.to_pylist() == rows
    assert table.schema.equals(PREFERENCE_PAIRS.schema)
    assert store.read_table(ref, columns=["pair_id"]).column_names == ["pair_id"]


def test_publish_casts_input_columns_to_the_contract_order_and_types(store: ArtifactStore) -> None:
    rows = pair_rows(0, 2)
    shuffled = pa.Table.from_pylist([{**{k: row[k] for k in reversed(row)}, "extra": 1} for row in rows])

    table = store.read_table(publish_table(store, PREFERENCE_PAIRS, "v1", shuffled))

    assert table.column_names == PREFERENCE_PAIRS.schema.names
    assert table.to_pylist() == rows


def test_manifest_records_provenance_and_per_file_sha256_of_the_bytes_on_disk(store: ArtifactStore, root: Path) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ref = publish_table(
        store,
        PREFERENCE_PAIRS,
        "v1",
        _table(0, 7),
        upstream={"raw": "abc123"},
        config={"seed": 7, "sources": ["a", "b"]},
        code_version="pull-3",
        stats={"rows_out": 7, "dropped": {"empty": 2}},
    )
    after = dt.datetime.now(dt.UTC)
    manifest = store.manifest(ref)

    assert set(manifest) == {
        "kind",
        "version",
        "contract_version",
        "rows",
        "files",
        "upstream",
        "config",
        "code_version",
        "created_at",
        "flow_run_id",
        "stats",
    }
    assert manifest["kind"] == KIND
    assert manifest["version"] == "v1"
    assert manifest["contract_version"] == PREFERENCE_PAIRS.version
    assert manifest["rows"] == 7
    assert manifest["upstream"] == {"raw": "abc123"}
    assert manifest["config"] == {"seed": 7, "sources": ["a", "b"]}
    assert manifest["code_version"] == "pull-3"
    assert manifest["stats"] == {"rows_out": 7, "dropped": {"empty": 2}}
    assert manifest["flow_run_id"] is None
    created = dt.datetime.fromisoformat(manifest["created_at"])
    assert created.tzinfo is not None
    assert before <= created <= after

    [part] = manifest["files"]
    path = _folder(root, "v1") / part["path"]
    assert part["path"] == "part-00000.parquet"
    assert part["rows"] == 7
    assert part["bytes"] == path.stat().st_size
    assert part["sha256"] == _sha256(path)
    assert sorted(p.name for p in _folder(root, "v1").iterdir()) == ["_manifest.json", "part-00000.parquet"]


def test_flow_run_id_is_none_when_prefect_is_imported_but_no_flow_runs(store: ArtifactStore) -> None:
    pytest.importorskip("prefect")
    ref = publish_table(store, PREFERENCE_PAIRS, "v1", _table())
    assert store.manifest(ref)["flow_run_id"] is None


@dataclasses.dataclass(frozen=True)
class _ToyConfig:
    seed: int = 3
    sources: tuple[str, ...] = ("skywork", "math")


def test_manifest_records_a_dataclass_config_as_a_json_object(store: ArtifactStore) -> None:
    ref = publish_table(store, PREFERENCE_PAIRS, "v1", _table(), config=_ToyConfig())
    assert store.manifest(ref)["config"] == {"seed": 3, "sources": ["skywork", "math"]}


@pytest.mark.parametrize(
    ("rows", "batch", "expected_part_rows"),
    [(25, 25, [10, 10, 5]), (25, 7, [10, 10, 5]), (20, 20, [10, 10]), (10, 3, [10]), (4, 4, [4])],
    ids=["25-in-one-batch", "25-in-batches-of-7", "exact-multiple", "one-full-part", "under-one-part"],
)
def test_parts_roll_over_at_rows_per_part(
    store: ArtifactStore, root: Path, rows: int, batch: int, expected_part_rows: list[int]
) -> None:
    with store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=10) as writer:
        for start in range(0, rows, batch):
            writer.write_valid(_table(start, min(batch, rows - start)))
        ref = writer.commit()
    manifest = store.manifest(ref)

    assert [part["rows"] for part in manifest["files"]] == expected_part_rows
    assert [part["path"] for part in manifest["files"]] == [
        f"part-{i:05d}.parquet" for i in range(len(expected_part_rows))
    ]
    assert manifest["rows"] == rows
    for part in manifest["files"]:
        assert part["sha256"] == _sha256(_folder(root, "v1") / part["path"])
    assert store.read_table(ref).column("pair_id").to_pylist() == [row["pair_id"] for row in pair_rows(0, rows)]
    assert store.verify(ref) == []


def test_an_empty_artifact_still_has_a_readable_schema(store: ArtifactStore) -> None:
    with store.writer(PREFERENCE_PAIRS, "empty") as writer:
        ref = writer.commit({"rows_out": 0})
    manifest = store.manifest(ref)

    assert manifest["rows"] == 0
    assert [part["rows"] for part in manifest["files"]] == [0]
    table = store.read_table(ref)
    assert table.num_rows == 0
    assert table.schema.equals(PREFERENCE_PAIRS.schema)
    assert store.verify(ref) == []


def test_publish_table_of_an_empty_table_publishes_an_empty_artifact(store: ArtifactStore) -> None:
    ref = publish_table(store, EVAL_SCORES, "none", EVAL_SCORES.schema.empty_table())
    assert store.read_table(ref).schema.equals(EVAL_SCORES.schema)
    assert store.manifest(ref)["rows"] == 0


def test_verify_names_exactly_the_corrupted_part(store: ArtifactStore, root: Path) -> None:
    with store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=4) as writer:
        writer.write_valid(_table(0, 10))
        ref = writer.commit()
    assert store.verify(ref) == []

    damaged = _folder(root, "v1") / "part-00001.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))

    assert store.verify(ref) == ["part-00001.parquet"]


def test_verify_detects_a_truncated_part(store: ArtifactStore, root: Path) -> None:
    ref = publish_table(store, PREFERENCE_PAIRS, "v1", _table())
    part = _folder(root, "v1") / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-1])
    assert store.verify(ref) == ["part-00000.parquet"]


# --- writer: validation, rejects, abort -----------------------------------------------------------------


def test_writer_publishes_valid_rows_and_returns_the_rejects(store: ArtifactStore) -> None:
    rows = pair_rows(0, 4)
    rows[2] = {**rows[2], "domain": "poetry"}
    table = pa.Table.from_pylist(rows)

    with store.writer(PREFERENCE_PAIRS, "v1") as writer:
        rejects = writer.write(table, table.column("source_ref"))
        ref = writer.commit()
        with store.writer(rejects_contract(PREFERENCE_PAIRS), "v1") as rejects_writer:
            rejects_writer.write_valid(rejects)
            rejects_ref = rejects_writer.commit()

    assert store.read_table(ref).column("pair_id").to_pylist() == ["pair-000000", "pair-000001", "pair-000003"]
    assert store.manifest(ref)["rows"] == 3
    assert rejects_ref.kind == "preference_pairs_rejects"
    published_rejects = store.read_table(rejects_ref)
    assert published_rejects.schema.equals(REJECTS_SCHEMA)
    assert published_rejects.to_pylist() == [
        {
            "row_index": 2,
            "source_ref": "worker.jsonl:2",
            "reason": "one_of[chat|safety|code|math] (domain)",
            "row_json": json.dumps(rows[2], ensure_ascii=False),
        }
    ]


def test_publish_table_refuses_rows_that_break_the_contract_and_publishes_nothing(
    store: ArtifactStore, root: Path
) -> None:
    rows = pair_rows(0, 3)
    rows[1] = {**rows[1], "chosen": rows[1]["rejected"]}

    with pytest.raises(ValueError, match=r"1 rows break the contract.*differs_from_chosen \(rejected\)"):
        publish_table(store, PREFERENCE_PAIRS, "v1", pa.Table.from_pylist(rows))

    assert store.get(KIND, "v1") is None
    assert store.list() == []
    assert _leftovers(root) == []


def test_publish_table_with_a_missing_column_raises_contract_error_and_publishes_nothing(
    store: ArtifactStore, root: Path
) -> None:
    with pytest.raises(ContractError, match="chosen"):
        publish_table(store, PREFERENCE_PAIRS, "v1", _table().drop_columns(["chosen"]))
    assert store.get(KIND, "v1") is None
    assert _leftovers(root) == []


def test_exception_inside_the_writer_leaves_no_folder_and_no_temporary_leftovers(
    store: ArtifactStore, root: Path
) -> None:
    with (
        pytest.raises(RuntimeError, match="stage failed"),
        store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=2) as writer,
    ):
        writer.write_valid(_table(0, 5))
        assert _leftovers(root), "the writer should be writing into a hidden temporary folder"
        raise RuntimeError("stage failed")

    assert store.get(KIND, "v1") is None
    assert store.list() == []
    assert list((root / KIND).iterdir()) == []


def test_leaving_the_writer_without_commit_publishes_nothing(store: ArtifactStore, root: Path) -> None:
    with store.writer(PREFERENCE_PAIRS, "v1") as writer:
        writer.write_valid(_table())
    assert store.get(KIND, "v1") is None
    assert list((root / KIND).iterdir()) == []


# --- idempotence ------------------------------------------------------------------------------------


def test_publishing_a_version_that_exists_is_a_no_op_that_leaves_files_untouched(
    store: ArtifactStore, root: Path
) -> None:
    first = publish_table(store, PREFERENCE_PAIRS, "v1", _table(0, 5), stats={"run": 1})
    folder = _folder(root, "v1")
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, _sha256(p)) for p in folder.iterdir()}
    time.sleep(0.01)  # a rewrite would now show a different mtime

    second = publish_table(store, PREFERENCE_PAIRS, "v1", _table(100, 9), stats={"run": 2})

    assert second == first
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, _sha256(p)) for p in folder.iterdir()} == before
    assert store.manifest(second)["stats"] == {"run": 1}
    assert store.read_table(second).num_rows == 5
    assert _leftovers(root) == []


def test_a_second_writer_committing_a_published_version_keeps_the_first_and_drops_its_copy(
    store: ArtifactStore, root: Path
) -> None:
    first = publish_table(store, PREFERENCE_PAIRS, "v1", _table(0, 5))
    manifest = store.manifest(first)

    with store.writer(PREFERENCE_PAIRS, "v1") as writer:
        writer.write_valid(_table(100, 9))
        second = writer.commit()

    assert second == first
    assert store.manifest(second) == manifest
    assert store.read_table(second).num_rows == 5
    assert store.verify(second) == []
    assert _leftovers(root) == []


# --- list / find / require ---------------------------------------------------------------------------


def test_list_returns_published_manifests_oldest_first_and_filters_by_kind(store: ArtifactStore, root: Path) -> None:
    publish_table(store, PREFERENCE_PAIRS, "abc123", _table())
    publish_table(store, PREFERENCE_PAIRS, "abd456", _table())
    scores = pa.Table.from_pylist(
        [{"benchmark": "rmb", "level": "headline", "name": "all", "score": 0.5, "count": 2, "error_rate": 0.0}]
    )
    publish_table(store, EVAL_SCORES, "fff000", scores)
    # created_at has one-second resolution: stamp the manifests so the expected order is unambiguous.
    stamps = {("preference_pairs", "abc123"): 3, ("preference_pairs", "abd456"): 1, ("eval_scores", "fff000"): 2}
    for (kind, version), second in stamps.items():
        path = _folder(root, version, kind) / "_manifest.json"
        manifest = json.loads(path.read_text())
        manifest["created_at"] = f"2026-01-01T00:00:0{second}+00:00"
        path.write_text(json.dumps(manifest))

    assert [(m["kind"], m["version"]) for m in store.list()] == [
        ("preference_pairs", "abd456"),
        ("eval_scores", "fff000"),
        ("preference_pairs", "abc123"),
    ]
    assert [m["version"] for m in store.list(KIND)] == ["abd456", "abc123"]
    assert [m["version"] for m in store.list("eval_scores")] == ["fff000"]
    assert store.list("sft_examples") == []


def test_list_ignores_folders_without_a_manifest_and_hidden_folders(store: ArtifactStore, root: Path) -> None:
    publish_table(store, PREFERENCE_PAIRS, "v1", _table())
    (root / KIND / "half-written").mkdir()
    (root / KIND / "half-written" / "part-00000.parquet").write_bytes(b"PAR1")
    (root / KIND / ".tmp-v2-deadbeef").mkdir()
    (root / KIND / ".tmp-v2-deadbeef" / "_manifest.json").write_text("{}")
    (root / ".hidden").mkdir()
    (root / "README.txt").write_text("not a kind")

    assert [(m["kind"], m["version"]) for m in store.list()] == [(KIND, "v1")]
    assert store.get(KIND, "half-written") is None


def test_list_of_a_root_that_does_not_exist_is_empty(tmp_path: Path) -> None:
    assert ArtifactStore(tmp_path / "nowhere").list() == []


def test_find_resolves_a_unique_version_prefix(store: ArtifactStore) -> None:
    ref = publish_table(store, PREFERENCE_PAIRS, "abc123", _table())
    publish_table(store, PREFERENCE_PAIRS, "abd456", _table())

    assert store.find(KIND, "abc") == ref
    assert store.find(KIND, "abc123") == ref
    with pytest.raises(LookupError, match=r"found (abc123, abd456|abd456, abc123)$"):
        store.find(KIND, "ab")
    with pytest.raises(LookupError, match="found none"):
        store.find(KIND, "zz")
    with pytest.raises(LookupError, match="found none"):
        store.find("eval_scores", "abc")


def test_require_raises_file_not_found_for_an_unpublished_version(store: ArtifactStore) -> None:
    assert store.get(KIND, "missing") is None
    with pytest.raises(FileNotFoundError, match="preference_pairs/missing"):
        store.require(KIND, "missing")


# --- store root --------------------------------------------------------------------------------------


def test_store_root_comes_from_rmr1_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RMR1_ARTIFACTS", str(tmp_path / "from-env"))

    store = ArtifactStore()
    ref = publish_table(store, PREFERENCE_PAIRS, "v1", _table())

    assert store.root == str(tmp_path / "from-env")
    assert (tmp_path / "from-env" / KIND / "v1" / "_manifest.json").is_file()
    assert ref.uri == str(tmp_path / "from-env" / KIND / "v1")
    assert not (tmp_path / "artifacts").exists()


def test_store_root_defaults_to_artifacts_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RMR1_ARTIFACTS", raising=False)

    store = ArtifactStore()
    publish_table(store, PREFERENCE_PAIRS, "v1", _table())

    assert store.root == str(tmp_path / "artifacts")
    assert (tmp_path / "artifacts" / KIND / "v1" / "_manifest.json").is_file()


def test_an_empty_rmr1_artifacts_falls_back_to_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RMR1_ARTIFACTS", "")
    assert ArtifactStore().root == str(tmp_path / "artifacts")


def test_an_explicit_root_wins_over_rmr1_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RMR1_ARTIFACTS", str(tmp_path / "from-env"))
    assert ArtifactStore(tmp_path / "explicit").root == str(tmp_path / "explicit")


def test_a_relative_root_is_fixed_when_the_store_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore("rel")
    monkeypatch.chdir(tmp_path.parent)
    publish_table(store, PREFERENCE_PAIRS, "v1", _table())
    assert (tmp_path / "rel" / KIND / "v1" / "_manifest.json").is_file()


# --- fsspec URL roots (memory://) -----------------------------------------------------------------------


@pytest.fixture
def memory_store() -> Iterator[ArtifactStore]:
    url = f"memory://rmr1-test-{uuid.uuid4().hex}"
    store = ArtifactStore(url)
    yield store
    if store.fs.exists(store.root):
        store.fs.rm(store.root, recursive=True)


def test_a_memory_url_root_publishes_and_reads_back(memory_store: ArtifactStore) -> None:
    rows = pair_rows(0, 25)
    with memory_store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=10, config={"k": 1}) as writer:
        writer.write_valid(pa.Table.from_pylist(rows, schema=PREFERENCE_PAIRS.schema))
        ref = writer.commit({"rows_out": 25})

    assert not memory_store.local
    assert ref.uri == f"memory://{memory_store.root}/{KIND}/v1"
    assert memory_store.read_table(ref).to_pylist() == rows
    manifest = memory_store.manifest(ref)
    assert [part["rows"] for part in manifest["files"]] == [10, 10, 5]
    for part in manifest["files"]:
        data = fsspec.filesystem("memory").cat_file(f"{memory_store.root}/{KIND}/v1/{file_key(part)}")
        assert part["sha256"] == hashlib.sha256(data).hexdigest()
    assert memory_store.verify(ref) == []
    assert [m["version"] for m in memory_store.list()] == ["v1"]
    assert memory_store.find(KIND, "v") == ref
    assert publish_table(memory_store, PREFERENCE_PAIRS, "v1", _table()) == ref  # already published: no-op
    assert memory_store.read_table(ref).num_rows == 25


def test_a_memory_url_root_hides_an_artifact_until_its_manifest_is_written(memory_store: ArtifactStore) -> None:
    with memory_store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=2) as writer:
        writer.write_valid(_table(0, 5))
        assert memory_store.fs.exists(f"{writer.folder}/part-00000.parquet")  # a hidden temporary folder
        assert not memory_store.fs.exists(f"{memory_store.root}/{KIND}/v1/part-00000.parquet")
        assert memory_store.get(KIND, "v1") is None
        assert memory_store.list() == []
        ref = writer.commit()
    assert memory_store.get(KIND, "v1") == ref


def test_a_memory_url_root_aborted_writer_leaves_nothing(memory_store: ArtifactStore) -> None:
    with pytest.raises(RuntimeError), memory_store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=2) as writer:
        writer.write_valid(_table(0, 5))
        raise RuntimeError("stage failed")
    assert memory_store.get(KIND, "v1") is None
    assert memory_store.list() == []
    assert not memory_store.fs.exists(f"{memory_store.root}/{KIND}/v1")


def test_a_memory_url_root_failed_writer_never_deletes_an_already_published_version(
    memory_store: ArtifactStore,
) -> None:
    ref = publish_table(memory_store, PREFERENCE_PAIRS, "v1", _table(0, 5))
    with pytest.raises(RuntimeError), memory_store.writer(PREFERENCE_PAIRS, "v1"):
        raise RuntimeError("a concurrent publisher of the same version fails")
    assert memory_store.get(KIND, "v1") == ref
    assert memory_store.read_table(ref).num_rows == 5


# --- real processes: crash, race, readers ------------------------------------------------------------


def test_a_writer_killed_mid_write_publishes_nothing_and_the_version_can_be_published_later(
    store: ArtifactStore, root: Path, tmp_path: Path, children: list[Child]
) -> None:
    child = Child("slow", store.root, "v1", str(tmp_path / "never-released"))
    children.append(child)
    child.wait_for_line("first-batch-written")
    [temporary] = _leftovers(root)
    assert any(p.name.startswith("part-") for p in (root / KIND / temporary).iterdir())

    os.kill(child.proc.pid, signal.SIGKILL)
    assert child.proc.wait(timeout=CHILD_TIMEOUT_S) == -signal.SIGKILL

    assert store.get(KIND, "v1") is None
    assert store.list() == []
    assert store.list(KIND) == []
    assert [p.name for p in (root / KIND).iterdir() if not p.name.startswith(".")] == []

    ref = publish_table(store, PREFERENCE_PAIRS, "v1", _table(0, 4))
    assert store.read_table(ref).to_pylist() == pair_rows(0, 4)
    assert store.verify(ref) == []
    assert [m["version"] for m in store.list()] == ["v1"]


def test_a_reader_never_sees_a_half_written_artifact(
    store: ArtifactStore, root: Path, tmp_path: Path, children: list[Child]
) -> None:
    release = tmp_path / "release"
    child = Child("slow", store.root, "v1", str(release))
    children.append(child)
    child.wait_for_line("first-batch-written")

    for _ in range(5):  # look several times while the child keeps adding batches
        assert store.get(KIND, "v1") is None
        assert store.list() == []
        with pytest.raises(FileNotFoundError):
            store.require(KIND, "v1")
        time.sleep(0.03)
    [temporary] = _leftovers(root)
    assert len([p for p in (root / KIND / temporary).iterdir() if p.name.startswith("part-")]) >= 2

    release.touch()
    result = child.result()

    ref = store.require(KIND, "v1")
    assert ref.uri == result["uri"]
    assert store.read_table(ref).to_pylist() == pair_rows(0, result["rows"])
    assert store.verify(ref) == []
    assert [m["version"] for m in store.list()] == ["v1"]
    assert _leftovers(root) == []


@pytest.mark.parametrize("api", ["publish_table", "writer"])
def test_four_processes_publishing_the_same_version_at_once_leave_exactly_one_artifact(
    store: ArtifactStore, root: Path, tmp_path: Path, children: list[Child], api: str
) -> None:
    go = tmp_path / "go"
    for _ in range(4):
        children.append(Child("race", store.root, "v1", str(go), "--api", api))
    for child in children:
        child.wait_for_line("ready")
    go.touch()
    results = [child.result() for child in children]

    assert {json.dumps(r, sort_keys=True) for r in results} == {
        json.dumps({"kind": KIND, "version": "v1", "uri": f"{store.root}/{KIND}/v1", "rows": 200}, sort_keys=True)
    }
    assert sorted(p.name for p in (root / KIND).iterdir()) == ["v1"]
    ref = store.require(KIND, "v1")
    manifest = store.manifest(ref)
    assert manifest["rows"] == 200
    assert store.verify(ref) == []
    for part in manifest["files"]:
        assert part["sha256"] == _sha256(_folder(root, "v1") / part["path"])
    assert sorted(p.name for p in _folder(root, "v1").iterdir()) == [
        "_manifest.json",
        *[part["path"] for part in manifest["files"]],
    ]
    assert store.read_table(ref).to_pylist() == pair_rows(0, 200)


def test_temporary_folders_of_long_dead_writers_are_cleaned_up_on_the_next_write(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    stale = tmp_path / KIND / ".tmp-v0-deadbeef"
    fresh = tmp_path / KIND / ".tmp-v0-inflight"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "part-00000.parquet").write_bytes(b"half")
    day_ago = time.time() - 25 * 3600
    os.utime(stale, (day_ago, day_ago))
    publish_table(store, PREFERENCE_PAIRS, "v1", _table(0, 3))
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer still at work


# --- folder artifacts (model checkpoints) ---------------------------------------------------------------


def _fill_checkpoint(folder: str, weights: bytes = b"w" * 1000) -> None:
    Path(folder, "config.json").write_text('{"model_type": "qwen2"}')
    Path(folder, "tokenizer_config.json").write_text("{}")
    Path(folder, "model.safetensors").write_bytes(weights)
    Path(folder, "nested").mkdir()
    Path(folder, "nested", "extra.txt").write_text("x")


def test_a_folder_artifact_is_invisible_until_committed_and_lists_every_file_with_its_sha256(
    store: ArtifactStore, root: Path
) -> None:
    with store.folder_writer(SFT_CHECKPOINT, "c1", upstream={"sft_examples": "e1"}, config={"lr": 1}) as writer:
        _fill_checkpoint(writer.path)
        assert Path(writer.path).is_relative_to(root / SFT_CHECKPOINT.kind)  # inside the store: a rename, no copy
        assert store.get(SFT_CHECKPOINT.kind, "c1") is None and store.list() == []
        ref = writer.commit({"steps": 3})
    manifest = store.manifest(ref)
    assert [f["path"] for f in manifest["files"]] == [
        "config.json", "model.safetensors", "nested/extra.txt", "tokenizer_config.json"
    ]  # fmt: skip
    weights = next(f for f in manifest["files"] if f["path"] == "model.safetensors")
    assert weights["sha256"] == hashlib.sha256(b"w" * 1000).hexdigest() and weights["bytes"] == 1000
    assert manifest["upstream"] == {"sft_examples": "e1"} and manifest["stats"] == {"steps": 3}
    assert "rows" not in manifest
    assert store.local_copy(ref) == str(root / SFT_CHECKPOINT.kind / "c1")
    assert store.verify(ref) == []
    (root / SFT_CHECKPOINT.kind / "c1" / "model.safetensors").write_bytes(b"corrupted")
    assert store.verify(ref) == ["model.safetensors"]
    assert _leftovers(root, SFT_CHECKPOINT.kind) == []


def test_a_folder_artifact_missing_a_required_file_is_not_published(store: ArtifactStore, root: Path) -> None:
    missing = pytest.raises(
        FileNotFoundError,
        match=re.escape("sft_checkpoint/c1: tokenizer_config.json, model.safetensors or model.safetensors.index.json"),
    )
    with missing, store.folder_writer(SFT_CHECKPOINT, "c1") as writer:
        Path(writer.path, "config.json").write_text("{}")
        writer.commit()
    assert store.get(SFT_CHECKPOINT.kind, "c1") is None
    assert _leftovers(root, SFT_CHECKPOINT.kind) == []


def test_a_folder_artifact_on_a_memory_url_uploads_its_files_and_downloads_them_verified(
    memory_store: ArtifactStore,
) -> None:
    with memory_store.folder_writer(SFT_CHECKPOINT, "c1") as writer:
        _fill_checkpoint(writer.path, b"abc")
        assert os.path.isdir(writer.path)  # a local scratch folder; nothing uploaded yet
        assert memory_store.get(SFT_CHECKPOINT.kind, "c1") is None
        ref = writer.commit()
    assert not os.path.exists(writer.path)
    assert memory_store.verify(ref) == []
    local = memory_store.local_copy(ref)
    assert Path(local, "model.safetensors").read_bytes() == b"abc"
    assert Path(local, "nested", "extra.txt").read_text() == "x"
    assert local.startswith(os.environ["RMR1_CACHE"])
    shutil.rmtree(local)
    weights = next(e for e in memory_store.manifest(ref)["files"] if e["path"] == "model.safetensors")
    memory_store.fs.pipe_file(f"{memory_store.folder(ref.kind, ref.version)}/{file_key(weights)}", b"tampered")
    with pytest.raises(OSError, match=r"model\.safetensors downloaded from memory://.* does not match its sha256"):
        memory_store.local_copy(ref)
    assert not Path(local).exists() and not [n for n in os.listdir(Path(local).parent) if n.startswith("c1")]
