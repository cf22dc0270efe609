"""The `rmr1` command as a user runs it: a real process, an ephemeral Prefect server, real artifacts."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

SMOKE = str(ROOT / "recipes" / "smoke.yaml")


def rmr1(
    *args: str,
    cwd: Path,
    prefect_home: str = "prefect-home",
    api_url: str | None = None,
    python_args: tuple[str, ...] = ("-m", "flows.cli"),
    merged: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`rmr1 ARGS` in a fresh process, on an ephemeral Prefect server or the server at `api_url`; `python_args`
    start the CLI (`("-c", CODE)` to wrap it); `merged`: stderr into stdout, unbuffered, in the order written."""
    env = {**os.environ, "PREFECT_HOME": str(cwd / prefect_home)}
    env.pop("RMR1_ARTIFACTS", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if merged:
        env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, *python_args, *args]
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if merged else {"capture_output": True}
    return subprocess.run(command, cwd=cwd, env=env, text=True, timeout=600, **streams)  # type: ignore[call-overload]


def printed_versions(output: str) -> dict[str, str]:
    lines = [line.split() for line in output.splitlines() if line.startswith("  ")]
    return {parts[0]: parts[1] for parts in lines if len(parts) == 3}  # kind, version, folder


def test_run_twice_recomputes_nothing_even_on_an_empty_prefect_database(
    tmp_path: Path, prefect_server: dict[str, str], empty_prefect_home: Path
) -> None:
    url = prefect_server["PREFECT_API_URL"]  # the session's server; the second run starts an ephemeral one
    first = rmr1("run", "--recipe", SMOKE, "--to", "split", "--set", "pull.sources.0.rows=400", cwd=tmp_path,
                 api_url=url)  # fmt: skip
    assert first.returncode == 0, first.stderr
    versions = printed_versions(first.stdout)
    assert set(versions) == {"preference_pairs", "distill_set", "rl_set"}
    assert first.stdout.rstrip().endswith("rmr1: done (3 artifacts)")
    manifests = sorted((tmp_path / "artifacts").glob("*/*/_manifest.json"))
    assert len(manifests) == 3  # default root ./artifacts, no rejects for the synthetic set
    stamps = {p: p.stat().st_mtime_ns for p in manifests}

    # Another Prefect home, its database without a run: skipping rests on artifact versions alone. Without a Prefect
    # API URL the run starts a temporary server, and stops it before it prints its outcome: the outcome ends the output.
    second = rmr1("run", "--recipe", SMOKE, "--to", "split", "--set", "pull.sources.0.rows=400", cwd=tmp_path,
                  prefect_home=str(empty_prefect_home), merged=True)  # fmt: skip
    assert second.returncode == 0, second.stdout
    assert printed_versions(second.stdout) == versions
    assert "pull: skipped, already published" in second.stdout
    assert "split: skipped, already published" in second.stdout
    lines = second.stdout.rstrip().splitlines()
    stopped = next(i for i, line in enumerate(lines) if "Stopping temporary server" in line)
    assert lines[-1] == "rmr1: done (3 artifacts)" and lines[stopped + 1].startswith("  preference_pairs "), lines[-6:]
    assert {p: p.stat().st_mtime_ns for p in manifests} == stamps

    listing = rmr1("artifacts", "--kind", "distill_set", cwd=tmp_path)
    assert listing.returncode == 0
    assert versions["distill_set"] in listing.stdout
    assert f"preference_pairs/{versions['preference_pairs']}" in listing.stdout  # its lineage


def test_bad_override_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = rmr1("run", "--recipe", SMOKE, "--set", "split.distil_fraction=0.2", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key 'split.distil_fraction'; did you mean 'split.distill_fraction'?" in result.stderr
    assert not (tmp_path / "artifacts").exists()


def test_too_many_rejects_exit_1_naming_the_file(tmp_path: Path, prefect_server: dict[str, str]) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"q": "a", "good": "b", "bad": "c"}\n{"q": "d", "good": "", "bad": "f"}\n')
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: mine\npull:\n  sources:\n    - {name: mine, adapter: generic, path: pairs.jsonl,"
        " fields: {prompt: q, chosen: good, rejected: bad}}\n"
    )
    result = rmr1("stage", "pull", "--recipe", str(recipe), cwd=tmp_path, api_url=prefect_server["PREFECT_API_URL"])
    assert result.returncode == 1
    assert "pairs.jsonl: 1 of 2 rows (50.0%) were rejected" in result.stderr
    assert "pairs.jsonl#row=1: adapter: good: empty text" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr  # raised in the pull task: Prefect's tracebacks held back


async def _flow_runs_and_logs(name: str) -> dict[str, tuple[str, list[str]]]:
    """Flow runs whose name holds `name`, read back from the Prefect server: run name -> (state, log messages)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)))
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id for run in runs])))
    return {
        run.name: (run.state.name if run.state else "?", [log.message for log in logs if log.flow_run_id == run.id])
        for run in runs
    }


def test_a_user_error_in_a_flow_ends_with_one_message_and_its_traceback_stays_in_the_prefect_logs(
    tmp_path: Path, prefect_server: dict[str, str]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    (tmp_path / "pairs.jsonl").write_text('{"q": "a", "good": "b", "bad": "c"}\n{"q": "d", "good": "", "bad": "f"}\n')
    name = f"rejects-{tmp_path.name[-12:]}"  # unique on the session's server
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: {name}\npull:\n  sources:\n    - {{name: mine, adapter: generic, path: pairs.jsonl,"
        " fields: {prompt: q, chosen: good, rejected: bad}}\n"
    )
    url = prefect_server["PREFECT_API_URL"]
    result = rmr1("run", "--recipe", str(recipe), "--to", "pull", cwd=tmp_path, api_url=url)

    # The terminal: the pull task's RejectRateExceeded went through the pull flow and the pipeline flow.
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    message = "rmr1: failed: pairs.jsonl: 1 of 2 rows (50.0%) were rejected, above the threshold of 5.0%"
    assert result.stderr.rstrip().endswith("pairs.jsonl#row=1: adapter: good: empty text")
    assert message in result.stderr.splitlines()[-2]  # the message, then its first rejected row
    assert "Finished in state Failed('Task run encountered an exception RejectRateExceeded: " in result.stderr

    # The Prefect logs (the UI): every run the error passed through failed and logged its traceback.
    with temporary_settings({PREFECT_API_URL: url}):
        runs = asyncio.run(_flow_runs_and_logs(name))
    by_flow = {run_name.split(" · ")[0]: state_logs for run_name, state_logs in runs.items()}
    assert set(by_flow) == {"pipeline", "pull"} and all(state == "Failed" for state, _ in by_flow.values())
    for flow_name, logged in (("pull", "Task run failed with exception: RejectRateExceeded("),
                              ("pull", "Encountered exception during execution: RejectRateExceeded("),
                              ("pipeline", "Encountered exception during execution: RejectRateExceeded(")):  # fmt: skip
        [entry] = [m for m in by_flow[flow_name][1] if m.startswith(logged)]
        assert "Traceback (most recent call last):" in entry, (flow_name, entry)
        assert "data_contracts.contract.RejectRateExceeded: pairs.jsonl: 1 of 2 rows" in entry


# Injects a bug (not a UserError) into every stage's artifact writing, then runs the CLI as `rmr1` does.
WITH_A_BUG = """
import sys
from data_contracts.store import ArtifactStore
from flows.cli import main

def writer(*args, **kwargs):
    raise RuntimeError("an injected bug")

ArtifactStore.writer = writer
sys.exit(main())
"""


def test_a_bug_in_a_flow_keeps_its_traceback_on_the_terminal(tmp_path: Path, prefect_server: dict[str, str]) -> None:
    url = prefect_server["PREFECT_API_URL"]
    result = rmr1("run", "--recipe", SMOKE, "--to", "pull", "--set", "pull.sources.0.rows=20", cwd=tmp_path,
                  api_url=url, python_args=("-c", WITH_A_BUG))  # fmt: skip
    assert result.returncode == 1
    assert "rmr1: failed" not in result.stderr
    # Prefect's own records of the failing task, with the traceback, and the uncaught exception at the end.
    task_failed = result.stderr.index("Task run failed with exception: RuntimeError('an injected bug')")
    assert result.stderr.find("Traceback (most recent call last):", task_failed) > task_failed
    assert result.stderr.count("Encountered exception during execution: RuntimeError('an injected bug')") == 2
    assert result.stderr.rstrip().endswith("RuntimeError: an injected bug")


def test_the_api_key_never_reaches_artifacts_prefect_or_the_output(
    tmp_path: Path, prefect_server: dict[str, str]
) -> None:
    from tasks.standins.teacher import StandinTeacher

    fake_key = "sk-rmr1-FAKE-cli-secret-93be41d07a"
    with StandinTeacher() as teacher:
        env_key = {"RMR1_TEST_TEACHER_KEY": fake_key}
        overrides = [
            "--set", f"distill.teacher.base_url={teacher.base_url}", "--set", "distill.teacher.model=teacher-x",
            "--set", "distill.teacher.api_key_env=RMR1_TEST_TEACHER_KEY", "--set", "distill.second_teacher=null",
            "--set", "pull.sources.0.rows=80",
        ]  # fmt: skip
        os.environ.update(env_key)
        try:
            result = rmr1("run", "--recipe", SMOKE, "--to", "filter", *overrides, cwd=tmp_path,
                          api_url=prefect_server["PREFECT_API_URL"])  # fmt: skip
        finally:
            os.environ.pop("RMR1_TEST_TEACHER_KEY")
        assert all(entry["auth"] for entry in teacher.request_log()) and teacher.request_log()
    assert result.returncode == 0, result.stderr
    assert "teacher_traces" in result.stdout
    assert fake_key not in result.stdout + result.stderr
    server_home = Path(prefect_server["PREFECT_HOME"])  # the runs, their logs and artifacts are in its database
    files = [p for folder in (tmp_path, server_home) for p in folder.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    assert [p for p in files if fake_key.encode() in p.read_bytes()] == []


def test_dry_run_prints_the_resolved_trl_config_of_a_paper_recipe_and_runs_nothing(tmp_path: Path) -> None:
    recipe = str(ROOT / "recipes" / "rm-r1-qwen2.5-instruct-14b.yaml")
    result = rmr1("stage", "sft", "--recipe", recipe, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = yaml.safe_load(result.stdout)
    sft = plan["trl.SFTConfig"]
    assert sft["learning_rate"] == 3e-6 and sft["max_length"] == 12288 and sft["warmup_steps"] == 0.03
    assert sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"] * 16 == 128
    launcher = "accelerate launch --config_file infra/accelerate/deepspeed-zero3-multinode.yaml"
    assert plan["launch"]["command"] == launcher
    assert plan["student"]["model"] == "Qwen/Qwen2.5-14B-Instruct" and "tiny" not in plan["student"]
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "prefect-home").exists()

    no_sft = rmr1("stage", "sft", "--recipe", str(ROOT / "recipes" / "rm-r1-deepseek-distill-qwen-7b.yaml"),
                  "--dry-run", cwd=tmp_path)  # fmt: skip
    assert no_sft.returncode == 2 and "has no sft training section" in no_sft.stderr


def test_an_evaluation_only_recipe_runs_evaluate_alone_and_prints_the_scores(
    tmp_path: Path, prefect_server: dict[str, str]
) -> None:
    recipe = str(ROOT / "recipes" / "eval-length-baseline.yaml")
    paths = [f"evaluate.benchmarks.{k}.path=synthetic" for k in range(3)]
    sets = [arg for path in paths for arg in ("--set", path)]
    done = rmr1("stage", "evaluate", "--recipe", recipe, *sets, cwd=tmp_path, api_url=prefect_server["PREFECT_API_URL"])
    assert done.returncode == 0, done.stderr
    assert set(printed_versions(done.stdout)) == {"eval_predictions", "eval_scores"}
    assert sorted(p.parent.parent.name for p in (tmp_path / "artifacts").glob("*/*/_manifest.json")) == [
        "eval_predictions", "eval_scores",
    ]  # no training stage ran  # fmt: skip
    assert "rmr1: scores: RewardBench " in done.stdout and ", avg " in done.stdout


def test_lineage_prints_the_chain_from_the_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from data_contracts import ArtifactStore
    from flows.cli import main
    from flows.plan import execute, make_plan
    from flows.recipe import load_recipe

    recipe = load_recipe(SMOKE, ["pull.sources.0.rows=200"])
    store = ArtifactStore(tmp_path)
    refs = execute(make_plan(recipe, store, target="filter"))  # pull, split, distill, filter, in this process
    target = refs["sft_examples"]
    assert main(["artifacts", "--artifacts", str(tmp_path), "--lineage", f"sft_examples/{target.version[:6]}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    chain = [line.strip().removeprefix("└─ ").split("  ")[0] for line in lines]
    assert chain == [str(refs[k]) for k in ("sft_examples", "teacher_traces", "distill_set", "preference_pairs")]
    assert lines[0].startswith(f"{target}  created ") and "  code filter-1  recipe-section " in lines[0]
    assert lines[-1].startswith("      └─ preference_pairs/") and "sources: refusal (synthetic)" in lines[-1]
    assert main(["artifacts", "--artifacts", str(tmp_path), "--lineage", "sft_examples"]) == 0  # the newest
    assert capsys.readouterr().out.splitlines() == lines
    assert main(["artifacts", "--artifacts", str(tmp_path), "--lineage", "rl_checkpoint"]) == 2
    assert "--lineage rl_checkpoint: nothing of that kind is published" in capsys.readouterr().err


def test_show_prints_the_rows_that_match_every_where_one_block_each_long_values_cut_and_wrapped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa

    from data_contracts import ArtifactStore, publish_table
    from data_contracts.kinds import FILTER_REJECTS
    from flows.cli import SHOW_CHARS, SHOW_WIDTH, main

    long_reason = "format: <eval> " + " ".join(f"word{i}" for i in range(600))
    rows = [{"pair_id": f"p{i}", "request_id": f"r{i}", "teacher_pass": 1 + i % 2, "teacher_model": "teacher",
             "domain": "math" if i % 2 else "chat", "source": "synthetic", "reason": long_reason if i == 3 else "short"}
            for i in range(6)]  # fmt: skip
    store = ArtifactStore(tmp_path)
    publish_table(store, FILTER_REJECTS, "abc123", pa.Table.from_pylist(rows, schema=FILTER_REJECTS.schema))
    publish_table(store, FILTER_REJECTS, "abd456", pa.Table.from_pylist(rows[:1], schema=FILTER_REJECTS.schema))
    show = ["show", "--artifacts", str(tmp_path)]

    assert (
        main([*show, "filter_rejects/abc", "--where", "domain=math", "--where", "teacher_pass=2", "--rows", "2"]) == 0
    )
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    assert blocks[0] == "filter_rejects/abc123: 3 of 6 rows match domain=math and teacher_pass=2; showing 2"
    assert blocks[1].splitlines() == [
        "── row 1 ──", "pair_id: p1", "request_id: r1", "teacher_pass: 2", "teacher_model: teacher", "domain: math",
        "source: synthetic", "reason: short",
    ]  # fmt: skip
    reason = blocks[2].split("reason:\n")[1].splitlines()
    assert blocks[2].startswith("── row 3 ──\npair_id: p3\n")
    assert all(line.startswith("  ") and len(line) <= SHOW_WIDTH for line in reason)
    assert f"  [… {len(long_reason) - SHOW_CHARS:,} characters cut; {len(long_reason):,} in all …]" in reason
    assert reason[0].startswith("  format: <eval> word0 word1 ") and len(reason[0]) >= SHOW_WIDTH - 8  # wrapped
    assert reason[-1].endswith("word599")  # the end of a long value too, not only its start

    assert main([*show, "filter_rejects/abc", "--where", "pair_id=p3", "--chars", "0"]) == 0
    whole = capsys.readouterr().out
    assert "characters cut" not in whole and " ".join(whole.split("reason:\n")[1].split()) == long_reason
    assert main([*show, "filter_rejects/abc", "--where", "swapped=true"]) == 2
    error = capsys.readouterr().err
    assert "--where 'swapped=true': filter_rejects/abc123 has no column 'swapped'; its columns: pair_id, " in error
    assert main([*show, "filter_rejects/abc", "--rows", "-1"]) == 2
    assert "--rows -1: expected 0 or more" in capsys.readouterr().err
    assert main([*show, "filter_rejects/abc", "--where", "domain"]) == 2
    assert "expected COL=VALUE" in capsys.readouterr().err
    assert main([*show, "filter_rejects/ab"]) == 2  # two versions start with ab
    assert re.search(
        r"filter_rejects/ab: expected one published artifact, found ab.\d+, ab.\d+", capsys.readouterr().err
    )

    # The command as a user runs it: rows on stdout, and Prefect never imported.
    command = [*show, "filter_rejects/abd"]
    code = f"import sys; from flows.cli import main; main({command!r}); print('prefect' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "filter_rejects/abd456: 1 rows; showing 1"
    assert done.stdout.splitlines()[-1] == "False"


def test_show_reads_only_the_parts_it_prints_and_counts_matches_from_the_where_columns(tmp_path: Path) -> None:
    """Four parts of 50 rows: three rows open the first part only; a `--where` reads its column from every part
    (to count) and the rows it shows, numbered across parts."""
    import pyarrow as pa

    from data_contracts import ArtifactStore
    from data_contracts.kinds import PREFERENCE_PAIRS
    from flows.cli import show_rows
    from tests.helpers.store_worker import pair_rows

    store = ArtifactStore(tmp_path)
    with store.writer(PREFERENCE_PAIRS, "v1", rows_per_part=50) as writer:
        writer.write_valid(pa.Table.from_pylist(pair_rows(0, 200), schema=PREFERENCE_PAIRS.schema))
        writer.commit()
    opened: list[str] = []
    real_open = store.fs.open

    def recording_open(path: str, *args: object, **kwargs: object) -> object:
        opened.append(path.rsplit("/", 1)[-1])
        return real_open(path, *args, **kwargs)

    store.fs.open = recording_open  # type: ignore[method-assign]
    text = show_rows(store, "preference_pairs/v1", rows=3)
    assert text.startswith("preference_pairs/v1: 200 rows; showing 3") and "── row 2 ──" in text
    assert {name for name in opened if name.startswith("part-")} == {"part-00000.parquet"}

    opened.clear()
    text = show_rows(store, "preference_pairs/v1", rows=2, where=["domain=math", "source=worker"])
    assert text.splitlines()[0] == "preference_pairs/v1: 50 of 200 rows match domain=math and source=worker; showing 2"
    assert "── row 3 ──\npair_id: pair-000003" in text and "── row 7 ──" in text  # domain cycles chat/safety/code/math
    assert sorted({name for name in opened if name.startswith("part-")}) == [f"part-0000{k}.parquet" for k in range(4)]
    late = show_rows(store, "preference_pairs/v1", rows=1, where=["pair_id=pair-000187"])
    assert late.splitlines()[0].startswith("preference_pairs/v1: 1 of 200 rows") and "── row 187 ──" in late
