"""Benchmark loaders on the real offline files, the seeded A/B order, sampling, and actionable errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tasks.evaluate.benchmarks import BenchmarkError, benchmark_fingerprint, load_benchmark, order_of
from tasks.evaluate.benchmarks.rewardbench import SECTIONS as REWARDBENCH_SECTIONS
from tasks.evaluate.config import BenchmarkConfig
from tasks.evaluate.stage import judge_input, judgements
from tasks.judge.protocol import load_template_set
from tests.conftest import BENCHMARKS, needs_shared

TEMPLATE = load_template_set("cor-instruct-v1")


@needs_shared
def test_llmbar_files_are_rewardbench_chat_hard_subsets_with_the_official_counts() -> None:
    comparisons = load_benchmark(BenchmarkConfig(name="rewardbench", path=str(BENCHMARKS / "llmbar")))
    counts = Counter(c.subset for c in comparisons)
    official = {s: n for s, n in REWARDBENCH_SECTIONS["Chat Hard"].items() if s.startswith("llmbar")}
    assert counts == official
    assert {c.category for c in comparisons} == {"Chat Hard"}
    first = json.loads((BENCHMARKS / "llmbar" / "Natural.json").read_text())[0]
    natural = next(c for c in comparisons if c.item_id == "llmbar-natural/0")
    assert natural.chosen == first[f"output_{first['label']}"]
    assert natural.rejected == first[f"output_{3 - first['label']}"]
    assert natural.conversation == [{"role": "user", "content": first["input"]}]


@needs_shared
def test_rm_bench_items_give_nine_comparisons_with_styles_and_pooled_safety() -> None:
    comparisons = load_benchmark(BenchmarkConfig(name="rm_bench", path=str(BENCHMARKS / "rm_bench")))
    items = {c.item_id for c in comparisons}
    assert Counter(item.split("/")[0] for item in items) == {
        "chat": 129, "code": 228, "safety-refuse": 284, "safety-response": 157,
    }  # fmt: skip
    assert len(comparisons) == 9 * len(items)
    assert {c.category for c in comparisons} == {"chat", "code", "safety"}
    record = json.loads((BENCHMARKS / "rm_bench" / "chat_filtered.json").read_text())[0]
    mine = {(c.chosen_style, c.rejected_style): c for c in comparisons if c.item_id == f"chat/{record['id']}"}
    assert len(mine) == 9
    assert mine[0, 2].chosen == record["chosen"][0]
    assert mine[0, 2].rejected == record["rejected"][2]
    assert mine[0, 2].group_id == f"chat/{record['id']}"


@needs_shared
def test_rmb_pairs_and_bon_items_keep_goal_category_and_group() -> None:
    comparisons = load_benchmark(BenchmarkConfig(name="rmb", path=str(BENCHMARKS / "rmb")))
    pairs = [c for c in comparisons if c.subset.startswith("pairwise/")]
    bon = [c for c in comparisons if c.subset.startswith("bon/")]
    assert len(pairs) == 14_543  # 46 of the 49 pairwise files (shared/data/README.md)
    assert Counter(c.group_id for c in bon).keys() == {c.item_id for c in bon}
    assert Counter(c.subset for c in bon if c.comparison_id.endswith("/0")) == {
        "bon/Helpfulness": 2_109, "bon/Harmlessness": 1_677,
    }  # fmt: skip
    path = BENCHMARKS / "rmb" / "BoN_set" / "Helpfulness" / "Chat" / "Discussion.json"
    record = json.loads(path.read_text())[0]
    mine = [c for c in bon if c.group_id == f"bon/{record['bon_uid']}"]
    assert len(mine) == len(record["loser_list"])
    assert {c.chosen for c in mine} == {record["bon_best"]["answer"]}
    assert [c.rejected for c in mine] == [loser["answer"] for loser in record["loser_list"]]
    assert mine[0].category == "Helpfulness/Chat/Discussion"


@needs_shared
def test_multi_turn_rmb_conversations_use_the_multi_turn_layout() -> None:
    comparisons = load_benchmark(BenchmarkConfig(name="rmb", path=str(BENCHMARKS / "rmb" / "BoN_set" / "Harmlessness")))
    multi = next(c for c in comparisons if any(turn["role"] == "assistant" for turn in c.conversation))
    [item] = judgements([multi], order_seed=0, both_orders=False)
    user = judge_input(item, TEMPLATE).messages[-1]["content"]
    assert "[The Start of the Conversation between Chatbot A and the Client]" in user
    assert "[The Start of the Conversation between Chatbot B and the Client]" in user
    assert "[Client Question]" not in user
    assert f"User: {multi.conversation[0]['content']}" in user


def test_order_is_seeded_per_comparison_and_balanced() -> None:
    ids = [f"rmb/pairwise/{k}" for k in range(2000)]
    first = [order_of(i, 7) for i in ids]
    assert first == [order_of(i, 7) for i in ids]  # recorded seed: reproducible
    assert first != [order_of(i, 8) for i in ids]
    assert 0.45 < first.count("A") / len(first) < 0.55
    assert order_of("x", 7) == order_of("x", 7)  # does not depend on what else is judged


def test_both_orders_adds_the_reverse_of_every_comparison() -> None:
    comparisons = load_benchmark(BenchmarkConfig(name="rewardbench", path="synthetic"))
    items = judgements(comparisons, order_seed=3, both_orders=True)
    assert len(items) == 2 * len(comparisons)
    first, second = items[: len(comparisons)], items[len(comparisons) :]
    for a, b in zip(first, second, strict=True):
        assert a.comparison is b.comparison
        assert {a.chosen_position, b.chosen_position} == {"A", "B"}
        assert b.comparison_id == a.comparison_id + "#swapped"
    shown = judge_input(first[0], TEMPLATE)
    chosen = first[0].comparison.chosen
    assert (shown.answer_a if first[0].chosen_position == "A" else shown.answer_b) == chosen


@needs_shared
def test_sampling_keeps_whole_items_per_subset_and_is_seeded() -> None:
    config = BenchmarkConfig(name="rm_bench", path=str(BENCHMARKS / "rm_bench"), items_per_subset=3, sample_seed=1)
    sample = load_benchmark(config)
    assert Counter(c.subset for c in sample) == {s: 27 for s in ("chat", "code", "safety-refuse", "safety-response")}
    assert [c.comparison_id for c in sample] == [c.comparison_id for c in load_benchmark(config)]
    other = load_benchmark(BenchmarkConfig(name="rm_bench", path=str(BENCHMARKS / "rm_bench"), items_per_subset=3))
    assert {c.item_id for c in other} != {c.item_id for c in sample}


@pytest.mark.parametrize("name", ["rewardbench", "rm_bench", "rmb"])
def test_synthetic_benchmarks_go_through_the_real_loaders(name: str) -> None:
    comparisons = load_benchmark(BenchmarkConfig(name=name, path="synthetic"))
    assert len({c.comparison_id for c in comparisons}) == len(comparisons) > 10
    assert benchmark_fingerprint(BenchmarkConfig(name=name, path="synthetic")) == {"synthetic": True}


def test_fingerprint_follows_content_not_path(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "chat_filtered.json").write_text("[]")
    same = [benchmark_fingerprint(BenchmarkConfig(name="rm_bench", path=str(tmp_path / f))) for f in ("a", "b")]
    assert same[0] == same[1]
    (tmp_path / "b" / "chat_filtered.json").write_text("[ ]")
    assert benchmark_fingerprint(BenchmarkConfig(name="rm_bench", path=str(tmp_path / "b"))) != same[0]


def _write(path: Path, records: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return str(path)


def test_bad_records_name_the_file_the_record_and_the_field(tmp_path: Path) -> None:
    good = {"id": 1, "prompt": "q", "subset": "x", "chosen": ["a", "b", "c"], "rejected": ["d", "e", "f"]}
    path = _write(tmp_path / "rm" / "code_filtered.json", [good, {**good, "rejected": ["d", "e"]}])
    with pytest.raises(BenchmarkError, match=r"code_filtered\.json, record 1: field 'rejected' must list 3 answers"):
        load_benchmark(BenchmarkConfig(name="rm_bench", path=path))

    pair = {
        "pair_uid": 1,
        "conversation_input": [{"role": "user", "content": "q"}],
        "chosen": {"answer": "a"},
        "reject": {"llm": "x"},
        "category_path": "Pairwise_set/Helpfulness/Chat",
    }
    path = _write(tmp_path / "rmb" / "Pairwise_set" / "x.json", [pair])
    with pytest.raises(BenchmarkError, match=r"x\.json, record 0, reject: field 'answer' must be a str, got missing"):
        load_benchmark(BenchmarkConfig(name="rmb", path=str(tmp_path / "rmb")))

    path = _write(tmp_path / "llmbar" / "Natural.json", [{"input": "q", "output_1": "a", "output_2": "b", "label": 3}])
    with pytest.raises(BenchmarkError, match=r"Natural\.json, record 0: field 'label' must be 1 or 2, got 3"):
        load_benchmark(BenchmarkConfig(name="rewardbench", path=path))

    with pytest.raises(BenchmarkError, match="no such file or folder"):
        load_benchmark(BenchmarkConfig(name="rmb", path=str(tmp_path / "missing")))
    path = _write(tmp_path / "broken" / "chat_filtered.json", "not a list")
    with pytest.raises(BenchmarkError, match=r"chat_filtered\.json, record 0: line 1: expected a JSON object, got str"):
        load_benchmark(BenchmarkConfig(name="rm_bench", path=path))


def test_rewardbench_rows_in_the_hub_schema_load_from_jsonl_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"prompt": "q1", "chosen": "good", "rejected": "bad", "chosen_model": "m", "rejected_model": "n",
         "subset": "xstest-should-respond", "id": 10},
        {"prompt": "q2", "chosen": "good", "rejected": "bad", "chosen_model": "m", "rejected_model": "n",
         "subset": "hep-go", "id": 11},
    ]  # fmt: skip
    (tmp_path / "rb.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rb.parquet")
    for name in ("rb.jsonl", "rb.parquet"):
        loaded = load_benchmark(BenchmarkConfig(name="rewardbench", path=str(tmp_path / name)))
        assert [(c.subset, c.category, c.comparison_id) for c in loaded] == [
            ("xstest-should-respond", "Safety", "rewardbench/xstest-should-respond/10"),
            ("hep-go", "Reasoning", "rewardbench/hep-go/11"),
        ]


def test_rewardbench_hub_path_reads_the_named_split_of_a_hub_shaped_dataset(tmp_path: Path) -> None:
    """The Hub is unreachable here: `datasets` resolves a local folder laid out like allenai/reward-bench
    (data/<split>-00000-of-00001.parquet) through the very call that reads the Hub."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {"prompt": "q", "chosen": "a", "rejected": "b", "chosen_model": "m", "rejected_model": "n",
           "subset": "hep-go", "id": 7}  # fmt: skip
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "data" / "filtered-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([{**row, "id": 8}] * 2), tmp_path / "data" / "raw-00000-of-00001.parquet")
    config = BenchmarkConfig(name="rewardbench", hub_id=str(tmp_path), revision="pinned-sha", split="filtered")
    [comparison] = load_benchmark(config)
    assert comparison.comparison_id == "rewardbench/hep-go/7" and comparison.category == "Reasoning"
    assert benchmark_fingerprint(config) == {"hub_id": str(tmp_path), "revision": "pinned-sha", "split": "filtered"}
