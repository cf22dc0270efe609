"""The three verdict rules of docs/method.md §3, one per place: distillation filter, RL reward, evaluation.

Each rule is a pure function of a judge's text and the label. They deliberately differ (window sizes,
which tags they look for), exactly as in the paper; do not unify them. These functions must never raise,
whatever text they receive, and must never look at anything but the text and the label.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Winner = Literal["model_a", "model_b"]

FILTER_WINDOW = 100  # distillation filter reads the last 100 characters, docs/method.md §3
RL_WINDOW = 80  # RL reward reads the last 80 characters (special tokens included), docs/method.md §3
RL_REWARD_CORRECT = 1.0  # docs/method.md §1 and §3: +1 when the verdict matches the label
RL_REWARD_WRONG = -1.0  # docs/method.md §1 and §3: -1 otherwise; no separate format reward

VERDICT_TAGS = {"model_a": "[[A]]", "model_b": "[[B]]"}  # docs/method.md §2
_OTHER = {"model_a": "model_b", "model_b": "model_a"}
TIE_TAG = "[[C]]"  # only for judges that may call a tie (allow_tie)


def _answer_tag(winner: str) -> str:
    return f"<answer>{VERDICT_TAGS[winner]}</answer>"


def filter_verdict_matches(trace: str, winner: Winner) -> bool:
    """Distillation filter: the label's tag ([[A]] or [[B]]) appears in the last 100 characters.

    The paper's rule looks only for the label's own tag, not for the absence of the other one.
    """
    if not isinstance(trace, str) or winner not in VERDICT_TAGS:
        return False
    return VERDICT_TAGS[winner] in trace[-FILTER_WINDOW:]


def rl_reward(completion: str, winner: Winner) -> float:
    """+1 when the last 80 characters hold the correct answer tag and not the other one, else -1.

    The completion must be decoded with special tokens kept, so an EOS string counts toward the window.
    """
    if not isinstance(completion, str) or winner not in VERDICT_TAGS:
        return RL_REWARD_WRONG
    tail = completion[-RL_WINDOW:]
    if _answer_tag(winner) in tail and _answer_tag(_OTHER[winner]) not in tail:
        return RL_REWARD_CORRECT
    return RL_REWARD_WRONG


class Verdict(StrEnum):
    """What an evaluated judge output says."""

    A = "A"
    B = "B"
    TIE = "tie"
    ERROR = "error"  # unparseable: neither tag, or both


def parse_eval_verdict(output: str, allow_tie: bool = False) -> Verdict:
    """Evaluation rule: look anywhere in the output; both [[A]] and [[B]] or neither is an error.

    With `allow_tie`, an output holding [[C]] and neither [[A]] nor [[B]] is a tie.
    """
    if not isinstance(output, str):
        return Verdict.ERROR
    has_a, has_b = "[[A]]" in output, "[[B]]" in output
    if has_a and not has_b:
        return Verdict.A
    if has_b and not has_a:
        return Verdict.B
    if allow_tie and not has_a and TIE_TAG in output:
        return Verdict.TIE
    return Verdict.ERROR


# Evaluation scores, docs/method.md §3: correct 1, wrong 0, error 0, tie 0.5.
_SCORES_WHEN_NOT_DECIDED = {Verdict.TIE: 0.5, Verdict.ERROR: 0.0}


def verdict_winner(verdict: Verdict) -> Winner | None:
    """model_a for A, model_b for B, None for a tie or an error."""
    return {Verdict.A: "model_a", Verdict.B: "model_b"}.get(verdict)


def eval_score(verdict: Verdict, winner: Winner) -> float:
    """1.0 when the verdict names the label, 0.5 for a tie, 0.0 when wrong or unparseable."""
    if verdict in _SCORES_WHEN_NOT_DECIDED:
        return _SCORES_WHEN_NOT_DECIDED[verdict]
    return 1.0 if verdict_winner(verdict) == winner else 0.0
