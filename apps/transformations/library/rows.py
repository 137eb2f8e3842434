"""Row steps: derive a column by expression, fill nulls, deduplicate across the stream, sort, limit."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator
from pydantic import Field as PydanticField
from pydantic_core import PydanticCustomError

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, Batch, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations import expressions
from apps.transformations.expressions import MAX_LENGTH, ExpressionError, Node
from apps.transformations.steps import (
    StepConfig,
    StepError,
    StepOutput,
    StepRunner,
    StepType,
    StreamingRunner,
    derive_schema,
    register,
)

from ._util import (
    ORDERED_TYPES,
    column,
    field_of,
    new_name,
    refuse_growth,
    row_hashes,
    set_column,
    typed_field,
    unique_names,
)


def _parses(text: str) -> str:
    try:
        expressions.parse(text)
    except ExpressionError as exc:
        raise PydanticCustomError("invalid_expression", "{error}", {"error": str(exc)}) from None
    return text


# --- derive --------------------------------------------------------------------------------------------


class DeriveConfig(StepConfig):
    column: str = PydanticField(
        title="Column",
        description=(
            "The column to write: a new one is added at the end, an existing one is replaced in place."
        ),
        examples=["delay_hours"],
    )
    expression: str = PydanticField(
        min_length=1,
        max_length=MAX_LENGTH,
        title="Expression",
        description="Its value for each row, in the expression language (see the docs).",
        examples=["round(dep_delay / 60, 1)", "if(dep_delay > 15, 'late', 'on time')"],
    )
    _node: Node | None = PrivateAttr(default=None)

    _name = field_validator("column")(new_name)
    _expression = field_validator("expression")(_parses)

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = expressions.parse(self.expression)
        return self._node


@register
class DeriveStep(StepType[DeriveConfig]):
    slug = "derive"
    title = "Derive a column"
    description = (
        "Computes a column from an expression over the row: a new column is added at the end, an existing "
        "one is replaced in place (its type becomes the expression's). "
        "Example: column delay_hours, expression round(dep_delay / 60, 1)."
    )
    category = "rows"
    config_model = DeriveConfig

    def _type(self, config: DeriveConfig, schema: StreamSchema) -> FieldType:
        try:
            return expressions.typecheck(config.node, schema)
        except ExpressionError as exc:
            raise StepError(str(exc), field="config.expression") from None

    def _output_schema(self, config: DeriveConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        new = Field(name=config.column, type=self._type(config, schema), nullable=True)
        if config.column in schema.field_names:
            fields = [new if f.name == config.column else f for f in schema.fields]
        else:
            fields = [*schema.fields, new]
        derived = derive_schema(schema, fields)
        if new.type in (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME):
            names = [f.name for f in fields if f.name in {*derived.cursor_candidates, new.name}]
            derived = dataclasses.replace(derived, cursor_candidates=tuple(names))
        return derived

    def _apply(self, config: DeriveConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        field_type = self._type(config, schema)
        try:
            values = expressions.evaluate(config.node, batch.table, schema)
        except ExpressionError as exc:
            raise StepError(str(exc), field="config.expression") from None
        return StepOutput(
            Batch(set_column(batch.table, config.column, values, field_type), stream=batch.stream)
        )


# --- fill nulls ----------------------------------------------------------------------------------------

Constant = str | int | float | bool


class FillNullsConfig(StepConfig):
    values: dict[str, Constant] = PydanticField(
        default_factory=dict,
        title="Constant values",
        description=(
            "Column → the value that replaces its nulls. Dates and datetimes are written in ISO form "
            "('2013-01-01', '2013-01-01T05:00:00Z')."
        ),
        examples=[{"dep_delay": 0, "tailnum": "unknown"}],
    )
    forward: list[str] = PydanticField(
        default_factory=list,
        title="Forward fill",
        description="Columns whose nulls take the last non-null value before them — across batches.",
        examples=[["time_hour"]],
    )
    backward: list[str] = PydanticField(
        default_factory=list,
        title="Backward fill",
        description="Columns whose nulls take the next non-null value after them — within each batch only.",
        examples=[["air_time"]],
    )

    _forward = field_validator("forward")(unique_names)
    _backward = field_validator("backward")(unique_names)

    @model_validator(mode="after")
    def _one_rule_per_column(self) -> FillNullsConfig:
        if not (self.values or self.forward or self.backward):
            raise PydanticCustomError("nothing_to_fill", "name at least one column to fill")
        seen: dict[str, str] = {name: "values" for name in self.values}
        for kind in ("forward", "backward"):
            for name in getattr(self, kind):
                if name in seen:
                    raise PydanticCustomError(
                        "two_rules",
                        "column '{name}' is in both {a} and {b}",
                        {"name": name, "a": seen[name], "b": kind},
                    )
                seen[name] = kind
        return self


def constant_for(value: Any, field_type: FieldType, path: str) -> pa.Scalar:
    """A config constant as a scalar of the column's Arrow type, or an error naming the field."""
    arrow_type = arrow_type_for(field_type)
    ok = {
        FieldType.STRING: isinstance(value, str),
        FieldType.JSON: isinstance(value, str),
        FieldType.INTEGER: isinstance(value, int) and not isinstance(value, bool),
        FieldType.NUMBER: isinstance(value, int | float) and not isinstance(value, bool),
        FieldType.BOOLEAN: isinstance(value, bool),
        FieldType.DATE: isinstance(value, str),
        FieldType.DATETIME: isinstance(value, str),
    }[field_type]
    try:
        if not ok:
            raise ValueError
        if field_type == FieldType.DATE:
            value = dt.date.fromisoformat(value)
        elif field_type == FieldType.DATETIME:
            parsed = dt.datetime.fromisoformat(value)
            value = parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
        return pa.scalar(value, type=arrow_type)
    except (ValueError, OverflowError, pa.ArrowInvalid):
        raise StepError(f"{value!r} is not a valid {field_type} value for this column", field=path) from None


@register
class FillNullsStep(StepType[FillNullsConfig]):
    slug = "fill_nulls"
    title = "Fill nulls"
    description = (
        "Replaces nulls with a constant per column, with the last value before them (forward fill, carried "
        "across batches, so a stream's order is honoured) or with the next value after them (backward "
        'fill, within a batch). Example: {"values": {"dep_delay": 0}, "forward": ["time_hour"]}.'
    )
    category = "rows"
    config_model = FillNullsConfig

    def _check(self, config: FillNullsConfig, schema: StreamSchema) -> dict[str, pa.Scalar]:
        constants = {
            name: constant_for(
                value, field_of(schema, name, f"config.values.{name}").type, f"config.values.{name}"
            )
            for name, value in config.values.items()
        }
        for kind in ("forward", "backward"):
            for i, name in enumerate(getattr(config, kind)):
                field_of(schema, name, f"config.{kind}.{i}")
        return constants

    def _output_schema(self, config: FillNullsConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        self._check(config, schema)
        fields = [
            dataclasses.replace(f, nullable=False) if f.name in config.values else f for f in schema.fields
        ]
        return derive_schema(schema, fields)

    def fill(
        self, config: FillNullsConfig, batch: Batch, schema: StreamSchema, carried: dict[str, pa.Scalar]
    ) -> pa.Table:
        constants = self._check(config, schema)
        table = batch.table
        for name, value in constants.items():
            values = column(table, name, f"config.values.{name}")
            if isinstance(value, pa.StringScalar) and values.null_count:
                # The constant is copied into every null: a long one over many nulls is a lot of text.
                refuse_growth(
                    batch.table,
                    values.null_count * len(value.as_buffer() or b""),
                    what=f"filling the nulls of '{name}'",
                    field=f"config.values.{name}",
                )
            table = set_column(table, name, pc.fill_null(values, value), schema.field(name).type)
        for i, name in enumerate(config.forward):
            values = pc.fill_null_forward(column(table, name, f"config.forward.{i}"))
            # Only the nulls before the batch's first value are left: the last value of earlier batches.
            if name in carried:
                values = pc.fill_null(values, carried[name].cast(values.type))
            if len(values) and values[len(values) - 1].is_valid:
                carried[name] = values[len(values) - 1]
            table = set_column(table, name, values, schema.field(name).type)
        for i, name in enumerate(config.backward):
            values = pc.fill_null_backward(column(table, name, f"config.backward.{i}"))
            table = set_column(table, name, values, schema.field(name).type)
        return table

    def _apply(self, config: FillNullsConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        return StepOutput(Batch(self.fill(config, batch, schema, {}), stream=batch.stream))

    def runner(self, config: FillNullsConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        return _FillRunner(self, self._config(config), inputs)


class _FillRunner(StreamingRunner):
    def __init__(self, step: FillNullsStep, config: FillNullsConfig, inputs: dict[str, StreamSchema]) -> None:
        super().__init__(step, config, inputs)
        self.carried: dict[str, pa.Scalar] = {}

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        assert isinstance(self.step, FillNullsStep)
        table = self.step.fill(self.config, batch, self.inputs[input_id], self.carried)
        yield StepOutput(Batch(table, stream=batch.stream))


# --- deduplicate ---------------------------------------------------------------------------------------


class DeduplicateConfig(StepConfig):
    keys: list[str] = PydanticField(
        min_length=1,
        title="Key columns",
        description="Rows with equal values in all of these columns are duplicates (nulls count as equal).",
        examples=[["year", "month", "day", "carrier", "flight"]],
    )
    keep: Literal["first", "last"] = PydanticField(
        default="first",
        title="Keep",
        description=(
            "first: the first row of each key in the stream is passed on as it arrives (only a hash of "
            "each key is held). last: the last row of each key is kept, which holds one row per distinct "
            "key until the stream ends."
        ),
    )

    _unique = field_validator("keys")(unique_names)


class _HashSet:
    """A set of 64-bit hashes as sorted numpy arrays of doubling sizes (a log-structured merge): a lookup
    is a binary search per level, an insert a merge that touches each hash O(log n) times in all. 8 bytes
    per distinct key, with no Python object per key."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for level in self.levels:
            at = np.searchsorted(level, hashes)
            at[at == len(level)] = 0
            found |= level[at] == hashes
        return found

    def add(self, sorted_unique: np.ndarray) -> None:
        if not len(sorted_unique):
            return
        self.levels.append(sorted_unique)
        while len(self.levels) > 1 and len(self.levels[-2]) <= 2 * len(self.levels[-1]):
            top = self.levels.pop()
            self.levels[-1] = np.union1d(self.levels[-1], top)


def _first_positions(hashes: np.ndarray) -> np.ndarray:
    """The positions of the first row of each distinct hash, in row order."""
    _, first = np.unique(hashes, return_index=True)
    return np.sort(first)


def _last_positions(hashes: np.ndarray) -> np.ndarray:
    _, first_from_end = np.unique(hashes[::-1], return_index=True)
    return np.sort(len(hashes) - 1 - first_from_end)


@register
class DeduplicateStep(StepType[DeduplicateConfig]):
    slug = "deduplicate"
    title = "Deduplicate"
    description = (
        "Keeps one row per key across the whole stream. keep=first passes each key's first row on at once "
        "and holds only a 64-bit hash per distinct key (8 bytes each: 100 million keys take 800 MB; two "
        "different keys share a hash with probability about n²/2⁶⁵, 3 in 10,000 for 100 million keys). "
        "keep=last holds one row per distinct key until the stream ends, then emits them in the order of "
        'their last occurrence. Example: {"keys": ["carrier", "flight", "day"], "keep": "first"}.'
    )
    category = "rows"
    config_model = DeduplicateConfig
    buffers = True

    def _output_schema(self, config: DeduplicateConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        for i, name in enumerate(config.keys):
            field_of(schema, name, f"config.keys.{i}")
        return schema

    def hashes(self, config: DeduplicateConfig, table: pa.Table) -> np.ndarray:
        for i, name in enumerate(config.keys):
            column(table, name, f"config.keys.{i}")
        return row_hashes(table, config.keys)

    def _apply(self, config: DeduplicateConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        """One batch on its own (a preview): duplicates within the batch only."""
        hashes = self.hashes(config, batch.table)
        positions = _first_positions(hashes) if config.keep == "first" else _last_positions(hashes)
        return StepOutput(Batch(batch.table.take(positions), stream=batch.stream))

    def runner(
        self, config: DeduplicateConfig | dict[str, Any], inputs: dict[str, StreamSchema]
    ) -> StepRunner:
        return _DedupRunner(self, self._config(config))


class _DedupRunner(StepRunner):
    def __init__(self, step: DeduplicateStep, config: DeduplicateConfig) -> None:
        self.step = step
        self.config = config
        self.seen = _HashSet()
        self.pending: pa.Table | None = None
        self.stream = ""

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        table = batch.table
        self.stream = batch.stream
        if self.config.keep == "last":
            # Keep only the latest row of each key so far: memory is one row per distinct key.
            combined = (
                table
                if self.pending is None
                else pa.concat_tables([self.pending, table], promote_options="permissive")
            )
            self.pending = combined.take(_last_positions(self.step.hashes(self.config, combined)))
            return
        hashes = self.step.hashes(self.config, table)
        first = _first_positions(hashes)
        new = first[~self.seen.contains(hashes[first])]
        self.seen.add(np.unique(hashes[new]))
        yield StepOutput(Batch(table.take(new), stream=batch.stream))

    def end(self, input_id: str) -> Iterable[StepOutput]:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            for offset in range(0, pending.num_rows, DEFAULT_CHUNK_SIZE):
                yield StepOutput(Batch(pending.slice(offset, DEFAULT_CHUNK_SIZE), stream=self.stream))


# --- sort ----------------------------------------------------------------------------------------------


class SortKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = PydanticField(title="Column", examples=["dep_delay"])
    descending: bool = PydanticField(default=False, title="Descending")


class SortConfig(StepConfig):
    keys: list[SortKey] = PydanticField(
        min_length=1,
        title="Sort keys",
        description="Columns to sort by, most significant first.",
        examples=[[{"column": "dep_delay", "descending": True}, {"column": "flight"}]],
    )
    nulls: Literal["last", "first"] = PydanticField(
        default="last", title="Nulls", description="Where nulls go, whatever the direction."
    )


def _sort(table: pa.Table, config: SortConfig) -> pa.Table:
    if table.num_rows < 2:
        return table
    placement = "at_end" if config.nulls == "last" else "at_start"
    keys = [(k.column, "descending" if k.descending else "ascending", placement) for k in config.keys]
    # Arrow's sort is stable: rows with equal keys keep their arrival order.
    order = pc.sort_indices(table, sort_keys=keys)
    return table.take(order)


@register
class SortStep(StepType[SortConfig]):
    slug = "sort"
    title = "Sort"
    description = (
        "Sorts the whole stream (stable: equal keys keep their order). It buffers every row of the stream "
        "until its input ends, so memory grows with the stream — put it after filters and selects. "
        'Example: {"keys": [{"column": "dep_delay", "descending": true}]}.'
    )
    category = "rows"
    config_model = SortConfig
    buffers = True

    def _output_schema(self, config: SortConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        for i, key in enumerate(config.keys):
            typed_field(
                schema,
                key.column,
                f"config.keys.{i}.column",
                ORDERED_TYPES,
                "a column with an order (not json)",
            )
        return schema

    def _apply(self, config: SortConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        for i, key in enumerate(config.keys):
            column(batch.table, key.column, f"config.keys.{i}.column")
        return StepOutput(Batch(_sort(batch.table, config), stream=batch.stream))

    def runner(self, config: SortConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        return _BufferRunner(self, self._config(config), inputs)


class _BufferRunner(StepRunner):
    """Holds every batch, then applies the step once to all of them and emits chunk-sized batches."""

    def __init__(self, step: StepType[Any], config: Any, inputs: dict[str, StreamSchema]) -> None:
        self.step = step
        self.config = config
        self.schema = next(iter(inputs.values()))
        self.tables: list[pa.Table] = []
        self.stream = ""

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        self.tables.append(batch.table)
        self.stream = batch.stream
        return ()

    def end(self, input_id: str) -> Iterable[StepOutput]:
        if not self.tables:
            return
        # One chunk: Arrow's take over many chunks costs several times more than over one.
        table = pa.concat_tables(self.tables, promote_options="permissive").combine_chunks()
        self.tables = []
        result = self.step.apply(self.config, Batch(table, stream=self.stream), self.schema).batch.table
        for offset in range(0, result.num_rows, DEFAULT_CHUNK_SIZE):
            yield StepOutput(Batch(result.slice(offset, DEFAULT_CHUNK_SIZE), stream=self.stream))


# --- limit ---------------------------------------------------------------------------------------------


class LimitConfig(StepConfig):
    count: int = PydanticField(ge=0, title="Rows", description="How many rows to pass on.", examples=[1000])
    offset: int = PydanticField(
        default=0, ge=0, title="Skip", description="Rows to skip first.", examples=[0]
    )


@register
class LimitStep(StepType[LimitConfig]):
    slug = "limit"
    title = "Limit"
    description = (
        "Passes on the first `count` rows of the stream after skipping `offset` rows, counting across "
        "batches; later rows are read but dropped (the source is not stopped early). "
        'Example: {"count": 1000}.'
    )
    category = "rows"
    config_model = LimitConfig

    def _output_schema(self, config: LimitConfig, inputs: list[StreamSchema]) -> StreamSchema:
        return inputs[0]

    def _apply(self, config: LimitConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        return StepOutput(Batch(batch.table.slice(config.offset, config.count), stream=batch.stream))

    def runner(self, config: LimitConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        return _LimitRunner(self._config(config))


class _LimitRunner(StepRunner):
    def __init__(self, config: LimitConfig) -> None:
        self.start = config.offset
        self.stop = config.offset + config.count
        self.seen = 0

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        first, self.seen = self.seen, self.seen + batch.num_rows
        lo = max(self.start - first, 0)
        hi = min(self.stop - first, batch.num_rows)
        if hi > lo:
            yield StepOutput(Batch(batch.table.slice(lo, hi - lo), stream=batch.stream))
