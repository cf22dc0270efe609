"""What a judge trace must look like, and the pass-2 hint that asks a second teacher to correct one.

`trace_format_problem` checks the Chain-of-Rubrics layout of docs/method.md §2 (type, rubric+justify or
solution, eval, answer); `render_pass2_hint` builds the suffix docs/method.md §5 appends for the second
teacher: the correct verdict and the previous (wrong) judgement. Pure functions; never raise on text.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.judge_protocol.templates import fill_placeholders
from tasks.judge_protocol.verdicts import VERDICT_TAGS, Winner

PASS2_HINT_FILE = Path(__file__).parent / "templates" / "hints" / "pass2-v1.txt"
_ANSWER = re.compile(r"<answer>\[\[([AB])\]\]</answer>")
_TYPE = re.compile(r"<type>(Chat|Reasoning)</type>")


def _block(text: str, tag: str) -> str | None:
    """The content of the first <tag>...</tag>, or None."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
    return match.group(1) if match else None


def trace_format_problem(trace: str) -> str | None:
    """None when `trace` has the CoR layout, else the first missing piece (e.g. "format: <justify> in <rubric>").

    Layout: exactly one <type>Chat|Reasoning</type>; Chat needs <rubric> holding <justify>, Reasoning
    needs <solution>; then <eval>; then exactly one <answer>[[A|B]]</answer>, after the eval.
    """
    if not isinstance(trace, str):
        return "format: no text"
    types = _TYPE.findall(trace)
    if len(types) != 1:
        return f"format: <type>Chat|Reasoning</type> (found {len(types)})"
    if types[0] == "Chat":
        rubric = _block(trace, "rubric")
        if rubric is None:
            return "format: <rubric>"
        if _block(rubric, "justify") is None:
            return "format: <justify> in <rubric>"
    elif _block(trace, "solution") is None:
        return "format: <solution>"
    if _block(trace, "eval") is None:
        return "format: <eval>"
    answers = list(_ANSWER.finditer(trace))
    if len(answers) != 1:
        return f"format: one <answer>[[A|B]]</answer> (found {len(answers)})"
    if answers[0].start() < trace.rindex("</eval>"):
        return "format: <answer> after </eval>"
    return None


def render_pass2_hint(previous_judgement: str, winner: Winner) -> str:
    """The suffix for the second teacher: the correct verdict and the previous judgement (docs/method.md §5)."""
    text = PASS2_HINT_FILE.read_text(encoding="utf-8").rstrip("\n")
    return fill_placeholders(text, {"{correct_tag}": VERDICT_TAGS[winner], "{previous_judgement}": previous_judgement})
