"""Per-record adapters: turn one raw preference record of a known layout into a `NormalizedPair`.

Each adapter is a pure function of one record (a plain dict, as a `datasets` Dataset yields it) and its
`SourceConfig`. It returns a `NormalizedPair`, a `Skip` for a record dropped on purpose by a documented
rule (Skywork's magpie_ultra rows, docs/method.md §4), or raises `RowError` naming the record field that is
wrong. Adapters never print, log, read files or touch global state; source names, row numbers and ids are
added by the caller. The checks they share live in `tasks.records.fields`, and so does the `generic`
adapter's field mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from data_contracts.kinds import DOMAINS
from tasks.judge.protocol.templates import Turn
from tasks.pull.config import SourceConfig
from tasks.records.fields import (
    RowError,
    check_conversation,
    map_record,
    message_list,
    message_turns,
    text_value,
)


@dataclass(frozen=True)
class NormalizedPair:
    """A preference pair: the shared context, then the preferred and the dispreferred final answer."""

    conversation: list[Turn]  # ends with a user turn; a system turn may only come first
    chosen: str
    rejected: str
    domain: str | None = None  # one of DOMAINS; None = the source's configured or default domain


@dataclass(frozen=True)
class Skip:
    """A record dropped on purpose by a documented adapter rule (not an error)."""

    reason: str


Adapter = Callable[[dict[str, Any], SourceConfig], NormalizedPair | Skip]


# ---------------------------------------------------------------- shared checks


def _split_answer(turns: list[Turn], field: str) -> tuple[list[Turn], str]:
    """Split a full conversation into (context, final assistant answer)."""
    if turns[-1]["role"] != "assistant":
        raise RowError(field, f"last turn is {turns[-1]['role']}, not assistant")
    return turns[:-1], turns[-1]["content"]


def _pair(
    conversation: list[Turn],
    chosen: str,
    rejected: str,
    *,
    conversation_field: str,
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    domain: str | None = None,
) -> NormalizedPair:
    """Build a pair after the checks every adapter shares."""
    check_conversation(conversation, conversation_field)
    if not chosen.strip():
        raise RowError(chosen_field, "empty answer")
    if not rejected.strip():
        raise RowError(rejected_field, "empty answer")
    if chosen.strip() == rejected.strip():
        raise RowError(rejected_field, "identical to the chosen answer")
    return NormalizedPair(conversation=conversation, chosen=chosen, rejected=rejected, domain=domain)


def _from_full_conversations(
    chosen_turns: list[Turn],
    rejected_turns: list[Turn],
    chosen_field: str,
    rejected_field: str,
    domain: str | None = None,
) -> NormalizedPair:
    """Pair two full conversations that must agree on everything but their final assistant turn."""
    context, chosen = _split_answer(chosen_turns, chosen_field)
    rejected_context, rejected = _split_answer(rejected_turns, rejected_field)
    if context != rejected_context:
        raise RowError(rejected_field, "conversation differs from the chosen one before the final turn")
    return _pair(
        context,
        chosen,
        rejected,
        conversation_field=chosen_field,
        chosen_field=chosen_field,
        rejected_field=rejected_field,
        domain=domain,
    )


def _user(content: str) -> list[Turn]:
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------- the adapters


def skywork(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """Skywork-Reward-Preference-80K-v0.2: full message lists `chosen`/`rejected` plus `source`."""
    origin = text_value(record, "source", allow_empty=True)
    if origin == "magpie_ultra":  # docs/method.md §4: spurious <im_start> and turn-count cues
        return Skip("magpie_ultra source")
    chosen_turns = message_turns(message_list(record, "chosen"), "chosen")
    rejected_turns = message_turns(message_list(record, "rejected"), "rejected")
    domain = "safety" if "wildguard" in origin.lower() else None
    return _from_full_conversations(chosen_turns, rejected_turns, "chosen", "rejected", domain)


def code_preference_pairs(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """Vezora/Code-Preference-Pairs: the task is `input` (`instruction` is a constant system string)."""
    question = text_value(record, "input")
    return _pair(
        _user(question),
        text_value(record, "accepted"),
        text_value(record, "rejected"),
        conversation_field="input",
        chosen_field="accepted",
    )


def math_step_dpo(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """xinlai/Math-Step-DPO-10K: answers are `initial_reason_steps + full_chosen|full_rejected` (docs/method.md §4)."""
    question = text_value(record, "prompt")
    steps = text_value(record, "initial_reason_steps", allow_empty=True)
    chosen = steps + text_value(record, "full_chosen")
    rejected = steps + text_value(record, "full_rejected")
    return _pair(
        _user(question),
        chosen,
        rejected,
        conversation_field="prompt",
        chosen_field="full_chosen",
        rejected_field="full_rejected",
    )


_HH_SPEAKER = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def _hh_turns(dialogue: str, field: str) -> list[Turn]:
    """Parse "\\n\\nHuman: …\\n\\nAssistant: …" into turns.

    Only a speaker tag at the start or after a blank line opens a turn; "Human:" inside a line stays text.
    Consecutive turns of one speaker (the file has "\\n\\nAssistant: …\\n\\nAssistant: …") merge into one
    turn joined by a blank line. A final turn may be empty; every earlier one must have text.
    """
    parts = _HH_SPEAKER.split(dialogue)
    if parts[0].strip():
        raise RowError(field, "text before the first Human:/Assistant: tag")
    if len(parts) == 1:
        raise RowError(field, "no Human:/Assistant: tags")
    turns: list[Turn] = []
    for speaker, raw in zip(parts[1::2], parts[2::2], strict=True):
        role, content = _HH_ROLE[speaker], raw.strip()
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = "\n\n".join(part for part in (turns[-1]["content"], content) if part)
        else:
            turns.append({"role": role, "content": content})
    if turns[0]["role"] != "user":
        raise RowError(field, "dialogue does not start with a Human: turn")
    return turns


def hh_rlhf(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """Anthropic HH-RLHF: `chosen`/`rejected` are whole dialogues differing only in the last Assistant turn."""
    chosen_turns = _hh_turns(text_value(record, "chosen"), "chosen")
    rejected_turns = _hh_turns(text_value(record, "rejected"), "rejected")
    return _from_full_conversations(chosen_turns, rejected_turns, "chosen", "rejected")


_SHAREGPT_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _sharegpt_turn(message: Any, field: str) -> Turn:
    if not isinstance(message, dict):
        raise RowError(field, "expected a {from, value} mapping")
    speaker, value = message.get("from"), message.get("value")
    if speaker not in _SHAREGPT_ROLE:
        raise RowError(field, f"unsupported speaker {speaker!r}")
    if not isinstance(value, str):
        raise RowError(field, "value is not a string")
    return {"role": _SHAREGPT_ROLE[speaker], "content": value}


def _v1_turns(messages: list[Any], field: str) -> list[Turn]:
    """LLaMA-Factory v1 messages: {role, content: [{type: "text", value}], loss_weight}."""
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        parts = message.get("content") if isinstance(message, dict) else None
        if not isinstance(parts, list):
            raise RowError(field, f"turn {index} has no content list")
        texts = []
        for part in parts:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("value"), str):
                raise RowError(field, f"turn {index} has a non-text content part")
            texts.append(part["value"])
        turns.append({"role": message.get("role"), "content": "".join(texts)})
    return message_turns(turns, field)


def sharegpt_dpo(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """LLaMA-Factory DPO data, ShareGPT (`conversations` + `chosen`/`rejected`) or v1 (`*_messages`)."""
    if "conversations" in record:
        conversation = [_sharegpt_turn(m, "conversations") for m in message_list(record, "conversations")]
        system = record.get("system")
        if system is not None and not isinstance(system, str):
            raise RowError("system", f"expected a string, got {type(system).__name__}")
        if system and system.strip():
            conversation = [{"role": "system", "content": system}, *conversation]
        answers = {}
        for field in ("chosen", "rejected"):
            answer = _sharegpt_turn(record.get(field), field)
            if answer["role"] != "assistant":
                raise RowError(field, f"answer is from {answer['role']}, not the assistant")
            answers[field] = answer["content"]
        return _pair(conversation, answers["chosen"], answers["rejected"], conversation_field="conversations")
    if "chosen_messages" in record:
        chosen_turns = _v1_turns(message_list(record, "chosen_messages"), "chosen_messages")
        rejected_turns = _v1_turns(message_list(record, "rejected_messages"), "rejected_messages")
        return _from_full_conversations(chosen_turns, rejected_turns, "chosen_messages", "rejected_messages")
    raise RowError("conversations", "missing (neither `conversations` nor `chosen_messages` present)")


def generic(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """Fields named by the recipe's `fields` (a `FieldMap`): chosen/rejected, or two answers and a label.

    A labelled row is put the right way round by its label; a tie is skipped with its label value."""
    mapped = map_record(record, source.fields)
    if mapped.winner == "tie":
        return Skip(f"tie label {mapped.label!r}")
    chosen, rejected = mapped.first, mapped.second
    chosen_field, rejected_field = mapped.first_field, mapped.second_field
    if mapped.winner == "second":
        chosen, rejected, chosen_field, rejected_field = rejected, chosen, rejected_field, chosen_field
    context_field = (source.fields.conversation or source.fields.prompt or "").split(",")[0].strip()
    return _pair(
        mapped.conversation,
        chosen,
        rejected,
        conversation_field=context_field,
        chosen_field=chosen_field,
        rejected_field=rejected_field,
        domain=mapped.domain,
    )


def synthetic(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """Records of `tasks.standins.synthetic_pairs.synthetic_records`: `conversation`, `chosen`, `rejected`, `domain`."""
    conversation = message_turns(message_list(record, "conversation"), "conversation")
    domain = text_value(record, "domain")
    if domain not in DOMAINS:
        raise RowError("domain", f"{domain!r} is not one of {', '.join(DOMAINS)}")
    return _pair(
        conversation,
        text_value(record, "chosen"),
        text_value(record, "rejected"),
        conversation_field="conversation",
        domain=domain,
    )


ADAPTERS: dict[str, Adapter] = {
    "skywork": skywork,
    "code_preference_pairs": code_preference_pairs,
    "math_step_dpo": math_step_dpo,
    "hh_rlhf": hh_rlhf,
    "sharegpt_dpo": sharegpt_dpo,
    "generic": generic,
    "synthetic": synthetic,
}

DEFAULT_DOMAIN: dict[str, str] = {
    "skywork": "chat",
    "code_preference_pairs": "code",
    "math_step_dpo": "math",
    "hh_rlhf": "safety",  # the shipped file is harmless-base; a helpful-base recipe sets domain: chat
    "sharegpt_dpo": "chat",
    "generic": "chat",
    "synthetic": "chat",
}


def adapt_record(record: dict[str, Any], source: SourceConfig) -> NormalizedPair | Skip:
    """Normalise one record with the source's adapter and resolve its domain.

    Domain precedence: the adapter's own (e.g. Skywork's wildguard rows are safety), then
    `source.domain`, then `DEFAULT_DOMAIN[source.adapter]`; the returned pair always has a domain.
    Raises RowError for a bad record, ValueError for an unknown adapter or a recipe mistake.
    """
    adapter = ADAPTERS.get(source.adapter)
    if adapter is None:
        raise ValueError(f"source {source.name!r}: unknown adapter {source.adapter!r}; one of {', '.join(ADAPTERS)}")
    if not isinstance(record, dict):
        raise RowError("record", f"expected a mapping, got {type(record).__name__}")
    result = adapter(record, source)
    if isinstance(result, Skip) or result.domain is not None:
        return result
    return replace(result, domain=source.domain or DEFAULT_DOMAIN[source.adapter])
