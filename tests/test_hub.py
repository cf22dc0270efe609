"""Hub references resolved when the plan is made, against a real HTTP server on 127.0.0.1 (the fake Hub):
a branch becomes its commit sha, the version follows the commit, the steps load that commit, and offline
a branch is a clear error while a pinned sha needs no network at all."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import ArtifactStore
from data_contracts.errors import UserError
from flows.cli import main
from flows.plan import make_plan, pin
from flows.recipe import load_recipe
from tasks.hub import HubRevisionNotFound, HubRevisions, HubUnreachable, is_commit_sha, is_hub_repo, resolve_revision
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.stage import pull_version
from tasks.train.config import StudentConfig, versioned_student
from tests.conftest import ROOT
from tests.helpers.fake_hub import FakeHub

SMOKE = ROOT / "recipes" / "smoke.yaml"
LENGTH_BASELINE = ROOT / "recipes" / "eval-length-baseline.yaml"
DATA_FILE = "data/train-00000-of-00001.parquet"
HUB_SOURCE = "pull.sources=[{name: prefs, adapter: skywork, hub_id: org/prefs, revision: REV}]"


def parquet(rows: list[dict[str, object]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def skywork_rows(tag: str, count: int) -> list[dict[str, object]]:
    """Preference pairs in Skywork's layout whose questions say which commit they came from."""
    return [
        {"chosen": [{"role": "user", "content": f"{tag} question {i}"}, {"role": "assistant", "content": f"good {i}"}],
         "rejected": [{"role": "user", "content": f"{tag} question {i}"}, {"role": "assistant", "content": f"bad {i}"}],
         "source": "test"}
        for i in range(count)
    ]  # fmt: skip


def dead_endpoint() -> str:
    """A 127.0.0.1 URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# ---------------------------------------------------------------- resolving one revision


def test_a_full_sha_is_pinned_already_and_asks_the_hub_nothing(fake_hub: FakeHub) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert is_commit_sha(sha) and not is_commit_sha("main") and not is_commit_sha("0123456") and not is_commit_sha(None)
    assert resolve_revision("org/prefs", sha, "dataset") == sha
    assert fake_hub.requests == []


def test_a_branch_or_tag_resolves_to_its_commit_through_the_revision_endpoints(fake_hub: FakeHub) -> None:
    dataset = fake_hub.commit("dataset", "org/prefs", {DATA_FILE: parquet(skywork_rows("one", 2))})
    model = fake_hub.commit("model", "org/student", {"config.json": b"{}"}, branch="v1.0")
    assert resolve_revision("org/prefs", "main", "dataset") == dataset
    assert resolve_revision("org/student", "v1.0", "model") == model
    assert fake_hub.requests == [
        "GET /api/datasets/org/prefs/revision/main", "GET /api/models/org/student/revision/v1.0",
    ]  # fmt: skip


def test_a_repo_or_revision_the_hub_does_not_know_is_a_clear_user_error(fake_hub: FakeHub) -> None:
    fake_hub.commit("dataset", "org/prefs", {DATA_FILE: b""})
    with pytest.raises(HubRevisionNotFound, match=r"Hub dataset org/missing at revision 'main': .* no such dataset"):
        resolve_revision("org/missing", "main", "dataset")
    with pytest.raises(HubRevisionNotFound, match=r"Hub dataset org/prefs at revision 'nightly': .* no such branch"):
        resolve_revision("org/prefs", "nightly", "dataset")
    with pytest.raises(HubRevisionNotFound, match=r"Hub model org/prefs at revision 'main'"):
        resolve_revision("org/prefs", "main", "model")  # a dataset is not a model
    assert issubclass(HubRevisionNotFound, UserError)


def test_offline_a_branch_is_an_error_that_says_to_pin_the_sha(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.commit("dataset", "org/prefs", {DATA_FILE: b""})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub was imported: read at call time
    with pytest.raises(HubUnreachable, match=r"org/prefs at revision 'main': .*offline .*pin the commit sha in the"):
        resolve_revision("org/prefs", "main", "dataset")
    assert fake_hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())  # no connection
    with pytest.raises(HubUnreachable, match=r"org/prefs at revision 'main': cannot reach http://127.0.0.1:\d+ \("):
        resolve_revision("org/prefs", "main", "dataset")


def test_one_plan_asks_once_per_repo_and_revision_and_the_next_plan_asks_again(fake_hub: FakeHub) -> None:
    first = fake_hub.commit("dataset", "org/prefs", {DATA_FILE: parquet(skywork_rows("one", 2))})
    source = SourceConfig(name="prefs", adapter="skywork", hub_id="org/prefs", revision="main")
    hub = HubRevisions()
    pinned = hub.pin(source, "org/prefs", "dataset")
    assert (pinned.revision, pinned.requested_revision) == (first, "main")
    assert hub.pin(source, "org/prefs", "dataset") == pinned and hub.pin(pinned, "org/prefs", "dataset") == pinned
    assert len(fake_hub.calls("GET /api/datasets/org/prefs/revision/")) == 1
    assert hub.pinned() == [("dataset", "org/prefs", "main", first)]
    moved = fake_hub.commit("dataset", "org/prefs", {DATA_FILE: parquet(skywork_rows("two", 2))})
    assert HubRevisions().pin(source, "org/prefs", "dataset").revision == moved


def test_hub_ids_and_local_paths_are_told_apart(tmp_path: Path) -> None:
    assert is_hub_repo("Qwen/Qwen2.5-7B-Instruct") and is_hub_repo("gpt2")
    assert not is_hub_repo(str(tmp_path)) and not is_hub_repo("/models/qwen") and not is_hub_repo("a/b/c")


# ---------------------------------------------------------------- versions and the plan


def test_a_branch_and_its_commit_give_one_version_and_a_pinned_recipe_keeps_its_own(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = fake_hub.commit("dataset", "org/prefs", {DATA_FILE: parquet(skywork_rows("one", 2))})
    store = ArtifactStore(tmp_path / "artifacts")
    by_branch = make_plan(load_recipe(SMOKE, [HUB_SOURCE.replace("REV", "main")]), store, to_stage="pull")
    [source] = by_branch.recipe.pull.sources
    assert (source.revision, source.requested_revision) == (sha, "main")
    assert by_branch.pinned == (("dataset", "org/prefs", "main", sha),)

    # Offline, with no Hub at all: a recipe pinning the sha plans with no network and gets the same version,
    # the very version the sha always had (requested_revision is not versioned).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    asked = len(fake_hub.requests)
    by_sha = make_plan(load_recipe(SMOKE, [HUB_SOURCE.replace("REV", sha)]), store, to_stage="pull")
    assert len(fake_hub.requests) == asked and by_sha.pinned == ()
    assert by_sha.recipe.pull.sources[0].requested_revision is None
    assert by_sha.step("pull").versions == by_branch.step("pull").versions
    unresolved = SourceConfig(name="prefs", adapter="skywork", hub_id="org/prefs", revision=sha)
    assert by_sha.step("pull").versions == {"preference_pairs": pull_version(PullConfig(sources=(unresolved,)))}
    with pytest.raises(HubUnreachable, match="org/prefs at revision 'main'"):
        make_plan(load_recipe(SMOKE, [HUB_SOURCE.replace("REV", "main")]), store, to_stage="pull")


def test_plan_shows_the_student_branch_and_the_commit_it_resolved_to(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = fake_hub.commit("model", "org/student-7b", {"config.json": b"{}"})
    args = ["plan", "--recipe", str(SMOKE), "--artifacts", str(tmp_path), "--set", "student.model=org/student-7b"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"  model   org/student-7b@main → {sha}" in out  # no revision: the default branch
    assert fake_hub.requests == ["GET /api/models/org/student-7b/revision/main"]  # sft and rl: asked once

    recipe = load_recipe(SMOKE, ["student.model=org/student-7b", "student.revision=main"])
    plan = make_plan(recipe, ArtifactStore(tmp_path))
    assert (plan.recipe.student.revision, plan.recipe.student.requested_revision) == (sha, "main")
    pinned = load_recipe(SMOKE, ["student.model=org/student-7b", f"student.revision={sha}"])
    assert make_plan(pinned, ArtifactStore(tmp_path)).step("sft").versions == plan.step("sft").versions
    assert versioned_student(plan.recipe.student) == versioned_student(StudentConfig("org/student-7b", sha))

    # rl starting from the SFT checkpoint does not read the student: pinning rl alone asks nothing.
    asked = len(fake_hub.requests)
    assert pin(recipe, ["rl"], HubRevisions()).student.revision == "main" and len(fake_hub.requests) == asked
    assert pin(recipe, ["sft"], HubRevisions()).student.revision == sha

    # Stages not in the plan are not resolved: pulling needs no Hub for the student, even offline.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main([*args, "--to", "pull"]) == 0
    assert "Hub revisions" not in capsys.readouterr().out
    assert main(args) == 1
    assert "Hub model org/student-7b at revision 'main': cannot resolve" in capsys.readouterr().err


def test_the_lineage_names_the_branch_and_the_commit_of_a_hub_student_and_judge() -> None:
    from flows.cli import _sources

    sha = "0123456789abcdef0123456789abcdef01234567"
    student = {"model": "org/student-7b", "revision": sha, "requested_revision": "main"}
    assert _sources({"student": student, "sft": {}}) == f"  student: org/student-7b@main → {sha}"
    judge = {"model": "org/judge", "revision": sha, "requested_revision": None}
    benchmark = {"name": "rewardbench", "hub_id": "org/rb", "revision": sha, "requested_revision": "v2"}
    assert _sources({"judge": judge, "benchmarks": [benchmark]}) == (
        f"  sources: rewardbench (org/rb@v2 → {sha})  judge: org/judge@{sha}"
    )
    assert _sources({"student": {"model": "tiny", "revision": None}}) == ""  # no Hub model


def test_evaluate_pins_its_hub_benchmark_and_a_hub_judge_model(fake_hub: FakeHub, tmp_path: Path) -> None:
    benchmark = fake_hub.commit("dataset", "org/reward-bench", {"data/filtered-00000-of-00001.parquet": b""})
    judge = fake_hub.commit("model", "org/judge", {"config.json": b"{}"}, branch="v2")
    hub_benchmark = "evaluate.benchmarks=[{name: rewardbench, hub_id: org/reward-bench, revision: main}]"
    store = ArtifactStore(tmp_path)
    baseline = make_plan(load_recipe(LENGTH_BASELINE, [hub_benchmark]), store)
    assert baseline.pinned == (("dataset", "org/reward-bench", "main", benchmark),)  # the length judge has no model
    overrides = [hub_benchmark, "evaluate.judge.backend=hf", "evaluate.judge.model=org/judge"]
    plan = make_plan(load_recipe(LENGTH_BASELINE, [*overrides, "evaluate.judge.revision=v2"]), store)
    config = plan.recipe.evaluate
    assert (config.judge.revision, config.judge.requested_revision) == (judge, "v2")
    assert (config.benchmarks[0].revision, config.benchmarks[0].requested_revision) == (benchmark, "main")
    assert len(fake_hub.calls("GET /api/datasets/")) == 2 and len(fake_hub.calls("GET /api/models/")) == 1
    by_sha = [f"evaluate.benchmarks.0.revision={benchmark}", f"evaluate.judge.revision={judge}"]
    pinned = make_plan(load_recipe(LENGTH_BASELINE, [*overrides, *by_sha]), store)
    assert pinned.step("evaluate").versions == plan.step("evaluate").versions
    assert pinned.recipe == load_recipe(LENGTH_BASELINE, [*overrides, *by_sha])  # nothing to resolve


# ---------------------------------------------------------------- the scheduled run, through the CLI


@pytest.fixture
def prefect_home(prefect_server: dict[str, str]) -> dict[str, str]:
    """The module's CLI runs report to the session's Prefect server (no ephemeral server started per run)."""
    return {"PREFECT_HOME": prefect_server["PREFECT_HOME"], "PREFECT_API_URL": prefect_server["PREFECT_API_URL"]}


def rmr1(
    *args: str, cwd: Path, prefect_home: dict[str, str], hub: FakeHub, **env: str
) -> subprocess.CompletedProcess[str]:
    """`rmr1 ...` in a fresh process whose Hub is the fake one, with its own Hugging Face caches."""
    environment = {**os.environ, **prefect_home, "HF_ENDPOINT": hub.url,
                   "HF_HOME": str(cwd / "hf-home"), "HF_DATASETS_CACHE": str(cwd / "hf-datasets"), **env}  # fmt: skip
    environment.pop("RMR1_ARTIFACTS", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def published(root: Path, kind: str) -> dict[str, dict[str, object]]:
    """The manifests of one kind under an artifact root, by version."""
    return {p.parent.name: json.loads(p.read_text()) for p in root.glob(f"{kind}/*/_manifest.json")}


def test_a_scheduled_pull_of_main_skips_while_main_stays_and_reruns_when_it_moves(
    fake_hub: FakeHub, tmp_path: Path, prefect_home: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    first = fake_hub.commit("dataset", "org/prefs", {DATA_FILE: parquet(skywork_rows("first", 3))})
    recipe = tmp_path / "hub-pull.yaml"
    recipe.write_text("name: hub-pull\npull:\n  sources:\n"
                      "    - {name: prefs, adapter: skywork, hub_id: org/prefs, revision: main}\n")  # fmt: skip
    run = ("run", "--recipe", str(recipe), "--to", "pull")
    store = ArtifactStore(tmp_path / "artifacts")

    one = rmr1(*run, cwd=tmp_path, prefect_home=prefect_home, hub=fake_hub)
    assert one.returncode == 0, one.stderr
    [(v1, manifest)] = published(tmp_path / "artifacts", "preference_pairs").items()
    assert manifest["config"]["sources"][0]["revision"] == first
    assert manifest["config"]["sources"][0]["requested_revision"] == "main"
    table = store.read_table(store.require("preference_pairs", v1)).to_pylist()
    assert [row["conversation"][0]["content"] for row in table] == [f"first question {i}" for i in range(3)]
    assert table[0]["source_ref"] == f"hf://org/prefs@{first}/train#row=0"  # loaded at the sha, not at main
    assert main(["artifacts", "--artifacts", str(tmp_path / "artifacts"), "--lineage", "preference_pairs"]) == 0
    assert f"sources: prefs (org/prefs@main → {first})" in capsys.readouterr().out

    again = rmr1(*run, cwd=tmp_path, prefect_home=prefect_home, hub=fake_hub)
    assert again.returncode == 0, again.stderr
    assert "pull: skipped, already published" in again.stderr and f"preference_pairs     {v1}" in again.stdout
    assert list(published(tmp_path / "artifacts", "preference_pairs")) == [v1]

    moved = fake_hub.commit("dataset", "org/prefs", {DATA_FILE: parquet(skywork_rows("second", 4))})
    three = rmr1(*run, cwd=tmp_path, prefect_home=prefect_home, hub=fake_hub)
    assert three.returncode == 0, three.stderr
    manifests = published(tmp_path / "artifacts", "preference_pairs")
    [v2] = set(manifests) - {v1}
    assert manifests[v2]["config"]["sources"][0]["revision"] == moved
    table = store.read_table(store.require("preference_pairs", v2)).to_pylist()
    assert [row["conversation"][0]["content"] for row in table] == [f"second question {i}" for i in range(4)]
    # Each run asked the Hub where main is exactly once; `datasets` then asked only about the commit.
    assert len(fake_hub.calls("GET /api/datasets/org/prefs/revision/main")) == 3
    assert {call.split("/resolve/")[1].split("/")[0] for call in fake_hub.calls("GET /datasets/")} == {first, moved}


def test_offline_a_branch_fails_the_run_with_one_line_and_a_pinned_sha_plans_without_network(
    fake_hub: FakeHub, tmp_path: Path, prefect_home: dict[str, str]
) -> None:
    sha = fake_hub.commit("dataset", "org/prefs", {DATA_FILE: parquet(skywork_rows("first", 3))})
    recipe = tmp_path / "hub-pull.yaml"
    recipe.write_text("name: hub-pull\npull:\n  sources:\n"
                      "    - {name: prefs, adapter: skywork, hub_id: org/prefs, revision: main}\n")  # fmt: skip
    failed = rmr1("run", "--recipe", str(recipe), "--to", "pull", cwd=tmp_path, prefect_home=prefect_home,
                  hub=fake_hub, HF_HUB_OFFLINE="1")  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == (
        "rmr1: failed: Hub dataset org/prefs at revision 'main': cannot resolve a branch or tag to a commit offline "
        "(HF_HUB_OFFLINE); pin the commit sha in the recipe (`revision: <40-hex sha>`) to plan without the Hub"
    )
    assert published(tmp_path / "artifacts", "preference_pairs") == {}
    planned = rmr1("plan", "--recipe", str(recipe), "--to", "pull", "--set", f"pull.sources.0.revision={sha}",
                   cwd=tmp_path, prefect_home=prefect_home, hub=fake_hub, HF_HUB_OFFLINE="1",
                   HF_ENDPOINT=dead_endpoint())  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines()[2].endswith("will run") and "Hub revisions" not in planned.stdout
    assert fake_hub.requests == []


def test_an_evaluation_reads_a_hub_benchmark_at_the_commit_its_branch_named(
    fake_hub: FakeHub, tmp_path: Path, prefect_home: dict[str, str]
) -> None:
    rows = [{"prompt": f"q{i}", "chosen": "a longer answer", "rejected": "short", "chosen_model": "m",
             "rejected_model": "n", "subset": "hep-go", "id": i} for i in range(3)]  # fmt: skip
    sha = fake_hub.commit("dataset", "org/reward-bench", {"data/filtered-00000-of-00001.parquet": parquet(rows)})
    recipe = tmp_path / "hub-eval.yaml"
    recipe.write_text(
        "name: hub-eval\nevaluate:\n  judge: {backend: length}\n  benchmarks:\n"
        "    - {name: rewardbench, hub_id: org/reward-bench, revision: main, split: filtered}\n"
        "    - {name: rm_bench, path: synthetic}\n"
    )
    done = rmr1("stage", "evaluate", "--recipe", str(recipe), cwd=tmp_path, prefect_home=prefect_home, hub=fake_hub)
    assert done.returncode == 0, done.stderr
    [manifest] = published(tmp_path / "artifacts", "eval_predictions").values()
    assert manifest["config"]["benchmarks"][0]["revision"] == sha
    assert manifest["config"]["benchmarks"][0]["requested_revision"] == "main"
    assert [c for c in manifest["stats"]["by_subset"] if c["benchmark"] == "rewardbench"] == [
        {"benchmark": "rewardbench", "subset": "hep-go", "comparisons": 3}
    ]
    assert {call.split("/resolve/")[1].split("/")[0] for call in fake_hub.calls("GET /datasets/")} == {sha}
