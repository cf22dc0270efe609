"""Sample traces for people to read in the Prefect UI: a few rows per group, picked in a stable order, as markdown.

Distill, filter and evaluate show what their judges wrote (the rubric, the evaluation, the verdict), which
counts and scores cannot. Pure: rows in, markdown out. Never reads or writes an artifact and never enters
one's rows, manifest or version: the markdown is for the UI only. A trace is shown section by section
(`trace_sections`), each in a fenced block so its tags stay visible; a long text is cut in the middle (the
verdict is at the end) with a marker naming its full length.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.judge.protocol import trace_sections

PER_GROUP = 2  # rows shown per (group, outcome): enough to read, small enough for the UI
TEXT_CHARS = 1200  # characters shown per trace section before it is cut
FACT_CHARS = 300  # characters shown per fact (a failure reason, an id)

Row = Mapping[str, Any]
Picked = dict[tuple[str, str], tuple[int, list[Row]]]


@dataclass(frozen=True)
class Sample:
    """One row as shown: a title line, a few facts (label, verdict, reason, ...) and the judge's text."""

    title: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    trace: str | None = None


def pick(rows: Iterable[Row], group: Callable[[Row], tuple[str, str]], key: Callable[[Row], str],
         per_group: int = PER_GROUP) -> Picked:  # fmt: skip
    """(group, outcome) → (how many rows, the `per_group` rows with the smallest sha256 of `key`).

    The same rows always show the same samples, whatever their order in the artifact, spread over sources
    rather than the first ids.
    """
    groups: dict[tuple[str, str], list[tuple[str, Row]]] = {}
    for row in rows:
        groups.setdefault(group(row), []).append((hashlib.sha256(key(row).encode()).hexdigest(), row))
    return {
        name: (len(members), [row for _, row in sorted(members, key=lambda member: member[0])[:per_group]])
        for name, members in groups.items()
    }


def cut(text: str, limit: int = TEXT_CHARS) -> str:
    """`text`, or its first two thirds and last third of `limit` characters around a marker with the full length."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = (2 * limit) // 3
    tail = limit - head
    return f"{text[:head]}\n[… {len(text) - limit:,} characters cut; {len(text):,} in all …]\n{text[-tail:]}"


def fenced(text: str) -> str:
    """`text` in a fenced block that no run of backticks inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def inline(value: Any, limit: int = FACT_CHARS) -> str:
    """A short value as inline code (tags such as <rubric> then show as text, not as HTML), on one line."""
    text = cut(" ".join(str(value).split()), limit).replace("\n", " ")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_trace(trace: str | None, limit: int = TEXT_CHARS) -> list[str]:
    """Markdown lines: each section of a Chain-of-Rubrics trace under its name, in a fenced block."""
    sections = trace_sections(trace)
    if not sections:
        return ["_no text_", ""]
    if [name for name, _ in sections] == ["text"]:
        return ["**text** (no Chain-of-Rubrics sections)", "", fenced(cut(sections[0][1], limit)), ""]
    lines = []
    for name, text in sections:
        lines += [f"**{name}**", "", fenced(cut(text, limit)), ""]
    return lines


def samples_markdown(title: str, intro: str, picked: Picked, sample: Callable[[Row], Sample],
                     outcomes: Sequence[str], *, per: str, key: str, limit: int = TEXT_CHARS) -> str:  # fmt: skip
    """One section per group (sorted), one subsection per outcome (`outcomes` first, in that order; an empty
    one says so), then each picked row as `sample` shows it: its title, facts and trace. `per` names the
    groups, `key` what `pick` hashed."""
    how = (f"A few per {per} and outcome, picked by the smallest sha256 of the {key} (the same ones on every run); "
           f"texts cut past {limit:,} characters.")  # fmt: skip
    lines = [f"# {title}", "", f"{intro} {how}", ""]
    for group in sorted({name for name, _ in picked}):
        lines += [f"## {group}", ""]
        present = [outcome for name, outcome in picked if name == group]
        for outcome in [*outcomes, *sorted(set(present) - set(outcomes))]:
            count, rows = picked.get((group, outcome), (0, []))
            lines += [f"### {outcome}: {len(rows)} of {count}" if count else f"### {outcome}: none", ""]
            for shown in map(sample, rows):
                lines += [f"#### {shown.title}", ""]
                lines += [f"- {name}: {inline(value)}" for name, value in shown.facts.items() if value is not None]
                lines += ["", *render_trace(shown.trace, limit)]
    return "\n".join(lines).rstrip("\n") + "\n"
