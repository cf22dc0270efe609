"""Tags: names for published versions (`production`, `candidate`), kept in the store beside the manifests.

`KIND@NAME` is accepted wherever `KIND[/VERSION]` is (`ArtifactStore.resolve`). A tag is a history of moves under
`<root>/.tags/<kind>/<name>/`, one small JSON file per move, numbered: the highest number is where the tag points.
A move writes the next number with a create-only write (`O_EXCL` on a local root, `If-None-Match: *` on an
object store), so two processes moving one tag at once cannot both succeed: one move wins, the other fails
naming where the tag now points, and the tag never holds a mix of the two. The history says who moved it when.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
from typing import Any

from data_contracts.errors import UserError
from data_contracts.store import TAGS, ArtifactRef, ArtifactStore

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class TagError(UserError):
    """A tag name that cannot be used."""

    exit_code = 2


class TagMovedMeanwhile(UserError):
    """Another process moved the tag between this one reading it and writing its move."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise TagError(f"tag {name!r}: use lowercase letters, digits, '.', '_' and '-' (e.g. production)")
    return name


def _folder(store: ArtifactStore, kind: str, name: str) -> str:
    return f"{store.root}/{TAGS}/{kind}/{name}"


def history(store: ArtifactStore, kind: str, name: str) -> list[dict[str, Any]]:
    """Every move of `kind@name`, oldest first (empty when the tag does not exist)."""
    return store.tag_moves(kind, name)


def current(store: ArtifactStore, kind: str, name: str) -> dict[str, Any] | None:
    moves = history(store, kind, name)
    return moves[-1] if moves else None


def move(store: ArtifactStore, ref: ArtifactRef, name: str, *, note: str = "") -> dict[str, Any]:
    """Point `ref.kind@name` at `ref`: the next numbered move, created only if no other move took that number."""
    check_name(name)
    before = current(store, ref.kind, name)
    number = int(before["number"]) + 1 if before else 1
    entry = {"kind": ref.kind, "name": name, "version": ref.version, "number": number,
             "previous": before["version"] if before else None,
             "moved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "by": f"{os.getpid()}@{socket.gethostname()}", "note": note}  # fmt: skip
    path = f"{_folder(store, ref.kind, name)}/{number:08d}.json"
    data = json.dumps(entry, indent=1).encode()
    try:
        if store.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "xb") as handle:  # O_EXCL: fails if another move took this number
                handle.write(data)
        else:
            store.fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        now = current(store, ref.kind, name)
        where = f"{ref.kind}/{now['version']}" if now else "?"
        raise TagMovedMeanwhile(
            f"{ref.kind}@{name} was moved by another process meanwhile (it now points at {where}); nothing "
            "changed here: look, then run again to move it"
        ) from None
    return entry


def all_tags(store: ArtifactStore) -> list[dict[str, Any]]:
    """The current move of every tag, by kind then name."""
    base = f"{store.root}/{TAGS}"
    store.fs.invalidate_cache(base)
    if not store.fs.exists(base):
        return []
    tags = []
    for kind_folder in sorted(store.fs.ls(base, detail=False)):
        kind = kind_folder.rstrip("/").rsplit("/", 1)[-1]
        for tag_folder in sorted(store.fs.ls(kind_folder, detail=False)):
            move_now = current(store, kind, tag_folder.rstrip("/").rsplit("/", 1)[-1])
            if move_now is not None:
                tags.append(move_now)
    return tags


def tagged(store: ArtifactStore) -> dict[tuple[str, str], str]:
    """(kind, version) -> the tags pointing at it ("production, candidate"): what gc keeps with its lineage."""
    names: dict[tuple[str, str], list[str]] = {}
    for tag in all_tags(store):
        names.setdefault((tag["kind"], tag["version"]), []).append(tag["name"])
    return {key: ", ".join(sorted(value)) for key, value in names.items()}
