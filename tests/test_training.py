"""The SFT and GRPO stages on the tiny offline model: real TRL training, real checkpoints, kills and resumes.

The inputs come from the real upstream stages (synthetic pairs → split → stand-in teacher → filter), so the
training stages see exactly what the pipeline gives them. Sizes are cut to seconds per test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_contracts import ArtifactRef, ArtifactStore, publish_table
from data_contracts.kinds import RL_SET, SFT_CHECKPOINT, SFT_EXAMPLES
from data_contracts.scratch import lock_path
from data_contracts.versioning import plain
from flows.plan import execute, make_plan
from flows.recipe import Recipe, load_recipe
from tasks.train.common import token_counts, write_rows
from tasks.train.job import TrainJob, read_outcome, score_labelled_positions_only
from tasks.train.rl import VerdictReward, decoder_with_special_tokens, rl_version, train_rl
from tasks.train.sft import build_sft_trainer, sft_rows, sft_version, train_sft
from tests.conftest import ROOT, TINY_TRAINING

SMOKE = ROOT / "recipes" / "smoke.yaml"


def tiny_recipe(*overrides: str) -> Recipe:
    return load_recipe(SMOKE, ["pull.sources.0.rows=160", "split.distill_fraction=0.3", *TINY_TRAINING, *overrides])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArtifactStore, dict[str, ArtifactRef]]:
    """Real pull → split → distill (stand-in teacher) → filter outputs for the tiny recipe."""
    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"))
    return store, execute(make_plan(tiny_recipe(), store, target="filter"))


@pytest.fixture(scope="module")
def sft_result(upstream: tuple[ArtifactStore, dict[str, ArtifactRef]]) -> Any:
    store, refs = upstream
    recipe, examples = tiny_recipe(), refs[SFT_EXAMPLES.kind]
    version = sft_version(recipe.student, recipe.sft, examples)
    return train_sft(examples, recipe.student, recipe.sft, store, version=version)


def copy_table(source: ArtifactStore, ref: ArtifactRef, target: ArtifactStore) -> ArtifactRef:
    """Publish the same artifact (same version) under another root, for runs that must not share outputs."""
    from data_contracts import CONTRACTS

    manifest = source.manifest(ref)
    return publish_table(
        target, CONTRACTS[ref.kind], ref.version, source.read_table(ref), upstream=manifest["upstream"]
    )


def run_killed_worker(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.helpers.train_worker", json.dumps(spec)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def weights(folder: str) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(folder, "model.safetensors"))


def test_sft_publishes_a_checkpoint_folder_with_its_lineage_and_metrics(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any
) -> None:
    store, refs = upstream
    ref = sft_result.outputs[SFT_CHECKPOINT.kind]
    assert store.get(SFT_CHECKPOINT.kind, ref.version) == ref  # published under the version it was given
    manifest = store.manifest(ref)
    assert manifest["upstream"] == {SFT_EXAMPLES.kind: refs[SFT_EXAMPLES.kind].version}
    assert manifest["config"]["sft"]["max_steps"] == 4 and manifest["config"]["student"]["model"] == "tiny"
    stats = manifest["stats"]
    assert stats["steps"] == 4 and stats["resumed_from_step"] == 0
    assert stats["examples"] == store.manifest(refs[SFT_EXAMPLES.kind])["rows"] and stats["dropped_overlong"] == 0
    assert stats["base_model"] == f"tiny (built from {refs[SFT_EXAMPLES.kind]})"
    assert [row["step"] for row in stats["metrics"]] == [1, 2, 3, 4]
    assert all("loss" in row and "mean_token_accuracy" in row for row in stats["metrics"])
    files = {entry["path"] for entry in manifest["files"]}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "training_curves.png"} <= files
    assert store.verify(ref) == []
    folder = store.local_copy(ref)
    assert (Path(folder) / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size == 600 and tokenizer.eos_token == "<|im_end|>"
    assert not any(p.name.startswith(".tmp-") for p in Path(store.root, SFT_CHECKPOINT.kind).iterdir())
    assert not (Path(store.root) / ".work" / f"sft-{ref.version}").exists()  # scratch removed once published


def test_sft_computes_its_loss_on_the_assistant_turn_only(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any, tmp_path: Path
) -> None:
    store, refs = upstream
    rows = sft_rows(store.read_table(refs[SFT_EXAMPLES.kind]).to_pylist())[:4]
    recipe = tiny_recipe()
    folder = store.local_copy(sft_result.outputs[SFT_CHECKPOINT.kind])
    data = write_rows(rows, str(tmp_path / "rows.parquet"))
    job = TrainJob("sft", folder, None, data, plain(recipe.sft), str(tmp_path / "out"), str(tmp_path / "final"))
    trainer = build_sft_trainer(job)
    batch = next(iter(trainer.get_train_dataloader()))
    traces = {row["completion"][0]["content"] + "<|im_end|>" for row in rows}
    for input_ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        trained = labels != -100
        assert 0 < int(trained.sum()) < int(mask.sum())  # some tokens trained, the prompt not
        assert trainer.processing_class.decode(input_ids[trained]).rstrip("\n") in traces


def test_scoring_only_labelled_positions_gives_the_loss_and_gradients_of_scoring_every_position(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any, tmp_path: Path
) -> None:
    import trl.trainer.utils as trl_utils

    store, refs = upstream
    rows = sft_rows(store.read_table(refs[SFT_EXAMPLES.kind]).to_pylist())[:4]
    folder = store.local_copy(sft_result.outputs[SFT_CHECKPOINT.kind])
    data = write_rows(rows, str(tmp_path / "rows.parquet"))
    job = TrainJob("sft", folder, None, data, plain(tiny_recipe().sft), str(tmp_path / "out"), str(tmp_path / "final"))
    trainer = build_sft_trainer(job)
    batch = next(iter(trainer.get_train_dataloader()))
    original = trl_utils._use_triton
    results = []
    try:
        for patched in (False, True):
            trl_utils._use_triton = original
            if patched:
                score_labelled_positions_only()
            trainer.model.zero_grad()
            loss = trainer.compute_loss(trainer.model, dict(batch))
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]))
        assert trl_utils._use_triton(torch.device("cpu"))  # the patch is in place
    finally:
        trl_utils._use_triton = original
    (every_loss, every_grads), (labelled_loss, labelled_grads) = results
    torch.testing.assert_close(labelled_loss, every_loss)
    for labelled, every in zip(labelled_grads, every_grads, strict=True):
        torch.testing.assert_close(labelled, every, rtol=1e-4, atol=1e-6)


def test_sft_publishes_its_checkpoint_under_the_version_it_is_given(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any
) -> None:
    # Skipping a published output is decided by the executor now (tested there), not by train_sft.
    store, refs = upstream
    recipe = tiny_recipe()
    version = sft_version(recipe.student, recipe.sft, refs[SFT_EXAMPLES.kind])
    assert store.get(SFT_CHECKPOINT.kind, version) == sft_result.outputs[SFT_CHECKPOINT.kind]
    assert store.manifest(sft_result.outputs[SFT_CHECKPOINT.kind])["stats"]["steps"] == 4


def test_token_counts_in_one_batch_equal_the_chat_template_tokenized_row_by_row(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any
) -> None:
    store, refs = upstream
    tokenizer = AutoTokenizer.from_pretrained(store.local_copy(sft_result.outputs[SFT_CHECKPOINT.kind]))
    rows = sft_rows(store.read_table(refs[SFT_EXAMPLES.kind]).to_pylist())
    for conversations, generation in (
        ([r["prompt"] + r["completion"] for r in rows], False),
        ([r["prompt"] for r in rows], True),
    ):
        one_by_one = [
            len(tokenizer.apply_chat_template(c, tokenize=True, add_generation_prompt=generation, return_dict=False))
            for c in conversations
        ]
        assert token_counts(tokenizer, conversations, add_generation_prompt=generation) == one_by_one
    assert token_counts(tokenizer, []) == []


def test_sft_drops_examples_longer_than_max_length_and_counts_them_by_domain(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any, tmp_path: Path
) -> None:
    store, refs = upstream
    target = ArtifactStore(tmp_path)
    examples = copy_table(store, refs[SFT_EXAMPLES.kind], target)
    median = sft_result.stats["tokens_median"]
    recipe = tiny_recipe("sft.max_steps=1", f"sft.max_length={median}")
    version = sft_version(recipe.student, recipe.sft, examples)
    stats = train_sft(examples, recipe.student, recipe.sft, target, version=version).stats
    total = sft_result.stats["examples"]
    assert 0 < stats["dropped_overlong"] < total
    assert stats["examples"] + stats["dropped_overlong"] == total
    assert sum(stats["dropped_overlong_by_domain"].values()) == stats["dropped_overlong"]


def test_killed_sft_resumes_from_its_last_checkpoint_and_ends_like_an_uninterrupted_run(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any, tmp_path: Path
) -> None:
    store, refs = upstream
    target = ArtifactStore(tmp_path)
    examples = copy_table(store, refs[SFT_EXAMPLES.kind], target)
    recipe = tiny_recipe()
    spec = {"root": str(tmp_path), "stage": "sft", "recipe": recipe.to_dict(),
            "upstream": {SFT_EXAMPLES.kind: examples.version}, "kill_at": 2}  # fmt: skip
    killed = run_killed_worker(spec)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    version = sft_version(recipe.student, recipe.sft, examples)
    assert target.get(SFT_CHECKPOINT.kind, version) is None  # nothing published by the killed run
    assert (Path(target.work_dir("sft", version)) / "trainer" / "checkpoint-2").is_dir()
    assert os.path.exists(lock_path(target.work_dir("sft", version)))  # its scratch lock, left by the kill

    resumed = train_sft(examples, recipe.student, recipe.sft, target, version=version)  # takes the stale lock over
    assert resumed.stats["resumed_from_step"] == 2 and resumed.stats["steps"] == 4
    assert [row["step"] for row in resumed.stats["metrics"]] == [1, 2, 3, 4]
    reference = weights(store.local_copy(sft_result.outputs[SFT_CHECKPOINT.kind]))
    after_resume = weights(target.local_copy(resumed.outputs[SFT_CHECKPOINT.kind]))
    assert reference.keys() == after_resume.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(after_resume[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_verdict_reward_reads_the_last_80_characters_with_the_eos_string(sft_result: Any) -> None:
    store = ArtifactStore(Path(sft_result.outputs[SFT_CHECKPOINT.kind].uri).parents[1])
    tokenizer = AutoTokenizer.from_pretrained(store.local_copy(sft_result.outputs[SFT_CHECKPOINT.kind]))
    reward = VerdictReward(decoder_with_special_tokens(tokenizer))  # the decoder the GRPO trainer gets
    texts = [
        "<eval>A is better</eval>\n<answer>[[A]]</answer><|im_end|>",  # correct for model_a
        "<eval>A is better</eval>\n<answer>[[A]]</answer><|im_end|>",  # wrong for model_b
        "<answer>[[A]]</answer><answer>[[B]]</answer><|im_end|>",  # both tags: -1 and unparseable
        "<answer>[[B]]</answer>" + "x" * 50 + "<|im_end|>",  # 82 characters: the EOS string pushes the tag out
    ]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    logged: dict[str, float] = {}
    rewards = reward([], [], ids, ["model_a", "model_b", "model_b", "model_b"], log_metric=logged.__setitem__)
    assert rewards == [1.0, -1.0, -1.0, -1.0]
    assert logged == {"accuracy": 0.25, "parse_error_rate": 0.25}
    assert tokenizer.convert_ids_to_tokens(ids[3][-1]) == "<|im_end|>"
    assert reward([], [], [ids[3][:-1]], ["model_b"]) == [1.0]  # without the EOS string the tag is inside


def test_grpo_from_the_sft_checkpoint_logs_reward_accuracy_parse_errors_kl_and_lengths(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any
) -> None:
    store, refs = upstream
    recipe = tiny_recipe()
    sft_ref = sft_result.outputs[SFT_CHECKPOINT.kind]
    version = rl_version(recipe.student, recipe.rl, refs[RL_SET.kind], sft_ref)
    result = train_rl(refs[RL_SET.kind], sft_ref, recipe.student, recipe.rl, store, version=version)
    ref = result.outputs["rl_checkpoint"]
    assert ref.version == version
    manifest = store.manifest(ref)
    assert manifest["upstream"] == {RL_SET.kind: refs[RL_SET.kind].version, SFT_CHECKPOINT.kind: sft_ref.version}
    assert manifest["stats"]["base_model"] == str(sft_ref) and manifest["stats"]["steps"] == 4
    assert manifest["stats"]["prompts"] == store.manifest(refs[RL_SET.kind])["rows"]
    metrics = manifest["stats"]["metrics"]
    assert [row["step"] for row in metrics] == [1, 2, 3, 4]
    for key in ("reward", "reward_std", "accuracy", "parse_error_rate", "kl", "completions/mean_length"):
        assert all(key in row for row in metrics), key
    for row in metrics:
        assert -1.0 <= row["reward"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0
        assert row["reward"] == pytest.approx(2 * row["accuracy"] - 1, abs=1e-6)  # ±1 rewards only
    assert read_outcome(store.local_copy(ref)).global_step == 4


def test_killed_grpo_resumes_from_its_last_checkpoint(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], sft_result: Any, tmp_path: Path
) -> None:
    store, refs = upstream
    recipe = tiny_recipe()
    target = ArtifactStore(tmp_path)
    pairs = copy_table(store, refs[RL_SET.kind], target)
    sft_ref = sft_result.outputs[SFT_CHECKPOINT.kind]
    _copy_folder_artifact(store, sft_ref, target)
    spec = {"root": str(tmp_path), "stage": "rl", "recipe": recipe.to_dict(),
            "upstream": {RL_SET.kind: pairs.version, SFT_CHECKPOINT.kind: sft_ref.version}, "kill_at": 2}  # fmt: skip
    killed = run_killed_worker(spec)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    version = rl_version(recipe.student, recipe.rl, pairs, sft_ref)
    assert (Path(target.work_dir("rl", version)) / "trainer" / "checkpoint-2").is_dir()
    sft_copy = target.require(SFT_CHECKPOINT.kind, sft_ref.version)
    resumed = train_rl(pairs, sft_copy, recipe.student, recipe.rl, target, version=version)
    assert resumed.stats["resumed_from_step"] == 2 and resumed.stats["steps"] == 4
    assert [row["step"] for row in resumed.stats["metrics"]] == [1, 2, 3, 4]


def _copy_folder_artifact(source: ArtifactStore, ref: ArtifactRef, target: ArtifactStore) -> None:
    import shutil

    manifest = source.manifest(ref)
    with target.folder_writer(SFT_CHECKPOINT, ref.version, upstream=manifest["upstream"]) as writer:
        for entry in manifest["files"]:
            shutil.copy(os.path.join(source.local_copy(ref), entry["path"]), os.path.join(writer.path, entry["path"]))
        writer.commit(manifest["stats"])


def test_grpo_without_sft_starts_from_the_student_model(upstream: tuple[ArtifactStore, dict[str, ArtifactRef]]) -> None:
    store, refs = upstream
    recipe = tiny_recipe("sft=null", "split.distill_fraction=0", "rl.max_steps=1")
    version = rl_version(recipe.student, recipe.rl, refs[RL_SET.kind], None)
    result = train_rl(refs[RL_SET.kind], None, recipe.student, recipe.rl, store, version=version)
    manifest = store.manifest(result.outputs["rl_checkpoint"])
    assert manifest["upstream"] == {RL_SET.kind: refs[RL_SET.kind].version}
    assert manifest["stats"]["base_model"] == f"tiny (built from {refs[RL_SET.kind]})"
    assert manifest["config"]["student"]["model"] == "tiny" and manifest["stats"]["steps"] == 1


def test_two_cpu_processes_with_gloo_train_the_tiny_model_and_agree_on_the_weights(
    upstream: tuple[ArtifactStore, dict[str, ArtifactRef]], tmp_path: Path
) -> None:
    store, refs = upstream
    target = ArtifactStore(tmp_path)
    examples = copy_table(store, refs[SFT_EXAMPLES.kind], target)
    recipe = tiny_recipe(
        "sft.max_steps=2",
        "sft.micro_batch_size=2",
        "sft.launch.num_processes=2",
    )
    assert recipe.sft is not None and recipe.sft.gradient_accumulation_steps == 1  # 4 = 2 per process × 2
    version = sft_version(recipe.student, recipe.sft, examples)
    stats = train_sft(examples, recipe.student, recipe.sft, target, version=version).stats
    assert stats["processes"] == 2 and stats["ranks_agree"] is True and stats["steps"] == 2


def test_training_configs_refuse_batches_that_do_not_divide(tmp_path: Path) -> None:
    from flows.recipe import RecipeError

    with pytest.raises(
        RecipeError, match=re.escape("sft.global_batch_size: global_batch_size (128) is not micro_batch_size (3)")
    ):
        load_recipe(SMOKE, ["sft.global_batch_size=128", "sft.micro_batch_size=3"])
    with pytest.raises(RecipeError, match=re.escape("rl.prompts_per_rollout: 6 is not a multiple of")):
        load_recipe(SMOKE, ["rl.prompts_per_rollout=6", "rl.mini_batch_prompts=4"])
    with pytest.raises(RecipeError, match=re.escape("split.distill_fraction: must be 0 without an sft section")):
        load_recipe(SMOKE, ["sft=null"])
    with pytest.raises(RecipeError, match=re.escape("rl.template: 'reasoning-v1' differs from distill.template")):
        load_recipe(SMOKE, ["rl.template=reasoning-v1"])
