"""Record fields: the checks every reader of pairs shares, and `FieldMap`, the label-aware field mapping.

A record is one row of a user's file as a plain dict. The checks raise `RowError` naming the record field
that is wrong; the caller turns it into one reject with the file and row. `FieldMap` is the one grammar for
saying where a pair lies in a record, shared by the pull stage's `generic` adapter and custom benchmarks:

- the context: `prompt` (one field, or several joined by a blank line) or `conversation` (a message list
  ending on a user turn), and optionally `system`;
- the answers: `chosen` and `rejected`, or two responses `first` and `second` plus a `label` field whose
  values are listed under `first_wins`, `second_wins` and optionally `tie`. A label value outside those
  lists is a reject naming the value, so a file is never read with chosen and rejected swapped;
- optionally `domain`: a field holding the row's domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from data_contracts.errors import UserError
from data_contracts.kinds import DOMAINS, ROLES
from data_contracts.versioning import UNLESS_DEFAULT
from tasks.config import ConfigError, Int, config_section
from tasks.judge.protocol.templates import Turn


class RowError(UserError, ValueError):
    """A record that cannot be read as a pair; `field` names the record field that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[RowError], tuple[str, str]]:
        return (RowError, (self.field, self.message))  # keeps the exception picklable across workers


# ---------------------------------------------------------------- checks every reader shares


def text_value(record: dict[str, Any], field: str, *, allow_empty: bool = False) -> str:
    """The string value of `field`; RowError when missing, not a string, or blank (unless allowed)."""
    if field not in record or record[field] is None:
        raise RowError(field, "missing")
    value = record[field]
    if not isinstance(value, str):
        raise RowError(field, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowError(field, "empty text")
    return value


def message_list(record: dict[str, Any], field: str) -> list[Any]:
    """The non-empty list value of `field`; RowError when missing, not a list, or empty."""
    if field not in record or record[field] is None:
        raise RowError(field, "missing")
    value = record[field]
    if not isinstance(value, list):
        raise RowError(field, f"expected a list of messages, got {type(value).__name__}")
    if not value:
        raise RowError(field, "empty message list")
    return value


def message_turns(messages: list[Any], field: str) -> list[Turn]:
    """Validate a list of {role, content} dicts (extra keys ignored) into turns."""
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RowError(field, f"turn {index} is not a mapping")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(field, f"turn {index} has unknown role {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise RowError(field, f"turn {index} has no text")
        turns.append({"role": role, "content": content})
    return turns


def check_conversation(conversation: list[Turn], field: str) -> None:
    """The context of a pair: known roles, a system turn only first, text everywhere, ending on the user."""
    if not conversation:
        raise RowError(field, "no turns before the answer")
    for index, turn in enumerate(conversation):
        if turn["role"] not in ROLES:
            raise RowError(field, f"turn {index} has unknown role {turn['role']!r}")
        if turn["role"] == "system" and index != 0:
            raise RowError(field, f"system turn at position {index}; only the first turn may be system")
        if not turn["content"].strip():
            raise RowError(field, f"turn {index} has no text")
    if conversation[-1]["role"] != "user":
        raise RowError(field, f"the turn before the answer is {conversation[-1]['role']}, not user")


# ---------------------------------------------------------------- the field mapping


def _optional(help_text: str) -> Any:
    return field(default=None, metadata={"versioned": UNLESS_DEFAULT, "help": help_text})


def _values(help_text: str) -> Any:
    return field(default=(), metadata={"versioned": UNLESS_DEFAULT, "help": help_text})


@config_section
class FieldMap:
    """Which record fields hold a pair: `chosen`/`rejected`, or `first`/`second` plus a `label` that says which won.

    Every key is left out of artifact versions while unset, so a mapping written before labels existed
    keeps its version."""

    prompt: str | None = _optional(
        "Field with the user's prompt; several fields are joined by a blank line, e.g. 'instruction,input'."
    )
    conversation: str | None = _optional(
        "Field with the conversation before the answers: a list of {role, content} messages ending on a user "
        "turn (instead of `prompt`)."
    )
    system: str | None = _optional("Field with a system prompt put before `prompt` (empty values are ignored).")
    chosen: str | None = _optional("Field with the preferred answer (with `rejected`; not with a label).")
    rejected: str | None = _optional("Field with the dispreferred answer.")
    first: str | None = _optional("Field with the first of two answers a `label` compares, e.g. response_A.")
    second: str | None = _optional("Field with the second answer, e.g. response_B.")
    label: str | None = _optional(
        "Field saying which answer wins; its values are listed in first_wins, second_wins, tie."
    )
    first_wins: tuple[str | Int, ...] = _values("Label values meaning the first answer wins, e.g. ['A>B', 'A>>B'].")
    second_wins: tuple[str | Int, ...] = _values("Label values meaning the second answer wins, e.g. ['B>A'].")
    tie: tuple[str | Int, ...] = _values(
        "Label values meaning neither wins, e.g. ['A=B']; the pull stage skips these rows with a reason."
    )
    domain: str | None = _optional(f"Field with the row's domain ({', '.join(DOMAINS)}), instead of one per source.")

    def check(self) -> None:
        """Raise ConfigError (naming `fields.<key>`) unless this mapping says where a whole pair lies."""
        names = ("prompt", "conversation", "system", "chosen", "rejected", "first", "second", "label", "domain")
        for key in names:
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ConfigError(f"fields.{key}", "an empty field name; leave the key out instead")
        for one, other in (("chosen", "rejected"), ("first", "second")):
            if getattr(self, one) is not None and _name(getattr(self, one)) == _name(getattr(self, other) or ""):
                raise ConfigError(f"fields.{other}", f"the same record field as `{one}`")
        if (self.prompt is None) == (self.conversation is None):
            raise ConfigError("fields.prompt", "map exactly one of `prompt` (text fields) or `conversation` (messages)")
        if self.conversation is not None and self.system is not None:
            raise ConfigError("fields.system", "a `conversation` carries its own system turn; drop `system`")
        pairwise = {"chosen": self.chosen, "rejected": self.rejected}
        labelled = {"first": self.first, "second": self.second, "label": self.label}
        values = {"first_wins": self.first_wins, "second_wins": self.second_wins, "tie": self.tie}
        if self.label is None:
            missing = [k for k, v in pairwise.items() if v is None]
            extra = [k for k, v in {**labelled, **values}.items() if v]
            if missing or extra:
                key = (missing or extra)[0]
                raise ConfigError(
                    f"fields.{key}",
                    "map `chosen` and `rejected`, or `first`, `second` and `label` with `first_wins` and "
                    f"`second_wins` ({'missing ' + ', '.join(missing) if missing else 'found ' + ', '.join(extra)})",
                )
            return
        for key, value in pairwise.items():
            if value is not None:
                raise ConfigError(f"fields.{key}", f"with a label, the answers are `first` and `second`, not `{key}`")
        for key, value in {**labelled, "first_wins": self.first_wins, "second_wins": self.second_wins}.items():
            if not value:
                raise ConfigError(
                    f"fields.{key}", "a labelled mapping needs first, second, label, first_wins, second_wins"
                )
        seen: dict[str, str] = {}
        for key, listed in values.items():
            for value in listed:
                name = label_key(value)
                if name in seen:
                    raise ConfigError(f"fields.{key}", f"label value {value!r} is also listed in {seen[name]}")
                seen[name] = key


def _name(field_name: str) -> str:
    """A record field name as written in a recipe, without surrounding spaces."""
    return field_name.strip()


def label_key(value: Any) -> str | None:
    """A label value as the mapping compares it: text stripped, integers (and integral floats) as digits."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


@dataclass(frozen=True)
class MappedPair:
    """A record read through a FieldMap: the context, two answers and which one won."""

    conversation: list[Turn]
    first: str
    second: str
    winner: str  # "first", "second" or "tie"
    first_field: str  # the record fields the answers came from, for error messages
    second_field: str
    label: str | None = None  # the label value as read, when the mapping has a label
    domain: str | None = None  # from `fields.domain`, when mapped


def map_context(record: dict[str, Any], prompt: str | None, conversation: str | None, system: str | None) -> list[Turn]:
    """The context before the answers: the `conversation` field's messages, or the `prompt` field(s) (joined by
    a blank line) as one user turn after an optional `system` field; RowError names the field that is wrong."""
    conversation_field = conversation or prompt
    assert conversation_field is not None, "the mapping was not checked: it names no prompt or conversation"
    if conversation is not None:
        name = _name(conversation)
        turns = message_turns(message_list(record, name), name)
    else:
        names = [name.strip() for name in conversation_field.split(",") if name.strip()]
        parts = [text_value(record, name, allow_empty=True).strip() for name in names]
        question = "\n\n".join(part for part in parts if part)
        if not question:
            raise RowError(",".join(names), "empty text")
        turns = [{"role": "user", "content": question}]
        if system is not None:
            system_text = text_value(record, _name(system), allow_empty=True)
            if system_text.strip():
                turns = [{"role": "system", "content": system_text}, *turns]
    check_conversation(turns, conversation_field.split(",")[0].strip())
    return turns


def map_record(record: dict[str, Any], fields: FieldMap) -> MappedPair:
    """Read one record through `fields` (a checked mapping); RowError names the record field that is wrong."""
    conversation = map_context(record, fields.prompt, fields.conversation, fields.system)
    domain = None
    if fields.domain is not None:
        domain = text_value(record, _name(fields.domain)).strip()
        if domain not in DOMAINS:
            raise RowError(_name(fields.domain), f"{domain!r} is not one of {', '.join(DOMAINS)}")
    if fields.label is None:
        assert fields.chosen is not None and fields.rejected is not None
        chosen_field, rejected_field = _name(fields.chosen), _name(fields.rejected)
        chosen, rejected = text_value(record, chosen_field), text_value(record, rejected_field)
        return MappedPair(conversation, chosen, rejected, "first", chosen_field, rejected_field, domain=domain)
    assert fields.first is not None and fields.second is not None and fields.label is not None
    first_field, second_field, label_field = _name(fields.first), _name(fields.second), _name(fields.label)
    first, second = text_value(record, first_field), text_value(record, second_field)
    if record.get(label_field) is None:
        raise RowError(label_field, "missing")
    raw = record[label_field]
    value = label_key(raw)
    winners = (("first", fields.first_wins), ("second", fields.second_wins), ("tie", fields.tie))
    winner = next((name for name, listed in winners if value is not None and value in map(label_key, listed)), None)
    if winner is None:
        known = ", ".join(repr(v) for _, listed in winners for v in listed)
        raise RowError(label_field, f"value {raw!r} is not in the mapping ({known})")
    return MappedPair(conversation, first, second, winner, first_field, second_field, label=value, domain=domain)
