"""Tests of the data contracts: every rule of every kind rejects the row that breaks it, and says why.

Each case starts from a good row of its kind, breaks one thing, and validates it beside an untouched good
row: the good row must come through and the broken one must be rejected with a reason naming the rule and
the field. A coverage test makes sure every rule of every contract in CONTRACTS has such a case.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from data_contracts import (
    CONTRACTS,
    REJECTS_SCHEMA,
    Contract,
    ContractError,
    RejectRateExceeded,
    check_reject_rate,
    validate,
)
from data_contracts.contract import (
    columns_differ,
    in_range,
    last_turn_role,
    list_not_empty,
    non_empty_text,
    one_of,
    turn_roles,
    unique,
)
from data_contracts.kinds import PREFERENCE_PAIRS

Row = dict[str, Any]
USER_TURN = [{"role": "user", "content": "Which answer is better?"}]


def _judge_pair(pair_id: str) -> Row:
    return {
        "pair_id": pair_id,
        "source": "skywork",
        "domain": "chat",
        "conversation": [
            {"role": "system", "content": "Be helpful."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Which answer is better?"},
        ],
        "answer_a": "The first answer.",
        "answer_b": "The second answer.",
        "winner": "model_a",
        "source_ref": f"skywork.jsonl:{pair_id}",
    }


GOOD_ROW: dict[str, Callable[[str], Row]] = {
    "preference_pairs": lambda key: {
        "pair_id": key,
        "source": "skywork",
        "domain": "math",
        "conversation": USER_TURN,
        "chosen": "42",
        "rejected": "41",
        "source_ref": f"skywork.jsonl:{key}",
    },
    "distill_set": _judge_pair,
    "rl_set": _judge_pair,
    "teacher_traces": lambda key: {
        "pair_id": key,
        "request_id": f"req-{key}",
        "teacher_pass": 1,
        "teacher_model": "claude-3-7-sonnet-20250219",
        "status": "ok",
        "failure_reason": None,
        "system": "You are a judge.",
        "user": "Compare the answers.",
        "response": "<answer>[[A]]</answer>",
        "finish_reason": "stop",
        "winner": "model_a",
        "domain": "code",
        "source": "code_pairs",
        "prompt_tokens": 120,
        "completion_tokens": 80,
        "cost_usd": 0.002,
        "latency_s": 1.5,
        "attempts": 1,
    },
    "filter_rejects": lambda key: {
        "pair_id": key,
        "request_id": f"req-{key}",
        "teacher_pass": 1,
        "teacher_model": "claude-3-7-sonnet-20250219",
        "domain": "chat",
        "source": "skywork",
        "reason": "verdict: label tag not in the last 100 characters",
    },
    "sft_examples": lambda key: {
        "pair_id": key,
        "system": None,
        "user": "Compare the answers.",
        "assistant": "<answer>[[B]]</answer>",
        "winner": "model_b",
        "domain": "safety",
        "source": "skywork",
        "teacher_pass": 2,
        "teacher_model": "claude-3-7-sonnet-20250219",
        "request_id": f"req-{key}",
    },
    "eval_predictions": lambda key: {
        "benchmark": "rm_bench",
        "subset": "chat",
        "item_id": "item-1",
        "comparison_id": key,
        "group_id": "item-1",
        "category": None,
        "chosen_style": 0,
        "rejected_style": 2,
        "chosen_position": "B",
        "swapped": False,
        "judge": "rm-r1-7b",
        "order_seed": 13,
        "output": "<answer>[[B]]</answer>",
        "verdict": "B",
        "score": 1.0,
    },
    "eval_scores": lambda key: {
        "benchmark": "rewardbench",
        "level": "subset",
        "name": key,
        "score": 0.75,
        "count": 100,
        "error_rate": 0.01,
    },
    "learning_scores": lambda key: {
        "judge": key,
        "model": "sft_checkpoint/0123abcd",
        "benchmark": "refusal_task",
        "comparisons": 200,
        "accuracy": 0.9,
        "unparseable": 0.0,
        "verdict_a": 0.5,
    },
}
KEY_FIELD = {kind: "pair_id" for kind in CONTRACTS} | {
    "eval_predictions": "comparison_id",
    "eval_scores": "name",
    "learning_scores": "judge",
}


def _loose_schema(contract: Contract) -> pa.Schema:
    """The contract's schema with every field nullable, so tests can build rows that break `not_null`."""
    return pa.schema([f.with_nullable(True) for f in contract.schema])


def _table(kind: str, rows: list[Row]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=_loose_schema(CONTRACTS[kind]))


def _good(kind: str, key: str = "good") -> Row:
    return GOOD_ROW[kind](key)


def _good_and_broken(kind: str, **changes: Any) -> tuple[pa.Table, pa.Table]:
    """Validate a good row beside a good row with `changes` applied; return (valid, rejects)."""
    broken = {**_good(kind, "broken"), **changes}
    return validate(_table(kind, [_good(kind), broken]), CONTRACTS[kind])


@dataclass(frozen=True)
class Case:
    kind: str
    changes: Row
    reason: str
    label: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.label}"


def _conversation_cases(kind: str) -> list[Case]:
    return [
        Case(
            kind,
            {"conversation": []},
            "non_empty_list (conversation); last_turn_is_user (conversation)",
            "empty-conversation",
        ),
        Case(
            kind,
            {"conversation": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "last_turn_is_user (conversation)",
            "last-turn-assistant",
        ),
        Case(
            kind,
            {"conversation": [{"role": "system", "content": "s"}]},
            "last_turn_is_user (conversation)",
            "only-a-system-turn",
        ),
        Case(
            kind,
            {"conversation": [{"role": "robot", "content": "beep"}, {"role": "user", "content": "q"}]},
            "roles_in[system|user|assistant] (conversation)",
            "unknown-role",
        ),
        Case(
            kind,
            {"conversation": [{"role": "User", "content": "q"}, {"role": "user", "content": "q"}]},
            "roles_in[system|user|assistant] (conversation)",
            "role-case-matters",
        ),
        Case(
            kind,
            {"conversation": [{"role": "user", "content": None}]},
            "roles_in[system|user|assistant] (conversation)",
            "turn-without-content",
        ),
    ]


DOMAIN_REASON = "one_of[chat|safety|code|math] (domain)"
WINNER_REASON = "one_of[model_a|model_b] (winner)"

CASES: list[Case] = [
    # preference_pairs
    Case("preference_pairs", {"pair_id": "good"}, "unique (pair_id)", "duplicate-pair-id"),
    Case("preference_pairs", {"source": " \t"}, "non_empty_text (source)", "blank-source"),
    Case("preference_pairs", {"domain": "poetry"}, DOMAIN_REASON, "unknown-domain"),
    Case("preference_pairs", {"domain": "Math"}, DOMAIN_REASON, "domain-case-matters"),
    *_conversation_cases("preference_pairs"),
    Case("preference_pairs", {"chosen": ""}, "non_empty_text (chosen)", "empty-chosen"),
    Case("preference_pairs", {"chosen": " \n\t "}, "non_empty_text (chosen)", "blank-chosen"),
    Case("preference_pairs", {"rejected": "   "}, "non_empty_text (rejected)", "blank-rejected"),
    Case(
        "preference_pairs",
        {"chosen": "same answer", "rejected": "same answer"},
        "differs_from_chosen (rejected)",
        "chosen-equals-rejected",
    ),
    # distill_set and rl_set share one schema and rule set
    *[
        case
        for kind in ("distill_set", "rl_set")
        for case in [
            Case(kind, {"pair_id": "good"}, "unique (pair_id)", "duplicate-pair-id"),
            Case(kind, {"domain": "poetry"}, DOMAIN_REASON, "unknown-domain"),
            *_conversation_cases(kind),
            Case(kind, {"answer_a": "  "}, "non_empty_text (answer_a)", "blank-answer-a"),
            Case(kind, {"answer_b": ""}, "non_empty_text (answer_b)", "empty-answer-b"),
            Case(kind, {"answer_a": "same", "answer_b": "same"}, "differs_from_answer_a (answer_b)", "a-equals-b"),
            Case(kind, {"winner": "tie"}, WINNER_REASON, "winner-tie"),
            Case(kind, {"winner": "A"}, WINNER_REASON, "winner-letter"),
            Case(kind, {"winner": "model_c"}, WINNER_REASON, "winner-unknown"),
        ]
    ],
    # teacher_traces
    Case("teacher_traces", {"status": "error"}, "one_of[ok|failed] (status)", "unknown-status"),
    Case("teacher_traces", {"teacher_pass": 0}, "in_range[1,2] (teacher_pass)", "pass-0"),
    Case("teacher_traces", {"teacher_pass": 3}, "in_range[1,2] (teacher_pass)", "pass-3"),
    Case("teacher_traces", {"winner": "tie"}, WINNER_REASON, "winner-tie"),
    Case("teacher_traces", {"domain": "poetry"}, DOMAIN_REASON, "unknown-domain"),
    Case("teacher_traces", {"user": "\n"}, "non_empty_text (user)", "blank-user"),
    Case("teacher_traces", {"prompt_tokens": -1}, "in_range[0,None] (prompt_tokens)", "negative-prompt-tokens"),
    Case("teacher_traces", {"attempts": -1}, "in_range[0,None] (attempts)", "negative-attempts"),
    Case("filter_rejects", {"reason": " "}, "non_empty_text (reason)", "blank-reason"),
    Case("filter_rejects", {"teacher_pass": 3}, "in_range[1,2] (teacher_pass)", "pass-3"),
    Case(
        "teacher_traces",
        {"completion_tokens": -5},
        "in_range[0,None] (completion_tokens)",
        "negative-completion-tokens",
    ),
    # sft_examples
    Case("sft_examples", {"pair_id": "good"}, "unique (pair_id)", "duplicate-pair-id"),
    Case("sft_examples", {"user": " "}, "non_empty_text (user)", "blank-user"),
    Case("sft_examples", {"assistant": ""}, "non_empty_text (assistant)", "empty-assistant"),
    Case("sft_examples", {"winner": "model_c"}, WINNER_REASON, "winner-unknown"),
    Case("sft_examples", {"domain": "poetry"}, DOMAIN_REASON, "unknown-domain"),
    Case("sft_examples", {"teacher_pass": 3}, "in_range[1,2] (teacher_pass)", "pass-3"),
    # eval_predictions
    Case("eval_predictions", {"benchmark": " "}, "non_empty_text (benchmark)", "blank-bench"),
    Case("eval_predictions", {"comparison_id": "good"}, "unique (comparison_id)", "duplicate-comparison"),
    Case("eval_predictions", {"chosen_position": "C"}, "one_of[A|B] (chosen_position)", "position-c"),
    Case("eval_predictions", {"verdict": "C"}, "one_of[A|B|tie|error] (verdict)", "verdict-c"),
    Case("eval_predictions", {"verdict": "a"}, "one_of[A|B|tie|error] (verdict)", "verdict-lowercase"),
    Case("eval_predictions", {"score": 1.5}, "in_range[0.0,1.0] (score)", "score-above-1"),
    Case("eval_predictions", {"score": -0.01}, "in_range[0.0,1.0] (score)", "score-below-0"),
    Case("eval_predictions", {"score": math.nan}, "in_range[0.0,1.0] (score)", "score-nan"),
    # eval_scores
    Case("eval_scores", {"benchmark": ""}, "non_empty_text (benchmark)", "blank-bench"),
    Case(
        "eval_scores",
        {"level": "item"},
        "one_of[subset|section|cell|benchmark|position|samples|headline] (level)",
        "unknown-level",
    ),
    Case("eval_scores", {"score": 1.02}, "in_range[-0.01,1.01] (score)", "score-above-1.01"),  # RewardBench 2 Ties
    Case("eval_scores", {"score": -1.0}, "in_range[-0.01,1.01] (score)", "score-below-0"),
    Case("eval_scores", {"count": -1}, "in_range[0,None] (count)", "negative-count"),
    Case("eval_scores", {"error_rate": 1.5}, "in_range[0.0,1.0] (error_rate)", "error-rate-above-1"),
    Case("eval_scores", {"error_rate": -0.5}, "in_range[0.0,1.0] (error_rate)", "error-rate-below-0"),
    # learning_scores
    Case("learning_scores", {"judge": " "}, "non_empty_text (judge)", "blank-judge"),
    Case("learning_scores", {"comparisons": -1}, "in_range[0,None] (comparisons)", "negative-comparisons"),
    Case("learning_scores", {"accuracy": 1.5}, "in_range[0.0,1.0] (accuracy)", "accuracy-above-1"),
    Case("learning_scores", {"unparseable": -0.1}, "in_range[0.0,1.0] (unparseable)", "unparseable-below-0"),
    Case("learning_scores", {"verdict_a": 2.0}, "in_range[0.0,1.0] (verdict_a)", "verdict-a-above-1"),
]


# --- good rows ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_good_rows_of_every_kind_pass_and_come_back_in_the_contract_schema(kind: str) -> None:
    rows = [_good(kind, f"row-{i}") for i in range(3)]
    valid, rejects = validate(_table(kind, rows), CONTRACTS[kind])

    assert rejects.num_rows == 0
    assert rejects.schema.equals(REJECTS_SCHEMA)
    assert valid.schema.equals(CONTRACTS[kind].schema)
    assert valid.to_pylist() == rows


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_nullable_fields_may_be_null(kind: str) -> None:
    contract = CONTRACTS[kind]
    row = {**_good(kind), **{f.name: None for f in contract.schema if f.nullable}}
    valid, rejects = validate(_table(kind, [row]), contract)
    assert rejects.num_rows == 0
    assert valid.to_pylist() == [row]


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_an_empty_table_validates_to_empty_tables(kind: str) -> None:
    valid, rejects = validate(_table(kind, []), CONTRACTS[kind])
    assert valid.num_rows == 0 and valid.schema.equals(CONTRACTS[kind].schema)
    assert rejects.num_rows == 0 and rejects.schema.equals(REJECTS_SCHEMA)


def test_boundary_values_of_every_range_are_kept() -> None:
    cases = {
        "teacher_traces": [{"teacher_pass": 1, "prompt_tokens": 0, "completion_tokens": 0}, {"teacher_pass": 2}],
        "sft_examples": [{"teacher_pass": 1}, {"teacher_pass": 2}],
        "eval_predictions": [{"score": 0.0}, {"score": 1.0}],
        "eval_scores": [{"score": 0.0, "count": 0, "error_rate": 0.0}, {"score": 1.0, "error_rate": 1.0}],
    }
    for kind, changes in cases.items():
        rows = [{**_good(kind, f"row-{i}"), **change} for i, change in enumerate(changes)]
        valid, rejects = validate(_table(kind, rows), CONTRACTS[kind])
        assert rejects.to_pylist() == [], kind
        assert valid.num_rows == len(rows), kind


@pytest.mark.parametrize(
    ("kind", "field", "values"),
    [
        ("preference_pairs", "domain", ["chat", "safety", "code", "math"]),
        ("distill_set", "winner", ["model_a", "model_b"]),
        ("teacher_traces", "status", ["ok", "failed"]),
        ("eval_predictions", "verdict", ["A", "B", "tie", "error"]),
        ("eval_predictions", "benchmark", ["rewardbench", "rm_bench", "rmb"]),
        ("eval_scores", "level", ["subset", "section", "benchmark", "cell", "headline"]),
    ],
)
def test_every_allowed_value_passes_one_of(kind: str, field: str, values: list[str]) -> None:
    rows = [{**_good(kind, f"row-{i}"), field: value} for i, value in enumerate(values)]
    valid, rejects = validate(_table(kind, rows), CONTRACTS[kind])
    assert rejects.num_rows == 0
    assert valid.column(field).to_pylist() == values


# --- one broken rule, one reason ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_a_row_breaking_one_rule_is_rejected_with_the_rule_and_field_as_reason(case: Case) -> None:
    valid, rejects = _good_and_broken(case.kind, **case.changes)

    assert valid.column(KEY_FIELD[case.kind]).to_pylist() == ["good"]
    assert rejects.column("row_index").to_pylist() == [1]
    assert rejects.column("reason").to_pylist() == [case.reason]


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_every_rule_of_every_contract_has_a_breaking_case(kind: str) -> None:
    covered = {part for case in CASES if case.kind == kind for part in case.reason.split("; ")}
    expected = {rule.reason() for rule in CONTRACTS[kind].rules}
    assert expected - covered == set(), f"{kind}: rules without a test case"


def _required_fields() -> list[tuple[str, str]]:
    return [(kind, f.name) for kind, contract in sorted(CONTRACTS.items()) for f in contract.schema if not f.nullable]


@pytest.mark.parametrize(("kind", "field"), _required_fields(), ids=lambda value: str(value))
def test_null_in_a_required_column_is_rejected_as_not_null(kind: str, field: str) -> None:
    valid, rejects = _good_and_broken(kind, **{field: None})

    assert valid.num_rows == 1
    assert rejects.column("row_index").to_pylist() == [1]
    [reason] = rejects.column("reason").to_pylist()
    assert reason.split("; ")[0] == f"not_null ({field})"


def test_null_domain_names_both_not_null_and_one_of() -> None:
    _, rejects = _good_and_broken("preference_pairs", domain=None)
    assert rejects.column("reason").to_pylist() == ["not_null (domain); one_of[chat|safety|code|math] (domain)"]


def test_a_row_breaking_two_rules_lists_both() -> None:
    _, rejects = _good_and_broken("preference_pairs", domain="poetry", chosen="same", rejected="same")
    [reason] = rejects.column("reason").to_pylist()
    assert set(reason.split("; ")) == {"one_of[chat|safety|code|math] (domain)", "differs_from_chosen (rejected)"}


def test_rows_breaking_different_rules_each_get_only_their_own_reasons() -> None:
    rows = [
        _good("eval_scores", "a"),
        {**_good("eval_scores", "b"), "score": 2.0},
        {**_good("eval_scores", "c"), "level": "item", "count": -3},
        _good("eval_scores", "d"),
    ]
    valid, rejects = validate(_table("eval_scores", rows), CONTRACTS["eval_scores"])

    assert valid.column("name").to_pylist() == ["a", "d"]
    assert rejects.column("row_index").to_pylist() == [1, 2]
    assert rejects.column("reason").to_pylist() == [
        "in_range[-0.01,1.01] (score)",
        "one_of[subset|section|cell|benchmark|position|samples|headline] (level); in_range[0,None] (count)",
    ]


def test_every_row_after_the_first_with_a_repeated_id_is_rejected() -> None:
    rows = [_good("preference_pairs", key) for key in ("x", "y", "x", "x", "z")]
    valid, rejects = validate(_table("preference_pairs", rows), PREFERENCE_PAIRS)
    assert valid.column("pair_id").to_pylist() == ["x", "y", "z"]
    assert rejects.column("row_index").to_pylist() == [2, 3]
    assert set(rejects.column("reason").to_pylist()) == {"unique (pair_id)"}


def test_a_last_turn_with_a_null_role_is_rejected_not_raised() -> None:
    _, rejects = _good_and_broken("preference_pairs", conversation=[{"role": None, "content": "q"}])
    [reason] = rejects.column("reason").to_pylist()
    assert "roles_in[system|user|assistant] (conversation)" in reason
    assert "last_turn_is_user (conversation)" in reason


def test_conversation_rules_hold_on_a_sliced_multi_chunk_table() -> None:
    bad_turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    rows = [
        {**_good("preference_pairs", f"p{i}"), **({"conversation": bad_turns} if i % 3 == 0 else {})} for i in range(9)
    ]
    table = pa.concat_tables([_table("preference_pairs", rows[:4]), _table("preference_pairs", rows[4:])]).slice(1)

    valid, rejects = validate(table, PREFERENCE_PAIRS)

    assert valid.column("pair_id").to_pylist() == ["p1", "p2", "p4", "p5", "p7", "p8"]
    assert rejects.column("row_index").to_pylist() == [2, 5]  # p3 and p6, counted within the slice
    assert set(rejects.column("reason").to_pylist()) == {"last_turn_is_user (conversation)"}


# --- what a reject carries ----------------------------------------------------------------------------


def test_rejects_carry_row_index_source_ref_and_the_row_as_json() -> None:
    rows = [_good("preference_pairs", f"p{i}") for i in range(5)]
    rows[1] = {**rows[1], "domain": "poetry"}
    rows[3] = {**rows[3], "chosen": "  ", "conversation": [{"role": "user", "content": "¿Qué es 2+2? 日本"}]}
    table = _table("preference_pairs", rows)
    refs = pa.array([f"input.jsonl:{10 + i}" for i in range(5)])

    valid, rejects = validate(table, PREFERENCE_PAIRS, refs)

    assert rejects.schema.equals(REJECTS_SCHEMA)
    assert valid.column("pair_id").to_pylist() == ["p0", "p2", "p4"]
    assert rejects.column("row_index").to_pylist() == [1, 3]
    assert rejects.column("source_ref").to_pylist() == ["input.jsonl:11", "input.jsonl:13"]
    assert rejects.column("reason").to_pylist() == [DOMAIN_REASON, "non_empty_text (chosen)"]
    assert [json.loads(text) for text in rejects.column("row_json").to_pylist()] == [rows[1], rows[3]]
    assert "日本" in rejects.column("row_json")[1].as_py()  # kept readable, not \u-escaped


def test_rejects_have_a_null_source_ref_when_none_is_given() -> None:
    _, rejects = _good_and_broken("eval_scores", score=7.0)
    assert rejects.column("source_ref").to_pylist() == [None]
    assert json.loads(rejects.column("row_json")[0].as_py())["score"] == 7.0


# --- tables that do not fit the schema at all -----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_a_missing_column_raises_contract_error_naming_it(kind: str) -> None:
    contract = CONTRACTS[kind]
    column = contract.schema.names[-1]
    table = _table(kind, [_good(kind)]).drop_columns([column])
    with pytest.raises(ContractError, match=rf"{kind}: table lacks column\(s\) {column}$"):
        validate(table, contract)


def test_every_missing_column_is_named() -> None:
    table = _table("preference_pairs", [_good("preference_pairs")]).drop_columns(["chosen", "source_ref"])
    with pytest.raises(ContractError, match="chosen, source_ref"):
        validate(table, PREFERENCE_PAIRS)


def test_a_column_that_cannot_be_cast_raises_contract_error_naming_it() -> None:
    table = _table("teacher_traces", [_good("teacher_traces")])
    table = table.set_column(table.schema.get_field_index("teacher_pass"), "teacher_pass", pa.array(["first"]))
    with pytest.raises(ContractError, match="teacher_pass has type string, expected int8"):
        validate(table, CONTRACTS["teacher_traces"])


def test_castable_types_extra_columns_and_column_order_are_conformed() -> None:
    row = _good("teacher_traces")
    table = pa.Table.from_pylist([{"extra": "dropped", **dict(reversed(list(row.items())))}])  # ints as int64
    valid, rejects = validate(table, CONTRACTS["teacher_traces"])

    assert rejects.num_rows == 0
    assert valid.schema.equals(CONTRACTS["teacher_traces"].schema)
    assert valid.to_pylist() == [row]


# --- rule builders on their own -------------------------------------------------------------------------


def _builder_contract(*rules: Any) -> Contract:
    schema = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("text", pa.string()),
            pa.field("other", pa.string()),
            pa.field("value", pa.float64()),
            pa.field("turns", pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))),
        ]
    )
    return Contract("toy", 1, schema, rules)


def _builder_row(**changes: Any) -> Row:
    return {
        "id": "r",
        "text": "x",
        "other": "o",
        "value": 0.5,
        "turns": [{"role": "q", "content": "x"}],
        **changes,
    }


BUILDER_CASES = [
    (non_empty_text("text"), {"text": " x "}, {"text": "\u3000 "}, "non_empty_text (text)"),
    (one_of("text", ["x", "y"]), {"text": "y"}, {"text": "z"}, "one_of[x|y] (text)"),
    (in_range("value", 0.0, 1.0), {"value": 1.0}, {"value": 1.0000001}, "in_range[0.0,1.0] (value)"),
    (in_range("value", low=-1.0), {"value": 1e9}, {"value": -1.5}, "in_range[-1.0,None] (value)"),
    (in_range("value", high=2.0), {"value": -1e9}, {"value": 2.5}, "in_range[None,2.0] (value)"),
    (in_range("value", 0.0, 1.0), {"value": 0.0}, {"value": None}, "in_range[0.0,1.0] (value)"),
    (columns_differ("text", "other"), {"text": "a"}, {"text": "o"}, "differs_from_other (text)"),
    (unique("id"), {"id": "fresh"}, {"id": "r"}, "unique (id)"),
    (list_not_empty("turns"), {}, {"turns": []}, "non_empty_list (turns)"),
    (
        last_turn_role("turns", "q"),
        {"turns": [{"role": "a", "content": "1"}, {"role": "q", "content": "2"}]},
        {"turns": [{"role": "q", "content": "1"}, {"role": "a", "content": "2"}]},
        "last_turn_is_q (turns)",
    ),
    (
        turn_roles("turns", ["q", "a"]),
        {"turns": [{"role": "a", "content": "1"}, {"role": "q", "content": "2"}]},
        {"turns": [{"role": "q", "content": "1"}, {"role": "z", "content": "2"}]},
        "roles_in[q|a] (turns)",
    ),
]


@pytest.mark.parametrize(("rule", "good", "bad", "reason"), BUILDER_CASES, ids=[case[3] for case in BUILDER_CASES])
def test_each_rule_builder_keeps_good_rows_and_rejects_bad_ones_with_its_reason(
    rule: Any, good: Row, bad: Row, reason: str
) -> None:
    contract = _builder_contract(rule)
    rows = [_builder_row(), _builder_row(**{"id": "g", **good}), _builder_row(**{"id": "b", **bad})]

    valid, rejects = validate(pa.Table.from_pylist(rows, schema=contract.schema), contract)

    assert valid.num_rows == 2
    assert rejects.column("row_index").to_pylist() == [2]
    assert rejects.column("reason").to_pylist() == [reason]


def test_rule_builders_handle_a_table_where_no_row_has_turns() -> None:
    contract = _builder_contract(list_not_empty("turns"), last_turn_role("turns", "q"), turn_roles("turns", ["q"]))
    rows = [_builder_row(id="a", turns=[]), _builder_row(id="b", turns=[])]
    _, rejects = validate(pa.Table.from_pylist(rows, schema=contract.schema), contract)
    assert rejects.column("reason").to_pylist() == ["non_empty_list (turns); last_turn_is_q (turns)"] * 2


# --- reject rate ------------------------------------------------------------------------------------------


def test_a_reject_rate_above_the_threshold_raises_naming_the_input() -> None:
    examples = [f"skywork.jsonl:{i}: one_of[chat|safety|code|math] (domain)" for i in range(8)]
    with pytest.raises(RejectRateExceeded) as raised:
        check_reject_rate("skywork.jsonl", 6, 100, 0.05, examples)
    message = str(raised.value)
    assert message.startswith("skywork.jsonl: 6 of 100 rows (6.0%) were rejected")
    assert "5.0%" in message
    assert examples[4] in message and examples[5] not in message  # the first five examples only


@pytest.mark.parametrize(("rejected", "total", "threshold"), [(5, 100, 0.05), (1, 10, 0.1), (0, 100, 0.0), (0, 0, 0.0)])
def test_a_reject_rate_at_or_below_the_threshold_passes(rejected: int, total: int, threshold: float) -> None:
    check_reject_rate("input.jsonl", rejected, total, threshold, ["example"])


@pytest.mark.parametrize(
    ("rejected", "total", "threshold"), [(6, 100, 0.05), (2, 10, 0.1), (1, 100, 0.0), (1, 1, 0.99)]
)
def test_a_reject_rate_just_above_the_threshold_raises(rejected: int, total: int, threshold: float) -> None:
    with pytest.raises(RejectRateExceeded, match=r"^input\.jsonl: "):
        check_reject_rate("input.jsonl", rejected, total, threshold, [])


def test_reject_rate_exceeded_is_a_value_error() -> None:
    assert issubclass(RejectRateExceeded, ValueError)
    assert issubclass(ContractError, ValueError)
