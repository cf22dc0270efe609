"""Retention (`rmr1 artifacts gc`): the newest versions of each kind and their whole lineage stay, the rest go.

Every artifact is published by the test through the store's writers, with upstream links; each one's age is
then set in its manifest's `created_at` (the store stamps seconds, and the tests need days between versions).
The CLI runs in a real child process; the object-store case runs on fsspec's in-memory filesystem.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pytest

from data_contracts import ArtifactStore, publish_table
from data_contracts.kinds import DISTILL_SET, FILTER_REJECTS, PREFERENCE_PAIRS, SFT_CHECKPOINT
from data_contracts.retention import BadRetention, collect, parse_age, plan_retention
from data_contracts.store import MANIFEST
from tasks.llm.cache import CachedAnswer, RequestCache, default_cache_path
from tests.conftest import ROOT
from tests.helpers.store_worker import pair_rows

NOW = dt.datetime.now(dt.UTC)

# (kind, version, days old, upstream): p = preference_pairs, d = distill_set, c = sft_checkpoint.
# The newest of each kind are p3, d2, c2; d2 was built from the old p0 and c2 from d1 (built from p1).
ARTIFACTS: list[tuple[str, str, int, dict[str, str]]] = [
    ("preference_pairs", "p0", 20, {}),
    ("preference_pairs", "p1", 18, {}),
    ("distill_set", "d0", 17, {"preference_pairs": "p0"}),
    ("sft_checkpoint", "c0", 16, {"distill_set": "d0"}),
    ("preference_pairs", "p2", 15, {}),
    ("distill_set", "d1", 14, {"preference_pairs": "p1"}),
    ("sft_checkpoint", "c1", 12, {"distill_set": "d1"}),
    ("distill_set", "d2", 3, {"preference_pairs": "p0"}),
    ("preference_pairs", "p3", 2, {}),
    ("sft_checkpoint", "c2", 1, {"distill_set": "d1"}),
]
REMOVED_AT_KEEP_1 = [
    ("preference_pairs", "p2"),
    ("distill_set", "d0"),
    ("sft_checkpoint", "c0"),
    ("sft_checkpoint", "c1"),
]


def _set_age(store: ArtifactStore, kind: str, version: str, days: float) -> None:
    path = f"{store.folder(kind, version)}/{MANIFEST}"
    with store.fs.open(path, "r") as handle:
        manifest = json.load(handle)
    manifest["created_at"] = (NOW - dt.timedelta(days=days)).isoformat(timespec="seconds")
    with store.fs.open(path, "w") as handle:
        json.dump(manifest, handle)


def _publish(store: ArtifactStore, kind: str, version: str, upstream: dict[str, str], start: int) -> None:
    if kind == PREFERENCE_PAIRS.kind:
        table = pa.Table.from_pylist(pair_rows(start, 4), schema=PREFERENCE_PAIRS.schema)
        publish_table(store, PREFERENCE_PAIRS, version, table, upstream=upstream)
    elif kind == DISTILL_SET.kind:
        with store.writer(DISTILL_SET, version, upstream=upstream) as writer:
            writer.commit()  # an empty artifact still has a part with its schema
    else:
        with store.folder_writer(SFT_CHECKPOINT, version, upstream=upstream) as writer:
            for name in ("config.json", "tokenizer_config.json"):
                Path(writer.path, name).write_text("{}")
            Path(writer.path, "model.safetensors").write_bytes(os.urandom(10_000 + start))
            writer.commit()


def _populate(store: ArtifactStore) -> None:
    for index, (kind, version, days, upstream) in enumerate(ARTIFACTS):
        _publish(store, kind, version, upstream, start=10 * index)
        _set_age(store, kind, version, days)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    store = ArtifactStore(tmp_path / "artifacts")
    _populate(store)
    return store


def _published(store: ArtifactStore) -> set[tuple[str, str]]:
    return {(m["kind"], m["version"]) for m in store.list()}


def _lineage_closure_of_newest(store: ArtifactStore, keep: int) -> set[tuple[str, str]]:
    """What must stay, computed through the store's own lineage walk, not the planner."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for manifest in store.list():
        by_kind.setdefault(manifest["kind"], []).append(manifest)
    closure = set()
    for manifests in by_kind.values():
        for manifest in manifests[::-1][:keep]:  # list() is oldest first
            for _, ancestor, _ in store.lineage(store.require(manifest["kind"], manifest["version"])):
                closure.add((ancestor["kind"], ancestor["version"]))
    return closure


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in sorted(root.rglob("*"))}


def rmr1(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RMR1_ARTIFACTS", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("keep", [1, 2])
def test_gc_keeps_exactly_the_lineage_closure_of_the_newest_versions_of_each_kind(
    store: ArtifactStore, keep: int
) -> None:
    expected = _lineage_closure_of_newest(store, keep)
    before = _published(store)
    plan = plan_retention(store.list(), keep)
    removals = collect(store, plan)
    assert _published(store) == expected
    assert {(r.kind, r.version) for r in removals} == before - expected
    if keep == 1:  # the example spelled out: the old p0 and d1/p1 stay because c2 and d2 were built from them
        assert expected == {("preference_pairs", v) for v in ("p0", "p1", "p3")} | {
            ("distill_set", "d1"),
            ("distill_set", "d2"),
            ("sft_checkpoint", "c2"),
        }
    for manifest in store.list():  # every kept artifact still reads back, lineage and all
        ref = store.require(manifest["kind"], manifest["version"])
        assert store.verify(ref) == []
        assert len(store.lineage(ref)) >= 1


def test_gc_of_one_kind_leaves_the_other_kinds_and_what_they_were_built_from(store: ArtifactStore) -> None:
    collect(store, plan_retention(store.list(), 1, kind="preference_pairs"))
    published = _published(store)
    assert {v for k, v in published if k == "preference_pairs"} == {"p0", "p1", "p3"}  # p2: no one built from it
    assert {v for k, v in published if k != "preference_pairs"} == {"d0", "d1", "d2", "c0", "c1", "c2"}


def test_older_than_removes_only_artifacts_older_than_the_age(store: ArtifactStore) -> None:
    collect(store, plan_retention(store.list(), 0, older_than=parse_age("13d")))
    published = _published(store)
    # Younger than 13 days: c1 (12), d2 (3), p3 (2), c2 (1); then their upstream: d1, p1 (c1, c2) and p0 (d2).
    assert published == {
        ("sft_checkpoint", "c1"),
        ("sft_checkpoint", "c2"),
        ("distill_set", "d1"),
        ("distill_set", "d2"),
        ("preference_pairs", "p0"),
        ("preference_pairs", "p1"),
        ("preference_pairs", "p3"),
    }


def test_a_publish_in_progress_and_the_scratch_are_never_touched(store: ArtifactStore) -> None:
    root = Path(store.root)
    writer = store.writer(DISTILL_SET, "d9", upstream={"preference_pairs": "p2"})  # open: its temporary folder
    temporary = Path(writer.folder)
    old = time.time() - 30 * 86400
    os.utime(temporary, (old, old))
    unpublished = root / "preference_pairs" / "p9"  # a version folder without a manifest
    unpublished.mkdir()
    (unpublished / "part-00000.parquet").write_bytes(b"half")
    scratch = Path(store.work_dir("sft", "c9"))
    (scratch / "checkpoint-1").mkdir()
    try:
        collect(store, plan_retention(store.list(), 0))
        assert store.list() == []
        assert temporary.is_dir() and unpublished.is_dir() and (scratch / "checkpoint-1").is_dir()
        assert (unpublished / "part-00000.parquet").read_bytes() == b"half"
        assert [p.name for p in (root / "distill_set").iterdir()] == [temporary.name]
    finally:
        writer.abort()


def test_gc_on_an_object_store_root_removes_manifest_and_files(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    store = ArtifactStore(f"memory://gc-{tmp_path.name}/artifacts")
    try:
        _populate(store)
        expected = _lineage_closure_of_newest(store, 1)
        removals = collect(store, plan_retention(store.list(), 1))
        assert _published(store) == expected
        assert all(r.bytes > 0 for r in removals)
        for removal in removals:
            assert not fs.exists(store.folder(removal.kind, removal.version))
    finally:
        fs.rm(f"/gc-{tmp_path.name}", recursive=True)


def _leftovers(root: Path) -> tuple[Path, Path]:
    """A killed writer's temporary folder from two days ago, and one a writer is filling now."""
    kind = next(p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith("."))
    old, new = kind / ".tmp-v9-0123abcd", kind / ".tmp-v9-4567cdef"
    for folder in (old, new):
        folder.mkdir()
        (folder / "part-00000.parquet").write_bytes(b"x" * 1000)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old / "part-00000.parquet", (two_days_ago, two_days_ago))
    return old, new


def test_cli_dry_run_prints_the_removals_and_changes_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    root = Path(store.root)
    old, new = _leftovers(root)
    before = _tree(root)
    result = rmr1("artifacts", "gc", "--keep", "1", "--dry-run", "--artifacts", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _tree(root) == before
    lines = result.stdout.splitlines()
    for kind, version in REMOVED_AT_KEEP_1:
        assert any(line.startswith(f"would remove {kind}/{version} ") for line in lines), result.stdout
    assert lines[len(REMOVED_AT_KEEP_1) + 1].startswith("4 to remove, 6 kept; would free ")  # then the leftovers
    leftover = f"would remove {old.parent.name}/{old.name}  (temporary folder, 1000 B, 48.0 h old)"
    assert leftover in lines and not any(new.name in line for line in lines)
    assert lines[-1] == "1 leftover(s) of killed writers to remove; 1000 B (1000 bytes)"


def test_cli_gc_removes_and_reports_each_size_and_the_total(store: ArtifactStore, tmp_path: Path) -> None:
    root = Path(store.root)
    sizes = {
        (kind, version): sum(p.stat().st_size for p in (root / kind / version).rglob("*") if p.is_file())
        for kind, version in REMOVED_AT_KEEP_1
    }
    old, new = _leftovers(root)
    result = rmr1("artifacts", "gc", "--keep", "1", "--artifacts", str(root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for (kind, version), size in sizes.items():
        assert f"removed {kind}/{version} " in result.stdout and f"({size} bytes)" in result.stdout
        assert not (root / kind / version).exists()
    summary = result.stdout.splitlines()[len(REMOVED_AT_KEEP_1) + 1]
    assert summary.startswith("4 removed, 6 kept; freed ") and summary.endswith(f"({sum(sizes.values())} bytes)")
    assert not old.exists() and new.exists()  # the fresh one may be a writer at work
    assert result.stdout.splitlines()[-1] == "1 leftover(s) of killed writers removed; 1000 B (1000 bytes)"
    assert _published(store) == _lineage_closure_of_newest(store, 1)


def test_cli_gc_names_what_to_fix(tmp_path: Path) -> None:
    no_keep = rmr1("artifacts", "gc", "--artifacts", str(tmp_path / "a"), cwd=tmp_path)
    assert no_keep.returncode == 2 and "--keep N" in no_keep.stderr
    bad_age = rmr1("artifacts", "gc", "--keep", "1", "--older-than", "7days", cwd=tmp_path)
    assert bad_age.returncode == 2 and "--older-than '7days'" in bad_age.stderr
    _populate(ArtifactStore(tmp_path / "b"))
    typo = rmr1("artifacts", "gc", "--keep", "1", "--kind", "sft_chekpoint", "--artifacts", str(tmp_path / "b"),
                cwd=tmp_path)  # fmt: skip
    assert typo.returncode == 2 and "nothing of that kind" in typo.stderr and "sft_checkpoint" in typo.stderr
    with pytest.raises(BadRetention, match="--keep -1"):
        plan_retention([], -1)
    assert parse_age("12h") == dt.timedelta(hours=12) and parse_age("7d") == dt.timedelta(days=7)


def _rejects(store: ArtifactStore, version: str, request_ids: list[str], days: float) -> None:
    rows = [
        {"pair_id": f"pair-{r}", "request_id": r, "teacher_pass": 1, "teacher_model": "m", "domain": "chat",
         "source": "s", "reason": "verdict disagrees with the label"}
        for r in request_ids
    ]  # fmt: skip
    publish_table(store, FILTER_REJECTS, version, pa.Table.from_pylist(rows, schema=FILTER_REJECTS.schema))
    _set_age(store, FILTER_REJECTS.kind, version, days)


def test_compact_cache_drops_old_answers_no_kept_artifact_names(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    _rejects(store, "fr0", ["r0", "r1"], days=20)
    _rejects(store, "fr1", ["r2"], days=10)
    month_ago = time.time() - 30 * 86400
    with RequestCache(default_cache_path(store, None)) as cache:
        for request_id, created_at in [("r0", month_ago), ("r1", month_ago), ("r2", month_ago), ("r3", month_ago),
                                       ("r4", time.time())]:  # fmt: skip
            cache.put(CachedAnswer(request_id, "answer", "stop", 1, 1, "m", created_at))
    args = ("artifacts", "gc", "--keep", "1", "--older-than", "7d", "--compact-cache", "--artifacts", str(store.root))
    dry = rmr1(*args, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1].endswith(": 3 answers to remove")
    with RequestCache(default_cache_path(store, None)) as cache:
        assert len(cache) == 5
    result = rmr1(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removed filter_rejects/fr0 " in result.stdout
    assert result.stdout.splitlines()[-1].endswith(": 3 answers removed")
    with RequestCache(default_cache_path(store, None)) as cache:
        assert set(cache.get_many(["r0", "r1", "r2", "r3", "r4"])) == {"r2", "r4"}  # kept fr1's, and the young one
    refused = rmr1("artifacts", "gc", "--keep", "1", "--compact-cache", "--artifacts", str(store.root), cwd=tmp_path)
    assert refused.returncode == 2 and "--compact-cache needs --older-than" in refused.stderr


def test_the_gc_flow_removes_the_same_artifacts_and_leaves_its_report_in_prefect(
    store: ArtifactStore, prefect_server: dict[str, str]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.maintenance import artifacts_gc_flow
    from tests.helpers.prefect_runs import artifact_of

    expected = _lineage_closure_of_newest(store, 1)
    with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        state = artifacts_gc_flow(keep=1, artifacts=store.root, return_state=True)
        summary = state.result()
        report = artifact_of(state, "artifacts-gc")
    assert _published(store) == expected
    assert summary["removed"] == len(REMOVED_AT_KEEP_1) and summary["kept"] == len(expected)
    assert report is not None and "removed sft_checkpoint/c0 " in str(report.data)
    assert f"({summary['bytes_freed']} bytes)" in str(report.data)
