"""What a judge trace must look like, and the pass-2 hint that asks a second teacher to correct one.

`trace_format_problem` checks the Chain-of-Rubrics layout of docs/method.md §2 (type, rubric+justify or
solution, eval, answer); `trace_sections` cuts a trace into those tagged sections for people to read;
`render_pass2_hint` builds the suffix docs/method.md §5 appends for the second
teacher: the correct verdict and the previous (wrong) judgement. Pure functions; never raise on text.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.judge.protocol.templates import fill_placeholders
from tasks.judge.protocol.verdicts import VERDICT_TAGS, Winner

PASS2_HINT_FILE = Path(__file__).parent / "templates" / "hints" / "pass2-v1.txt"
_ANSWER = re.compile(r"<answer>\[\[([AB])\]\]</answer>")
_TYPE = re.compile(r"<type>(Chat|Reasoning)</type>")
# The top-level sections of a trace (docs/method.md §2), plus the free <think> of reasoning models.
_SECTION = re.compile(r"<(think|type|rubric|solution|eval|answer)>(.*?)</\1>", flags=re.DOTALL)
_JUSTIFY = re.compile(r"<justify>(.*?)</justify>", flags=re.DOTALL)


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


def trace_sections(trace: str | None) -> list[tuple[str, str]]:
    """The trace as (section, text) in the order written: think, type, rubric, justify, solution, eval, answer.

    The <justify> inside a rubric follows the rubric as its own section; text outside every closed section
    (a preamble, an unclosed tag, a cut-off trace) is kept as ("text", ...), so nothing is lost. A trace
    with no sections is one ("text", trace); None or "" gives []. Tags nested in a section (<quote_A> in
    <eval>) stay in its text.
    """
    if not isinstance(trace, str):
        return []
    sections: list[tuple[str, str]] = []

    def outside(text: str) -> None:
        if text.strip():
            sections.append(("text", text.strip()))

    end = 0
    for match in _SECTION.finditer(trace):
        outside(trace[end : match.start()])
        tag, body = match.group(1), match.group(2)
        justify = _JUSTIFY.search(body) if tag == "rubric" else None
        if justify is not None:
            sections.append(("rubric", (body[: justify.start()] + body[justify.end() :]).strip("\n")))
            sections.append(("justify", justify.group(1).strip("\n")))
        else:
            sections.append((tag, body.strip("\n")))
        end = match.end()
    outside(trace[end:])
    return sections


def render_pass2_hint(previous_judgement: str, winner: Winner) -> str:
    """The suffix for the second teacher: the correct verdict and the previous judgement (docs/method.md §5)."""
    text = PASS2_HINT_FILE.read_text(encoding="utf-8").rstrip("\n")
    return fill_placeholders(text, {"{correct_tag}": VERDICT_TAGS[winner], "{previous_judgement}": previous_judgement})
