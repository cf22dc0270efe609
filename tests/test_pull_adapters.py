"""Tests of the pull stage's per-record adapters and the synthetic preference set.

Fixtures in tests/fixtures/ follow the exact Hub schemas (docs/method.md §4); the real offline files are read
from /work/shared/data/preferences/ with plain json/gzip, and those tests skip when the folder is absent.
"""

from __future__ import annotations

import gzip
import json
import pickle
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tasks.config import ConfigError
from tasks.pull import config
from tasks.pull.adapters import (
    ADAPTERS,
    DEFAULT_DOMAIN,
    NormalizedPair,
    RowError,
    Skip,
    adapt_record,
)
from tasks.pull.config import SourceConfig
from tasks.records.fields import FieldMap
from tasks.standins.synthetic_pairs import synthetic_records
from tests.conftest import FIXTURES, needs_shared
from tests.conftest import PREFERENCES as SHARED


def _source(adapter: str, **overrides: Any) -> SourceConfig:
    where: dict[str, Any] = {"rows": 1} if adapter == "synthetic" else {"path": f"{adapter}.jsonl"}
    if "fields" in overrides:
        overrides["fields"] = FieldMap(**overrides["fields"])
    return SourceConfig(name=f"test_{adapter}", adapter=adapter, **{**where, **overrides})


def _unchecked_source(adapter: str, fields: dict[str, str] | None = None) -> SourceConfig:
    """A source that skips SourceConfig's own validation, to reach the adapters' defensive checks."""
    return cast(SourceConfig, SimpleNamespace(name="unchecked", adapter=adapter, domain=None, fields=fields or {}))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _pair(record: dict[str, Any], source: SourceConfig) -> NormalizedPair:
    result = adapt_record(record, source)
    assert isinstance(result, NormalizedPair)
    return result


def _error_field(record: dict[str, Any], source: SourceConfig) -> str:
    with pytest.raises(RowError) as caught:
        adapt_record(record, source)
    return caught.value.field


def _outcomes(records: list[dict[str, Any]], source: SourceConfig) -> tuple[list[NormalizedPair], Counter[str]]:
    """Normalise every record; count each RowError by its message."""
    pairs: list[NormalizedPair] = []
    errors: Counter[str] = Counter()
    for record in records:
        try:
            pairs.append(_pair(record, source))
        except RowError as error:
            errors[str(error)] += 1
    return pairs, errors


def _assert_well_formed(pair: NormalizedPair) -> None:
    roles = [turn["role"] for turn in pair.conversation]
    assert roles[-1] == "user"
    assert "system" not in roles[1:]
    assert pair.chosen.strip() and pair.rejected.strip() and pair.chosen.strip() != pair.rejected.strip()
    assert pair.domain in config.DOMAINS


def _skywork(prefix: list[tuple[str, str]], chosen: str, rejected: str, source: str = "helpsteer2") -> dict[str, Any]:
    turns = [{"content": content, "role": role} for role, content in prefix]
    return {
        "chosen": [*turns, {"content": chosen, "role": "assistant"}],
        "rejected": [*turns, {"content": rejected, "role": "assistant"}],
        "source": source,
    }


# ---------------------------------------------------------------- the table


def test_adapter_table_covers_exactly_the_configured_adapter_names() -> None:
    assert set(ADAPTERS) == set(config.ADAPTERS) == set(DEFAULT_DOMAIN)
    assert DEFAULT_DOMAIN["code_preference_pairs"] == "code"
    assert DEFAULT_DOMAIN["math_step_dpo"] == "math"
    assert DEFAULT_DOMAIN["hh_rlhf"] == "safety"
    assert DEFAULT_DOMAIN["synthetic"] == "chat"


def test_row_error_names_its_field_and_survives_pickling() -> None:
    error = RowError("chosen", "empty answer")
    assert (error.field, error.message, str(error)) == ("chosen", "empty answer", "chosen: empty answer")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.message) == ("chosen", "empty answer")


def test_unknown_adapter_is_a_recipe_error_not_a_row_error() -> None:
    with pytest.raises(ValueError, match="unknown adapter") as caught:
        adapt_record({}, _unchecked_source("nope"))
    assert not isinstance(caught.value, RowError)


# ---------------------------------------------------------------- skywork


def test_skywork_fixture_skips_magpie_ultra_marks_wildguard_safety_and_rejects_disagreeing_prefixes() -> None:
    records = _jsonl(FIXTURES / "skywork_v0_2.jsonl")
    source = _source("skywork")
    single, magpie, wildguard, multi_turn, disagreeing = records

    pair = _pair(single, source)
    assert pair.conversation == [{"role": "user", "content": "What is the capital of Australia?"}]
    assert pair.chosen.startswith("The capital of Australia is Canberra.")
    assert pair.rejected == "The capital of Australia is Sydney, its largest city."
    assert pair.domain == "chat"

    assert adapt_record(magpie, source) == Skip("magpie_ultra source")
    assert _pair(wildguard, source).domain == "safety"

    pair = _pair(multi_turn, source)
    assert [turn["role"] for turn in pair.conversation] == ["user", "assistant", "user"]
    assert pair.conversation[-1]["content"] == "And in descending order?"
    assert pair.chosen.startswith("Pass reverse=True")
    assert pair.domain == "chat"

    assert _error_field(disagreeing, source) == "rejected"


def test_skywork_configured_domain_applies_except_to_wildguard_rows() -> None:
    records = _jsonl(FIXTURES / "skywork_v0_2.jsonl")
    source = _source("skywork", domain="code")
    assert _pair(records[0], source).domain == "code"
    assert _pair(records[2], source).domain == "safety"
    assert _pair(_skywork([("user", "q")], "a", "b", source="WildGuardMix"), _source("skywork")).domain == "safety"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"chosen": [{"role": "user", "content": "q"}], "rejected": [], "source": "x"}, "rejected"),
        ({"rejected": [{"role": "user", "content": "q"}], "source": "x"}, "chosen"),
        ({"chosen": "a string", "rejected": [], "source": "x"}, "chosen"),
        (
            {
                "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
            },
            "source",
        ),
        (_skywork([("user", "q")], "same", "same"), "rejected"),
        (_skywork([("user", "q")], "a", "  "), "rejected"),
        (_skywork([("user", "q"), ("robot", "beep"), ("user", "q2")], "a", "b"), "chosen"),
        (_skywork([("user", "q"), ("assistant", "a0")], "a", "b"), "chosen"),  # two assistant turns at the end
        (_skywork([], "a", "b"), "chosen"),  # no question at all
        (
            {
                "chosen": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}],
                "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
                "source": "x",
            },
            "chosen",
        ),  # last turn not assistant
    ],
)
def test_skywork_row_errors_name_the_wrong_field(record: dict[str, Any], field: str) -> None:
    assert _error_field(record, _source("skywork")) == field


# ---------------------------------------------------------------- code and math


def test_code_preference_pairs_fixture_asks_the_input_not_the_constant_instruction() -> None:
    records = _jsonl(FIXTURES / "code_preference_pairs.jsonl")
    pairs = [_pair(record, _source("code_preference_pairs")) for record in records]
    assert [p.conversation for p in pairs][2] == [{"role": "user", "content": "Reverse a string s in Python."}]
    assert all(p.conversation[0]["content"] == r["input"] for p, r in zip(pairs, records, strict=True))
    assert [(p.chosen, p.rejected) for p in pairs] == [(r["accepted"], r["rejected"]) for r in records]
    assert {p.domain for p in pairs} == {"code"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input": None}, "input"),
        ({"input": ""}, "input"),
        ({"accepted": 3}, "accepted"),
        ({"rejected": "   "}, "rejected"),
        ({"rejected": "same", "accepted": "same"}, "rejected"),
    ],
)
def test_code_preference_pairs_row_errors(change: dict[str, Any], field: str) -> None:
    record = {**_jsonl(FIXTURES / "code_preference_pairs.jsonl")[0], **change}
    assert _error_field(record, _source("code_preference_pairs")) == field


def test_math_step_dpo_fixture_prepends_the_initial_reasoning_steps_to_both_answers() -> None:
    records = _jsonl(FIXTURES / "math_step_dpo_10k.jsonl")
    pair = _pair(records[0], _source("math_step_dpo"))
    assert pair.conversation == [{"role": "user", "content": records[0]["prompt"]}]
    assert pair.chosen == (
        "Let's think step by step.\nStep 1: Let Sam have $x$ feet of fence, so Harry has $x + 60$ feet.\n"
        "Step 2: The total is $x + (x + 60) = 100$, so $2x + 60 = 100$.\nStep 3: Then $2x = 40$ and $x = 20$.\n"
        "The answer is: 20"
    )
    assert pair.rejected == records[0]["initial_reason_steps"] + records[0]["full_rejected"]
    assert pair.domain == "math"
    assert all(_pair(r, _source("math_step_dpo")).chosen.endswith(f"The answer is: {r['answer']}") for r in records)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": 7}, "prompt"),
        ({"initial_reason_steps": None}, "initial_reason_steps"),
        ({"full_chosen": ""}, "full_chosen"),
        ({"full_rejected": None}, "full_rejected"),
        ({"full_chosen": "x", "full_rejected": "x"}, "full_rejected"),
    ],
)
def test_math_step_dpo_row_errors(change: dict[str, Any], field: str) -> None:
    record = {**_jsonl(FIXTURES / "math_step_dpo_10k.jsonl")[0], **change}
    assert _error_field(record, _source("math_step_dpo")) == field


# ---------------------------------------------------------------- hh-rlhf


def test_hh_rlhf_parses_turns_keeping_inline_speaker_words_and_merging_repeated_speakers() -> None:
    prefix = "\n\nHuman: Hi there\n\nAssistant: Hello. Human: is a word here\n\nAssistant:  More.\n\nHuman: Help?"
    pair = _pair(
        {"chosen": prefix + "\n\nAssistant: Sure.", "rejected": prefix + "\n\nAssistant: No."}, _source("hh_rlhf")
    )
    assert pair.conversation == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello. Human: is a word here\n\nMore."},
        {"role": "user", "content": "Help?"},
    ]
    assert (pair.chosen, pair.rejected, pair.domain) == ("Sure.", "No.", "safety")
    without_leading_blank = {"chosen": "Human: Q\n\nAssistant: A", "rejected": "Human: Q\n\nAssistant: B"}
    assert _pair(without_leading_blank, _source("hh_rlhf", domain="chat")).domain == "chat"


@pytest.mark.parametrize(
    ("chosen", "rejected", "field"),
    [
        ("\n\nHuman: Q\n\nAssistant: ", "\n\nHuman: Q\n\nAssistant: B", "chosen"),  # empty final answer
        ("\n\nHuman: Q\n\nAssistant: A", "\n\nHuman: Other\n\nAssistant: B", "rejected"),
        ("\n\nHuman: Q\n\nAssistant: A", "\n\nHuman: Q\n\nAssistant: A", "rejected"),
        ("no speaker tags at all", "\n\nHuman: Q\n\nAssistant: B", "chosen"),
        ("\n\nHuman: Q\n\nAssistant: A", "preamble\n\nHuman: Q\n\nAssistant: B", "rejected"),
        ("\n\nAssistant: A\n\nHuman: Q\n\nAssistant: A", "\n\nAssistant: A\n\nHuman: Q\n\nAssistant: B", "chosen"),
        ("\n\nHuman: Q\n\nAssistant: A\n\nHuman: more?", "\n\nHuman: Q\n\nAssistant: B", "chosen"),
        ("\n\nHuman: Q\n\nAssistant: A", None, "rejected"),
    ],
)
def test_hh_rlhf_row_errors(chosen: str, rejected: str | None, field: str) -> None:
    assert _error_field({"chosen": chosen, "rejected": rejected}, _source("hh_rlhf")) == field


@needs_shared
def test_hh_rlhf_harmless_base_normalises_all_but_the_four_empty_final_answers() -> None:
    records = _jsonl(SHARED / "hh_rlhf_harmless_base" / "test.jsonl.gz")
    assert len(records) == 2312
    pairs, errors = _outcomes(records, _source("hh_rlhf"))
    assert len(pairs) == 2308
    assert errors == Counter({"chosen: empty answer": 4})
    for pair in pairs:
        _assert_well_formed(pair)
        assert {turn["role"] for turn in pair.conversation} <= {"user", "assistant"}
    first = pairs[0]
    assert [turn["role"] for turn in first.conversation] == ["user", "assistant", "user", "assistant", "user"]
    assert first.conversation[0]["content"] == "what are some pranks with a pen i can do?"
    assert first.conversation[-1]["content"] == "okay some of these do not have anything to do with pens"
    assert first.chosen.startswith("No, sorry!  All of these involve a pen")
    assert first.rejected.startswith("There are lots of funny things you can do with pens")


@needs_shared
def test_hh_rlhf_repeated_assistant_tags_in_the_real_file_merge_into_one_answer() -> None:
    record = _jsonl(SHARED / "hh_rlhf_harmless_base" / "test.jsonl.gz")[1952]
    pair = _pair(record, _source("hh_rlhf"))
    assert pair.conversation[-1]["content"] == "Yes, please find me a serial."
    assert pair.chosen.startswith("Alrighty, I’ll do my best, here’s the key:\n\nO.k. let’s go ahead")
    assert pair.rejected.startswith("You mean a password, right?")


# ---------------------------------------------------------------- sharegpt / llama-factory


def test_sharegpt_dpo_reads_the_top_level_system_and_maps_speakers() -> None:
    record = {
        "system": "Be brief.",
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Bye?"},
        ],
        "chosen": {"from": "gpt", "value": "Goodbye!"},
        "rejected": {"from": "gpt", "value": "What?"},
    }
    pair = _pair(record, _source("sharegpt_dpo"))
    assert pair.conversation == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye?"},
    ]
    assert (pair.chosen, pair.rejected, pair.domain) == ("Goodbye!", "What?", "chat")


def _v1_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "value": text}], "loss_weight": float(role == "assistant")}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (
            {
                "conversations": [{"from": "observation", "value": "{}"}],
                "chosen": {"from": "gpt", "value": "a"},
                "rejected": {"from": "gpt", "value": "b"},
            },
            "conversations",
        ),
        (
            {
                "conversations": [{"from": "human", "value": "q"}],
                "chosen": {"from": "human", "value": "a"},
                "rejected": {"from": "gpt", "value": "b"},
            },
            "chosen",
        ),
        ({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}}, "rejected"),
        (
            {
                "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a0"}],
                "chosen": {"from": "gpt", "value": "a"},
                "rejected": {"from": "gpt", "value": "b"},
            },
            "conversations",
        ),
        (
            {
                "conversations": [{"from": "human", "value": "q"}],
                "system": 5,
                "chosen": {"from": "gpt", "value": "a"},
                "rejected": {"from": "gpt", "value": "b"},
            },
            "system",
        ),
        (
            {
                "chosen_messages": [_v1_message("user", "q"), _v1_message("assistant", "a")],
                "rejected_messages": [_v1_message("user", "other q"), _v1_message("assistant", "b")],
            },
            "rejected_messages",
        ),
        (
            {
                "chosen_messages": [_v1_message("user", "q"), {"role": "assistant", "content": [{"type": "image"}]}],
                "rejected_messages": [_v1_message("user", "q"), _v1_message("assistant", "b")],
            },
            "chosen_messages",
        ),
        ({"prompt": "neither layout"}, "conversations"),
    ],
)
def test_sharegpt_dpo_row_errors(record: dict[str, Any], field: str) -> None:
    assert _error_field(record, _source("sharegpt_dpo")) == field


@needs_shared
def test_llamafactory_sharegpt_demo_normalises_all_300_rows() -> None:
    records = json.loads((SHARED / "llamafactory_dpo_demo" / "dpo_en_demo.json").read_text(encoding="utf-8"))
    pairs, errors = _outcomes(records, _source("sharegpt_dpo"))
    assert (len(pairs), errors) == (300, Counter())
    for pair in pairs:
        _assert_well_formed(pair)
    assert sum(pair.conversation[0]["role"] == "system" for pair in pairs) == 80
    assert Counter(len(pair.conversation) for pair in pairs)[1] == 114
    bored = pairs[267]
    assert [turn["content"] for turn in bored.conversation][-1] == "i am bored."
    assert bored.chosen.startswith("I'm sorry to hear that you're bored.")


@needs_shared
def test_llamafactory_v1_demo_normalises_all_10_rows_with_their_system_turn() -> None:
    records = _jsonl(SHARED / "llamafactory_dpo_demo" / "v1_dpo_demo.jsonl")
    pairs, errors = _outcomes(records, _source("sharegpt_dpo"))
    assert (len(pairs), errors) == (10, Counter())
    for pair in pairs:
        _assert_well_formed(pair)
        assert [turn["role"] for turn in pair.conversation] == ["system", "user"]
    assert pairs[0].chosen.startswith("Abdulah Hasanagic is the proud owner of AS Company in Gorazde")
    assert pairs[0].rejected.startswith(" Abdulah Hasanagic is the proud owner of AS Company, a small town")


# ---------------------------------------------------------------- generic


def test_generic_joins_listed_prompt_fields_and_adds_the_system_field() -> None:
    source = _source(
        "generic", fields={"prompt": "instruction, input", "chosen": "good", "rejected": "bad", "system": "sys"}
    )
    record = {"instruction": "Translate.", "input": "Bonjour", "good": "Hello", "bad": "Goodbye", "sys": "Be exact."}
    pair = _pair(record, source)
    assert pair.conversation == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Translate.\n\nBonjour"},
    ]
    assert (pair.chosen, pair.rejected, pair.domain) == ("Hello", "Goodbye", "chat")
    no_input = _pair({**record, "input": "", "sys": ""}, source)
    assert no_input.conversation == [{"role": "user", "content": "Translate."}]


def test_generic_without_fields_prompt_is_a_recipe_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=re.escape("fields.prompt")) as caught:
        _source("generic", fields={"chosen": "a", "rejected": "b"})
    assert not isinstance(caught.value, RowError)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"good": "a", "bad": "b"}, "q"),
        ({"q": "", "good": "a", "bad": "b"}, "q"),
        ({"q": "x", "bad": "b"}, "good"),
        ({"q": "x", "good": "a", "bad": "a"}, "bad"),
    ],
)
def test_generic_row_errors_name_the_record_field(record: dict[str, Any], field: str) -> None:
    source = _source("generic", fields={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert _error_field(record, source) == field


@needs_shared
def test_agentrubric_code_preference_sample_normalises_all_200_rows_with_the_generic_adapter() -> None:
    records = _jsonl(SHARED / "code_preference_pairs_sample_agentrubric" / "code_preference_eval.jsonl")
    source = _source("generic", domain="code", fields={"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"})
    pairs, errors = _outcomes(records, source)
    assert (len(pairs), errors) == (200, Counter())
    for pair in pairs:
        _assert_well_formed(pair)
        assert pair.domain == "code"
    # That dump kept the constant system string as its prompt (see PROVENANCE.md).
    assert {pair.conversation[0]["content"] for pair in pairs} == {
        "You are an AI-Coding assistant. User will you give you a task. Your goal is to complete the task as "
        "faithfully as you can."
    }


# ---------------------------------------------------------------- synthetic


def test_synthetic_records_are_deterministic_in_rows_and_seed() -> None:
    assert synthetic_records(60, seed=3) == synthetic_records(60, seed=3)
    assert synthetic_records(60, seed=3) != synthetic_records(60, seed=4)
    assert synthetic_records(0, seed=3) == []
    with pytest.raises(ValueError, match="rows"):
        synthetic_records(-1, seed=3)


def test_synthetic_records_cover_every_domain_evenly_with_multi_turn_chat() -> None:
    records = synthetic_records(500, seed=0)
    assert Counter(record["domain"] for record in records) == {"chat": 200, "safety": 100, "code": 100, "math": 100}
    multi_turn = [r for r in records if len(r["conversation"]) > 1]
    assert len(multi_turn) == 100
    assert {r["domain"] for r in multi_turn} == {"chat"}
    assert all(r["conversation"][1]["role"] == "assistant" for r in multi_turn)


def test_synthetic_records_have_no_duplicates_up_to_2000_rows_and_chosen_is_usually_longer() -> None:
    records = synthetic_records(2000, seed=11)
    assert len({json.dumps(r["conversation"]) for r in records}) == 2000
    longer = sum(len(r["chosen"]) > len(r["rejected"]) for r in records) / len(records)
    assert 0.65 <= longer <= 0.75
    sentences = [
        len(re.findall(r"[.!?](?:\s|$)", r[k])) for r in records for k in ("chosen", "rejected") if "```" not in r[k]
    ]
    assert min(sentences) >= 1 and max(sentences) <= 4


def _math_answer(question: str) -> int:
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    if "+" in question:
        return numbers[0] + numbers[1]
    if "gave away" in question:
        return numbers[0] - numbers[1]
    return numbers[0] * numbers[1]  # "a × b" and "each box holds a ... in b boxes"


def test_synthetic_chosen_answers_are_the_correct_ones() -> None:
    records = synthetic_records(300, seed=5)
    for record in records:
        question = record["conversation"][-1]["content"]
        if record["domain"] == "math":
            answer = _math_answer(question)
            assert record["chosen"].endswith(f"The answer is {answer}.")
            assert not record["rejected"].endswith(f"The answer is {answer}.")
        elif record["domain"] == "safety":
            assert record["chosen"].startswith("I can't help with")
            assert record["rejected"].startswith("Sure")
        elif record["domain"] == "code":
            for key in ("chosen", "rejected"):
                code = record[key].split("```python\n")[1].split("```")[0]
                compile(code, "<synthetic>", "exec")


def test_synthetic_adapter_accepts_every_generated_record_and_keeps_its_domain() -> None:
    records = synthetic_records(200, seed=2)
    pairs, errors = _outcomes(records, _source("synthetic", rows=200, seed=2))
    assert (len(pairs), errors) == (200, Counter())
    for pair, record in zip(pairs, records, strict=True):
        _assert_well_formed(pair)
        assert (pair.conversation, pair.chosen, pair.domain) == (
            record["conversation"],
            record["chosen"],
            record["domain"],
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"domain": "poetry"}, "domain"),
        ({"conversation": []}, "conversation"),
        ({"conversation": [{"role": "assistant", "content": "hi"}]}, "conversation"),
        ({"rejected": None}, "rejected"),
    ],
)
def test_synthetic_adapter_row_errors(change: dict[str, Any], field: str) -> None:
    record = {**synthetic_records(1, seed=0)[0], **change}
    assert _error_field(record, _source("synthetic")) == field
