"""Messy local files through the pull stage: each bad row is one reject naming its file, row, field and reason.

Files mix good Skywork-format rows with one row of each kind of bad row a data engineer meets; whatever the
layout (JSON lines, gzipped, a JSON array, Parquet), the good rows come out exactly as a file of only the
good rows gives them, and nothing else changes.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_contracts import ArtifactStore, RejectRateExceeded
from tasks.pull import stage as pull_stage
from tasks.pull.config import PullConfig, SourceConfig
from tasks.pull.stage import pull_version
from tasks.records import reader
from tasks.records.fields import FieldMap
from tests.conftest import PREFERENCES, needs_shared

MB = 1 << 20


def skywork(i: int, answer: str | None = None) -> dict[str, Any]:
    question = [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}]
    return {
        "chosen": [*question, {"role": "assistant", "content": answer or f"It is {2 * i}."}],
        "rejected": [*question, {"role": "assistant", "content": f"It is {2 * i + 1}."}],
        "source": "helpsteer2",
    }


def with_turns(chosen: list[Any] | Any, rejected: list[Any] | Any = None) -> dict[str, Any]:
    good = skywork(999)
    return {"chosen": chosen, "rejected": good["rejected"] if rejected is None else rejected, "source": "x"}


USER = {"role": "user", "content": "Question 999: what is 999 + 999?"}

# (the bad row as JSON text, the reason its reject carries)
BAD_ROWS: list[tuple[str, str]] = [
    (json.dumps(with_turns("a string, not messages")), "adapter: chosen: expected a list of messages, got str"),
    (json.dumps(with_turns([USER, {"role": "assistant", "content": 42}])), "adapter: chosen: turn 1 has no text"),
    (
        '{"chosen": [{"role": "user", "content": "unfinished',
        "read: record: line {line}, column 41: not valid JSON: Unterminated string",
    ),
    (json.dumps({"rejected": skywork(1)["rejected"], "source": "x"}), "adapter: chosen: missing"),
    (json.dumps(with_turns([USER, {"role": "assistant", "content": ""}])), "adapter: chosen: turn 1 has no text"),
    (json.dumps(with_turns([USER, {"role": "assistant", "content": None}])), "adapter: chosen: turn 1 has no text"),
    (
        json.dumps(with_turns([{"role": "narrator", "content": "Once"}, {"role": "assistant", "content": "x"}])),
        "adapter: chosen: turn 0 has unknown role 'narrator'",
    ),
    (
        json.dumps(with_turns([USER, {"role": "assistant", "content": "a"}, {"role": "user", "content": "and?"}])),
        "adapter: chosen: last turn is user, not assistant",
    ),
    (
        json.dumps(
            with_turns(
                [USER, {"role": "assistant", "content": "a"}],
                [{"role": "user", "content": "Another question"}, {"role": "assistant", "content": "b"}],
            )
        ),
        "adapter: rejected: conversation differs from the chosen one before the final turn",
    ),
    (json.dumps(skywork(1000, answer="x" * (3 * MB))), "over max_chars 1,000,000"),
    ('["a", "list", "not", "an", "object"]', "read: record: line {line}: expected a JSON object, got list"),
    (json.dumps(with_turns(None)), "adapter: chosen: missing"),
    ('{"chosen": "caf\\u00e9 \xff"}', "read: record: line {line}, byte 22: not UTF-8 text"),
    (json.dumps(with_turns({"role": "user"})), "adapter: chosen: expected a list of messages, got dict"),
]


def skywork_source(path: Path, **extra: Any) -> SourceConfig:
    return SourceConfig(name="sky", adapter="skywork", path=str(path), **extra)


def pull(path: Path, store: ArtifactStore, max_reject_rate: float = 0.5, **extra: Any) -> dict[str, Any]:
    config = PullConfig(sources=(skywork_source(path, **extra),))
    result = pull_stage.pull_preferences(config, store, version=pull_version(config), max_reject_rate=max_reject_rate)
    return {"result": result, "version": pull_version(config)}


def content(store: ArtifactStore, version: str) -> list[tuple[Any, ...]]:
    rows = store.read_table(store.require("preference_pairs", version)).to_pylist()
    return [(r["pair_id"], r["domain"], json.dumps(r["conversation"]), r["chosen"], r["rejected"]) for r in rows]


def messy_lines(good: int = 40) -> tuple[list[bytes], dict[int, str]]:
    """`good` rows with the bad rows spread among them, after a blank line; row number -> expected reason."""
    lines, reasons = [b"   "], {}  # a blank line is not a row
    bad = iter(BAD_ROWS)
    for i in range(good):
        lines.append(json.dumps(skywork(i)).encode())
        if i % 3 == 1 and (row := next(bad, None)):
            reasons[len(lines)] = row[1]
            lines.append(row[0].encode("latin-1") if "\xff" in row[0] else row[0].encode())
    for text, reason in bad:
        reasons[len(lines)] = reason
        lines.append(text.encode())
    rows = [position for position, line in enumerate(lines) if line.strip()]
    expected = {row: reasons[p].replace("{line}", str(p + 1)) for row, p in enumerate(rows) if p in reasons}
    return lines, expected


def test_every_kind_of_bad_row_is_one_reject_and_the_good_rows_come_out_unchanged(tmp_path: Path) -> None:
    lines, expected = messy_lines()
    assert len(expected) == len(BAD_ROWS) == 14
    messy = tmp_path / "messy.jsonl"
    messy.write_bytes(b"\n".join(lines) + b"\n")
    clean = tmp_path / "clean" / "messy.jsonl"  # same name: refs must agree except for row numbers
    clean.parent.mkdir()
    clean.write_text("".join(json.dumps(skywork(i)) + "\n" for i in range(40)))
    store = ArtifactStore(tmp_path / "artifacts")

    got = pull(messy, store)
    stats = got["result"].stats
    assert stats["rows_out"] == 40
    assert stats["counts"] == [
        {"source": "sky", "domain": "chat", "rows_in": 40, "dropped": 0, "rejected": 0, "rows_out": 40},
        {"source": "sky", "domain": "unknown", "rows_in": 14, "dropped": 0, "rejected": 14, "rows_out": 0},
    ]
    rejects = store.read_table(store.require("preference_pairs_rejects", got["version"])).to_pylist()
    assert [r["source_ref"] for r in rejects] == [f"{messy}#row={row}" for row in expected]
    for reject, (row, reason) in zip(rejects, expected.items(), strict=True):
        assert reason in reject["reason"], (row, reject["reason"])
        assert reject["row_index"] == row
        assert len(reject["row_json"]) <= 3 * MB  # the multi-megabyte row is kept only in part
    too_long = next(r for r in rejects if "max_chars" in r["reason"])
    assert len(too_long["row_json"]) == reader.SHOWN_CHARS

    reference = pull(clean, ArtifactStore(tmp_path / "clean-artifacts"))
    assert content(store, got["version"]) == content(ArtifactStore(tmp_path / "clean-artifacts"), reference["version"])


@pytest.mark.parametrize("layout", ["jsonl.gz", "json", "parquet"])
def test_other_layouts_keep_the_good_rows_and_reject_each_bad_one(tmp_path: Path, layout: str) -> None:
    good = [skywork(i) for i in range(40)]
    bad = [json.loads(text) for text, _ in BAD_ROWS[:2] + BAD_ROWS[3:9] + BAD_ROWS[11:12]]  # JSON-valid rows
    rows = good[:20] + bad + good[20:]
    path = tmp_path / f"pairs.{layout}"
    if layout == "jsonl.gz":
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    elif layout == "json":
        path.write_text(json.dumps(rows, indent=2))
    else:  # Parquet keeps a typed schema: the rows that cannot be typed alike stay out of the file
        typed = [r for r in rows if r.get("chosen") is None or (isinstance(r["chosen"], list) and all(
            isinstance(t.get("content"), str | None) for t in r["chosen"]))]  # fmt: skip
        pq.write_table(pa.Table.from_pylist(typed), path)
        rows = typed
    store = ArtifactStore(tmp_path / "artifacts")
    got = pull(path, store)
    assert got["result"].stats["rows_out"] == 40
    rejects = store.read_table(store.require("preference_pairs_rejects", got["version"])).to_pylist()
    assert [r["row_index"] for r in rejects] == [i for i, r in enumerate(rows) if r not in good]


def test_a_json_array_is_read_a_block_at_a_time(tmp_path: Path, monkeypatch: Any) -> None:
    rows = [skywork(i) for i in range(30)] + [[1, 2], {"nested": {"a": [1, "]"]}, "s": '{"['}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, indent=1))
    monkeypatch.setattr(reader, "READ_BLOCK", 37)  # every row crosses a block boundary
    rows_file = reader.open_file(str(path), str(tmp_path))
    read = rows_file.read(list(range(len(rows_file))))
    assert read[:30] == rows[:30] and read[31] == rows[31]
    assert isinstance(read[30], reader.BadRow) and "expected a JSON object, got list" in read[30].reason
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rows[:3])[:-30])
    with pytest.raises(reader.SourceError, match=re.escape(f"{broken}: row 2 (line 1) is not valid JSON")):
        reader.open_file(str(broken), str(tmp_path))


def test_a_line_over_max_chars_is_skipped_not_held(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"a": "' + b"x" * (5 * MB) + b'"}\n{"a": "short"}\n')
    rows_file = reader.open_file(str(path), str(tmp_path), max_chars=1000)
    texts = rows_file.take([0, 1]).column("text").to_pylist()
    assert len(texts[0]) == reader.BYTES_PER_CHAR * 1000 + 1  # only what one bounded readline gave was ever kept
    long_row, short_row = rows_file.read([0, 1])
    assert isinstance(long_row, reader.BadRow) and long_row.where == "line 1: 5,242,890 bytes"
    assert long_row.reason.startswith("over max_chars 1,000 ")
    assert short_row == {"a": "short"}


def test_the_reject_rate_stops_the_pull_early_naming_the_file(tmp_path: Path) -> None:
    lines = [b"not json"] * 200 + [json.dumps(skywork(i)).encode() for i in range(800)]
    path = tmp_path / "mostly_good_but_bad_first.jsonl"
    path.write_bytes(b"\n".join(lines))
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(RejectRateExceeded) as error:
        pull(path, store, max_reject_rate=0.05)
    assert f"{path}: 51 of 1000 rows (5.1%) were rejected within the first 51 read" in str(error.value)
    assert store.list() == []


@needs_shared
def test_a_labelled_pairwise_file_comes_out_the_right_way_round(tmp_path: Path) -> None:
    """PandaLM's human test set: response1/response2 and annotators' labels 1, 2 or 0 (a tie)."""
    path = PREFERENCES / "pandalm_human_testset" / "testset-v1.json"
    records = json.loads(path.read_text())
    fields = FieldMap(
        prompt="instruction,input", first="response1", second="response2", label="annotator1",
        first_wins=(1,), second_wins=(2,), tie=(0,),
    )  # fmt: skip
    config = PullConfig(sources=(SourceConfig(name="pandalm", adapter="generic", path=str(path), fields=fields),))
    store = ArtifactStore(tmp_path / "artifacts")
    result = pull_stage.pull_preferences(config, store, version=pull_version(config), max_reject_rate=0.2)
    table = store.read_table(result.outputs["preference_pairs"]).to_pylist()
    by_row = {int(r["source_ref"].rsplit("=", 1)[1]): r for r in table}
    labels = [r["annotator1"] for r in records]
    second_wins = [i for i in by_row if labels[i] == 2]
    assert len(second_wins) > 0.4 * len(by_row)  # a swap here would be silent and huge
    for i, row in by_row.items():
        winner, loser = ("response1", "response2") if labels[i] == 1 else ("response2", "response1")
        assert (row["chosen"], row["rejected"]) == (records[i][winner], records[i][loser])
    rejects = store.read_table(store.require("preference_pairs_rejects", result.outputs["preference_pairs"].version))
    reasons = Counter(reason.split(": ", 2)[-1] for reason in rejects.column("reason").to_pylist())
    assert set(reasons) == {"empty text", "expected a string, got bool"}  # 6 rows hold a bool (PROVENANCE)
    assert reasons["expected a string, got bool"] == 6
    dropped = result.stats["dropped"]
    assert set(dropped) == {"pandalm: tie label '0'", "pandalm: duplicate pair"}
    assert dropped["pandalm: tie label '0'"] <= labels.count(0)  # a tie with an empty answer is a reject
    assert len(by_row) + sum(dropped.values()) + reasons.total() == len(records)


def test_label_values_outside_the_mapping_are_rejects_naming_the_value(tmp_path: Path) -> None:
    rows = [
        {"q": "q0", "response_A": "a0", "response_B": "b0", "label": "A>B", "category": "math"},
        {"q": "q1", "response_A": "a1", "response_B": "b1", "label": "B>A", "category": "code"},
        {"q": "q2", "response_A": "a2", "response_B": "b2", "label": "A=B", "category": "chat"},
        {"q": "q3", "response_A": "a3", "response_B": "b3", "label": "A>>B", "category": "chat"},
        {"q": "q4", "response_A": "a4", "response_B": "b4", "label": None, "category": "chat"},
        {"q": "q5", "response_A": "a5", "response_B": "b5", "label": "B>A", "category": "poetry"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = FieldMap(
        prompt="q", first="response_A", second="response_B", label="label", first_wins=("A>B",),
        second_wins=("B>A",), tie=("A=B",), domain="category",
    )  # fmt: skip
    config = PullConfig(sources=(SourceConfig(name="lab", adapter="generic", path=str(path), fields=fields),))
    store = ArtifactStore(tmp_path / "artifacts")
    version = pull_version(config)
    result = pull_stage.pull_preferences(config, store, version=version, max_reject_rate=0.9)
    pairs = store.read_table(result.outputs["preference_pairs"]).to_pylist()
    assert [(p["chosen"], p["rejected"], p["domain"]) for p in pairs] == [("a0", "b0", "math"), ("b1", "a1", "code")]
    assert result.stats["dropped"] == {"lab: tie label 'A=B'": 1}
    reasons = store.read_table(store.require("preference_pairs_rejects", version)).column("reason").to_pylist()
    assert reasons == [
        "adapter: label: value 'A>>B' is not in the mapping ('A>B', 'B>A', 'A=B')",
        "adapter: label: missing",
        "adapter: category: 'poetry' is not one of chat, safety, code, math",
    ]


@pytest.mark.parametrize("block", [1, 3, 5, 37, 1 << 20])
def test_json_array_edge_cases_read_alike_at_any_block_size(tmp_path: Path, monkeypatch: Any, block: int) -> None:
    monkeypatch.setattr(reader, "READ_BLOCK", block)
    path = tmp_path / "edge.json"
    # a byte-order mark, a number and a literal that may end at a block's end, brackets inside strings
    path.write_bytes(reader.BOM + b' \n[12.5e10, true, {"a": "]\\",["}, {"b": [1, {"c": null}]}]\n')
    rows_file = reader.open_file(str(path), str(tmp_path), max_chars=100)
    rows = rows_file.read(list(range(len(rows_file))))
    assert [r.reason if isinstance(r, reader.BadRow) else r for r in rows] == [
        "expected a JSON object, got float", "expected a JSON object, got bool", {"a": ']",['}, {"b": [1, {"c": None}]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"a": "\xff"}]', "not UTF-8 text near byte 8"),
        (b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", "row 0 (line 1) is nested too deeply"),
        (b'[{"i": 1},\n{"i": 2 "oops": 1},\n' + b'{"i": 3},\n' * 300_000 + b'{"i": 4}]', "row 1 (line 2) is not valid"),
        (b"[", "the JSON array ends before its ']' after 0 rows"),
    ],
)
def test_a_broken_json_array_is_one_clear_error_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(reader.SourceError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        reader.open_file(str(path), str(tmp_path))


def test_an_array_after_much_white_space_and_deep_json_lines(tmp_path: Path) -> None:
    spaced = tmp_path / "spaced.json"
    spaced.write_bytes(b"\n" * 20_000 + b'[{"a": 1}, {"a": 2}]')
    rows_file = reader.open_file(str(spaced), str(tmp_path))
    assert rows_file.read([0, 1]) == [{"a": 1}, {"a": 2}]
    deep = tmp_path / "deep.jsonl"
    deep.write_bytes(b"[" * 100_000 + b"\n" + b'{"a": 1}\n')
    bad, good = reader.open_file(str(deep), str(tmp_path)).read([0, 1])
    assert isinstance(bad, reader.BadRow) and bad.reason == "JSON nested too deeply" and good == {"a": 1}


def test_max_chars_counts_the_text_of_a_row_alike_in_every_layout(tmp_path: Path) -> None:
    record = {"prompt": "é" * 40, "chosen": "😀" * 5}  # 45 characters of text; escaped JSON spells them in 300 bytes
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(json.dumps(record) + "\n")
    parquet = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist([record]), parquet)
    for path in (jsonl, parquet):
        assert reader.open_file(str(path), str(tmp_path), max_chars=45).read([0]) == [record]
        [bad] = reader.open_file(str(path), str(tmp_path), max_chars=44).read([0])
        assert isinstance(bad, reader.BadRow) and bad.where.endswith("45 characters of text")


def test_two_sources_reading_one_file_count_their_rejects_apart(tmp_path: Path) -> None:
    rows = [skywork(i) for i in range(96)] + [with_turns("not messages")] * 4  # 4% bad, under 5%
    path = tmp_path / "shared.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sources = (skywork_source(path), SourceConfig(name="again", adapter="skywork", path=str(path)))
    config = PullConfig(sources=sources)
    store = ArtifactStore(tmp_path / "artifacts")
    result = pull_stage.pull_preferences(config, store, version=pull_version(config), max_reject_rate=0.05)
    assert result.stats["rows_out"] == 96  # the second source's pairs are duplicates of the first's
