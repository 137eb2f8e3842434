"""What a stream's contract means for one run's read: the schema to read with and how each batch is made
to fit the accepted schema again (`ContractDecision.conform`). Pure: no database, no connector.

- `discard_value`: new columns are not carried (the batch keeps the accepted columns only); a column whose
  type changed is read as it now is and cast back to the accepted type, a value that does not cast
  becoming null.
- `discard_row`: a row with a value in a new column, or a value that does not cast back to the accepted
  type, goes to the run's quarantine with the reason; the rest keep the accepted columns.
- `evolve` beside a discarding setting (a change is accepted only as a whole): that part is read as the
  accepted schema reads it, which is what the connector does anyway (new columns not selected, values
  that do not cast refused by the reader).

Every test on a batch is an Arrow compute kernel over whole columns; Python touches only refused rows, to
word their reasons.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import (
    Batch,
    Field,
    FieldType,
    RejectedRow,
    RejectedRows,
    StreamSchema,
    arrow_type_for,
)
from apps.transformations.steps import StepError, get_step_type

POLICY_KEYS = ("new_columns", "type_changes", "new_tables")
REJECT_SOURCE = "schema contract"


# Type changes that lose nothing: every old value is a value of the new type. They are accepted whatever
# the contract says about type changes, as a warehouse would widen the column.
WIDENINGS = frozenset({("integer", "number"), ("date", "datetime")})


def drift_dimensions(diff: Any) -> list[str]:
    """The contract settings a diff (accepted → discovered) concerns. Removed columns, nullability and key
    changes are recorded and announced but no setting governs them (as in dlt)."""
    if diff.kind == "added":
        return ["new_tables"]
    dims = []
    if diff.added_fields:
        dims.append("new_columns")
    if any((c["from"], c["to"]) not in WIDENINGS for c in diff.type_changes.values()):
        dims.append("type_changes")
    return dims


@dataclass
class Settlement:
    """Where a stream's latest version stands with its contract."""

    status: str  # accepted | discarded | pending | rejected | approved | superseded
    diff: Any = None
    policies: dict[str, str] = field(default_factory=dict)
    accepted: Any = None
    change: Any = None


def json_safe(value: Any) -> Any:
    """A value as JSON can carry it (quarantine rows, previews)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)


def _present(column: pa.ChunkedArray) -> pa.Array:
    """Where a column holds a value (a blank text is no value: a CSV's empty cell)."""
    values = column.combine_chunks()
    mask = pc.is_valid(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        mask = pc.and_(mask, pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(values), ""), False))
    return mask


@dataclass
class ContractDecision:
    """How to read one stream in one run. `read_schema` goes to the connector's read; `conform` is applied
    to every batch it yields and returns the batch in the planned (accepted) schema plus refused rows."""

    read_schema: StreamSchema
    planned: StreamSchema | None = None
    reject_new: tuple[str, ...] = ()
    casts: dict[str, tuple[FieldType, str]] = field(default_factory=dict)  # name → (accepted type, on_error)
    skip: bool = False
    message: str = ""

    @property
    def conforms(self) -> bool:
        return self.planned is not None

    def conform(self, batch: Batch) -> tuple[Batch, RejectedRows | None]:
        if self.planned is None:
            return batch, None
        table = batch.table
        refused: list[RejectedRow] = []
        if self.reject_new:
            present = [
                (name, _present(table.column(name))) for name in self.reject_new if name in table.column_names
            ]
            if present:
                hit = present[0][1]
                for _, mask in present[1:]:
                    hit = pc.or_(hit, mask)
                if pc.any(hit).as_py():
                    rows = pc.indices_nonzero(hit)
                    names = ", ".join(f"'{n}'" for n, _ in present)
                    reason = (
                        f"a value in new column(s) {names}, which stream '{self.planned.name}' does not "
                        "accept (contract new_columns: discard_row)"
                    )
                    refused += [
                        RejectedRow(reason=reason, raw=json_safe(raw), source=REJECT_SOURCE)
                        for raw in table.take(rows).to_pylist()
                    ]
                    table = table.filter(pc.invert(hit))
        for name, (target, on_error) in self.casts.items():
            table, bad = _cast_back(table, name, target, on_error, self.read_schema)
            refused += bad
        columns = []
        for f in self.planned.fields:
            if f.name in table.column_names:
                columns.append(table.column(f.name))
            else:
                columns.append(pa.nulls(table.num_rows, arrow_type_for(f.type)))
        schema = pa.schema([pa.field(f.name, arrow_type_for(f.type)) for f in self.planned.fields])
        out = Batch(pa.Table.from_arrays(columns, schema=schema), stream=batch.stream)
        return out, (RejectedRows(stream=batch.stream, rows=tuple(refused)) if refused else None)


def _cast_back(
    table: pa.Table, name: str, target: FieldType, on_error: str, read_schema: StreamSchema
) -> tuple[pa.Table, list[RejectedRow]]:
    """Cast one changed column back to its accepted type with the cast step's rules (text trimmed, blanks
    null); a value that does not cast is null (`null`) or refuses its row (`reject`)."""
    if name not in table.column_names:
        return table, []
    try:
        output = get_step_type("cast").apply(
            {"columns": {name: str(target)}, "on_error": on_error}, Batch(table), read_schema
        )
    except StepError:
        # No cast between the two types at all (a date cannot become a boolean): every value is one that
        # does not cast.
        present = _present(table.column(name))
        refused: list[RejectedRow] = []
        if on_error == "reject" and pc.any(present).as_py():
            refused = [
                RejectedRow(
                    reason=f"column '{name}' is no longer {target} (contract type_changes: discard_row)",
                    raw=json_safe(raw),
                    source=REJECT_SOURCE,
                )
                for raw in table.take(pc.indices_nonzero(present)).to_pylist()
            ]
            table = table.filter(pc.invert(present))
        index = table.schema.get_field_index(name)
        nulls = pa.nulls(table.num_rows, arrow_type_for(target))
        return table.set_column(index, pa.field(name, arrow_type_for(target)), nulls), refused
    refused = [
        RejectedRow(
            reason=f"{r.reason} (contract type_changes: discard_row)", raw=r.raw, source=REJECT_SOURCE
        )
        for r in output.rejected
    ]
    return output.batch.table, refused


def contract_conformer(
    *, planned: StreamSchema, discovered: StreamSchema, diff: Any, policies: dict[str, str]
) -> ContractDecision:
    """The decision for a stream whose discovered schema differs from the planned one and whose contract
    discards (part of) the difference."""
    if "new_tables" in policies:
        return ContractDecision(
            read_schema=planned,
            skip=True,
            message=(
                f"Stream '{planned.name}' is new and its connector's contract discards new streams "
                f"(new_tables: {policies['new_tables']}): nothing is read."
            ),
        )
    planned_names = set(planned.field_names)
    found = {f.name: f for f in discovered.fields}
    new_policy = policies.get("new_columns")
    type_policy = policies.get("type_changes")
    new_fields = [f for f in discovered.fields if f.name not in planned_names]
    reject_new = tuple(f.name for f in new_fields) if new_policy == "discard_row" else ()
    casts: dict[str, tuple[FieldType, str]] = {}
    fields: list[Field] = []
    for f in planned.fields:
        now = found.get(f.name)
        if now is not None and now.type != f.type and type_policy == "discard_value":
            casts[f.name] = (f.type, "null")
            fields.append(dataclasses.replace(f, type=now.type, nullable=True))
        else:
            # discard_row reads the column as its accepted type: the source itself refuses a value that does
            # not fit and sends its row to quarantine with the reason and, for files, the line.
            fields.append(f)
    fields += [dataclasses.replace(f, nullable=True) for f in new_fields if f.name in reject_new]
    parts = []
    if new_fields:
        names = ", ".join(f"'{f.name}'" for f in new_fields)
        parts.append(f"new column(s) {names} ({new_policy})")
    if casts:
        names = ", ".join(f"'{n}'" for n in casts)
        parts.append(f"changed type(s) of {names} ({type_policy})")
    message = (
        f"Stream '{planned.name}' differs from its accepted schema: "
        f"{'; '.join(parts) or 'no governed change'}; read as the accepted schema under its contract."
    )
    return ContractDecision(
        read_schema=dataclasses.replace(planned, fields=tuple(fields)),
        planned=planned,
        reject_new=reject_new,
        casts=casts,
        message=message,
    )
