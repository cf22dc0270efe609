"""An exclusive lock on a stage version's scratch folder, so two runs of one version never share it unprotected.

The lock is a small JSON file beside the folder (`<scratch>.lock`: pid, host, since), written aside and
hard-linked into place: the link is atomic and fails when the name exists (like O_CREAT|O_EXCL, also on
NFS), so exactly one run holds it and no one reads it half written. It sits beside the folder, not inside,
because the holder removes its scratch once it has published, while still holding the lock. The holder
touches the file every `HEARTBEAT_S` seconds; a lock is stale when its holder is gone: on this host, its pid
is no longer alive; from another host, its heartbeat is older than `STALE_AFTER_S`. A stale lock is taken
over under a short "breaker" file (created the same way): whoever holds the breaker checks that the lock is
still the stale one it saw before removing it, then competes for a fresh create like everyone else, so two
takers of one stale lock cannot both win. A run that finds the lock held waits up to `wait_s` (default
$RMR1_SCRATCH_WAIT, else 0) and then fails with `ScratchBusy`, naming the holder and the folder.

What it relies on: atomic hard links on the scratch's file system (local disks, NFS), and hosts' clocks
agreeing to well within `STALE_AFTER_S`. It never deletes a lock that is not stale or not its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from data_contracts.errors import UserError

WAIT_ENV = "RMR1_SCRATCH_WAIT"  # seconds a second run of one stage version waits for the first (default 0)
HEARTBEAT_S = 30.0  # how often the holder touches its lock file
STALE_AFTER_S = 600.0  # a lock from another host untouched this long belongs to a run that died
BREAKER_STALE_S = 60.0  # the breaker is held for milliseconds; one this old was left by a killed taker
POLL_S = 0.2


class ScratchBusy(UserError):
    """Another live run of the same stage version holds its scratch folder."""


class BadScratchWait(UserError):
    """$RMR1_SCRATCH_WAIT is not a number of seconds."""

    exit_code = 2


def lock_path(scratch: str, node: int = 0) -> str:
    """The lock file of `scratch`; the nodes of one multi-node run share the folder, so each locks its own."""
    return f"{scratch.rstrip('/')}{f'.node{node}' if node else ''}.lock"


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }


def _read(path: str) -> dict[str, Any] | None:
    """The lock's holder, or None when there is no lock; {} when its content is unreadable (half written)."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _create(path: str, content: dict[str, Any]) -> bool:
    """Create the file with `content` unless it exists (False then). Written aside and hard-linked into place,
    so the file is never seen half written and the link, like O_CREAT|O_EXCL, fails if the name is taken."""
    aside = f"{path}.{uuid.uuid4().hex}.tmp"
    descriptor = os.open(aside, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(content, handle)
        os.link(aside, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(aside)
    return True


def _age_s(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def is_stale(holder: dict[str, Any], age_s: float, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether the run that wrote `holder` is gone: a dead pid on this host, else an old heartbeat."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return not _pid_alive(holder["pid"])
    return age_s > stale_after_s


def describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"


def _break_stale(path: str, seen: dict[str, Any]) -> None:
    """Remove the lock at `path` if it still is the stale one `seen`; one taker at a time (the breaker)."""
    breaker = f"{path}.break"
    if _age_s(breaker) > BREAKER_STALE_S:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(breaker)
    taker = _holder()
    if not _create(breaker, taker):
        return  # another taker is at it; look again
    try:
        if _read(path) == seen:
            os.unlink(path)
    finally:
        if (_read(breaker) or {}).get("token") == taker["token"]:  # still ours: not judged stale and replaced
            with contextlib.suppress(FileNotFoundError):
                os.unlink(breaker)


def _heartbeat(path: str, token: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        if (_read(path) or {}).get("token") != token:
            return  # taken over (we were judged dead): nothing of ours to touch
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)


@contextlib.contextmanager
def locked_scratch(
    scratch: str, wait_s: float | None = None, *, node: int = 0, stale_after_s: float = STALE_AFTER_S
) -> Iterator[str]:
    """Hold the lock on `scratch` (created if missing) for the block; yield the folder. `node`: the machine
    rank of a multi-node run (whose nodes share the folder).

    Waits up to `wait_s` seconds (None: $RMR1_SCRATCH_WAIT, else 0) for a live holder, then raises
    ScratchBusy naming it. Released when the block ends, also on an exception.
    """
    if wait_s is None:
        try:
            wait_s = float(os.environ.get(WAIT_ENV) or 0)
        except ValueError:
            raise BadScratchWait(f"${WAIT_ENV}={os.environ[WAIT_ENV]!r}: expected seconds to wait, e.g. 600") from None
    path = lock_path(scratch, node)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    mine = _holder()
    deadline = time.monotonic() + wait_s
    while not _create(path, mine):
        seen = _read(path)
        if seen is None:
            continue  # released between our create and our read
        age_s = _age_s(path)
        if is_stale(seen, age_s, stale_after_s) if seen else age_s > BREAKER_STALE_S:  # {}: unreadable
            _break_stale(path, seen)
            continue
        if time.monotonic() >= deadline:
            who = describe(seen) if seen else "a run whose lock file is unreadable"
            raise ScratchBusy(
                f"the scratch folder {scratch} is in use by {who}: another run of the same stage version is "
                f"going. Wait for it, or set {WAIT_ENV}=SECONDS to wait; if that run is gone, delete {path}."
            )
        time.sleep(POLL_S)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, mine["token"], stop), daemon=True)
    beat.start()
    try:
        os.makedirs(scratch, exist_ok=True)
        yield scratch
    finally:
        stop.set()
        beat.join()
        if (_read(path) or {}).get("token") == mine["token"]:
            os.unlink(path)
