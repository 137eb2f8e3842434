"""The core steps: select, rename, filter and cast.

Select and rename shape the columns, filter keeps the rows for which an expression is true, and cast
converts columns to another type (the conversion itself is `apps/transformations/casting.py`, which the
type rules of quality share).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field as PydanticField
from pydantic import PrivateAttr, field_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import (
    RESERVED_COLUMNS,
    Batch,
    Field,
    FieldType,
    RejectedRow,
    StreamSchema,
    arrow_type_for,
    field_type_of,
)
from apps.transformations import expressions
from apps.transformations.casting import CASTS, cast_values, json_safe
from apps.transformations.expressions import MAX_LENGTH, ExpressionError, Node
from apps.transformations.steps import (
    MONOTONIC_TYPES,
    StepConfig,
    StepError,
    StepOutput,
    StepType,
    derive_schema,
    register,
    unknown_column,
)

# --- select --------------------------------------------------------------------------------------------


class SelectConfig(StepConfig):
    columns: list[str] = PydanticField(
        min_length=1,
        description="The columns to keep, in the order they should come out.",
        examples=[["year", "month", "day", "carrier", "dep_delay"]],
    )

    @field_validator("columns")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise PydanticCustomError(
                    "duplicate_column", "column '{name}' is listed twice", {"name": name}
                )
            seen.add(name)
        return names


@register
class SelectStep(StepType[SelectConfig]):
    slug = "select"
    title = "Select columns"
    description = (
        "Keeps the listed columns, in the listed order, and drops every other column. "
        'Example: {"columns": ["carrier", "flight", "dep_delay"]}.'
    )
    category = "columns"
    config_model = SelectConfig

    def _output_schema(self, config: SelectConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        fields = []
        for i, name in enumerate(config.columns):
            try:
                fields.append(schema.field(name))
            except KeyError:
                raise unknown_column(name, schema.field_names, field=f"config.columns.{i}") from None
        return derive_schema(schema, fields)

    def _apply(self, config: SelectConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        present = batch.table.column_names
        for i, name in enumerate(config.columns):
            if name not in present:
                raise unknown_column(name, present, field=f"config.columns.{i}")
        return StepOutput(Batch(batch.table.select(config.columns), stream=batch.stream))


# --- rename --------------------------------------------------------------------------------------------


class RenameConfig(StepConfig):
    columns: dict[str, str] = PydanticField(
        min_length=1,
        description="Old name → new name; columns not listed keep their names.",
        examples=[{"dep_delay": "departure_delay_min"}],
    )

    @field_validator("columns")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for old, new in value.items():
            if not new.strip():
                raise PydanticCustomError("empty_name", "the new name of '{old}' is empty", {"old": old})
            if new in RESERVED_COLUMNS:
                raise PydanticCustomError(
                    "reserved_name", "'{new}' is reserved for the loader's own column", {"new": new}
                )
        return value


def _renamed_names(names: list[str], columns: dict[str, str]) -> list[str]:
    for old in columns:
        if old not in names:
            raise unknown_column(old, names, field=f"config.columns.{old}")
    result = [columns.get(name, name) for name in names]
    seen: dict[str, str] = {}  # new name → the old name it came from
    for before, after in zip(names, result, strict=True):
        if after in seen:
            other = seen[after]
            old, kept = (before, other) if before in columns else (other, before)
            clash = (
                f"'{kept}', also renamed to '{after}'"
                if kept in columns and columns[kept] != kept
                else f"the column '{after}'"
            )
            raise StepError(
                f"renaming '{old}' to '{after}' collides with {clash}", field=f"config.columns.{old}"
            )
        seen[after] = before
    return result


@register
class RenameStep(StepType[RenameConfig]):
    slug = "rename"
    title = "Rename columns"
    description = (
        "Gives columns new names; the rest keep theirs. Two columns may swap names. "
        'Example: {"columns": {"dep_delay": "departure_delay_min"}}.'
    )
    category = "columns"
    config_model = RenameConfig

    def _output_schema(self, config: RenameConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        new_names = _renamed_names(schema.field_names, config.columns)
        fields = [
            Field(name=new, type=f.type, nullable=f.nullable, description=f.description)
            for f, new in zip(schema.fields, new_names, strict=True)
        ]
        return derive_schema(schema, fields, renamed=config.columns)

    def _apply(self, config: RenameConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        names = _renamed_names(batch.table.column_names, config.columns)
        return StepOutput(Batch(batch.table.rename_columns(names), stream=batch.stream))


# --- filter --------------------------------------------------------------------------------------------


class FilterConfig(StepConfig):
    expression: str = PydanticField(
        min_length=1,
        max_length=MAX_LENGTH,
        description="A condition; rows where it is true are kept (false and null are dropped).",
        examples=["dep_delay > 60 and carrier in ('UA', 'AA')"],
    )
    _node: Node | None = PrivateAttr(default=None)

    @field_validator("expression")
    @classmethod
    def _parses(cls, text: str) -> str:
        try:
            expressions.parse(text)
        except ExpressionError as exc:
            # the context keeps braces in the message (`unexpected character '{'`) out of the template
            raise PydanticCustomError("invalid_expression", "{error}", {"error": str(exc)}) from None
        return text

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = expressions.parse(self.expression)
        return self._node


@register
class FilterStep(StepType[FilterConfig]):
    slug = "filter"
    title = "Filter rows"
    description = (
        "Keeps the rows for which the expression is true; rows where it is false or null are dropped. "
        "Example: dep_delay > 60 and carrier in ('UA', 'AA')."
    )
    category = "rows"
    config_model = FilterConfig

    def _output_schema(self, config: FilterConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        try:
            result = expressions.typecheck(config.node, schema)
        except ExpressionError as exc:
            raise StepError(str(exc), field="config.expression") from None
        if result != FieldType.BOOLEAN:
            raise StepError(
                f"the filter expression must be a condition (true or false), but it gives {result} values",
                field="config.expression",
            )
        return schema

    def _apply(self, config: FilterConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        try:
            table = expressions.filter_table(config.node, batch.table, schema)
        except ExpressionError as exc:
            raise StepError(str(exc), field="config.expression") from None
        return StepOutput(Batch(table, stream=batch.stream))


# --- cast ----------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"'{text}'" if isinstance(value, str) else text


def _check_castable(name: str, source: FieldType, target: FieldType) -> None:
    if source not in CASTS[target]:
        raise StepError(
            f"cannot cast column '{name}' from {source} to {target}", field=f"config.columns.{name}"
        )


class CastConfig(StepConfig):
    columns: dict[str, FieldType] = PydanticField(
        min_length=1,
        description="Column → the type to cast it to.",
        examples=[{"dep_delay": "number", "day": "date"}],
    )
    on_error: Literal["fail", "null", "reject"] = PydanticField(
        default="fail",
        description=(
            "What to do with a value that cannot be cast: fail the run, make it null, or reject the "
            "row to the run's quarantine."
        ),
    )


@register
class CastStep(StepType[CastConfig]):
    slug = "cast"
    title = "Cast types"
    description = (
        "Converts columns to another type. Text is trimmed first and a blank text is null. A value "
        "that cannot be converted fails the run, becomes null, or sends its row to quarantine. "
        'Example: {"columns": {"dep_delay": "number"}, "on_error": "reject"}.'
    )
    category = "types"
    config_model = CastConfig

    def _output_schema(self, config: CastConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        for name, target in config.columns.items():
            if name not in schema.field_names:
                raise unknown_column(name, schema.field_names, field=f"config.columns.{name}")
            _check_castable(name, schema.field(name).type, target)
        fields = [
            # nullable whatever the policy: a blank text becomes null
            Field(name=f.name, type=config.columns[f.name], nullable=True, description=f.description)
            if f.name in config.columns
            else f
            for f in schema.fields
        ]
        derived = derive_schema(schema, fields)
        # A column cast to a monotonic type (integer, number, date, datetime) can now serve as a cursor.
        candidates = set(derived.cursor_candidates) | {
            name for name, target in config.columns.items() if target in MONOTONIC_TYPES
        }
        return dataclasses.replace(
            derived, cursor_candidates=tuple(f.name for f in fields if f.name in candidates)
        )

    def _apply(self, config: CastConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        bad_by_column: dict[str, pa.Array] = {}
        for name, target in config.columns.items():
            index = table.schema.get_field_index(name)
            if index < 0:
                raise unknown_column(name, table.column_names, field=f"config.columns.{name}")
            original = table.column(index).combine_chunks()
            # JSON travels as text, so the schema knows a column's type better than its Arrow type does.
            source = schema.field(name).type if name in schema.field_names else field_type_of(original.type)
            _check_castable(name, source, target)
            compared, cast = cast_values(original, target)
            bad = pc.and_(pc.is_valid(compared), pc.is_null(cast))
            if pc.any(bad).as_py():
                if config.on_error == "fail":
                    row = pc.index(bad, True).as_py()
                    raise StepError(
                        f"cannot cast column '{name}' value {_show(original[row].as_py())} to {target} "
                        f"(row index {row} of the batch)",
                        field=f"config.columns.{name}",
                    )
                bad_by_column[name] = bad
            table = table.set_column(index, pa.field(name, arrow_type_for(target)), cast)
        if config.on_error != "reject" or not bad_by_column:
            return StepOutput(Batch(table, stream=batch.stream))
        return self._reject(config, batch, table, bad_by_column)

    def _reject(
        self, config: CastConfig, batch: Batch, table: pa.Table, bad_by_column: dict[str, pa.Array]
    ) -> StepOutput:
        any_bad = None
        reasons: dict[int, list[str]] = {}
        # Python touches only the bad cells here, to word their reasons.
        for name, bad in bad_by_column.items():
            any_bad = bad if any_bad is None else pc.or_(any_bad, bad)
            rows = pc.indices_nonzero(bad)
            values = batch.table.column(name).take(rows).to_pylist()
            for row, value in zip(rows.to_pylist(), values, strict=True):
                reasons.setdefault(row, []).append(
                    f"cannot cast column '{name}' value {_show(value)} to {config.columns[name]}"
                )
        assert any_bad is not None
        rows = pc.indices_nonzero(any_bad)
        raw_rows = batch.table.take(rows).to_pylist()
        rejected = [
            RejectedRow(reason="; ".join(reasons[row]), raw=json_safe(raw), source=self.slug)
            for row, raw in zip(rows.to_pylist(), raw_rows, strict=True)
        ]
        kept = table.filter(pc.invert(any_bad))
        return StepOutput(Batch(kept, stream=batch.stream), rejected=rejected)
