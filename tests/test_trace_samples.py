"""Sample traces as the Prefect UI shows them: hand-made rows in, markdown out, no Prefect and no store."""

from __future__ import annotations

import re
from typing import Any

from tasks.distill.stage import traces_markdown as distill_markdown
from tasks.evaluate.stage import judgments_markdown
from tasks.filter.stage import traces_markdown as filter_markdown
from tasks.judge.protocol import trace_sections
from tasks.trace_samples import TEXT_CHARS, cut, fenced, pick

CHAT_TRACE = (
    "<type>Chat</type>\n\n<rubric>\n1. Accuracy (70%): facts right.\n2. Tone (30%): kind.\n<justify>\nFacts matter "
    "most here.\n</justify>\n</rubric>\n\n<eval>\n<quote_A>Paris</quote_A> is right; B says Lyon.\n</eval>\n\n"
    "<answer>[[A]]</answer>"
)
REASONING_TRACE = (
    "<type>Reasoning</type>\n<solution>\n2 + 2 = 4\n</solution>\n<eval>\nA is 4.\n</eval>\n<answer>[[B]]</answer>"
)


FENCE = re.compile(r"^(`{3,})text\n(.*?)\n\1$", flags=re.DOTALL | re.M)  # a fenced block as `fenced` writes it


def fenced_blocks(markdown: str) -> list[str]:
    return [match.group(2) for match in FENCE.finditer(markdown)]


def kept(pair_id: str, domain: str, text: str, teacher_pass: int = 1) -> dict[str, Any]:
    return {"pair_id": pair_id, "assistant": text, "winner": "model_a", "domain": domain, "source": "skywork",
            "teacher_pass": teacher_pass, "teacher_model": "teacher-1", "request_id": f"req-{pair_id}"}  # fmt: skip


def rejected(pair_id: str, domain: str, reason: str) -> dict[str, Any]:
    return {"pair_id": pair_id, "request_id": f"req-{pair_id}", "teacher_pass": 1, "teacher_model": "teacher-1",
            "domain": domain, "source": "skywork", "reason": reason}  # fmt: skip


REFS = {"sft_examples": "sft_examples/aaa111", "filter_rejects": "filter_rejects/bbb222"}


def test_a_trace_splits_into_its_chain_of_rubrics_sections_in_order_and_keeps_what_is_outside_them() -> None:
    assert trace_sections(CHAT_TRACE) == [
        ("type", "Chat"),
        ("rubric", "1. Accuracy (70%): facts right.\n2. Tone (30%): kind."),
        ("justify", "Facts matter most here."),
        ("eval", "<quote_A>Paris</quote_A> is right; B says Lyon."),
        ("answer", "[[A]]"),
    ]
    cut_off = "Let me see. <think>A first</think> <eval>B is longer but"
    assert trace_sections(cut_off) == [("text", "Let me see."), ("think", "A first"), ("text", "<eval>B is longer but")]
    assert trace_sections("no tags at all") == [("text", "no tags at all")]
    assert trace_sections(None) == [] and trace_sections("") == []


def test_filter_samples_show_kept_and_rejected_traces_per_domain_with_the_reason() -> None:
    kept_rows = [kept("p1", "chat", CHAT_TRACE), kept("p2", "math", REASONING_TRACE, teacher_pass=2)]
    rejected_rows = [rejected("p3", "chat", "format: <justify> in <rubric>"), rejected("p2", "math", "verdict: x")]
    traces = {"req-p3": {"response": "<type>Chat</type>\n<answer>[[B]]</answer>", "winner": "model_b"},
              "req-p2": {"response": "<answer>[[A]]</answer>", "winner": "model_b"}}  # fmt: skip

    markdown = filter_markdown(kept_rows, rejected_rows, traces, REFS)

    chat, math = markdown.split("\n## chat\n")[1].split("\n## math\n")
    assert "### kept: 1 of 1" in chat and "### rejected: 1 of 1" in chat
    assert "#### pair `p1` · pass 1" in chat and "#### pair `p3` · pass 1" in chat
    assert "- reason: `format: <justify> in <rubric>`" in chat  # tags as inline code: shown, not eaten as HTML
    assert "- label: `[[B]]`" in chat.split("#### pair `p3`")[1]  # the rejected trace's label, from teacher_traces
    for name, text in trace_sections(CHAT_TRACE):
        assert f"**{name}**\n\n```text\n{text}\n```" in chat
    assert "**solution**\n\n```text\n2 + 2 = 4\n```" in math and "- reason: `verdict: x`" in math
    assert "rmr1 show filter_rejects/bbb222" in markdown


def test_a_domain_without_rejects_says_so_and_a_failed_request_shows_its_reason_and_no_text() -> None:
    markdown = filter_markdown([kept("p1", "code", CHAT_TRACE)], [], {}, REFS)
    assert "### kept: 1 of 1" in markdown and "### rejected: none" in markdown

    failed = {"pair_id": "p9", "teacher_pass": 1, "teacher_model": "t", "status": "failed", "winner": "model_a",
              "failure_reason": "timeout: no answer in 60 s", "response": None, "finish_reason": None,
              "domain": "safety", "source": "s", "completion_tokens": 0}  # fmt: skip
    ok = {**failed, "pair_id": "p8", "status": "ok", "failure_reason": None, "response": CHAT_TRACE}
    distilled = distill_markdown([failed, ok], "teacher_traces/ccc333")
    assert "### verdict matches the label: 1 of 1" in distilled and "### verdict misses the label: none" in distilled
    failed_part = distilled.split("### request failed: 1 of 1")[1]
    assert "- failure: `timeout: no answer in 60 s`" in failed_part and "_no text_" in failed_part


def test_judgments_are_grouped_right_wrong_unparseable_and_an_unparseable_output_is_shown_whole() -> None:
    def judgment(comparison_id: str, verdict: str, score: float, output: str | None) -> dict[str, Any]:
        fields = {"comparison_id": comparison_id, "output": output, "verdict": verdict, "score": score}
        return {"benchmark": "rewardbench", "subset": "chat-easy", "chosen_position": "A", "swapped": False, **fields}

    garbled = "I think both are fine [[A]] or maybe [[B]]"
    rows = [judgment("c1", "A", 1.0, CHAT_TRACE), judgment("c2", "B", 0.0, REASONING_TRACE),
            judgment("c3", "error", 0.0, garbled), judgment("c4", "error", 0.0, None)]  # fmt: skip

    markdown = judgments_markdown(rows, "eval_predictions/ddd444")

    right, rest = markdown.split("### right: 1 of 1")[1].split("### wrong: 1 of 1")
    wrong, unparseable = rest.split("### unparseable: 2 of 2")
    assert "`c1`" in right and "- verdict: `A`" in right and "```text\n[[A]]\n```" in right
    assert "`c2`" in wrong and "- score: `0.0`" in wrong
    assert "**text** (no Chain-of-Rubrics sections)" in unparseable and f"```text\n{garbled}\n```" in unparseable
    assert "_no text_" in unparseable  # a judgment with no output at all
    assert markdown.index("## rewardbench") < markdown.index("### right")


def test_a_very_long_trace_is_cut_in_the_middle_keeping_its_verdict_and_naming_its_full_length() -> None:
    evaluation = "The first answer cites the source. " * 400  # 14,000 characters
    trace = f"<type>Chat</type><rubric>r<justify>j</justify></rubric><eval>{evaluation}</eval><answer>[[A]]</answer>"

    markdown = filter_markdown([kept("p1", "chat", trace)], [], {}, REFS)

    shown = fenced_blocks(markdown)
    assert shown[-1] == "[[A]]"  # the verdict, whole
    long_block = max(shown, key=len)
    assert f"[… {len(evaluation) - TEXT_CHARS:,} characters cut; {len(evaluation):,} in all …]" in long_block
    assert long_block.startswith(evaluation[:100]) and long_block.endswith(evaluation[-100:])
    assert len(markdown) < 4 * TEXT_CHARS
    assert cut("short", 10) == "short" and cut(evaluation, 0) == evaluation


def test_backticks_in_a_trace_cannot_close_its_fence() -> None:
    text = "```python\nprint(1)\n```\nand ```` four"
    block = fenced(text)
    assert block.startswith("`````text\n") and block.endswith("\n`````")
    assert fenced_blocks(block) == [text]


def test_the_same_rows_give_the_same_samples_in_any_order_and_at_most_a_few_per_group() -> None:
    rows = [{"id": f"pair-{i}", "domain": "chat" if i % 3 else "math"} for i in range(30)]

    def group(row: dict[str, Any]) -> tuple[str, str]:
        return row["domain"], "kept"

    first = pick(rows, group, key=lambda r: r["id"], per_group=2)
    again = pick(list(reversed(rows)), group, key=lambda r: r["id"], per_group=2)
    assert first == again
    assert {name: count for name, (count, _) in first.items()} == {("chat", "kept"): 20, ("math", "kept"): 10}
    assert all(len(members) == 2 for _, members in first.values())
    assert [r["id"] for r in first["chat", "kept"][1]] != ["pair-1", "pair-2"]  # spread by hash, not the first ids
