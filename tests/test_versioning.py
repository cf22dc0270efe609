"""Tests of artifact versions: a stable hash of what decides an artifact's rows, and of nothing else.

The expected hash below is hard-coded on purpose: any change to how versions are computed renames every
artifact in every store, so it must be a deliberate change that also updates this test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from data_contracts import artifact_version, canonical_json
from data_contracts.versioning import VERSION_LENGTH

BASE: dict[str, Any] = {
    "kind": "preference_pairs",
    "contract_version": 1,
    "config": {"seed": 7, "sources": ["skywork", "math"], "max_rows": None},
    "upstream": {"raw": "abc123"},
    "code_version": "pull-3",
}
BASE_VERSION = "fa5496f78625e697"


def _version(**changes: Any) -> str:
    return artifact_version(**{**BASE, **changes})


@dataclass(frozen=True)
class SourceConfig:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class PullConfig:
    seed: int = 7
    sources: tuple[SourceConfig, ...] = (SourceConfig("skywork"), SourceConfig("math", 0.5))
    extra: dict[str, Any] = field(default_factory=lambda: {"b": 2, "a": [1, (2, 3)]})


def test_artifact_version_of_a_fixed_input_is_a_known_hash() -> None:
    assert _version() == BASE_VERSION
    payload = (
        '{"code_version":"pull-3","config":{"max_rows":null,"seed":7,"sources":["skywork","math"]},'
        '"contract_version":1,"kind":"preference_pairs","upstream":{"raw":"abc123"}}'
    )
    assert hashlib.sha256(payload.encode()).hexdigest()[:16] == BASE_VERSION


def test_artifact_version_is_sixteen_lowercase_hex_characters() -> None:
    version = _version()
    assert VERSION_LENGTH == 16
    assert len(version) == 16
    assert set(version) <= set("0123456789abcdef")


def test_artifact_version_is_the_same_on_every_call() -> None:
    assert {_version() for _ in range(3)} == {BASE_VERSION}


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "distill_set"},
        {"contract_version": 2},
        {"config": {"seed": 8, "sources": ["skywork", "math"], "max_rows": None}},
        {"config": {"seed": 7, "sources": ["math", "skywork"], "max_rows": None}},
        {"config": {"seed": 7, "sources": ["skywork", "math"], "max_rows": 1000}},
        {"config": {"seed": 7, "sources": ["skywork", "math"]}},
        {"config": {"seed": 7, "sources": ["skywork", "math"], "max_rows": None, "new_option": False}},
        {"config": {"seed": "7", "sources": ["skywork", "math"], "max_rows": None}},
        {"upstream": {"raw": "abc124"}},
        {"upstream": {"raw": "abc123", "teacher_traces": "def456"}},
        {"upstream": {"other": "abc123"}},
        {"upstream": {}},
        {"code_version": "pull-4"},
        {"code_version": ""},
    ],
    ids=[
        "kind",
        "contract-version",
        "config-value",
        "config-list-order",
        "config-null-to-value",
        "config-key-removed",
        "config-key-added",
        "config-value-type",
        "upstream-version",
        "upstream-added",
        "upstream-renamed",
        "upstream-removed",
        "code-version",
        "code-version-empty",
    ],
)
def test_artifact_version_changes_when_anything_that_decides_the_rows_changes(changes: dict[str, Any]) -> None:
    assert _version(**changes) != BASE_VERSION


def test_every_distinct_input_above_gets_a_distinct_version() -> None:
    versions = [
        _version(kind="distill_set"),
        _version(kind="rl_set"),
        _version(contract_version=2),
        _version(code_version="pull-4"),
        _version(upstream={"raw": "abc124"}),
        BASE_VERSION,
    ]
    assert len(set(versions)) == len(versions)


def test_artifact_version_does_not_depend_on_dict_key_order() -> None:
    reordered_config = {"max_rows": None, "sources": ["skywork", "math"], "seed": 7}
    upstream = {"raw": "abc123", "teacher_traces": "def456", "a_first": "000"}
    reordered_upstream = dict(reversed(list(upstream.items())))

    assert _version(config=reordered_config) == BASE_VERSION
    assert _version(upstream=upstream) == _version(upstream=reordered_upstream)
    assert _version(config={"outer": {"b": 1, "a": 2}}) == _version(config={"outer": {"a": 2, "b": 1}})


def test_a_dataclass_config_hashes_like_the_equivalent_plain_dict() -> None:
    as_dict = {
        "seed": 7,
        "sources": [{"name": "skywork", "weight": 1.0}, {"name": "math", "weight": 0.5}],
        "extra": {"a": [1, [2, 3]], "b": 2},
    }
    assert _version(config=PullConfig()) == _version(config=as_dict)
    assert _version(config=PullConfig(seed=8)) != _version(config=PullConfig())
    assert _version(config=PullConfig(sources=(SourceConfig("skywork", 0.9),))) != _version(config=PullConfig())


# --- canonical_json ------------------------------------------------------------------------------------


def test_canonical_json_sorts_keys_drops_whitespace_and_keeps_unicode() -> None:
    value = {"b": (1, 2.5, None), "a": {"z": True, "y": "ü"}}
    assert canonical_json(value) == '{"a":{"y":"ü","z":true},"b":[1,2.5,null]}'


def test_canonical_json_turns_dataclasses_into_dicts_recursively() -> None:
    assert canonical_json(PullConfig()) == (
        '{"extra":{"a":[1,[2,3]],"b":2},"seed":7,'
        '"sources":[{"name":"skywork","weight":1.0},{"name":"math","weight":0.5}]}'
    )


def test_canonical_json_turns_tuples_into_lists() -> None:
    assert canonical_json((1, ("a", ()))) == '[1,["a",[]]]'
    assert canonical_json({"x": (1, 2)}) == canonical_json({"x": [1, 2]})


def test_canonical_json_keeps_booleans_apart_from_integers() -> None:
    assert canonical_json([True, 1, False, 0]) == "[true,1,false,0]"
    assert _version(config={"flag": True}) != _version(config={"flag": 1})


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset({"a"}), "frozenset"),
        (b"bytes", "bytes"),
        (object(), "object"),
        (Path("/tmp/x"), "PosixPath"),
        (dt.date(2026, 1, 1), "date"),
        (PullConfig, "type"),  # a dataclass type, not an instance
        ({"nested": [{"deeper": {3, 4}}]}, "set"),
        (SourceConfig(name=b"raw"), "bytes"),  # type: ignore[arg-type]
    ],
    ids=["set", "frozenset", "bytes", "object", "path", "date", "dataclass-type", "nested-set", "dataclass-field"],
)
def test_unhashable_values_raise_type_error_naming_the_type(value: Any, type_name: str) -> None:
    with pytest.raises(TypeError, match=rf"^cannot hash a {type_name} into an artifact version"):
        canonical_json(value)
    with pytest.raises(TypeError, match=rf"^cannot hash a {type_name} "):
        _version(config=value)


def test_keys_that_collide_as_strings_do_not_silently_merge() -> None:
    try:
        colliding = _version(config={1: "a", "1": "b"})
    except TypeError:
        return  # refusing the config is as good as keeping both keys
    assert colliding != _version(config={"1": "b"})
