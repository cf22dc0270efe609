"""Recipes: a YAML file plus `--set dotted.key=value` overrides, parsed strictly into typed dataclasses.

Every section is a stage config dataclass from `tasks/` whose fields carry help text. Parsing refuses
unknown keys (suggesting the closest known one), wrong types and invalid values, always naming the full
dotted key, so a typo never silently falls back to a default. Relative paths are relative to the current
working directory.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from data_contracts import canonical_json
from data_contracts.versioning import plain
from tasks.distill.config import DistillConfig
from tasks.evaluate.config import EvaluateConfig
from tasks.filter.config import FilterConfig
from tasks.pull.config import PullConfig
from tasks.split.config import SplitConfig
from tasks.stage import ConfigError
from tasks.train.config import RlConfig, SftConfig, StudentConfig

STAGE_NAMES = ("pull", "split", "distill", "filter", "sft", "rl", "evaluate")  # pipeline order (= flows.stages)
_YAML_11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class RecipeError(ValueError):
    """A recipe or override that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Recipe:
    """A whole pipeline run: one section per stage."""

    name: str = field(metadata={"help": "Recipe name, shown in flow-run names."})
    pull: PullConfig | None = field(
        default=None,
        metadata={
            "help": "Which preference sources to load. null: no training stages at all (a recipe that only "
            "evaluates a model, an API judge or the length baseline)."
        },
    )
    split: SplitConfig = field(default_factory=SplitConfig, metadata={"help": "Distillation / RL split."})
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "Teacher traces."})
    filter: FilterConfig = field(default_factory=FilterConfig, metadata={"help": "Which traces become SFT data."})
    student: StudentConfig = field(default_factory=StudentConfig, metadata={"help": "The model training starts from."})
    sft: SftConfig | None = field(
        default_factory=SftConfig,
        metadata={
            "help": "SFT on the kept traces (instruct family). null: no distillation and no SFT, RL straight from "
            "the student (DeepSeek-distilled family); then split.distill_fraction must be 0."
        },
    )
    rl: RlConfig = field(default_factory=RlConfig, metadata={"help": "GRPO with the ±1 verdict reward."})
    evaluate: EvaluateConfig | None = field(
        default=None,
        metadata={"help": "Judge RewardBench / RM-Bench / RMB and score them (docs/method.md §8); "
                  "null: no evaluation."},
    )
    dispatch: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "Stages the pipeline hands to a Prefect deployment instead of running in-process, e.g. "
            "`{sft: sft/gpu, rl: rl/gpu, evaluate: evaluate/gpu}` (deployments from infra/prefect.yaml, on the GPU "
            "pool). The pipeline waits for each run and reads its outputs from the artifact root, which must then "
            "be one every worker sees (s3://..., a shared disk). Where work runs never changes an artifact version."
        },
    )
    max_reject_rate: float = field(
        default=0.05,
        metadata={
            "help": "A stage fails and publishes nothing when more than this share of an input's rows is rejected."
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise ConfigError("max_reject_rate", f"must be in [0, 1], got {self.max_reject_rate}")
        if self.sft is None and self.split.distill_fraction > 0:
            raise ConfigError(
                "split.distill_fraction", "must be 0 without an sft section (no SFT: every pair goes to RL)"
            )
        if self.sft is not None and self.rl.template != self.distill.template:
            raise ConfigError(
                "rl.template",
                f"{self.rl.template!r} differs from distill.template {self.distill.template!r}: RL prompts must "
                "look like the prompts the student was fine-tuned on",
            )

        for stage, deployment in self.dispatch.items():
            if stage not in STAGE_NAMES:
                raise ConfigError(f"dispatch.{stage}", f"not a stage; stages are {', '.join(STAGE_NAMES)}")
            if deployment.count("/") != 1 or not all(deployment.split("/")):
                expected = f"expected FLOW/DEPLOYMENT, e.g. {stage}/gpu, got {deployment!r}"
                raise ConfigError(f"dispatch.{stage}", expected)
        if self.pull is None and self.evaluate is None:
            raise ConfigError("pull", "a recipe needs a pull section (training) or an evaluate section, or both")
        if self.evaluate is not None and self.evaluate.judge.checkpoint is not None:
            judge = self.evaluate.judge
            if self.pull is None or (judge.model == "sft_checkpoint" and self.sft is None):
                raise ConfigError("evaluate.judge.model", f"{judge.model}: this recipe does not train one")
            trained_on = self.rl.template if judge.model == "rl_checkpoint" else self.distill.template
            if judge.template != trained_on:
                raise ConfigError(
                    "evaluate.judge.template",
                    f"{judge.template!r} differs from {trained_on!r}, the template the {judge.model} was trained on",
                )

    @property
    def trains(self) -> bool:
        """Whether the recipe has training stages (a pull section)."""
        return self.pull is not None

    def to_dict(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], plain(self))

    @property
    def fingerprint(self) -> str:
        """Short hash of the resolved recipe, shown beside every run."""
        return hashlib.sha256(canonical_json(self).encode()).hexdigest()[:12]


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe, apply `dotted.key=value` overrides, and parse it into a Recipe."""
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
        return parse_section(Recipe, raw, "")
    except RecipeError as error:
        raise RecipeError(f"recipe {path}: {error}") from None


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    """Parse an already-loaded recipe mapping (e.g. a Prefect flow parameter)."""
    return parse_section(Recipe, raw, "")


def recipe_parameter(recipe: dict[str, Any] | str, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A flow's `recipe` parameter resolved to the parsed recipe as a mapping: a recipe file (what a
    deployment passes: a path relative to the working directory) or an already-loaded mapping, plus
    `dotted.key=value` overrides."""
    if isinstance(recipe, str):
        return load_recipe(recipe, overrides).to_dict()
    raw = copy.deepcopy(recipe)
    for override in overrides:
        apply_override(raw, override)
    return recipe_from_dict(raw).to_dict()


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


def parse_section(cls: type, raw: Any, key: str) -> Any:
    """Build dataclass `cls` from a mapping, checking keys, types and the class's own validation."""
    where = key or "top level"
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"; did you mean {_join(key, close[0])!r}?" if close else f"; known keys: {', '.join(fields)}"
            raise RecipeError(f"unknown key {_join(key, str(name))!r}{hint}")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _parse_value(hints[name], raw[name], _join(key, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"missing required key {_join(key, name)!r}")
    try:
        return cls(**values)
    except ConfigError as error:
        raise RecipeError(f"{_join(key, error.field)}: {error.message}") from None


def _parse_value(hint: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _parse_value(option, value, key)
            except RecipeError as error:
                errors.append(str(error))
        raise RecipeError(errors[0])
    if dataclasses.is_dataclass(hint):
        return parse_section(typing.cast(type, hint), value, key)
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise RecipeError(f"{key}: expected a list, got {type(value).__name__}")
        items = [_parse_value(args[0], item, f"{key}.{i}") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {type(value).__name__}")
        return {str(k): _parse_value(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _YAML_11_FLOAT.fullmatch(value.strip()):
        return float(value)  # PyYAML reads `5e-6` (no dot) as a string; everyone writes learning rates so
    is_bool_as_number = isinstance(value, bool) and hint in (int, float)
    if hint in (str, int, float, bool) and (not isinstance(value, hint) or is_bool_as_number):
        raise RecipeError(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    if hint is Any or hint in (str, int, float, bool):
        return value
    raise RecipeError(f"{key}: unsupported field type {hint}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
