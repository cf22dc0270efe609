"""A distill run in its own process, for kill-and-resume tests.

    python -m tests.helpers.distill_worker WORKDIR BASE_URL '{"rows": 200, "max_in_flight": 8}'

Prints "distilling" once the requests are about to go out, then (if not killed) one JSON line: the
published rows as sorted [pair_id, request_id, teacher_pass, status, response] lists.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from data_contracts import ArtifactStore
from tasks.distill.config import DistillConfig, TeacherConfig
from tasks.distill.stage import distill_traces, distill_version
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.stage import pull_preferences, pull_version
from tasks.split.config import SplitConfig
from tasks.split.stage import split_pairs, split_versions


def main() -> None:
    workdir, base_url, settings = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    store = ArtifactStore(workdir / "artifacts")
    source = SourceConfig(name="syn", adapter="synthetic", rows=settings["rows"], seed=11)
    pull_config, split_config = PullConfig(sources=(source,)), SplitConfig(distill_fraction=0.5)
    # A re-run (after a kill) publishes pull and split again: the versions are the same, the first publish stands.
    pairs = pull_preferences(pull_config, store, version=pull_version(pull_config)).outputs["preference_pairs"]
    versions = split_versions(split_config, pairs)
    distill_set = split_pairs(pairs, split_config, store, versions=versions).outputs["distill_set"]
    teacher = TeacherConfig(
        base_url=base_url, model="teacher-under-test", max_tokens=512, max_in_flight=settings["max_in_flight"],
        backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=5.0,
    )  # fmt: skip
    print("distilling", flush=True)
    batch = settings.get("batch", False)
    config = DistillConfig(teacher=teacher, shard_rows=25 if not batch else 1000, batch_mode=batch, batch_poll_s=0.1)
    result = distill_traces(distill_set, config, store, version=distill_version(config, distill_set))
    table = store.read_table(result.outputs["teacher_traces"])
    rows = sorted(
        [r["pair_id"], r["request_id"], r["teacher_pass"], r["status"], r["response"]] for r in table.to_pylist()
    )
    print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
    # Seen once in ~20 runs under load: a native library aborted during interpreter teardown
    # ("terminate called without an active exception") after the output was complete. The test is about
    # kill-and-resume, not teardown, so leave without it (tracked in the issue notes).
    os._exit(0)
