"""Tags: `rmr1 artifacts tag KIND/VERSION NAME`, resolved as KIND@NAME wherever KIND[/VERSION] is, listed, kept by
gc with their lineage, moved by one process at a time on S3, and the promotion gate on a version's own scores."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from data_contracts import ArtifactRef, ArtifactStore, publish_table
from data_contracts.kinds import EVAL_PREDICTIONS, EVAL_SCORES, PREFERENCE_PAIRS, RL_CHECKPOINT
from data_contracts.retention import collect_garbage
from data_contracts.tags import history, tagged
from flows.cli import main as rmr1
from tests.conftest import ROOT
from tests.helpers.store_worker import pair_rows


def checkpoint(store: ArtifactStore, version: str) -> ArtifactRef:
    """An rl_checkpoint folder artifact (the files a Hugging Face folder needs) built from preference pairs."""
    pairs = publish_table(store, PREFERENCE_PAIRS, f"pairs-{version}",
                          pa.Table.from_pylist(pair_rows(0, 3), schema=PREFERENCE_PAIRS.schema))  # fmt: skip
    with store.folder_writer(RL_CHECKPOINT, version, upstream={pairs.kind: pairs.version}) as writer:
        for name in ("config.json", "tokenizer_config.json", "model.safetensors"):
            Path(writer.path, name).write_text("{}")
        ref = writer.commit()
    time.sleep(1.05)  # created_at has whole seconds: the next one is newer
    return ref


def scores(store: ArtifactStore, ref: ArtifactRef, tag: str, **benchmarks: float) -> None:
    """An evaluation of `ref` as the evaluate stage publishes it: eval_predictions naming it upstream, then
    eval_scores with a benchmark/score row per benchmark."""
    empty = pa.Table.from_pylist([], schema=EVAL_PREDICTIONS.schema)
    predictions = publish_table(store, EVAL_PREDICTIONS, f"p-{tag}", empty, upstream={ref.kind: ref.version})
    rows = [{"benchmark": b, "level": "benchmark", "name": "score", "score": s, "count": 10, "error_rate": 0.0}
            for b, s in benchmarks.items()]  # fmt: skip
    publish_table(store, EVAL_SCORES, f"s-{tag}", pa.Table.from_pylist(rows, schema=EVAL_SCORES.schema),
                  upstream={predictions.kind: predictions.version})  # fmt: skip


def test_a_tag_names_a_version_everywhere_a_version_is_accepted_and_keeps_its_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ArtifactStore(tmp_path)
    old, new = checkpoint(store, "old"), checkpoint(store, "new")
    art = ["--artifacts", str(tmp_path)]
    assert rmr1(["artifacts", "tag", "rl_checkpoint/old", "production", "--note", "first", *art]) == 0
    assert capsys.readouterr().out.strip() == "rl_checkpoint@production -> rl_checkpoint/old (new tag)"
    assert store.resolve("rl_checkpoint@production") == old and store.resolve("rl_checkpoint") == new
    assert rmr1(["artifacts", "tag", "rl_checkpoint/new", "production", *art]) == 0
    assert "rl_checkpoint@production -> rl_checkpoint/new (was rl_checkpoint/old)" in capsys.readouterr().out
    assert store.resolve("rl_checkpoint@production") == new
    moves = history(store, "rl_checkpoint", "production")
    assert [(m["number"], m["version"], m["previous"]) for m in moves] == [(1, "old", None), (2, "new", "old")]
    assert moves[0]["note"] == "first"

    assert rmr1(["artifacts", *art]) == 0
    listing = capsys.readouterr().out
    assert "tags:\n  rl_checkpoint@production -> rl_checkpoint/new  (moved " in listing
    assert rmr1(["artifacts", "--lineage", "rl_checkpoint@production", *art]) == 0
    assert capsys.readouterr().out.startswith("rl_checkpoint/new ")
    from tasks.judge.api import PairwiseJudge

    judge = PairwiseJudge.from_artifact(str(tmp_path), "rl_checkpoint@production")  # the model loads on first use
    assert judge.name == "rl_checkpoint/new" and judge.model == store.folder("rl_checkpoint", "new")

    assert rmr1(["artifacts", "tag", "rl_checkpoint/new", "Production!", *art]) == 2
    assert "use lowercase letters" in capsys.readouterr().err
    assert rmr1(["show", "rl_checkpoint@candidate", *art]) == 2
    error = capsys.readouterr().err
    assert "rl_checkpoint@candidate: no such tag" in error and "tags of rl_checkpoint: production" in error


def test_gc_keeps_a_tagged_older_version_and_its_lineage(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    old, _ = checkpoint(store, "old"), checkpoint(store, "new")
    assert rmr1(["artifacts", "tag", "rl_checkpoint/old", "production", "--artifacts", str(tmp_path)]) == 0
    assert tagged(store) == {("rl_checkpoint", "old"): "production"}
    plan, removals = collect_garbage(store, 1)
    assert plan.why[("rl_checkpoint", "old")] == "tagged production"
    assert plan.why[("preference_pairs", "pairs-old")] == "upstream of rl_checkpoint/old"
    assert removals == [] and store.get("rl_checkpoint", "old") == old


def test_the_promotion_gate_moves_nothing_when_the_version_misses_a_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ArtifactStore(tmp_path)
    weak, strong = checkpoint(store, "weak"), checkpoint(store, "strong")
    scores(store, weak, "weak", rewardbench=0.91, judgebench=0.55)
    scores(store, strong, "strong", rewardbench=0.85, judgebench=0.64)
    art = ["--artifacts", str(tmp_path)]
    bar = ["--require", "rewardbench>=0.80,judgebench>=0.60"]
    assert rmr1(["artifacts", "tag", "rl_checkpoint/strong", "production", *bar, *art]) == 0
    assert "gate passed: rewardbench 0.850, judgebench 0.640" in capsys.readouterr().out

    assert rmr1(["artifacts", "tag", "rl_checkpoint/weak", "production", *bar, *art]) == 1
    error = capsys.readouterr().err
    assert "rl_checkpoint@production not moved to rl_checkpoint/weak: judgebench 0.550 is not >= 0.6" in error
    assert "rewardbench" not in error.split("weak:")[1]  # only the miss is named
    assert store.resolve("rl_checkpoint@production").version == "strong"  # nothing moved

    assert rmr1(["artifacts", "tag", "rl_checkpoint/weak", "candidate", "--require", "rmb>=0.5", *art]) == 1
    assert "rmb: no published score for rl_checkpoint/weak (its scores: judgebench 0.550, rewardbench 0.910)" in (
        capsys.readouterr().err
    )
    assert rmr1(["artifacts", "tag", "rl_checkpoint/weak", "candidate", "--require", "rmb>=80", *art]) == 2
    assert "fractions from 0 to 1" in capsys.readouterr().err
    assert history(store, "rl_checkpoint", "candidate") == []


MOVE = """
import os, sys, time
from data_contracts import ArtifactStore
from data_contracts.errors import UserError
from data_contracts.tags import move
store = ArtifactStore(sys.argv[1])
ref = store.require("preference_pairs", sys.argv[2])
print("ready", flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.001)
try:
    entry = move(store, ref, "production")
    print("moved", entry["number"], flush=True)
except UserError as error:
    print("refused", error, flush=True)
"""


def test_processes_moving_one_tag_at_once_on_s3_leave_one_consistent_value(
    s3_root: str, s3_server: dict[str, str], tmp_path: Path
) -> None:
    """Rounds of three processes moving one tag to three versions at once: each move that succeeds has its own
    number, the numbers have no gap, the tag names the version of the highest, and a refused move says where
    the tag now points."""
    store = ArtifactStore(s3_root)
    for k in range(3):
        publish_table(
            store, PREFERENCE_PAIRS, f"v{k}", pa.Table.from_pylist(pair_rows(k, 2), schema=PREFERENCE_PAIRS.schema)
        )
    env = {**s3_server, "PYTHONPATH": str(ROOT)}
    moved: list[tuple[int, str]] = []
    refused = 0
    for round_ in range(4):
        go = tmp_path / f"go-{round_}"
        children = [subprocess.Popen([sys.executable, "-c", MOVE, s3_root, f"v{k}", str(go)], stdout=subprocess.PIPE,
                                     text=True, env=env) for k in range(3)]  # fmt: skip
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        go.touch()
        for k, child in enumerate(children):
            out, _ = child.communicate(timeout=120)
            if out.startswith("moved"):
                moved.append((int(out.split()[1]), f"v{k}"))
            else:
                assert out.startswith("refused preference_pairs@production was moved by another process"), out
                refused += 1
    moves = history(store, "preference_pairs", "production")
    numbers = sorted(number for number, _ in moved)
    assert numbers == list(range(1, len(numbers) + 1)) == [m["number"] for m in moves]  # one winner per number
    assert dict(moved) == {m["number"]: m["version"] for m in moves}
    assert store.resolve("preference_pairs@production").version == moves[-1]["version"]
    assert refused + len(moved) == 12 and len(moved) >= 4  # every round moved it at least once
