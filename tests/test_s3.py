"""Artifacts on a real S3-compatible server (moto's server mode on 127.0.0.1, started by the suite) through
s3fs: publish, read, list and lineage; folder artifacts up and down; concurrent publishers of one version
(threads and processes) leave exactly one valid artifact; the smoke recipe through filter on `s3://`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from data_contracts import ArtifactStore
from data_contracts.kinds import PREFERENCE_PAIRS, SFT_CHECKPOINT
from data_contracts.store import ATTEMPT_PREFIX, MANIFEST
from tests.helpers.store_worker import pair_rows

WORKER = Path(__file__).parent / "helpers" / "store_worker.py"
KIND = PREFERENCE_PAIRS.kind


def _table(start: int = 0, count: int = 50) -> pa.Table:
    return pa.Table.from_pylist(pair_rows(start, count), schema=PREFERENCE_PAIRS.schema)


def test_publish_read_list_lineage_and_a_folder_artifact_on_s3(
    s3_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RMR1_CACHE", str(tmp_path / "cache"))  # downloads of remote checkpoints
    store = ArtifactStore(s3_root)
    assert not store.local and store.get(KIND, "v1") is None
    with store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=20) as writer:
        writer.write_valid(_table())
        assert store.get(KIND, "v1") is None  # nothing visible before the manifest
        ref = writer.commit({"rows_out": 50})
    assert ref.uri == f"{s3_root}/{KIND}/v1"
    assert store.read_table(ref).to_pylist() == pair_rows(0, 50)
    assert store.verify(ref) == [] and [p["rows"] for p in store.manifest(ref)["files"]] == [20, 20, 10]
    with store.folder_writer(SFT_CHECKPOINT, "c1-on-s3", upstream={KIND: "v1"}) as folder:
        Path(folder.path, "config.json").write_text("{}")
        Path(folder.path, "model.safetensors").write_bytes(b"weights")
        Path(folder.path, "tokenizer.json").write_text("{}")
        Path(folder.path, "tokenizer_config.json").write_text("{}")
        checkpoint = folder.commit()
    local = store.local_copy(checkpoint)
    assert Path(local, "model.safetensors").read_bytes() == b"weights"
    assert sorted(os.listdir(local)) == [MANIFEST, "config.json", "model.safetensors", "tokenizer.json",
                                         "tokenizer_config.json"]  # fmt: skip
    assert store.local_copy(checkpoint) == local  # downloaded once
    assert [(depth, m["kind"]) for depth, m, _ in store.lineage(checkpoint)] == [(0, SFT_CHECKPOINT.kind), (1, KIND)]
    assert [m["version"] for m in store.list()] == ["v1", "c1-on-s3"]
    assert store.find(KIND, "v") == ref


def _one_artifact(store: ArtifactStore, candidates: list[list[dict[str, object]]]) -> None:
    """One published v1, intact, holding exactly one publisher's rows, and nothing else in its folder."""
    ref = store.require(KIND, "v1")
    assert store.verify(ref) == [] and store.read_table(ref).to_pylist() in candidates
    folder = store.folder(KIND, "v1")
    entries = sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False, refresh=True))
    if store.local:
        assert entries == [MANIFEST, *[p["path"] for p in store.manifest(ref)["files"]]]
    else:  # the winner's attempt only: every loser removed its own
        assert len(entries) == 2 and entries[0] == MANIFEST and entries[1].startswith(ATTEMPT_PREFIX), entries
        assert all(p["key"].startswith(entries[1] + "/") for p in store.manifest(ref)["files"])
    assert [m["version"] for m in store.list(KIND)] == ["v1"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_threads_publishing_one_version_at_once_leave_exactly_one_artifact(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = str(tmp_path / "artifacts") if where == "local" else request.getfixturevalue("s3_root")
    store = ArtifactStore(root)
    writers = [store.writer(PREFERENCE_PAIRS, "v1", config={"writer": k}) for k in range(6)]
    for k, writer in enumerate(writers):  # different rows each, so a mix of two publishers would show
        writer.write_valid(_table(1000 * k, 40 + k))
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def commit(writer) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            writer.commit()
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _one_artifact(store, [pair_rows(1000 * k, 40 + k) for k in range(6)])


def test_processes_publishing_one_version_at_once_on_s3_leave_exactly_one_artifact(
    s3_root: str, s3_server: dict[str, str], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = [sys.executable, str(WORKER), "race", s3_root, "v1", str(go), "--api", "writer"]
    env = {**s3_server, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [child.communicate(timeout=120)[0] for child in children]
    finally:
        for child in children:
            child.kill()
    refs = {json.dumps(json.loads(out.split("ref ", 1)[1]), sort_keys=True) for out in outputs}
    assert len(refs) == 1 and all(child.returncode == 0 for child in children)
    _one_artifact(ArtifactStore(s3_root), [pair_rows(0, 200)])


def test_the_smoke_recipe_through_sft_on_s3_skips_on_a_re_run_and_reads_its_lineage_back(
    s3_root: str, s3_server: dict[str, str], prefect_server: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`rmr1 run --artifacts s3://...`: every artifact (tables and the SFT checkpoint folder) on the S3 server,
    a re-run that publishes nothing, and the lineage read back from S3. The runs report to the session's
    Prefect server (tests/test_cli.py shows that skipping does not rest on Prefect's state)."""
    from flows.cli import main as rmr1
    from tests.conftest import ROOT, TINY_TRAINING

    monkeypatch.setenv("RMR1_CACHE", str(tmp_path / "cache"))  # checkpoint downloads: this test's own
    env = {**s3_server, "PREFECT_HOME": str(tmp_path / "prefect-home"), "RMR1_CACHE": str(tmp_path / "cache"),
           "PREFECT_API_URL": prefect_server["PREFECT_API_URL"]}  # fmt: skip
    env.pop("RMR1_ARTIFACTS", None)
    overrides = [arg for setting in [*TINY_TRAINING, "pull.sources.0.rows=80"] for arg in ("--set", setting)]
    command = [sys.executable, "-m", "flows.cli", "run", "--recipe", str(ROOT / "recipes" / "smoke.yaml"), "--to",
               "sft", "--artifacts", s3_root, *overrides]  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    store = ArtifactStore(s3_root)
    kinds = {m["kind"]: m["version"] for m in store.list()}
    assert {"preference_pairs", "teacher_traces", "sft_examples", "filter_rejects", "sft_checkpoint"} <= set(kinds)
    assert not (tmp_path / "artifacts").exists()  # nothing written to a local root
    checkpoint = store.require("sft_checkpoint", kinds["sft_checkpoint"])
    assert store.verify(checkpoint) == []
    assert Path(store.local_copy(checkpoint), "config.json").is_file()  # the uploaded weights come back whole
    chain = [m["kind"] for _, m, _ in store.lineage(checkpoint)]
    assert chain[0] == "sft_checkpoint" and "sft_examples" in chain and "preference_pairs" in chain
    assert rmr1(["plan", *command[4:]]) == 0  # in this process: `plan` and `artifacts` start no flow
    plan = capsys.readouterr().out
    assert "will run" not in plan and "sft_checkpoint/" in plan, plan
    created = {m["version"]: m["created_at"] for m in store.list()}
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert {m["version"]: m["created_at"] for m in ArtifactStore(s3_root).list()} == created  # nothing new
    assert rmr1(["artifacts", "--artifacts", s3_root, "--lineage", "sft_checkpoint"]) == 0
    assert f"sft_checkpoint/{kinds['sft_checkpoint']}" in capsys.readouterr().out


def test_gc_on_s3_removes_only_the_files_the_removed_manifest_listed(s3_root: str) -> None:
    """Retention on S3: the old version's manifest and attempt go; a publish of that version in progress at the
    same moment (its own attempt, no manifest yet) is left alone, and the kept version is intact."""
    from data_contracts.retention import collect, plan_retention

    store = ArtifactStore(s3_root)
    with store.writer(PREFERENCE_PAIRS, "old") as writer:
        writer.write_valid(_table(0, 10))
        writer.commit()
    time.sleep(1.1)  # created_at has whole seconds: "new" is newer
    with store.writer(PREFERENCE_PAIRS, "new") as writer:
        writer.write_valid(_table(100, 10))
        writer.commit()
    racing = f"{store.folder(KIND, 'old')}/{ATTEMPT_PREFIX}racing/part-00000.parquet"
    store.fs.pipe_file(racing, b"a publisher's file, its manifest not created yet")
    removals = collect(store, plan_retention(store.list(), 1))
    assert [(r.kind, r.version) for r in removals] == [(KIND, "old")] and removals[0].bytes > 0
    store.fs.invalidate_cache()
    assert store.get(KIND, "old") is None and store.fs.exists(racing)
    assert store.fs.ls(store.folder(KIND, "old"), detail=False) == [
        store.folder(KIND, "old") + f"/{ATTEMPT_PREFIX}racing"
    ]
    assert store.read_table(store.require(KIND, "new")).to_pylist() == pair_rows(100, 10)


def test_a_manifest_create_retried_after_it_succeeded_keeps_the_artifact(
    s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create's answer is lost and the retry meets our own manifest (FileExistsError): we won, and our files
    stay. A store that refuses the conditional create altogether is named in the error."""
    store = ArtifactStore(s3_root)
    create, calls = store.fs.pipe_file, []

    def created_then_lost(path, value, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(path)
        create(path, value, **kwargs)
        raise FileExistsError(path)  # what the retried request reports

    monkeypatch.setattr(store.fs, "pipe_file", created_then_lost)
    with store.writer(PREFERENCE_PAIRS, "v1") as writer:
        writer.write_valid(_table(0, 10))
        ref = writer.commit()
    assert calls and store.verify(ref) == [] and store.read_table(ref).to_pylist() == pair_rows(0, 10)

    def refused(path, value, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(store.fs, "pipe_file", refused)
    with pytest.raises(OSError, match="needs conditional creates"), store.writer(PREFERENCE_PAIRS, "v2") as writer:
        writer.write_valid(_table(0, 10))
        writer.commit()


def _kill_at(point: str, root: str, version: str, env: dict[str, str]) -> None:
    """A publisher of `version` SIGKILLed at `point` (tests/helpers/store_worker.py `die`)."""
    command = [sys.executable, str(WORKER), "die", root, version, point]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "at-point", point
    finally:
        child.kill()  # SIGKILL: no `finally`, no abort
        child.wait(timeout=30)


def test_gc_sweeps_what_killed_publishers_left_and_nothing_else(
    s3_root: str, s3_server: dict[str, str], tmp_path: Path
) -> None:
    """Publishers SIGKILLed mid-write, mid-move and before the manifest, and a race loser that died before
    removing its files: gc finds each leftover once it is older than the litter age, reports sizes, --dry-run
    removes nothing, the real run removes them all; the published artifacts stay intact and readable, and a
    publish in progress at that moment (writing every 20 ms) is untouched and publishes afterwards."""
    from data_contracts.retention import find_litter, parse_age
    from flows.cli import main as rmr1

    store = ArtifactStore(s3_root)
    env = {**s3_server, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with store.writer(PREFERENCE_PAIRS, "kept") as writer:
        writer.write_valid(_table(0, 10))
        kept = writer.commit()
    for point in ("mid-write", "mid-move", "before-manifest"):
        _kill_at(point, s3_root, point, env)
    loser = f"{store.folder(KIND, 'kept')}/{ATTEMPT_PREFIX}deadbeef0000/part-00000.parquet"
    store.fs.pipe_file(loser, b"a race loser's part, never listed")
    release = tmp_path / "release"
    live = subprocess.Popen([sys.executable, str(WORKER), "slow", s3_root, "live", str(release)],
                            stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "first-batch-written"
        time.sleep(5.5)  # the dead ones' files are older than the 4 s litter age (S3 times are whole seconds)

        gc = ["artifacts", "gc", "--keep", "5", "--litter-age", "4s", "--artifacts", s3_root]
        assert rmr1([*gc, "--dry-run"]) == 0
        store.fs.invalidate_cache()
        leftovers = find_litter(store, parse_age("4s"))
        assert {item.what for item in leftovers} == {"temporary folder", "unlisted attempt"}
        paths = {item.path for item in leftovers}
        assert any(p.startswith(f"{KIND}/.tmp-mid-write-") for p in paths)  # the killed writer's parts
        assert any(p.startswith(f"{KIND}/.tmp-mid-move-") for p in paths)  # the parts not moved yet
        assert any(p.startswith(f"{KIND}/mid-move/{ATTEMPT_PREFIX}") for p in paths)  # the part moved
        assert any(p.startswith(f"{KIND}/before-manifest/{ATTEMPT_PREFIX}") for p in paths)
        assert f"{KIND}/kept/{ATTEMPT_PREFIX}deadbeef0000" in paths
        assert not any("live" in p for p in paths)  # a publish in progress is never litter
        assert len(paths) == 5 and all(item.bytes > 0 for item in leftovers)

        assert rmr1(gc) == 0
        store.fs.invalidate_cache()
        later = time.time() + 3600  # as if an hour from now: all that is left is the live writer's folder
        remaining = find_litter(store, parse_age("0s"), now=later)
        assert [item.path.startswith(f"{KIND}/.tmp-live-") for item in remaining] == [True]
        release.touch()
        assert live.wait(timeout=60) == 0
    finally:
        live.kill()
    store.fs.invalidate_cache()
    assert store.verify(kept) == [] and store.read_table(kept).to_pylist() == pair_rows(0, 10)
    assert store.read_table(store.require(KIND, "live")).num_rows >= 5
    assert {m["version"] for m in store.list()} == {"kept", "live"}
    assert find_litter(store, parse_age("0s")) == []
