"""A child process that publishes `preference_pairs` into an artifact store, for the store's process tests.

Two modes, each printing one line per milestone on stdout (flushed) so the parent can act at that moment:

- `race ROOT VERSION GO_FILE --api publish_table|writer`: build the rows (and, with `writer`, write them to
  an open writer), print `ready`, wait until GO_FILE exists, then publish and print `ref <json>`.
- `slow ROOT VERSION RELEASE_FILE`: write a 5-row batch, print `first-batch-written`, keep writing a batch
  every 20 ms until RELEASE_FILE exists, then commit and print `ref <json>`. Gives up (exit 3, nothing
  published) after 60 s so a forgotten child never lingers.
- `die ROOT VERSION POINT`: publish 20 rows in parts of 5, stop at POINT, print `at-point` and sleep until
  killed: `mid-write` (two parts in the writer's temporary folder), `mid-move` (object stores: the first part
  moved under this publisher's attempt, the rest still in the temporary folder) or `before-manifest` (every
  part under the attempt, the manifest not created). What a SIGKILL there leaves is what gc must sweep.

It imports only the package under test, never the test modules.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

import pyarrow as pa

from data_contracts import ArtifactRef, ArtifactStore, publish_table
from data_contracts.kinds import PREFERENCE_PAIRS

BATCH_ROWS = 5
GIVE_UP_AFTER_S = 60.0


def pair_rows(start: int, count: int) -> list[dict[str, object]]:
    """Valid preference pairs with ids `pair-<start>` .. `pair-<start + count - 1>`."""
    return [
        {
            "pair_id": f"pair-{i:06d}",
            "source": "worker",
            "domain": ("chat", "safety", "code", "math")[i % 4],
            "conversation": [{"role": "user", "content": f"question {i}"}],
            "chosen": f"good answer {i}",
            "rejected": f"bad answer {i}",
            "source_ref": f"worker.jsonl:{i}",
        }
        for i in range(start, start + count)
    ]


def _say(line: str) -> None:
    print(line, flush=True)


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.001)


def _report(ref: ArtifactRef, rows: int) -> None:
    _say("ref " + json.dumps({**asdict(ref), "rows": rows}))


def race(root: str, version: str, go_file: str, api: str) -> None:
    store = ArtifactStore(root)
    table = pa.Table.from_pylist(pair_rows(0, 200), schema=PREFERENCE_PAIRS.schema)
    if api == "publish_table":
        _say("ready")
        _wait_for(go_file)
        ref = publish_table(store, PREFERENCE_PAIRS, version, table, config={"mode": "race"})
    else:
        with store.writer(PREFERENCE_PAIRS, version, config={"mode": "race"}) as writer:
            writer.write_valid(table)
            _say("ready")
            _wait_for(go_file)
            ref = writer.commit()
    _report(ref, table.num_rows)


def slow(root: str, version: str, release_file: str) -> None:
    store = ArtifactStore(root)
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    with store.writer(PREFERENCE_PAIRS, version, rows_per_part=BATCH_ROWS) as writer:
        writer.write_valid(pa.Table.from_pylist(pair_rows(0, BATCH_ROWS), schema=PREFERENCE_PAIRS.schema))
        _say("first-batch-written")
        while not os.path.exists(release_file):
            if time.monotonic() > deadline:
                sys.exit(3)  # leaves the block with SystemExit: the writer aborts, nothing is published
            time.sleep(0.02)
            writer.write_valid(pa.Table.from_pylist(pair_rows(writer.rows, BATCH_ROWS), schema=PREFERENCE_PAIRS.schema))
        ref = writer.commit()
    _report(ref, writer.rows)


def _stop() -> None:
    _say("at-point")
    time.sleep(GIVE_UP_AFTER_S)
    sys.exit(3)


def die(root: str, version: str, point: str) -> None:
    store = ArtifactStore(root)
    rows = pa.Table.from_pylist(pair_rows(0, 4 * BATCH_ROWS), schema=PREFERENCE_PAIRS.schema)
    move, create = store.fs.mv, store.fs.pipe_file
    moved: list[str] = []

    def mv(source: str, target: str, **kwargs: object) -> None:
        if point == "mid-move" and moved:
            _stop()
        move(source, target, **kwargs)
        moved.append(target)

    def pipe_file(path: str, value: bytes, **kwargs: object) -> None:
        if point == "before-manifest" and path.endswith("_manifest.json"):
            _stop()
        create(path, value, **kwargs)

    store.fs.mv, store.fs.pipe_file = mv, pipe_file  # type: ignore[method-assign]
    with store.writer(PREFERENCE_PAIRS, version, rows_per_part=BATCH_ROWS) as writer:
        writer.write_valid(rows.slice(0, 2 * BATCH_ROWS))
        if point == "mid-write":
            writer._close_part()  # the second part on disk too, as the next batch would leave it
            _stop()
        writer.write_valid(rows.slice(2 * BATCH_ROWS))
        writer.commit()
    _say("published")  # a point this store never reaches (e.g. mid-move on a local root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    race_args = modes.add_parser("race")
    race_args.add_argument("root")
    race_args.add_argument("version")
    race_args.add_argument("go_file")
    race_args.add_argument("--api", choices=("publish_table", "writer"), default="publish_table")
    slow_args = modes.add_parser("slow")
    slow_args.add_argument("root")
    slow_args.add_argument("version")
    slow_args.add_argument("release_file")
    die_args = modes.add_parser("die")
    die_args.add_argument("root")
    die_args.add_argument("version")
    die_args.add_argument("point", choices=("mid-write", "mid-move", "before-manifest"))
    args = parser.parse_args()
    if args.mode == "race":
        race(args.root, args.version, args.go_file, args.api)
    elif args.mode == "die":
        die(args.root, args.version, args.point)
    else:
        slow(args.root, args.version, args.release_file)


if __name__ == "__main__":
    main()
