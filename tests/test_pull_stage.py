"""The pull stage end to end (no Prefect): real files through `datasets`, dedupe, rejects, skipping (the plan)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import ArtifactStore, RejectRateExceeded
from flows.plan import execute, make_plan
from flows.recipe import Recipe
from tasks.pull import stage as pull_stage
from tasks.pull.adapters import NormalizedPair
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.sources import SourceError, load_source
from tasks.pull.stage import pull_version
from tasks.records.fields import FieldMap
from tasks.stage import StageResult
from tests.conftest import FIXTURES, PREFERENCES, needs_shared


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def generic(name: str, path: Path, **extra: Any) -> SourceConfig:
    fields = FieldMap(prompt="prompt", chosen="chosen", rejected="rejected")
    return SourceConfig(name=name, adapter="generic", path=str(path), fields=fields, **extra)


def pull_preferences(config: PullConfig, store: ArtifactStore, **options: Any) -> StageResult:
    """The stage as the plan runs it: the version it publishes computed from the config."""
    return pull_stage.pull_preferences(config, store, version=pull_version(config), **options)


def pairs_table(store: ArtifactStore, result: Any) -> pa.Table:
    return store.read_table(result.outputs["preference_pairs"])


@needs_shared
def test_pull_normalises_real_files_of_every_layout_into_one_artifact(tmp_path: Path) -> None:
    skywork = tmp_path / "skywork.parquet"  # the Hub ships Skywork as parquet: convert the fixture
    pq.write_table(pa.Table.from_pylist([json.loads(x) for x in (FIXTURES / "skywork_v0_2.jsonl").open()]), skywork)
    config = PullConfig(
        sources=(
            SourceConfig(name="math", adapter="math_step_dpo", path=str(FIXTURES / "math_step_dpo_10k.jsonl")),
            SourceConfig(
                name="code", adapter="code_preference_pairs", path=str(FIXTURES / "code_preference_pairs.jsonl")
            ),
            SourceConfig(name="skywork", adapter="skywork", path=str(skywork)),
            SourceConfig(
                name="hh", adapter="hh_rlhf", path=str(PREFERENCES / "hh_rlhf_harmless_base" / "test.jsonl.gz")
            ),
            SourceConfig(name="dpo-demo", adapter="sharegpt_dpo", path=str(PREFERENCES / "llamafactory_dpo_demo")),
            generic(
                "code-sample", PREFERENCES / "code_preference_pairs_sample_agentrubric" / "code_preference_eval.jsonl"
            ),
        )
    )
    store = ArtifactStore(tmp_path / "artifacts")
    result = pull_preferences(config, store, max_reject_rate=0.25)  # the 5-row Skywork fixture has 1 bad row
    table = pairs_table(store, result)
    by_source = {row["source"]: row for row in _sum_by_source(result.stats["counts"])}

    assert by_source["hh"] == {"source": "hh", "rows_in": 2312, "dropped": 0, "rejected": 4, "rows_out": 2308}
    # dpo_en_demo.json (300) + v1_dpo_demo.jsonl (10) read as one folder; the demo repeats 5 pairs verbatim.
    assert by_source["dpo-demo"] == {"source": "dpo-demo", "rows_in": 310, "dropped": 5, "rejected": 0, "rows_out": 305}
    assert result.stats["dropped"]["dpo-demo: duplicate pair"] == 5
    assert by_source["code-sample"]["rows_out"] == 200
    assert by_source["skywork"] == {"source": "skywork", "rows_in": 5, "dropped": 1, "rejected": 1, "rows_out": 3}
    assert table.num_rows == result.stats["rows_out"] == sum(r["rows_out"] for r in by_source.values())
    assert set(table.column("domain").to_pylist()) == {"chat", "safety", "code", "math"}
    assert len(set(table.column("pair_id").to_pylist())) == table.num_rows
    refs = table.column("source_ref").to_pylist()
    assert any(r.endswith("test.jsonl.gz#row=0") for r in refs)
    assert any(r.endswith("v1_dpo_demo.jsonl#row=9") for r in refs)
    # Row order follows the recipe: math first, then code, ...
    assert table.column("source").to_pylist()[:3] == ["math"] * 3

    rejects = store.read_table(store.require("preference_pairs_rejects", result.outputs["preference_pairs"].version))
    hh_rejects = [r for r in rejects.to_pylist() if "test.jsonl.gz" in r["source_ref"]]
    assert [r["row_index"] for r in hh_rejects] == [86, 516, 925, 1103]
    assert all(r["reason"] == "adapter: chosen: empty answer" for r in hh_rejects)
    assert json.loads(hh_rejects[0]["row_json"])["chosen"].startswith("\n\nHuman:")


def _sum_by_source(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        total = totals.setdefault(
            row["source"], {"source": row["source"], "rows_in": 0, "dropped": 0, "rejected": 0, "rows_out": 0}
        )
        for key in ("rows_in", "dropped", "rejected", "rows_out"):
            total[key] += row[key]
    return list(totals.values())


def test_too_many_bad_rows_fail_naming_the_file_row_and_field_and_publish_nothing(tmp_path: Path) -> None:
    records = [{"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(20)]
    records[3]["chosen"] = "   "
    records[11]["rejected"] = None
    bad_file = write_jsonl(tmp_path / "mine.jsonl", records)
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(RejectRateExceeded) as error:
        pull_preferences(PullConfig(sources=(generic("mine", bad_file),)), store, max_reject_rate=0.05)
    message = str(error.value)
    assert f"{bad_file}: 2 of 20 rows (10.0%) were rejected" in message
    assert f"{bad_file}#row=3: adapter: chosen: empty text" in message
    assert f"{bad_file}#row=11: adapter: rejected: missing" in message
    assert store.list() == []
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "artifacts").rglob("*"))
    # Under a looser threshold the same file publishes, with its two rejects kept aside.
    result = pull_preferences(PullConfig(sources=(generic("mine", bad_file),)), store, max_reject_rate=0.2)
    assert result.stats["rows_out"] == 18
    assert store.get("preference_pairs_rejects", result.outputs["preference_pairs"].version) is not None


def test_rows_breaking_the_contract_are_rejected_with_rule_field_and_file_row(tmp_path: Path, monkeypatch: Any) -> None:
    records = [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    real_adapt = pull_stage.adapt_record

    def adapt_with_one_bad_row(record: dict[str, Any], source: SourceConfig) -> Any:
        pair = real_adapt(record, source)
        if record["prompt"] == "q7":  # an adapter bug: the conversation ends with the answer
            return NormalizedPair([*pair.conversation, {"role": "assistant", "content": "a7"}], "a7", "b7", "chat")
        return pair

    monkeypatch.setattr(pull_stage, "adapt_record", adapt_with_one_bad_row)
    store = ArtifactStore(tmp_path / "artifacts")
    result = pull_preferences(PullConfig(sources=(generic("p", path),)), store)
    version = result.outputs["preference_pairs"].version
    rejects = store.read_table(store.require("preference_pairs_rejects", version)).to_pylist()
    assert [(r["row_index"], r["source_ref"], r["reason"]) for r in rejects] == [
        (7, f"{path}#row=7", "contract: last_turn_is_user (conversation)")
    ]
    assert json.loads(rejects[0]["row_json"])["chosen"] == "a7"
    assert result.stats["rows_out"] == 39 == store.read_table(result.outputs["preference_pairs"]).num_rows
    assert result.stats["counts"] == [
        {"source": "p", "domain": "chat", "rows_in": 40, "dropped": 0, "rejected": 1, "rows_out": 39}
    ]


def test_identical_pairs_are_kept_once_across_files_and_sources(tmp_path: Path) -> None:
    records = [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(10)]
    first = write_jsonl(tmp_path / "first.jsonl", records + records[:3])
    second = write_jsonl(tmp_path / "second.jsonl", [*records[5:], {"prompt": "new", "chosen": "x", "rejected": "y"}])
    store = ArtifactStore(tmp_path / "artifacts")
    result = pull_preferences(PullConfig(sources=(generic("one", first), generic("two", second))), store)
    table = pairs_table(store, result)
    assert table.num_rows == 11
    assert result.stats["dropped"] == {"one: duplicate pair": 3, "two: duplicate pair": 5}
    assert table.column("source").to_pylist().count("two") == 1


def test_shuffle_and_first_n_pick_the_same_rows_as_datasets_shuffle(tmp_path: Path) -> None:
    records = [
        {
            "instruction": "You are a coding assistant.",
            "input": f"task {i}",
            "accepted": f"ok {i}",
            "rejected": f"bug {i}",
            "ID": i,
        }
        for i in range(60)
    ]
    path = write_jsonl(tmp_path / "code.jsonl", records)
    source = SourceConfig(name="code", adapter="code_preference_pairs", path=str(path), shuffle_seed=42, first_n=8)
    expected = datasets.load_dataset("json", data_files=str(path), split="train").shuffle(seed=42).select(range(8))
    loaded = [record for _, _, record in load_source(source, str(tmp_path)).iter_records()]
    assert [r["ID"] for r in loaded] == expected["ID"]
    store = ArtifactStore(tmp_path / "artifacts")
    table = pairs_table(store, pull_preferences(PullConfig(sources=(source,)), store))
    assert [ref.rsplit("=", 1)[1] for ref in table.column("source_ref").to_pylist()] == [str(i) for i in expected["ID"]]


def test_second_pull_of_the_same_inputs_is_skipped_without_reading_sources(tmp_path: Path, monkeypatch: Any) -> None:
    config = PullConfig(sources=(SourceConfig(name="syn", adapter="synthetic", rows=60, seed=3),))
    recipe = Recipe(name="pull-twice", pull=config)
    store = ArtifactStore(tmp_path / "artifacts")
    first_plan = make_plan(recipe, store, target="pull")
    assert first_plan.step("pull").runs
    ran: list[StageResult | None] = []
    first_outputs = execute(first_plan, on_step=lambda step, result: ran.append(result))
    [first] = ran
    assert first is not None and first.outputs == first_outputs
    manifest_path = Path(first.outputs["preference_pairs"].uri) / "_manifest.json"
    before = manifest_path.stat().st_mtime_ns

    def no_loading(*_: Any) -> None:
        raise AssertionError("a skipped stage must not load its sources")

    monkeypatch.setattr(pull_stage, "load_source", no_loading)
    second_plan = make_plan(recipe, store, target="pull")
    step = second_plan.step("pull")
    assert step.published and not step.runs
    assert step.outputs == first.outputs
    ran.clear()
    assert execute(second_plan, on_step=lambda step, result: ran.append(result)) == first.outputs
    assert ran == [None]  # the step was heard of, but no stage ran
    assert store.manifest(step.outputs["preference_pairs"])["stats"] == first.stats  # a skip reports the same counts
    assert manifest_path.stat().st_mtime_ns == before


def test_editing_one_of_two_same_named_files_changes_the_version(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        write_jsonl(tmp_path / "data" / folder / "p.jsonl", [{"prompt": folder, "chosen": "x", "rejected": "y"}])
    config = PullConfig(sources=(generic("p", tmp_path / "data"),))
    version = pull_version(config)
    write_jsonl(tmp_path / "data" / "a" / "p.jsonl", [{"prompt": "edited", "chosen": "x", "rejected": "y"}])
    assert pull_version(config) != version


def test_a_truncated_gzip_is_named_in_the_error_and_nothing_is_published(tmp_path: Path) -> None:
    rows = "".join(json.dumps({"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"}) + "\n" for i in range(3000))
    whole = gzip.compress(rows.encode())
    broken = tmp_path / "pairs.jsonl.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(SourceError, match=re.escape(f"{broken}: cannot be read: EOFError")):
        pull_preferences(PullConfig(sources=(generic("b", broken),)), store)
    assert store.list() == []


def test_version_follows_file_content_not_file_location(tmp_path: Path) -> None:
    records = [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(5)]
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    moved = tmp_path / "elsewhere" / "pairs.jsonl"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    version = pull_version(PullConfig(sources=(generic("p", path),)))
    assert pull_version(PullConfig(sources=(generic("p", moved),))) == version
    write_jsonl(moved, [*records, {"prompt": "q", "chosen": "a", "rejected": "b"}])
    assert pull_version(PullConfig(sources=(generic("p", moved),))) != version
    assert pull_version(PullConfig(sources=(generic("p", path, first_n=3),))) != version
    assert pull_version(PullConfig(sources=(generic("renamed", path),))) != version


def test_synthetic_smoke_source_covers_every_domain_and_reports_progress(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    config = PullConfig(sources=(SourceConfig(name="synthetic", adapter="synthetic", rows=400, seed=7),))
    progress: list[tuple[int, int]] = []
    table = pairs_table(store, pull_preferences(config, store, on_progress=lambda *p: progress.append(p)))
    assert progress[-1] == (400, 400)
    assert table.num_rows == 400
    domains = table.column("domain").to_pylist()
    assert {d: domains.count(d) for d in set(domains)} == {"chat": 160, "safety": 80, "code": 80, "math": 80}
    multi_turn = [c for c in table.column("conversation").to_pylist() if len(c) > 1]
    assert len(multi_turn) == 80


def test_hub_sources_load_by_id_revision_and_split(tmp_path: Path) -> None:
    # The Hub is unreachable here; `load_dataset` reads a local folder laid out like a Hub dataset repo
    # through the very call a Hub id takes (id, subset, revision=..., split=...).
    repo = tmp_path / "Skywork-like"
    (repo / "data").mkdir(parents=True)
    rows = [json.loads(line) for line in (FIXTURES / "skywork_v0_2.jsonl").open()]
    pq.write_table(pa.Table.from_pylist(rows), repo / "data" / "train-00000-of-00001.parquet")
    source = SourceConfig(name="skywork", adapter="skywork", hub_id=str(repo), revision="1963267")
    store = ArtifactStore(tmp_path / "artifacts")
    result = pull_preferences(PullConfig(sources=(source,)), store, max_reject_rate=0.25)
    refs = store.read_table(result.outputs["preference_pairs"]).column("source_ref").to_pylist()
    assert refs[0] == f"hf://{repo}@1963267/train#row=0"
    assert len(refs) == 3
    other_revision = SourceConfig(name="skywork", adapter="skywork", hub_id=str(repo), revision="84a203c")
    assert pull_version(PullConfig(sources=(other_revision,))) != result.outputs["preference_pairs"].version
