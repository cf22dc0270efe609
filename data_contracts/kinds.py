"""The contract of every artifact kind the pipeline passes between stages: one home for each schema.

Bump a contract's `version` whenever its schema or rules change: the version is part of every artifact
version, so downstream artifacts are rebuilt instead of read with the wrong shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from data_contracts.contract import (
    Contract,
    columns_differ,
    in_range,
    last_turn_role,
    list_not_empty,
    non_empty_text,
    one_of,
    turn_roles,
    unique,
)

DOMAINS = ("chat", "safety", "code", "math")
WINNERS = ("model_a", "model_b")  # docs/method.md §4: label `winner ∈ {model_a, model_b}`
ROLES = ("system", "user", "assistant")

TURN = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
CONVERSATION = pa.list_(TURN)


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _conversation_rules() -> list:
    return [list_not_empty("conversation"), turn_roles("conversation", ROLES), last_turn_role("conversation", "user")]


PREFERENCE_PAIRS = Contract(
    kind="preference_pairs",
    version=1,
    schema=pa.schema(
        [
            _required("pair_id", pa.string()),
            _required("source", pa.string()),
            _required("domain", pa.string()),
            _required("conversation", CONVERSATION),
            _required("chosen", pa.string()),
            _required("rejected", pa.string()),
            _required("source_ref", pa.string()),
        ]
    ),
    rules=(
        unique("pair_id"),
        non_empty_text("source"),
        one_of("domain", DOMAINS),
        *_conversation_rules(),
        non_empty_text("chosen"),
        non_empty_text("rejected"),
        columns_differ("rejected", "chosen"),
    ),
)

_JUDGE_PAIR_SCHEMA = pa.schema(
    [
        _required("pair_id", pa.string()),
        _required("source", pa.string()),
        _required("domain", pa.string()),
        _required("conversation", CONVERSATION),
        _required("answer_a", pa.string()),
        _required("answer_b", pa.string()),
        _required("winner", pa.string()),
        _required("source_ref", pa.string()),
    ]
)
_JUDGE_PAIR_RULES = (
    unique("pair_id"),
    one_of("domain", DOMAINS),
    *_conversation_rules(),
    non_empty_text("answer_a"),
    non_empty_text("answer_b"),
    columns_differ("answer_b", "answer_a"),
    one_of("winner", WINNERS),
)
DISTILL_SET = Contract("distill_set", 1, _JUDGE_PAIR_SCHEMA, _JUDGE_PAIR_RULES)
RL_SET = Contract("rl_set", 1, _JUDGE_PAIR_SCHEMA, _JUDGE_PAIR_RULES)

TEACHER_TRACES = Contract(
    kind="teacher_traces",
    version=1,
    schema=pa.schema(
        [
            _required("pair_id", pa.string()),
            _required("request_id", pa.string()),
            _required("teacher_pass", pa.int8()),
            _required("teacher_model", pa.string()),
            _required("status", pa.string()),
            pa.field("failure_reason", pa.string()),
            pa.field("system", pa.string()),
            _required("user", pa.string()),
            pa.field("response", pa.string()),
            pa.field("finish_reason", pa.string()),
            _required("winner", pa.string()),
            _required("domain", pa.string()),
            _required("source", pa.string()),
            _required("prompt_tokens", pa.int64()),
            _required("completion_tokens", pa.int64()),
            pa.field("cost_usd", pa.float64()),
            pa.field("latency_s", pa.float64()),
            _required("attempts", pa.int64()),
        ]
    ),
    rules=(
        one_of("status", ("ok", "failed")),
        in_range("teacher_pass", 1, 2),
        one_of("winner", WINNERS),
        one_of("domain", DOMAINS),
        non_empty_text("user"),
        in_range("prompt_tokens", 0),
        in_range("completion_tokens", 0),
        in_range("attempts", 0),
    ),
)

SFT_EXAMPLES = Contract(
    kind="sft_examples",
    version=1,
    schema=pa.schema(
        [
            _required("pair_id", pa.string()),
            pa.field("system", pa.string()),
            _required("user", pa.string()),
            _required("assistant", pa.string()),
            _required("winner", pa.string()),
            _required("domain", pa.string()),
            _required("source", pa.string()),
            _required("teacher_pass", pa.int8()),
            _required("teacher_model", pa.string()),
            _required("request_id", pa.string()),
        ]
    ),
    rules=(
        unique("pair_id"),
        non_empty_text("user"),
        non_empty_text("assistant"),
        one_of("winner", WINNERS),
        one_of("domain", DOMAINS),
        in_range("teacher_pass", 1, 2),
    ),
)

FILTER_REJECTS = Contract(
    kind="filter_rejects",
    version=1,
    schema=pa.schema(
        [
            _required("pair_id", pa.string()),
            _required("request_id", pa.string()),
            _required("teacher_pass", pa.int8()),
            _required("teacher_model", pa.string()),
            _required("domain", pa.string()),
            _required("source", pa.string()),
            _required("reason", pa.string()),
        ]
    ),
    rules=(non_empty_text("reason"), in_range("teacher_pass", 1, 2)),
)

VERDICTS = ("A", "B", "tie", "error")

EVAL_PREDICTIONS = Contract(
    kind="eval_predictions",
    version=2,
    schema=pa.schema(
        [
            _required("benchmark", pa.string()),
            _required("subset", pa.string()),
            _required("item_id", pa.string()),
            _required("comparison_id", pa.string()),  # unique per (comparison, order)
            pa.field("group_id", pa.string()),  # RMB BoN item uid, RM-Bench item id
            pa.field("category", pa.string()),  # RewardBench section, RM-Bench domain, RMB category path
            pa.field("chosen_style", pa.int8()),  # RM-Bench style index 0..2 (docs/method.md §8)
            pa.field("rejected_style", pa.int8()),
            _required("chosen_position", pa.string()),
            _required("swapped", pa.bool_()),  # both_orders: the second judgement, with A and B exchanged
            _required("judge", pa.string()),
            _required("order_seed", pa.int64()),
            pa.field("output", pa.string()),
            _required("verdict", pa.string()),
            _required("score", pa.float64()),
        ]
    ),
    rules=(
        non_empty_text("benchmark"),  # a registered benchmark or a team's own set (tasks/evaluate/benchmarks)
        unique("comparison_id"),
        one_of("chosen_position", ("A", "B")),
        one_of("verdict", VERDICTS),
        in_range("score", 0.0, 1.0),
    ),
)

# Score levels: a benchmark's subsets/categories, its sections (RewardBench sections, RM-Bench domains and
# hard/normal/easy, RMB pairwise/BoN goals), RM-Bench's 3x3 cells, the benchmark score itself, position
# bias (accuracy by where the chosen answer was shown, consistency across both orders), and the headline.
# With `judge.samples`, "samples" rows give each benchmark's score from the first k verdicts (majority vote).
SCORE_LEVELS = ("subset", "section", "cell", "benchmark", "position", "samples", "headline")

EVAL_SCORES = Contract(
    kind="eval_scores",
    version=2,
    schema=pa.schema(
        [
            _required("benchmark", pa.string()),
            _required("level", pa.string()),
            _required("name", pa.string()),
            _required("score", pa.float64()),
            _required("count", pa.int64()),
            _required("error_rate", pa.float64()),
        ]
    ),
    rules=(
        non_empty_text("benchmark"),  # a benchmark's name, or "overall"
        one_of("level", SCORE_LEVELS),
        in_range("score", -0.01, 1.01),  # RewardBench 2's official Ties formula weighs its terms 1.01 in all
        in_range("count", 0),
        in_range("error_rate", 0.0, 1.0),
    ),
)


LEARNING_SCORES = Contract(
    kind="learning_scores",
    version=1,
    schema=pa.schema(
        [
            _required("judge", pa.string()),  # untrained, sft, rl, length
            _required("model", pa.string()),  # what judged: a checkpoint artifact, the student, the baseline
            _required("benchmark", pa.string()),
            _required("comparisons", pa.int64()),
            _required("accuracy", pa.float64()),  # docs/method.md §3, evaluation rule: wrong or unparseable = 0
            _required("unparseable", pa.float64()),  # share with neither or both verdict tags
            _required("verdict_a", pa.float64()),  # share of [[A]] verdicts (the chosen answer is at A in ~half)
        ]
    ),
    rules=(
        non_empty_text("judge"),
        in_range("comparisons", 0),
        in_range("accuracy", 0.0, 1.0),
        in_range("unparseable", 0.0, 1.0),
        in_range("verdict_a", 0.0, 1.0),
    ),
)


@dataclass(frozen=True)
class FolderKind:
    """An artifact that is a folder of files (a model checkpoint) rather than a table.

    `required` files must be present when it is published ("a|b": either one); the manifest lists every file
    with its sha256.
    """

    kind: str
    version: int
    required: tuple[str, ...]


# A Hugging Face model folder: what `save_pretrained` writes for the model and its tokenizer.
_HF_FOLDER = ("config.json", "tokenizer_config.json", "model.safetensors|model.safetensors.index.json")
SFT_CHECKPOINT = FolderKind("sft_checkpoint", 1, _HF_FOLDER)
RL_CHECKPOINT = FolderKind("rl_checkpoint", 1, _HF_FOLDER)
FOLDER_KINDS: dict[str, FolderKind] = {k.kind: k for k in (SFT_CHECKPOINT, RL_CHECKPOINT)}

CONTRACTS: dict[str, Contract] = {
    c.kind: c
    for c in (
        PREFERENCE_PAIRS,
        DISTILL_SET,
        RL_SET,
        TEACHER_TRACES,
        SFT_EXAMPLES,
        FILTER_REJECTS,
        EVAL_PREDICTIONS,
        EVAL_SCORES,
        LEARNING_SCORES,
    )
}
