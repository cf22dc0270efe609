"""Recipes: strict parsing, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.recipe import Recipe, RecipeError, apply_override, load_recipe, recipe_from_dict
from tasks.pull.config import SourceConfig

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "recipes" / "smoke.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_smoke_recipe_loads_with_paper_split_defaults() -> None:
    recipe = load_recipe(SMOKE)
    assert recipe.name == "smoke"
    assert recipe.pull.sources == (SourceConfig(name="synthetic", adapter="synthetic", rows=400, seed=7),)
    assert recipe.split.distill_fraction == 0.12
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
    ],
)
def test_bad_overrides_fail_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as error:
        load_recipe(SMOKE, overrides)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "missing required key 'pull'"),
        ("name: x\npull: {sources: [{name: a, adapter: skywork}]}\n", "pull.sources.0.path: set exactly one of"),
        (
            "name: x\npull: {sources: [{name: a, adapter: skywork, hub_id: Skywork/S}]}\n",
            "pull.sources.0.revision: pin a revision for Skywork/S",
        ),
        (
            "name: x\npull: {sources: [{name: a, adapter: generic, path: f.jsonl, fields: {prompt: q}}]}\n",
            "pull.sources.0.fields: missing chosen, rejected",
        ),
        ("name: x\npull: {sources: {name: a}}\n", "pull.sources: expected a list, got dict"),
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


def test_missing_recipe_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"nowhere\.yaml: file not found"):
        load_recipe(tmp_path / "nowhere.yaml")


def test_override_can_add_a_key_the_yaml_left_at_its_default() -> None:
    raw = {"name": "x", "pull": {"sources": []}}
    apply_override(raw, "split.seed=7")
    assert recipe_from_dict(raw).split.seed == 7
    assert isinstance(recipe_from_dict(raw), Recipe)
