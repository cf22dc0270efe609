"""Reading a recipe at the boundary: a YAML file plus `--set dotted.key=value` overrides, validated once.

`validate_recipe` is the one place a mapping becomes a `Recipe` (`tasks/recipe.py`): pydantic checks every
section (unknown keys refused, types strict, each section's own rules) and the first problem becomes a
`RecipeError` naming the full dotted key, with the closest known key for a typo, so a typo never falls
back to a default silently. Relative paths are relative to the current working directory.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from tasks.config import ConfigError
from tasks.recipe import Recipe, RecipeError

__all__ = ["Recipe", "RecipeError", "apply_override", "load_recipe", "recipe_from_dict", "validate_recipe"]

_TYPE_NAMES = {
    "int_type": "int", "int_parsing": "int", "int_from_float": "int", "float_type": "float",
    "float_parsing": "float", "string_type": "str", "bool_type": "bool", "bool_parsing": "bool",
}  # fmt: skip
_LIST_ERRORS = ("tuple_type", "list_type")
_MAPPING_ERRORS = ("dataclass_type", "dict_type", "model_type", "dataclass_args_type")


@functools.cache
def _adapter() -> TypeAdapter[Recipe]:
    return TypeAdapter(Recipe)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe, apply `dotted.key=value` overrides, and validate it into a Recipe."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe {path}: file not found") from None
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of sections at the top level")
    for override in overrides:
        apply_override(raw, override)
    try:
        return validate_recipe(raw)
    except RecipeError as error:
        raise RecipeError(f"recipe {path}: {error}") from None


def recipe_from_dict(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """An already-loaded recipe mapping (e.g. a Prefect flow parameter) plus overrides, validated."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        apply_override(raw, override)
    return validate_recipe(raw)


def validate_recipe(raw: Any) -> Recipe:
    """The one place a mapping becomes a Recipe; RecipeError names the first bad key."""
    if not isinstance(raw, dict):
        raise RecipeError(f"expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        recipe = _adapter().validate_python(raw)
    except ValidationError as error:
        raise RecipeError(_message(error.errors()[0])) from None
    from flows.plan import STAGE_NAMES  # the registry: which names a dispatch entry may use

    for stage in recipe.dispatch:
        if stage not in STAGE_NAMES:
            raise RecipeError(f"dispatch.{stage}: not a stage; stages are {', '.join(STAGE_NAMES)}")
    return recipe


def _message(error: Any) -> str:
    """One pydantic error as today's users read it: the dotted key, what was expected, what was given."""
    loc = tuple(str(part) for part in error["loc"])
    key, kind, value = ".".join(loc), error["type"], error.get("input")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return f"{_join(key, cause.field)}: {cause.message}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        section = ".".join(loc[:-1])
        hint = f"; did you mean {_join(section, close[0])!r}?" if close else f"; known keys: {', '.join(known)}"
        return f"unknown key {key!r}{hint}"
    if kind in ("missing", "missing_keyword_argument", "missing_argument"):
        return f"missing required key {key!r}"
    if kind == "literal_error":
        options = typing.get_args(_hint_at(loc))
        expected = ", ".join(map(str, options)) if options else error["ctx"]["expected"]
        return f"{key}: expected one of {expected}, got {value!r}"
    if kind in _TYPE_NAMES:
        return f"{key}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}"
    if kind in _LIST_ERRORS:
        return f"{key}: expected a list, got {type(value).__name__}"
    if kind in _MAPPING_ERRORS:
        return f"{key or 'top level'}: expected a mapping, got {type(value).__name__}"
    return f"{key or 'top level'}: {error['msg']}"


def _hint_at(loc: tuple[str, ...]) -> Any:
    """The type hint a location in the recipe points at (Optional unwrapped; list items and dict values)."""
    hint: Any = Recipe
    for part in loc:
        hint = _unwrap(hint)
        if dataclasses.is_dataclass(hint):
            hint = typing.get_type_hints(hint, include_extras=False).get(part, Any)
        elif typing.get_origin(hint) in (tuple, list):
            hint = typing.get_args(hint)[0]
        elif typing.get_origin(hint) is dict:
            hint = typing.get_args(hint)[1]
        else:
            return Any
    return _unwrap(hint)


def _unwrap(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return options[0] if len(options) == 1 else hint
    if typing.get_origin(hint) is typing.Annotated:
        return typing.get_args(hint)[0]
    return hint


def _known_keys(loc: tuple[str, ...]) -> list[str]:
    section = _hint_at(loc)
    return [f.name for f in dataclasses.fields(section)] if dataclasses.is_dataclass(section) else []


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.0.c=value` in the raw mapping; the value is parsed as YAML (`3`, `0.2`, `true`, `[a, b]`)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise RecipeError(f"override {override!r}: expected dotted.key=value")
    value = yaml.safe_load(text) if text.strip() else ""
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, key)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise RecipeError(f"override {key}: {'.'.join(parts[:depth])} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise RecipeError(f"override {key}: {'.'.join(parts[:-1])} is a value, not a section")


def _list_index(items: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise RecipeError(f"override {key}: expected a list index below {len(items)}, got {part!r}")
    return int(part)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
