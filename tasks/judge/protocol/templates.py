"""Judge prompt templates: load a versioned template set and render a preference pair into judge messages.

A template set is a folder holding `template.yaml` and the prompt text files it names (docs/method.md §2).
This module only turns (conversation, answer_a, answer_b) into chat messages; it must never call a
model, read data sets, or decide which answer is chosen (the caller places the pair with `place_pair`).
Placeholders are substituted in one pass, so text inside an answer is never substituted again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml

from data_contracts.errors import UserError
from tasks.judge.protocol.verdicts import Winner

Turn = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

TEMPLATES_DIR = Path(__file__).parent / "templates"
BUILTIN_TEMPLATE_SETS: tuple[str, ...] = (
    "cor-instruct-v1",  # Chain-of-Rubrics for instruct models, docs/method.md §2
    "cor-compact-v1",  # the same protocol with a one-paragraph system prompt (tiny CPU students)
    "reasoning-v1",  # DeepSeek-distilled reasoning models, docs/method.md §2
    "no-classification-v1",  # ablation "no task classification", docs/method.md §2
    "no-rubrics-v1",  # ablation "no rubrics", docs/method.md §2
)
FAMILIES = ("instruct", "reasoning")
SINGLE_TURN_PLACEHOLDERS = ("{question}", "{answer_a}", "{answer_b}")
MULTI_TURN_PLACEHOLDERS = ("{conversation_a}", "{conversation_b}")
_YAML_KEYS = ("name", "version", "family", "system", "user_single", "user_multi")
# Speaker labels of the multi-turn block, docs/method.md §2 (spelled "Chatbot", never "Chabot").
_SPEAKERS = {"system": "System", "user": "User"}


class TemplateError(UserError, ValueError):
    """A template set folder, its template.yaml or one of its text files is missing or invalid."""


@dataclass(frozen=True)
class TemplateSet:
    """One versioned judge prompt: an optional system text and the single-/multi-turn user texts."""

    name: str
    version: int
    family: str  # "instruct" | "reasoning"
    system: str | None
    user_single: str
    user_multi: str

    @cached_property
    def fingerprint(self) -> str:
        """First 16 hex chars of a sha256 over name, version, family and the three texts."""
        payload = [self.name, self.version, self.family, self.system, self.user_single, self.user_multi]
        return hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()[:16]


def _read_text(folder: Path, yaml_path: Path, key: str, file_name: object) -> str:
    if not isinstance(file_name, str) or not file_name:
        raise TemplateError(f"{yaml_path}: key '{key}' must be a file name, got {file_name!r}")
    path = folder / file_name
    if not path.is_file():
        raise TemplateError(f"{yaml_path}: key '{key}' names {path}, which does not exist")
    text = path.read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text  # the newline editors add at end of file


def _require_placeholders(yaml_path: Path, key: str, text: str, placeholders: tuple[str, ...]) -> None:
    missing = [p for p in placeholders if p not in text]
    if missing:
        raise TemplateError(f"{yaml_path}: the file under key '{key}' lacks placeholder(s) {missing}")


def load_template_set(name_or_path: str) -> TemplateSet:
    """Load a built-in set by name, or a user's set from a folder holding template.yaml."""
    folder = TEMPLATES_DIR / name_or_path if name_or_path in BUILTIN_TEMPLATE_SETS else Path(name_or_path)
    if not folder.is_dir():
        raise TemplateError(f"{name_or_path!r} is not a folder nor a built-in set {BUILTIN_TEMPLATE_SETS}")
    yaml_path = folder / "template.yaml"
    if not yaml_path.is_file():
        raise TemplateError(f"{yaml_path} does not exist")
    try:
        spec = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateError(f"{yaml_path} is not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise TemplateError(f"{yaml_path} must hold a mapping with keys {list(_YAML_KEYS)}")
    for key in _YAML_KEYS:
        if key not in spec:
            raise TemplateError(f"{yaml_path}: missing key '{key}'")
    unknown = sorted(set(spec) - set(_YAML_KEYS))
    if unknown:
        raise TemplateError(f"{yaml_path}: unknown key(s) {unknown}; expected {list(_YAML_KEYS)}")
    if not isinstance(spec["name"], str) or not spec["name"]:
        raise TemplateError(f"{yaml_path}: key 'name' must be a non-empty string")
    if not isinstance(spec["version"], int) or isinstance(spec["version"], bool):
        raise TemplateError(f"{yaml_path}: key 'version' must be an integer, got {spec['version']!r}")
    if spec["family"] not in FAMILIES:
        raise TemplateError(f"{yaml_path}: key 'family' must be one of {FAMILIES}, got {spec['family']!r}")

    system = None if spec["system"] is None else _read_text(folder, yaml_path, "system", spec["system"])
    user_single = _read_text(folder, yaml_path, "user_single", spec["user_single"])
    user_multi = _read_text(folder, yaml_path, "user_multi", spec["user_multi"])
    _require_placeholders(yaml_path, "user_single", user_single, SINGLE_TURN_PLACEHOLDERS)
    _require_placeholders(yaml_path, "user_multi", user_multi, MULTI_TURN_PLACEHOLDERS)
    return TemplateSet(spec["name"], spec["version"], spec["family"], system, user_single, user_multi)


def placeholder_markers(text: str, placeholder: str) -> tuple[str, str]:
    """The lines right before and right after `placeholder` in a template text (blank lines skipped): the
    markers that frame what it is replaced with, e.g. "[The Start of Chatbot A's Response]" and
    "[The End of Chatbot A's Response]" around "{answer_a}". A ValueError when `placeholder` is not there."""
    if placeholder not in text:
        raise ValueError(f"{placeholder!r} is not in the template text")
    before, _, after = text.partition(placeholder)
    before_lines, after_lines = before.strip("\n").split("\n"), after.strip("\n").split("\n")
    return before_lines[-1], after_lines[0]


def is_single_turn(conversation: list[Turn]) -> bool:
    """Exactly one user turn, optionally preceded by one system turn, and no assistant turns."""
    roles = [turn.get("role") for turn in conversation]
    return roles in (["user"], ["system", "user"])


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """Replace the given placeholders in a single pass (not str.format: answers contain braces)."""
    pattern = "|".join(re.escape(placeholder) for placeholder in values)
    return re.sub(pattern, lambda match: values[match.group(0)], text)


def _render_conversation(conversation: list[Turn], answer: str, chatbot: str) -> str:
    """One line per turn, `User: ...` / `Chatbot X: ...` / `System: ...`, ending with this chatbot's answer."""
    lines = []
    for turn in conversation:
        role = turn["role"]
        if role == "assistant":
            speaker = chatbot
        elif role in _SPEAKERS:
            speaker = _SPEAKERS[role]
        else:
            raise ValueError(f"unknown conversation role {role!r}")
        lines.append(f"{speaker}: {turn['content']}")
    lines.append(f"{chatbot}: {answer}")
    return "\n".join(lines)


def render_user_message(template: TemplateSet, conversation: list[Turn], answer_a: str, answer_b: str) -> str:
    """The judge's user message: the single-turn layout when `is_single_turn`, else the multi-turn one."""
    if is_single_turn(conversation):
        question = "\n\n".join(turn["content"] for turn in conversation)  # system content, then user
        values = {"{question}": question, "{answer_a}": answer_a, "{answer_b}": answer_b}
        return fill_placeholders(template.user_single, values)
    values = {
        "{conversation_a}": _render_conversation(conversation, answer_a, "Chatbot A"),
        "{conversation_b}": _render_conversation(conversation, answer_b, "Chatbot B"),
    }
    return fill_placeholders(template.user_multi, values)


def render_judge_messages(template: TemplateSet, conversation: list[Turn], answer_a: str, answer_b: str) -> list[Turn]:
    """[system?, user] chat messages for the judge; no system message when the template has none."""
    user = {"role": "user", "content": render_user_message(template, conversation, answer_a, answer_b)}
    if template.system is None:
        return [user]
    return [{"role": "system", "content": template.system}, user]


def place_pair(chosen: str, rejected: str, chosen_position: Literal["A", "B"]) -> tuple[str, str, Winner]:
    """(answer_a, answer_b, winner) with the chosen answer shown as Chatbot A or Chatbot B."""
    if chosen_position == "A":
        return chosen, rejected, "model_a"
    if chosen_position == "B":
        return rejected, chosen, "model_b"
    raise ValueError(f"chosen_position must be 'A' or 'B', got {chosen_position!r}")
