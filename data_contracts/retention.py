"""Retention: which published artifacts to keep and which to remove, and the removal itself.

`plan_retention` is pure: from the manifests of every published artifact it keeps the newest N versions of
each kind (or of one kind; the others are not touched), everything younger than an age, and everything a
kept artifact was built from (the closure over the manifests' `upstream`), so no kept artifact ever loses
its lineage. `collect` is the edge: it removes what a plan says, newest first (a dependent before what it
was built from, so a killed run never leaves an artifact whose upstream is gone), each one unpublished
before its files go. It only ever sees published artifacts (`ArtifactStore.list`): a writer's temporary
folder, a version folder without a manifest (a publish in progress on an object store), the scratch folders
and the request caches (hidden folders) are never touched by it.

`find_litter` / `sweep_litter` are the other half of gc: what killed writers and publishers leave behind on
any root. A table writer's `.tmp-*` folder under its kind (local roots and object stores alike), and on object
stores an `attempt-*` prefix under a version folder that no manifest lists (a publisher killed before its
conditional create of the manifest, or one that lost the race and died before removing its files). Neither is
ever read. A publish in progress is never taken for litter: every file of a candidate must be older than the
litter age (24 h by default). A writer or publisher at work writes its files one after another and the
manifest last, so its newest file is at most one file's write old; an attempt a manifest lists is published,
never litter, whatever its age.

A run planned before the collection may still be about to read an artifact the collection removes: `--older-than`
longer than a pipeline run is the guard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from data_contracts.errors import UserError
from data_contracts.store import ATTEMPT_PREFIX, MANIFEST, STALE_TEMP_SECONDS, TEMP_PREFIX, ArtifactStore, file_key

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
    tagged: dict[Key, str] | None = None,
) -> RetentionPlan:
    """Keep the newest `keep` versions of each kind (only `kind` is collected when given), whatever is younger
    than `older_than`, what a tag names (`tagged`: (kind, version) -> tag names), and the upstream closure of
    all of those; remove the rest."""
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
        elif key(manifest) in (tagged or {}):
            why[key(manifest)] = f"tagged {(tagged or {})[key(manifest)]}"
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
    from data_contracts.tags import tagged

    age = parse_age(older_than) if older_than else None
    plan = plan_retention(store.list(), keep, kind=kind, older_than=age, tagged=tagged(store))
    return plan, collect(store, plan, dry_run=dry_run)


# ---------------------------------------------------------------- litter: what killed writers leave

LITTER_AGE = dt.timedelta(seconds=STALE_TEMP_SECONDS)


@dataclass(frozen=True)
class Litter:
    path: str  # under the root: KIND/.tmp-… or KIND/VERSION/attempt-…
    what: Literal["temporary folder", "unlisted attempt"]
    bytes: int
    age_s: float  # since its newest file was written


def _modified(info: dict[str, Any]) -> float | None:
    """When a file was last written (epoch seconds), from what fsspec reports (local `mtime`, S3
    `LastModified`, others `last_modified` / `created`); None when it does not say."""
    for name in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(name)
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None


def _candidates(
    store: ArtifactStore, kind: str | None
) -> list[tuple[str, Literal["temporary folder", "unlisted attempt"]]]:
    """Paths that would be litter if old enough: temporary folders, and attempts no manifest lists."""
    found: list[tuple[str, Literal["temporary folder", "unlisted attempt"]]] = []
    if not store.fs.exists(store.root):
        return found
    kinds = [kind] if kind else sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(store.root, detail=False))
    for name in kinds:
        kind_folder = f"{store.root}/{name}"
        if name.startswith(".") or not store.fs.isdir(kind_folder):
            continue
        for entry in sorted(store.fs.ls(kind_folder, detail=False)):
            entry_name = entry.rstrip("/").rsplit("/", 1)[-1]
            if entry_name.startswith(TEMP_PREFIX):
                found.append((f"{kind_folder}/{entry_name}", "temporary folder"))
            elif not store.local and not entry_name.startswith(".") and store.fs.isdir(entry):
                version_folder = f"{kind_folder}/{entry_name}"
                attempts = [p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(version_folder, detail=False)]
                attempts = [a for a in attempts if a.startswith(ATTEMPT_PREFIX)]
                if not attempts:
                    continue
                ref = store.get(name, entry_name)
                files = store.manifest(ref)["files"] if ref is not None else []
                listed = {file_key(f).split("/", 1)[0] for f in files if "key" in f}
                found += [(f"{version_folder}/{a}", "unlisted attempt") for a in sorted(attempts) if a not in listed]
    return found


def find_litter(
    store: ArtifactStore, min_age: dt.timedelta = LITTER_AGE, *, kind: str | None = None, now: float | None = None
) -> list[Litter]:
    """Temporary folders and unlisted attempts (of `kind`, or all kinds) whose every file is older than
    `min_age`, with their sizes. Something that cannot be dated is left alone."""
    now = time.time() if now is None else now
    litter = []
    for path, what in _candidates(store, kind):
        store.fs.invalidate_cache(path)
        infos = list(store.fs.find(path, detail=True, withdirs=False).values()) or [store.fs.info(path)]
        times = [_modified(info) for info in infos]
        if any(t is None for t in times):
            continue
        age = now - max(t for t in times if t is not None)
        if age >= min_age.total_seconds():
            relative = path[len(store.root) + 1 :]
            litter.append(Litter(relative, what, sum(int(i.get("size") or 0) for i in infos), age))
    return litter


def sweep_litter(
    store: ArtifactStore, min_age: dt.timedelta = LITTER_AGE, *, kind: str | None = None, dry_run: bool = False
) -> list[Litter]:
    """Remove what `find_litter` finds (nothing when `dry_run`); what was (or would be) removed."""
    litter = find_litter(store, min_age, kind=kind)
    if not dry_run:
        for item in litter:
            path = f"{store.root}/{item.path}"
            if store.local:
                shutil.rmtree(path, ignore_errors=True)
            elif store.fs.exists(path):
                store.fs.rm(path, recursive=True)
    return litter


def litter_report(litter: list[Litter], *, dry_run: bool) -> str:
    """One line per leftover (path, what, size, age) and the total, as the CLI and the flow print it."""
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {item.path}  ({item.what}, {human_bytes(item.bytes)}, {item.age_s / 3600:.1f} h old)"
             for item in litter]  # fmt: skip
    total = sum(item.bytes for item in litter)
    lines.append(f"{len(litter)} leftover(s) of killed writers {verb.replace('would remove', 'to remove')}; "
                 f"{human_bytes(total)} ({total} bytes)")  # fmt: skip
    return "\n".join(lines)


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
