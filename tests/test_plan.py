"""The plan and its executor, without Prefect: versions computed once, published / will run / blocked,
`rmr1 plan`, and errors: a user's one clear line, a bug's traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import tasks.pull.sources
import tasks.split.stage
from data_contracts import ArtifactStore
from data_contracts.errors import UserError
from flows.cli import main
from flows.plan import STAGE_NAMES, STAGES, MissingUpstream, StageLeftOut, execute, make_plan
from flows.recipe import load_recipe
from tests.conftest import ROOT
from tests.helpers.fake_hub import FakeHub

SMOKE = ROOT / "recipes" / "smoke.yaml"
# The smoke recipe's artifact versions: a refactor must not change them. (Issue 22 changed its task on purpose:
# the refusal task, the rule-following stand-in, cor-compact-v1, the learning stage; then the student's initial
# weights, `student.tiny.initializer_range: 0.06`, which moved the checkpoints and what is scored from them;
# then GRPO's rollout temperature 1.5, which moved rl_checkpoint and what is scored from it.)
SMOKE_VERSIONS = {
    "preference_pairs": "678d4a23c68471df", "distill_set": "e5a751ad8e557759", "rl_set": "6c0d8c2ec02f0814",
    "teacher_traces": "fe8ee5bd318d4ea4", "sft_examples": "a71da6d95bd0c48b", "filter_rejects": "7cde6105179c63f8",
    "sft_checkpoint": "5a20f87e3aa6f0ed", "rl_checkpoint": "a062f1af5cd41fb7", "eval_predictions": "b9d11327003a8549",
    "eval_scores": "85c0df0bf200310b", "learning_scores": "e1c8bd06a0391517",
}  # fmt: skip


# The six paper recipes' versions (their Hub repos at one fake commit each, local benchmark folders with one file):
# what users paid for on GPUs. Only a stage whose output truly changes may move them, on purpose.
PAPER_VERSIONS = {
    "rm-r1-deepseek-distill-qwen-14b": {
        "distill_set": "9a7fa0e468e62571", "eval_predictions": "c7cffb580bbc5382", "eval_scores": "90dac0d66eca87ac",
        "preference_pairs": "76e0f6d426991323", "rl_checkpoint": "6c3c0bd69da0ab78", "rl_set": "091fa7957b566a98",
    },
    "rm-r1-deepseek-distill-qwen-32b": {
        "distill_set": "9a7fa0e468e62571", "eval_predictions": "18ccf8a13bb38ac2", "eval_scores": "3ccd4305a68a0ce9",
        "preference_pairs": "76e0f6d426991323", "rl_checkpoint": "65dfbb3511192b90", "rl_set": "091fa7957b566a98",
    },
    "rm-r1-deepseek-distill-qwen-7b": {
        "distill_set": "9a7fa0e468e62571", "eval_predictions": "ae5a7e6e2e80c93a", "eval_scores": "e52851e861838a22",
        "preference_pairs": "76e0f6d426991323", "rl_checkpoint": "b3a45b934d288ac6", "rl_set": "091fa7957b566a98",
    },
    "rm-r1-qwen2.5-instruct-14b": {
        "distill_set": "75f83a44e02f35c0", "eval_predictions": "2e01321c9a699301", "eval_scores": "21d64ecf05f4b0d0",
        "filter_rejects": "122024ef32017d8e", "preference_pairs": "76e0f6d426991323",
        "rl_checkpoint": "cb53781baf08c7be",
        "rl_set": "2598b49954332379", "sft_checkpoint": "909ccd85d03e1998", "sft_examples": "812a57e4cad9a5c8",
        "teacher_traces": "42e3d159737509f8",
    },
    "rm-r1-qwen2.5-instruct-32b": {
        "distill_set": "75f83a44e02f35c0", "eval_predictions": "10f5324f6fc3f3e4", "eval_scores": "17bcb0915a900b88",
        "filter_rejects": "122024ef32017d8e", "preference_pairs": "76e0f6d426991323",
        "rl_checkpoint": "74c49b4c3eef3a39",
        "rl_set": "2598b49954332379", "sft_checkpoint": "96575d70e559145f", "sft_examples": "812a57e4cad9a5c8",
        "teacher_traces": "42e3d159737509f8",
    },
    "rm-r1-qwen2.5-instruct-7b": {
        "distill_set": "75f83a44e02f35c0", "eval_predictions": "5c7979b4e5256a5b", "eval_scores": "35992945f0859ccb",
        "filter_rejects": "122024ef32017d8e", "preference_pairs": "76e0f6d426991323",
        "rl_checkpoint": "4bc9401539729464",
        "rl_set": "2598b49954332379", "sft_checkpoint": "3eaee41a6157407d", "sft_examples": "812a57e4cad9a5c8",
        "teacher_traces": "42e3d159737509f8",
    },
}  # fmt: skip


def test_the_paper_recipes_keep_their_versions(
    tmp_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder in ("benchmarks/rm_bench", "benchmarks/rmb/RMB_dataset/Pairwise_set"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "benchmarks/rm_bench/chat_filtered.json").write_text("[]\n")
    (tmp_path / "benchmarks/rmb/RMB_dataset/Pairwise_set/a.json").write_text("[]\n")
    monkeypatch.chdir(tmp_path)  # the recipes name their local benchmark folders relative to where rmr1 runs
    committed: set[str] = set()
    for name, expected in PAPER_VERSIONS.items():
        raw = yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text())
        datasets = [s["hub_id"] for s in raw["pull"]["sources"]] + [
            b["hub_id"] for b in raw["evaluate"]["benchmarks"] if b.get("hub_id")
        ]
        for repo in datasets:
            if repo not in committed:
                fake_hub.commit("dataset", repo, {"README.md": b"x\n"})
                committed.add(repo)
        if raw["student"]["model"] not in committed:
            fake_hub.commit("model", raw["student"]["model"], {"config.json": b"{}"})
            committed.add(raw["student"]["model"])
        plan = make_plan(load_recipe(ROOT / "recipes" / f"{name}.yaml"), ArtifactStore(tmp_path / "store"))
        assert {k: v for step in plan.steps for k, v in step.versions.items()} == expected, name


def local_source_recipe(tmp_path: Path, *overrides: str):
    """The smoke recipe reading 40 Skywork-format pairs from a local file (so pull hashes a file)."""
    rows = [
        {"chosen": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"good {i}"}],
         "rejected": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"bad {i}"}],
         "source": "test"}
        for i in range(40)
    ]  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = f"pull.sources=[{{name: local, adapter: skywork, path: {path}}}]"
    return load_recipe(SMOKE, [source, *overrides])


def test_the_smoke_plan_has_the_versions_users_paid_for(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["plan", "--recipe", str(SMOKE), "--artifacts", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    planned = dict(line.split()[1].split("/") for line in lines[2:])
    assert planned == SMOKE_VERSIONS
    assert all(line.endswith("will run") for line in lines[2:])
    assert not list(tmp_path.iterdir())  # a plan runs nothing and writes nothing


def test_the_registry_is_the_one_list_of_stages() -> None:
    assert STAGE_NAMES == ("pull", "split", "distill", "filter", "sft", "rl", "evaluate", "learning")
    kinds = [kind for stage in STAGES for kind in stage.writes]
    assert len(kinds) == len(set(kinds))  # one producer per kind


def test_a_cold_run_hashes_a_local_source_once_and_plans_each_version_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed, split_versions = [], []
    real_sha, real_split = tasks.pull.sources.file_sha256, tasks.split.stage.split_versions
    monkeypatch.setattr(tasks.pull.sources, "file_sha256", lambda path: hashed.append(path) or real_sha(path))
    monkeypatch.setattr(tasks.split.stage, "split_versions", lambda *a: split_versions.append(a) or real_split(*a))
    recipe, store = local_source_recipe(tmp_path), ArtifactStore(tmp_path / "artifacts")
    outputs = execute(make_plan(recipe, store, to_stage="split"))
    assert len(hashed) == 1 and len(split_versions) == 1  # planned once; the stages were given their versions
    assert {kind: store.get(kind, ref.version) for kind, ref in outputs.items()} == outputs


def test_a_published_stage_is_skipped_and_a_changed_value_plans_only_downstream(tmp_path: Path) -> None:
    recipe, store = local_source_recipe(tmp_path), ArtifactStore(tmp_path / "artifacts")
    execute(make_plan(recipe, store, to_stage="split"))
    created = {m["version"]: m["created_at"] for m in store.list()}
    again = make_plan(recipe, store, to_stage="split")
    assert [step.status for step in again.steps] == ["published", "published"]
    execute(again, run_step=lambda step: pytest.fail(f"{step.name} ran although published"))
    assert {m["version"]: m["created_at"] for m in store.list()} == created
    changed = make_plan(local_source_recipe(tmp_path, "split.seed=5"), store)
    assert [(step.name, step.status) for step in changed.steps][:3] == [
        ("pull", "published"), ("split", "will run"), ("distill", "will run"),
    ]  # fmt: skip


def test_from_a_stage_whose_upstream_is_missing_is_blocked_and_runs_nothing(tmp_path: Path) -> None:
    recipe, store = local_source_recipe(tmp_path), ArtifactStore(tmp_path / "artifacts")
    plan = make_plan(recipe, store, from_stage="split", to_stage="split")
    assert [step.status for step in plan.steps] == ["blocked: not published, and before --from", "will run"]
    with pytest.raises(MissingUpstream, match="stage 'pull' has not published preference_pairs/"):
        execute(plan, run_step=lambda step: pytest.fail("nothing may run while a step is blocked"))
    assert isinstance(MissingUpstream("x"), UserError)


def test_one_stage_plans_only_what_it_needs_and_a_left_out_stage_says_why(tmp_path: Path, fake_hub: FakeHub) -> None:
    paper_sources = ("Skywork/Skywork-Reward-Preference-80K-v0.2", "Vezora/Code-Preference-Pairs",
                     "xinlai/Math-Step-DPO-10K")  # fmt: skip
    for repo in paper_sources:  # the paper recipe names their `main`: the plan resolves it
        fake_hub.commit("dataset", repo, {"README.md": b"a paper source\n"})
    fake_hub.commit("model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", {"config.json": b"{}"})
    recipe = load_recipe(SMOKE)
    store = ArtifactStore(tmp_path)
    assert [step.name for step in make_plan(recipe, store, target="rl").steps] == [
        "pull", "split", "distill", "filter", "sft", "rl",
    ]  # fmt: skip
    deepseek = load_recipe(ROOT / "recipes" / "rm-r1-deepseek-distill-qwen-7b.yaml")
    assert [step.name for step in make_plan(deepseek, store, target="rl").steps] == ["pull", "split", "rl"]
    with pytest.raises(StageLeftOut, match="leaves out stage 'sft': the recipe has sft: null"):
        make_plan(deepseek, store, target="sft")
    assert ("distill", "the recipe has sft: null (no distillation, no SFT) or no pull section") in make_plan(
        deepseek, store, to_stage="rl"
    ).left_out


def test_plan_prints_published_and_blocked_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, store = local_source_recipe(tmp_path), ArtifactStore(tmp_path / "artifacts")
    execute(make_plan(recipe, store, to_stage="pull"))
    source = f"pull.sources=[{{name: local, adapter: skywork, path: {tmp_path / 'pairs.jsonl'}}}]"
    args = ["plan", "--recipe", str(SMOKE), "--artifacts", str(tmp_path / "artifacts"), "--set", source]
    assert main([*args, "--from", "split", "--to", "split"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("pull ") and lines[2].endswith("reused (before --from)")
    assert lines[3].startswith("split ") and lines[3].endswith("will run")
    assert main([*args, "--from", "distill"]) == 0
    out = capsys.readouterr().out
    assert "blocked: not published, and before --from" in out


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["plan", "--recipe", str(SMOKE), "--stage", "training"]) == 2
    assert capsys.readouterr().err.strip() == "rmr1: error: no stage 'training'; stages are " + ", ".join(STAGE_NAMES)

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("flows.plan.make_plan", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["plan", "--recipe", str(SMOKE)])
