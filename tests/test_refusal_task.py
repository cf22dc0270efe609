"""The learnable refusal task: a rule a tiny judge can learn, that answer length cannot predict, a held-out split
of unseen combinations, and the stand-in teacher that follows the rule (wrong on purpose on a share)."""

from __future__ import annotations

import re
import tempfile
from collections import Counter

import pytest

from tasks.evaluate.benchmarks import load_benchmark
from tasks.evaluate.config import BenchmarkConfig
from tasks.judge.protocol import (
    filter_verdict_matches,
    load_template_set,
    parse_eval_verdict,
    place_pair,
    render_judge_messages,
    trace_format_problem,
)
from tasks.judge.protocol.traces import render_pass2_hint
from tasks.standins.refusal_task import (
    HARMFUL,
    HARMLESS,
    MERIT_WORDS,
    PHRASINGS,
    RuleJudgement,
    cells,
    refusal_records,
    rule_judgement,
    rule_trace,
)
from tasks.standins.teacher import RULE_MISTAKE_SHARE, STANDIN_MODEL, STANDIN_RULE_MODEL, judge_trace

COMPACT = load_template_set("cor-compact-v1")


def _placed(records: list[dict], start: int = 0) -> list[tuple[str, str, str, str]]:
    """(question, answer_a, answer_b, winner) with the chosen answer alternating between A and B."""
    placed = []
    for index, record in enumerate(records):
        answer_a, answer_b, winner = place_pair(record["chosen"], record["rejected"], "AB"[(index + start) % 2])
        placed.append((record["conversation"][0]["content"], answer_a, answer_b, winner))
    return placed


def test_the_heldout_split_pairs_seen_requests_and_phrasings_never_seen_together() -> None:
    train, heldout = cells("train"), cells("heldout")
    assert {(c.request, c.phrasing) for c in train}.isdisjoint({(c.request, c.phrasing) for c in heldout})
    assert len(train) + len(heldout) == (len(HARMFUL) + len(HARMLESS)) * len(PHRASINGS)
    assert {c.request for c in heldout} <= {c.request for c in train}
    assert {c.phrasing for c in heldout} <= {c.phrasing for c in train}
    questions = {r["conversation"][0]["content"] for r in refusal_records(2000, 3, "train")}
    assert questions.isdisjoint({r["conversation"][0]["content"] for r in refusal_records(500, 3, "heldout")})


def test_answer_length_does_not_predict_the_label() -> None:
    for split in ("train", "heldout"):
        records = refusal_records(2000, 11, split)
        longer_wins = sum(len(r["chosen"]) > len(r["rejected"]) for r in records) / len(records)
        assert 0.40 <= longer_wins <= 0.60, (split, longer_wins)


def test_records_are_seeded_balanced_and_labelled_by_the_rule() -> None:
    assert refusal_records(50, 5) == refusal_records(50, 5)
    assert refusal_records(50, 5) != refusal_records(50, 6)
    records = refusal_records(400, 5)
    assert 0.4 < Counter(r["domain"] for r in records)["safety"] / len(records) < 0.6
    for question, answer_a, answer_b, winner in _placed(records):
        judgement = rule_judgement(question, answer_a, answer_b)
        assert judgement is not None and f"model_{judgement.verdict.lower()}" == winner


def test_the_rule_teacher_writes_layout_correct_traces_wrong_on_a_share_and_a_hint_corrects_them() -> None:
    placed = _placed(refusal_records(600, 9))
    wrong = 0
    for question, answer_a, answer_b, winner in placed:
        messages = render_judge_messages(COMPACT, [{"role": "user", "content": question}], answer_a, answer_b)
        trace = judge_trace(messages, STANDIN_RULE_MODEL)
        assert trace_format_problem(trace) is None, trace
        assert parse_eval_verdict(trace).value in ("A", "B")
        if not filter_verdict_matches(trace, winner):  # type: ignore[arg-type]
            wrong += 1
            hinted = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + "\n\n"
                                       + render_pass2_hint(trace, winner)}]  # type: ignore[arg-type]  # fmt: skip
            corrected = judge_trace(hinted, STANDIN_RULE_MODEL)
            assert filter_verdict_matches(corrected, winner), corrected  # type: ignore[arg-type]
            assert trace_format_problem(corrected) is None
    assert abs(wrong / len(placed) - RULE_MISTAKE_SHARE) < 0.06
    # The default stand-in is still the longer-answer judge: it never reads the rule.
    question, answer_a, answer_b, _ = placed[0]
    messages = render_judge_messages(COMPACT, [{"role": "user", "content": question}], answer_a, answer_b)
    assert "Safety (100%)" not in judge_trace(messages, STANDIN_MODEL)


@pytest.mark.parametrize("harmful", [True, False])
@pytest.mark.parametrize("a_refuses", [True, False])
def test_each_summary_ends_with_a_merit_word_that_names_the_class_and_the_verdict_follows_it(
    harmful: bool, a_refuses: bool
) -> None:
    judgement = RuleJudgement(harmful, a_refuses, not a_refuses)
    for read_as_harmful in (harmful, not harmful):  # as written, and misread on purpose
        trace = rule_trace(judgement, harmful=read_as_harmful)
        summary = r"<summary_{0}>Chatbot {0} \w+: (\w+)\.</summary_{0}>"
        words = {name: re.search(summary.format(name), trace) for name in "AB"}
        assert all(words.values()), trace
        good = {MERIT_WORDS[(read_as_harmful, True)]}
        assert {words["A"].group(1), words["B"].group(1)} == {*good, MERIT_WORDS[(read_as_harmful, False)]}  # type: ignore[union-attr]
        winner = "A" if words["A"].group(1) in good else "B"  # type: ignore[union-attr]
        assert parse_eval_verdict(trace).value == winner
        assert (winner == judgement.verdict) == (read_as_harmful == harmful)
    assert len(set(MERIT_WORDS.values())) == 4


def test_a_retired_standin_name_is_refused_by_name() -> None:
    from data_contracts.errors import UserError
    from tasks.distill.config import TeacherConfig
    from tasks.distill.stage import effective_teacher

    with pytest.raises(UserError, match=r"teacher\.model: the stand-in 'standin-refusal-rule-judge' is retired"):
        effective_teacher(TeacherConfig(base_url=None, model="standin-refusal-rule-judge"))
    assert effective_teacher(TeacherConfig(base_url=None, model=STANDIN_RULE_MODEL)).model == STANDIN_RULE_MODEL


def test_the_heldout_benchmark_loads_200_pairs_and_the_length_rule_scores_about_half() -> None:
    comparisons = load_benchmark(BenchmarkConfig(name="refusal_task", path="synthetic"))
    assert len(comparisons) == 200
    assert {c.subset for c in comparisons} == {"harmful", "harmless"}
    assert len({c.comparison_id for c in comparisons}) == 200
    longer = sum(len(c.chosen) > len(c.rejected) for c in comparisons) / len(comparisons)
    assert 0.40 <= longer <= 0.60


@pytest.mark.parametrize("broken", ['{"id": "x", "prompt": "q", "chosen": "a"}', "not json"])
def test_a_broken_heldout_file_names_the_file_and_record(broken: str) -> None:
    from tasks.evaluate.benchmarks.base import BenchmarkError

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/heldout.jsonl"
        with open(path, "w") as out:
            out.write(broken + "\n")
        with pytest.raises(BenchmarkError, match=r"heldout\.jsonl"):
            load_benchmark(BenchmarkConfig(name="refusal_task", path=path))
