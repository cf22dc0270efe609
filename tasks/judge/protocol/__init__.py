"""The RM-R1 judge protocol: prompt templates that show a pair to a judge, and the rules that read its verdict.

`templates` renders a conversation and two answers into judge messages from a versioned template set
(docs/method.md §2); `verdicts` holds the three verdict rules of docs/method.md §3 (distillation filter, RL reward,
evaluation). Everything here is pure: no model calls, no I/O beyond reading template files.
"""

from tasks.judge.protocol.templates import (
    BUILTIN_TEMPLATE_SETS,
    TemplateError,
    TemplateSet,
    Turn,
    is_single_turn,
    load_template_set,
    place_pair,
    placeholder_markers,
    render_judge_messages,
    render_user_message,
)
from tasks.judge.protocol.traces import render_pass2_hint, trace_format_problem, trace_sections
from tasks.judge.protocol.verdicts import (
    FILTER_WINDOW,
    RL_WINDOW,
    Verdict,
    Winner,
    eval_score,
    filter_verdict_matches,
    parse_eval_verdict,
    rl_reward,
    verdict_winner,
)

__all__ = [
    "BUILTIN_TEMPLATE_SETS",
    "FILTER_WINDOW",
    "RL_WINDOW",
    "TemplateError",
    "TemplateSet",
    "Turn",
    "Verdict",
    "Winner",
    "eval_score",
    "filter_verdict_matches",
    "is_single_turn",
    "load_template_set",
    "parse_eval_verdict",
    "place_pair",
    "placeholder_markers",
    "render_judge_messages",
    "render_pass2_hint",
    "render_user_message",
    "rl_reward",
    "trace_format_problem",
    "trace_sections",
    "verdict_winner",
]
