"""Stable artifact versions: a hash of everything that decides an artifact's rows, and nothing else.

`artifact_version` is the single place where versions are computed. It must never look at the clock, the
repository commit, paths of temporary folders or any other input that does not change the rows.
`versioned` is the single place that reads which config fields are left out: a dataclass field with
`metadata={"versioned": False}` (how fast, how often, where to) is dropped; one with
`metadata={"versioned": BY_CONTENT}` (a path whose files the stage hashes itself) is recorded as null;
one with `metadata={"versioned": UNLESS_DEFAULT}` (added after artifacts were published, with a default that
keeps their rows) is left out while it holds its default, so those artifacts keep their versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

VERSION_LENGTH = 16


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace; dataclasses become dicts, tuples become lists."""
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plain(value: Any) -> Any:
    """`value` as JSON-ready dicts, lists and scalars; TypeError for anything a version cannot hash."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"mapping keys must be strings to hash into an artifact version: {list(value)!r}")
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot hash a {type(value).__name__} into an artifact version: {value!r}")


VERSIONED = "versioned"  # the field-metadata key
BY_CONTENT = "by content"  # recorded as null: the stage versions the files the field points to by their bytes
UNLESS_DEFAULT = "unless default"  # left out while it holds its default


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def versioned(value: Any) -> Any:
    """`plain(value)` without the dataclass fields marked as not versioned, at any depth."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kept = {}
        for f in dataclasses.fields(value):
            mark = f.metadata.get(VERSIONED, True)
            if mark is False or (mark == UNLESS_DEFAULT and getattr(value, f.name) == _default(f)):
                continue
            kept[f.name] = None if mark == BY_CONTENT else versioned(getattr(value, f.name))
        return kept
    if isinstance(value, Mapping):
        return {k: versioned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [versioned(v) for v in value]
    return plain(value)


def artifact_version(
    kind: str,
    contract_version: int,
    config: Any,
    upstream: Mapping[str, str],
    code_version: str,
) -> str:
    """Hash of (kind, contract version, the config that matters, upstream versions, code version).

    `config` may hold recipe sections: their fields marked not versioned are left out (`versioned`)."""
    payload = canonical_json(
        {
            "kind": kind,
            "contract_version": contract_version,
            "config": versioned(config),
            "upstream": dict(upstream),
            "code_version": code_version,
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:VERSION_LENGTH]


def file_sha256(path: str) -> str:
    """sha256 of a local file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
