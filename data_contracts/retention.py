"""Retention: which published artifacts to keep and which to remove, and the removal itself.

`plan_retention` is pure: from the manifests of every published artifact it keeps the newest N versions of
each kind (or of one kind; the others are not touched), everything younger than an age, and everything a
kept artifact was built from (the closure over the manifests' `upstream`), so no kept artifact ever loses
its lineage. `collect` is the edge: it removes what a plan says, newest first (a dependent before what it
was built from, so a killed run never leaves an artifact whose upstream is gone), each one unpublished
before its files go. It only ever sees published artifacts (`ArtifactStore.list`): a writer's temporary
folder, a version folder without a manifest (a publish in progress on an object store), the scratch folders
and the request caches (hidden folders) are never touched.

A run planned before the collection may still be about to read an artifact the collection removes: `--older-than`
longer than a pipeline run is the guard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from data_contracts.errors import UserError
from data_contracts.store import MANIFEST, TEMP_PREFIX, ArtifactStore, file_key

Key = tuple[str, str]  # (kind, version)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BadRetention(UserError):
    """A retention option a user typed cannot be used (a negative --keep, an age like `7days`)."""

    exit_code = 2


def parse_age(text: str) -> dt.timedelta:
    """`7d`, `12h`, `30m`, `45s`, `2w` as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise BadRetention(f"--older-than {text!r}: expected a number and a unit (s, m, h, d, w), e.g. 7d or 12h")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def key(manifest: dict[str, Any]) -> Key:
    return manifest["kind"], manifest["version"]


@dataclass(frozen=True)
class RetentionPlan:
    """The published artifacts split in two: kept (with why) and removed, each oldest first."""

    keep: tuple[dict[str, Any], ...]
    remove: tuple[dict[str, Any], ...]
    why: dict[Key, str]  # for each kept artifact: newest, young, another kind, or upstream of KIND/VERSION


def plan_retention(
    manifests: Iterable[dict[str, Any]],
    keep: int,
    *,
    kind: str | None = None,
    older_than: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> RetentionPlan:
    """Keep the newest `keep` versions of each kind (only `kind` is collected when given), whatever is younger
    than `older_than`, and the upstream closure of all of those; remove the rest."""
    if keep < 0:
        raise BadRetention(f"--keep {keep}: expected 0 or more versions to keep per kind")
    now = now or dt.datetime.now(dt.UTC)
    published = sorted(manifests, key=lambda m: (m["created_at"], m["kind"], m["version"]))
    by_key = {key(m): m for m in published}
    why: dict[Key, str] = {}
    newest: dict[str, int] = {}
    for manifest in reversed(published):  # newest first
        name = manifest["kind"]
        newest[name] = newest.get(name, 0) + 1
        if kind is not None and name != kind:
            why[key(manifest)] = "another kind"
        elif newest[name] <= keep:
            why[key(manifest)] = f"newest {keep}"
        elif older_than is not None and now - dt.datetime.fromisoformat(manifest["created_at"]) <= older_than:
            why[key(manifest)] = "younger than --older-than"
    pending = list(why)
    while pending:
        child = pending.pop()
        for upstream in by_key[child]["upstream"].items():
            if upstream in by_key and upstream not in why:
                why[upstream] = f"upstream of {child[0]}/{child[1]}"
                pending.append(upstream)
    return RetentionPlan(
        keep=tuple(m for m in published if key(m) in why),
        remove=tuple(m for m in published if key(m) not in why),
        why=why,
    )


def artifact_bytes(store: ArtifactStore, kind: str, version: str) -> int:
    """Bytes under an artifact's folder, as the file system reports them."""
    return int(store.fs.du(store.folder(kind, version), total=True))


def remove_artifact(store: ArtifactStore, kind: str, version: str) -> None:
    """Unpublish, then delete: a reader sees the whole artifact or none of it, never a part of it."""
    folder = store.folder(kind, version)
    if store.local:
        hidden = f"{store.root}/{kind}/{TEMP_PREFIX}gc-{version}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, hidden)  # atomic; a crash here leaves a temporary folder that writers sweep away
        shutil.rmtree(hidden, ignore_errors=True)
        return
    files = store.manifest(store.ref(kind, version))["files"]
    store.fs.rm(f"{folder}/{MANIFEST}")  # the manifest is the commit point: without it nothing is published
    # Only what that manifest listed: a publisher racing to publish this version again uses its own attempt.
    attempts = sorted({file_key(entry).split("/", 1)[0] for entry in files if "key" in entry})
    for attempt in attempts:
        store.fs.rm(f"{folder}/{attempt}", recursive=True)
    in_place = [f"{folder}/{entry['path']}" for entry in files if "key" not in entry]  # written before attempts
    if in_place:
        store.fs.rm(in_place)
    with contextlib.suppress(OSError):  # an empty folder's marker, where the file system keeps one
        store.fs.rmdir(folder)


@dataclass(frozen=True)
class Removal:
    kind: str
    version: str
    bytes: int


def collect(store: ArtifactStore, plan: RetentionPlan, *, dry_run: bool = False) -> list[Removal]:
    """Remove the plan's artifacts (newest first; none when `dry_run`); what was (or would be) removed."""
    removals = []
    for manifest in reversed(plan.remove):
        kind, version = key(manifest)
        if store.get(kind, version) is None:  # already gone (another collection)
            continue
        removals.append(Removal(kind, version, artifact_bytes(store, kind, version)))
        if not dry_run:
            remove_artifact(store, kind, version)
    return removals


def collect_garbage(
    store: ArtifactStore, keep: int, *, kind: str | None = None, older_than: str | None = None, dry_run: bool = False
) -> tuple[RetentionPlan, list[Removal]]:
    """`rmr1 artifacts gc` and its flow: plan over every published artifact of `store`, then collect."""
    age = parse_age(older_than) if older_than else None
    plan = plan_retention(store.list(), keep, kind=kind, older_than=age)
    return plan, collect(store, plan, dry_run=dry_run)


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def report(removals: list[Removal], kept: int, *, dry_run: bool) -> str:
    """One line per removal (kind/version, size) and the total freed, as the CLI and the flow print it."""
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {r.kind}/{r.version}  {human_bytes(r.bytes)} ({r.bytes} bytes)" for r in removals]
    total = sum(r.bytes for r in removals)
    done, freed = ("to remove", "would free") if dry_run else ("removed", "freed")
    lines.append(f"{len(removals)} {done}, {kept} kept; {freed} {human_bytes(total)} ({total} bytes)")
    return "\n".join(lines)
