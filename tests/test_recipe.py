"""Recipes: strict parsing, overrides, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from flows.recipe import Recipe, RecipeError, apply_override, load_recipe, recipe_from_dict
from tasks.pull.config import SourceConfig

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "recipes" / "smoke.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_smoke_recipe_loads_with_its_task_and_gates() -> None:
    recipe = load_recipe(SMOKE)
    assert recipe.name == "smoke"
    source = SourceConfig(name="refusal", adapter="synthetic", rows=8000, seed=2, task="refusal")
    assert recipe.pull.sources == (source,)
    assert recipe.split.distill_fraction == 0.45  # SFT sees each distilled pair about once (not the paper's 0.12)
    assert recipe.learning is not None and None not in vars(recipe.learning.gates).values()
    assert recipe.max_reject_rate == 0.05


def test_recipe_round_trips_through_its_dict_form() -> None:
    recipe = load_recipe(SMOKE)
    assert recipe_from_dict(recipe.to_dict()) == recipe
    assert recipe_from_dict(recipe.to_dict()).fingerprint == recipe.fingerprint


def test_overrides_set_nested_values_and_list_items() -> None:
    recipe = load_recipe(SMOKE, ["split.distill_fraction=0.25", "pull.sources.0.rows=50", "split.placement=random"])
    assert recipe.split.distill_fraction == 0.25
    assert recipe.pull.sources[0].rows == 50
    assert recipe.split.placement == "random"
    assert recipe.fingerprint != load_recipe(SMOKE).fingerprint


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["split.distil_fraction=0.2"], "unknown key 'split.distil_fraction'; did you mean 'split.distill_fraction'?"),
        (["split.distill_fraction=1.5"], "split.distill_fraction: must be in [0, 1)"),
        (["split.distill_fraction=lots"], "split.distill_fraction: expected float, got str"),
        (["split.placement=sideways"], "split.placement: expected one of alternate, random"),
        (["pull.sources.3.rows=5"], "override pull.sources.3.rows: expected a list index below 1"),
        (["pull.sources.0.adapter=skyworks"], "pull.sources.0.adapter: unknown adapter 'skyworks'"),
        (["pull.sources.0.domain=poetry"], "pull.sources.0.domain: unknown domain 'poetry'"),
        (["max_reject_rate=2"], "max_reject_rate: must be in [0, 1]"),
        (["split.seed=true"], "split.seed: expected int, got bool"),
        (["split"], "override 'split': expected dotted.key=value"),
        (["name.first=x"], "override name.first: name is a value, not a section"),
        (["dispatch.train=sft/gpu"], "dispatch.train: not a stage; stages are pull, split, distill"),
        (["dispatch.sft=gpu"], "dispatch.sft: expected FLOW/DEPLOYMENT, e.g. sft/gpu, got 'gpu'"),
    ],
)
def test_bad_overrides_fail_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as error:
        load_recipe(SMOKE, overrides)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "pull: a recipe needs a pull section (training) or an evaluate section"),
        ("name: x\npull: {sources: [{name: a, adapter: skywork}]}\n", "pull.sources.0.path: set exactly one of"),
        (
            "name: x\npull: {sources: [{name: a, adapter: skywork, hub_id: Skywork/S}]}\n",
            "pull.sources.0.revision: name a revision for Skywork/S: a commit sha, or a branch or tag",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q}}]}\n",
            "pull.sources.0.fields.chosen: map `chosen` and `rejected`, or `first`, `second` and `label`",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q, first: a, "
            "second: b, label: l, first_wins: [A]}}]}\n",
            "pull.sources.0.fields.second_wins: a labelled mapping needs first, second, label, first_wins",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q, first: a, "
            "second: b, label: l, first_wins: [1], second_wins: [2], tie: [1]}}]}\n",
            "pull.sources.0.fields.tie: label value 1 is also listed in first_wins",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q, chosen: a, "
            "rejected: b, label: l}}]}\n",
            "pull.sources.0.fields.chosen: with a label, the answers are `first` and `second`, not `chosen`",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q, chosen: a, "
            "rejected: ' a'}}]}\n",
            "pull.sources.0.fields.rejected: the same record field as `chosen`",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q, chosen: a, "
            "rejected: b, system: ''}}]}\n",
            "pull.sources.0.fields.system: an empty field name; leave the key out instead",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: skywork, path: f.jsonl, fields: {prompt: q}}]}\n",
            "pull.sources.0.fields: only the generic adapter reads `fields`",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q, "
            "chosen: a, rejected: b, answer: c}}]}\n",
            "unknown key 'pull.sources.0.fields.answer'",
        ),
        ("name: x\npull: {sources: {name: a}}\n", "pull.sources: expected a list, got dict"),
        (
            "name: x\nevaluate: {judge: {backend: hf}, benchmarks: [{name: rmb, path: d}]}\n",
            "evaluate.judge.model: rl_checkpoint: this recipe does not train one",
        ),
        (
            "name: x\nevaluate: {judge: {backend: openai, model: m}, benchmarks: [{name: rmb, path: d}]}\n",
            "evaluate.judge.endpoint.base_url: the openai backend needs the endpoint's URL",
        ),
        (
            "name: x\nevaluate: {judge: {backend: openai, model: m, endpoint: {base_url: u, model: n}}, "
            "benchmarks: [{name: rmb, path: d}]}\n",
            "unknown key 'evaluate.judge.endpoint.model'; known keys: base_url,",  # the judge section names it
        ),
        (
            "name: x\nevaluate: {judge: {backend: length}, benchmarks: [{name: rm_bench, hub_id: a/b, revision: c}]}\n",
            "evaluate.benchmarks.0.hub_id: rm_bench does not load from the Hub",
        ),
        (
            "name: x\nevaluate: {judge: {backend: length}, benchmarks: [{name: rewardbench, hub_id: a/b}]}\n",
            "evaluate.benchmarks.0.revision: name a revision for a/b: a commit sha, or a branch or tag",
        ),
        (
            "name: x\nevaluate: {judge: {backend: length}, benchmarks: [{name: rmbench, path: d}]}\n",
            "evaluate.benchmarks.0.name: 'rmbench' is not a registered benchmark (rewardbench, rm_bench, rmb",
        ),
        ("name: x\nevaluate: {judge: {backend: length}}\n", "evaluate.benchmarks: list at least one benchmark"),
        ("- just\n- a list\n", "expected a mapping of sections at the top level"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_recipes_fail_naming_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_evaluating_a_checkpoint_needs_the_template_it_was_trained_with() -> None:
    with pytest.raises(RecipeError, match=r"evaluate\.judge\.template: 'no-rubrics-v1' differs from 'cor-compact-v1'"):
        load_recipe(SMOKE, ["evaluate.judge.template=no-rubrics-v1"])
    deepseek = ROOT / "recipes" / "rm-r1-deepseek-distill-qwen-7b.yaml"
    with pytest.raises(RecipeError, match="sft_checkpoint: this recipe does not train one"):
        load_recipe(deepseek, ["evaluate.judge.model=sft_checkpoint"])
    assert load_recipe(deepseek).evaluate.judge.template == "reasoning-v1"


def test_dispatch_names_deployments_per_stage_and_leaves_every_artifact_version_alone() -> None:
    from data_contracts import ArtifactStore
    from flows.plan import make_plan

    plain = load_recipe(SMOKE)
    dispatched = load_recipe(SMOKE, ["dispatch={sft: sft/gpu, rl: rl/gpu, evaluate: evaluate/gpu}"])
    assert dispatched.dispatch == {"sft": "sft/gpu", "rl": "rl/gpu", "evaluate": "evaluate/gpu"}
    store = ArtifactStore(ROOT / "no-artifacts-here")
    versions = [[step.versions for step in make_plan(recipe, store).steps] for recipe in (plain, dispatched)]
    assert versions[0] == versions[1] and len(versions[0]) == 8
    assert dispatched.to_dict()["dispatch"] == dispatched.dispatch  # handed to deployments with the recipe


def test_missing_recipe_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"nowhere\.yaml: file not found"):
        load_recipe(tmp_path / "nowhere.yaml")


def test_override_can_add_a_key_the_yaml_left_at_its_default() -> None:
    raw = {"name": "x", "pull": {"sources": []}}
    apply_override(raw, "split.seed=7")
    assert recipe_from_dict(raw).split.seed == 7
    assert isinstance(recipe_from_dict(raw), Recipe)


PAPER = {  # docs/method.md §6-7: SFT lr, RL lr and nodes of 8 GPUs, per recipe
    "rm-r1-qwen2.5-instruct-7b": (5e-6, 1e-6, 1),
    "rm-r1-qwen2.5-instruct-14b": (3e-6, 7e-7, 2),
    "rm-r1-qwen2.5-instruct-32b": (2e-6, 5e-7, 4),
    "rm-r1-deepseek-distill-qwen-7b": (None, 1e-6, 1),
    "rm-r1-deepseek-distill-qwen-14b": (None, 1e-6, 2),
    "rm-r1-deepseek-distill-qwen-32b": (None, 8e-7, 4),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipes_resolve_to_the_papers_trl_configs(name: str) -> None:
    from flows.cli import dry_run

    sft_lr, rl_lr, nodes = PAPER[name]
    recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml")
    processes = 8 * nodes
    if sft_lr is None:
        assert recipe.sft is None and recipe.split.distill_fraction == 0.0 and recipe.rl.template == "reasoning-v1"
    else:
        assert recipe.split.distill_fraction == 0.12
        sft = yaml.safe_load(dry_run(recipe, "sft"))["trl.SFTConfig"]
        assert sft["learning_rate"] == sft_lr
        assert sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"] * processes == 128
        expected = {"num_train_epochs": 1.0, "max_length": 12288, "warmup_steps": 0.03, "lr_scheduler_type": "cosine",
                    "adam_beta1": 0.9, "adam_beta2": 0.95, "weight_decay": 0.0, "max_grad_norm": 1.0, "seed": 42,
                    "bf16": True, "activation_checkpointing": True, "completion_only_loss": True}  # fmt: skip
        assert {k: sft[k] for k in expected} == expected
    grpo = yaml.safe_load(dry_run(recipe, "rl"))["trl.GRPOConfig"]
    assert grpo["learning_rate"] == rl_lr
    assert grpo["generation_batch_size"] == 1024 * 7
    completions_per_step = grpo["per_device_train_batch_size"] * grpo["gradient_accumulation_steps"] * processes
    assert completions_per_step == 128 * 7  # mini-batch of 128 prompts: 8 optimizer steps per rollout batch
    expected = {"num_generations": 7, "temperature": 1.0, "top_p": 1.0, "beta": 1e-3, "epsilon": 0.2,
                "lr_scheduler_type": "constant", "warmup_steps": 0, "max_completion_length": 8192,
                "max_grad_norm": 1.0, "use_vllm": True, "vllm_mode": "colocate", "bf16": True}  # fmt: skip
    assert {k: grpo[k] for k in expected} == expected
    assert recipe.rl.max_prompt_length == 4096
    assert recipe.rl.launch.num_processes == processes and recipe.rl.launch.num_machines == nodes
    assert (ROOT / str(recipe.rl.launch.accelerate_config)).is_file()


def test_exponent_floats_without_a_dot_are_numbers_not_strings() -> None:
    recipe = load_recipe(SMOKE, ["sft.learning_rate=5e-6", "rl.learning_rate=7E-7"])
    assert recipe.sft is not None and recipe.sft.learning_rate == 5e-6 and recipe.rl.learning_rate == 7e-7
    with pytest.raises(RecipeError, match=re.escape("sft.learning_rate: expected float, got str 'fast'")):
        load_recipe(SMOKE, ["sft.learning_rate=fast"])
