"""Contracts: an Arrow schema plus row-level value rules for one artifact kind, and the validator.

A rule is vectorised (it maps a table to a boolean mask of valid rows) so validation stays cheap on
100k-row batches. `validate` splits a table into the rows that keep every rule and a rejects table whose
`reason` names the rule and the field. It never raises on bad rows, only on a table that does not fit the
schema at all (a missing column or a type that cannot be cast), which is a bug in the producing stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts.errors import UserError

Check = Callable[[pa.Table], pa.ChunkedArray | pa.Array]

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("source_ref", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("row_json", pa.string(), nullable=False),
    ]
)


class ContractError(UserError, ValueError):
    """A table that cannot be checked against its contract at all (missing column, uncastable type)."""


@dataclass(frozen=True)
class Rule:
    """A value rule: `check` returns True for rows that keep it; `field` is the column it is about."""

    name: str
    field: str
    check: Check

    def reason(self) -> str:
        return f"{self.name} ({self.field})"


@dataclass(frozen=True)
class Contract:
    """The schema and value rules every row of one artifact kind must keep, with a contract version."""

    kind: str
    version: int
    schema: pa.Schema
    rules: Sequence[Rule] = field(default_factory=tuple)

    @property
    def rejects_kind(self) -> str:
        return f"{self.kind}_rejects"

    def conform(self, table: pa.Table) -> pa.Table:
        """Select and cast the contract's columns in order; raise ContractError naming a missing column."""
        missing = [name for name in self.schema.names if name not in table.column_names]
        if missing:
            raise ContractError(f"{self.kind}: table lacks column(s) {', '.join(missing)}")
        columns = []
        for schema_field in self.schema:
            column = table.column(schema_field.name)
            if column.type != schema_field.type:
                try:
                    column = column.cast(schema_field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                    raise ContractError(
                        f"{self.kind}: column {schema_field.name} has type {column.type}, expected {schema_field.type}"
                    ) from error
            columns.append(column)
        # Built without the schema's nullability so null rows can still be found and rejected.
        return pa.Table.from_arrays(columns, names=self.schema.names)


def validate(table: pa.Table, contract: Contract, source_refs: pa.Array | None = None) -> tuple[pa.Table, pa.Table]:
    """Split `table` into (valid rows cast to the contract schema, rejects in REJECTS_SCHEMA).

    Non-nullable schema fields get an implicit `not_null` rule; a row's reason lists every rule it breaks.
    """
    table = contract.conform(table)
    if table.num_rows == 0:
        return table.cast(contract.schema), REJECTS_SCHEMA.empty_table()
    rules = [_not_null(f.name) for f in contract.schema if not f.nullable] + list(contract.rules)
    broken: list[tuple[Rule, pa.Array]] = []
    valid = pa.array([True] * table.num_rows)
    for rule in rules:
        ok = pc.fill_null(rule.check(table), False)
        if isinstance(ok, pa.ChunkedArray):
            ok = ok.combine_chunks()
        if not pc.all(ok).as_py():
            broken.append((rule, ok))
            valid = pc.and_(valid, ok)
    if not broken:
        return table.cast(contract.schema), REJECTS_SCHEMA.empty_table()
    kept = table.filter(valid).cast(contract.schema)
    bad_rows = pc.indices_nonzero(pc.invert(valid)).to_pylist()
    failing = {rule.name + rule.field: ok.to_pylist() for rule, ok in broken}
    bad_table = table.take(bad_rows).to_pylist()
    reasons = [
        "; ".join(rule.reason() for rule, _ in broken if not failing[rule.name + rule.field][row]) for row in bad_rows
    ]
    refs = source_refs.take(bad_rows).to_pylist() if source_refs is not None else [None] * len(bad_rows)
    rejects = pa.table(
        {
            "row_index": pa.array(bad_rows, pa.int64()),
            "source_ref": pa.array(refs, pa.string()),
            "reason": reasons,
            "row_json": [json.dumps(row, ensure_ascii=False, default=str) for row in bad_table],
        },
        schema=REJECTS_SCHEMA,
    )
    return kept, rejects


# --- rule builders: small, named, reused by every contract -------------------------------------------


def _not_null(column: str) -> Rule:
    return Rule("not_null", column, lambda t: pc.is_valid(t.column(column)))


def non_empty_text(column: str) -> Rule:
    """The string is present and has at least one non-whitespace character."""
    return Rule(
        "non_empty_text",
        column,
        lambda t: pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(t.column(column))), 0),
    )


def one_of(column: str, allowed: Sequence[str]) -> Rule:
    return Rule(f"one_of[{'|'.join(allowed)}]", column, lambda t: pc.is_in(t.column(column), pa.array(allowed)))


def in_range(column: str, low: float | None = None, high: float | None = None) -> Rule:
    def check(t: pa.Table) -> pa.Array:
        values = t.column(column)
        ok = pc.is_valid(values)
        if low is not None:
            ok = pc.and_(ok, pc.greater_equal(values, low))
        if high is not None:
            ok = pc.and_(ok, pc.less_equal(values, high))
        return ok

    return Rule(f"in_range[{low},{high}]", column, check)


def columns_differ(column: str, other: str) -> Rule:
    return Rule(f"differs_from_{other}", column, lambda t: pc.not_equal(t.column(column), t.column(other)))


def unique(column: str) -> Rule:
    """Every value appears once in the table being validated."""

    def check(t: pa.Table) -> pa.Array:
        values = t.column(column).to_pylist()
        seen: set[object] = set()
        ok = []
        for value in values:
            ok.append(value not in seen)
            seen.add(value)
        return pa.array(ok)

    return Rule("unique", column, check)


def list_not_empty(column: str) -> Rule:
    return Rule("non_empty_list", column, lambda t: pc.greater(pc.list_value_length(t.column(column)), 0))


def last_turn_role(column: str, role: str) -> Rule:
    """A list<struct<role, content>> column whose last element has the given role."""

    def check(t: pa.Table) -> pa.Array:
        turns = t.column(column).combine_chunks()
        offsets = turns.offsets.to_numpy()
        has_turns = np.diff(offsets) > 0
        last = np.where(has_turns, offsets[1:] - 1, 0)
        roles = turns.values.field("role")
        if len(roles) == 0:
            return pa.array(np.zeros(len(turns), dtype=bool))
        last_is_role = pc.fill_null(pc.equal(roles.take(last), role), False)
        return pa.array(has_turns & last_is_role.to_numpy(zero_copy_only=False))

    return Rule(f"last_turn_is_{role}", column, check)


def turn_roles(column: str, allowed: Sequence[str]) -> Rule:
    """Every turn's role is allowed and its content is present."""

    def check(t: pa.Table) -> pa.Array:
        turns = t.column(column).combine_chunks()
        flat = pc.list_flatten(turns)
        flat_ok = pc.and_(pc.is_in(flat.field("role"), pa.array(allowed)), pc.is_valid(flat.field("content")))
        bad_rows = pc.filter(pc.list_parent_indices(turns), pc.invert(flat_ok)).to_numpy()
        ok = np.ones(len(turns), dtype=bool)
        ok[bad_rows] = False
        return pa.array(ok)

    return Rule(f"roles_in[{'|'.join(allowed)}]", column, check)


class RejectRateExceeded(UserError, ValueError):
    """Too many rows of one input broke the contract: the stage stops and publishes nothing."""


def check_reject_rate(
    where: str, rejected: int, total: int, threshold: float, examples: Sequence[str], *, read: int | None = None
) -> None:
    """Raise RejectRateExceeded naming the input (`where`: a file or source) when rejected/total > threshold.

    With `read` (rows read so far, of the `total` the input will give), the check can come early: it raises
    as soon as the rejects alone already pass the threshold of the whole input."""
    if total == 0 or rejected / total <= threshold:
        return
    shown = "\n  ".join(examples[:5])
    early = "" if read is None or read >= total else f" within the first {read} read (the rest was not read)"
    raise RejectRateExceeded(
        f"{where}: {rejected} of {total} rows ({rejected / total:.1%}) were rejected{early}, above the threshold of "
        f"{threshold:.1%}; nothing was published. First rejects:\n  {shown}"
    )
