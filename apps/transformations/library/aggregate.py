"""Aggregate (group by) and pivot.

Both buffer partial aggregates, not rows: each batch is grouped on its own with Arrow's hash aggregation
(count, sum, min, max, first, last — and sum + count for a mean), and the partials are combined by
aggregating them again (a count of counts is their sum, a min of mins the min, the first of firsts the
first). Memory is therefore one partial row per group per batch until the partials are compacted, which
happens whenever they pass COMPACT_ROWS. count_distinct is the exception: combining distinct counts is not
exact, so it holds the distinct (group, value) pairs seen — memory grows with the number of distinct
values per group, not with the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic import Field as PydanticField
from pydantic_core import PydanticCustomError

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, Batch, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations.steps import StepConfig, StepError, StepOutput, StepRunner, StepType, register

from ._util import (
    NUMERIC_TYPES,
    ORDERED_TYPES,
    column,
    empty_table,
    field_of,
    new_name,
    row_hashes,
    typed_field,
    unique_names,
)

# Partials are re-aggregated once they hold this many rows: bounded memory for many groups, and few
# compactions (each costs a pass over the partials) when there are few.
COMPACT_ROWS = 200_000

Function = Literal["count", "count_distinct", "sum", "mean", "min", "max", "first", "last"]

# function → (the partial aggregations of a batch, how each partial combines)
_PARTIALS: dict[str, list[tuple[str, str]]] = {
    "count": [("count", "sum")],
    "sum": [("sum", "sum")],
    "mean": [("sum", "sum"), ("count", "sum")],
    "min": [("min", "min")],
    "max": [("max", "max")],
    "first": [("first", "first")],
    "last": [("last", "last")],
}


class Aggregation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: Function = PydanticField(title="Function", examples=["mean"])
    column: str | None = PydanticField(
        default=None,
        title="Column",
        description="The column aggregated; leave out with count to count rows.",
        examples=["dep_delay"],
    )
    name: str | None = PydanticField(
        default=None,
        title="Output name",
        description="Default <function>_<column> (or count).",
        examples=["mean_delay"],
    )

    @model_validator(mode="after")
    def _column_needed(self) -> Aggregation:
        if self.column is None and self.function != "count":
            raise PydanticCustomError(
                "column_needed", "{function} needs a column", {"function": self.function}
            )
        if self.name is not None:
            new_name(self.name)
        return self

    @property
    def output(self) -> str:
        if self.name:
            return self.name
        return self.function if self.column is None else f"{self.function}_{self.column}"


def result_type(agg: Aggregation, schema: StreamSchema, path: str) -> FieldType:
    if agg.column is None:
        return FieldType.INTEGER
    if agg.function in ("count", "count_distinct"):
        field_of(schema, agg.column, path)
        return FieldType.INTEGER
    if agg.function in ("sum", "mean"):
        f = typed_field(schema, agg.column, path, NUMERIC_TYPES, "a number to " + agg.function)
        return FieldType.NUMBER if agg.function == "mean" else f.type
    if agg.function in ("min", "max"):
        return typed_field(
            schema, agg.column, path, ORDERED_TYPES, f"an ordered column for {agg.function}"
        ).type
    return field_of(schema, agg.column, path).type


class _Aggregator:
    """Partial aggregates of `aggs` grouped by `keys`, fed batch by batch. Group order is the order in
    which groups first appear in the stream."""

    def __init__(self, keys: list[str], aggs: list[Aggregation], types: list[FieldType]) -> None:
        self.keys = keys
        self.global_ = not keys
        self.key_names = [f"k{i}" for i in range(len(keys))] or ["k_all"]
        self.aggs = aggs
        self.types = types
        self.partials: list[pa.Table] = []
        self.partial_rows = 0
        self.distinct: dict[int, list[pa.Table]] = {
            i: [] for i, a in enumerate(aggs) if a.function == "count_distinct"
        }
        self.rows_seen = 0

    def _internal(self, table: pa.Table) -> pa.Table:
        arrays: list[Any] = []
        names: list[str] = []
        if self.global_:
            arrays.append(pa.array(np.zeros(table.num_rows, np.int8)))
            names.append("k_all")
        for i, key in enumerate(self.keys):
            arrays.append(column(table, key, f"config.group_by.{i}"))
            names.append(f"k{i}")
        for i, agg in enumerate(self.aggs):
            if agg.column is None:
                arrays.append(pa.array(np.ones(table.num_rows, np.int8)))
            else:
                values = column(table, agg.column, f"config.aggregations.{i}.column")
                if agg.function == "mean":
                    values = pc.cast(values, pa.float64())
                arrays.append(values)
            names.append(f"v{i}")
        return pa.Table.from_arrays(arrays, names=names)

    def feed(self, table: pa.Table) -> None:
        self.rows_seen += table.num_rows
        if not table.num_rows:
            return
        internal = self._internal(table)
        specs = []
        for i, agg in enumerate(self.aggs):
            if agg.function == "count_distinct":
                pairs = internal.group_by([*self.key_names, f"v{i}"], use_threads=False).aggregate([])
                self.distinct[i].append(pairs)
                continue
            for partial, _ in _PARTIALS[agg.function]:
                specs.append(
                    (f"v{i}", partial, pc.CountOptions(mode="only_valid") if partial == "count" else None)
                )
        partial = internal.group_by(self.key_names, use_threads=False).aggregate(specs)
        self.partials.append(partial)
        self.partial_rows += partial.num_rows
        if self.partial_rows > COMPACT_ROWS:
            self._compact()

    def _combine_specs(self) -> list[tuple[str, str]]:
        specs = []
        for i, agg in enumerate(self.aggs):
            if agg.function == "count_distinct":
                continue
            for partial, combine in _PARTIALS[agg.function]:
                specs.append((f"v{i}_{partial}", combine))
        return specs

    def _compact(self) -> None:
        if len(self.partials) > 1:
            combined = pa.concat_tables(self.partials)
            result = combined.group_by(self.key_names, use_threads=False).aggregate(self._combine_specs())
            # Back to the partial names (v0_sum, ...) so the next compaction combines them the same way.
            self.partials = [
                result.rename_columns(
                    [n.rsplit("_", 1)[0] if n not in self.key_names else n for n in result.column_names]
                )
            ]
            self.partial_rows = self.partials[0].num_rows
        for i, tables in self.distinct.items():
            if len(tables) > 1:
                pairs = pa.concat_tables(tables)
                self.distinct[i] = [pairs.group_by(pairs.column_names, use_threads=False).aggregate([])]

    def result(self) -> pa.Table:
        """One row per group: the group columns (by their names) then the aggregates (by output name)."""
        self._compact()
        if self.partials:
            groups = self.partials[0]
        elif self.global_:
            groups = pa.table(
                {"k_all": pa.array([0], pa.int8())}
            )  # SQL: a global aggregate of nothing is one row
        else:
            groups = None
        if groups is None:
            arrays = [pa.array([], arrow_type_for(t)) for t in self.types]
            return pa.Table.from_arrays(
                [*(pa.array([], pa.null()) for _ in self.keys), *arrays],
                names=[*self.keys, *(a.output for a in self.aggs)],
            )
        out_arrays: list[Any] = [groups.column(n) for n in self.key_names if not self.global_]
        out_names = list(self.keys)
        for i, agg in enumerate(self.aggs):
            target = arrow_type_for(self.types[i])
            if agg.function == "count_distinct":
                values = self._distinct_counts(i, groups)
            elif not self.partials:
                values = pa.array([0 if agg.function == "count" else None], target)
            elif agg.function == "mean":
                total, count = groups.column(f"v{i}_sum"), groups.column(f"v{i}_count")
                values = pc.divide(total, pc.if_else(pc.equal(count, 0), pa.scalar(None, pa.int64()), count))
            else:
                values = groups.column(f"v{i}_{_PARTIALS[agg.function][0][0]}")
                if agg.function == "count":
                    values = pc.fill_null(values, 0)
            out_arrays.append(pc.cast(values, target) if values.type != target else values)
            out_names.append(agg.output)
        return pa.Table.from_arrays(out_arrays, names=out_names)

    def _distinct_counts(self, i: int, groups: pa.Table) -> pa.Array:
        counts = np.zeros(groups.num_rows, np.int64)
        tables = self.distinct[i]
        if tables:
            per_group = tables[0].group_by(self.key_names, use_threads=False).aggregate([(f"v{i}", "count")])
            at = _positions(groups.select(self.key_names), per_group.select(self.key_names))
            counts[at] = per_group.column(f"v{i}_count").to_numpy()
        return pa.array(counts)


def _positions(groups: pa.Table, rows: pa.Table) -> np.ndarray:
    """For each row, the position of the group with equal keys (every row's keys are among the groups).
    Keys are compared by a 64-bit hash in which nulls are equal — a join would never match null keys."""
    group_hashes = row_hashes(groups, groups.column_names)
    order = np.argsort(group_hashes, kind="stable")
    found = np.searchsorted(group_hashes[order], row_hashes(rows, rows.column_names))
    return order[found]


def _first_appearance(keys: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(the first row of each distinct key, in order of appearance; each row's key number in that order)."""
    hashes = row_hashes(keys, keys.column_names)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return first[order], rank[np.asarray(inverse).reshape(-1)]


# --- aggregate -----------------------------------------------------------------------------------------


class AggregateConfig(StepConfig):
    group_by: list[str] = PydanticField(
        default_factory=list,
        title="Group by",
        description=(
            "Rows with equal values here form a group (nulls form a group); none: the whole "
            "stream is one group."
        ),
        examples=[["carrier", "origin"]],
    )
    aggregations: list[Aggregation] = PydanticField(
        min_length=1,
        title="Aggregations",
        description=(
            "count (non-null values, or rows without a column), count_distinct, sum, mean, min, max, "
            "first and last (the first/last non-null value in stream order)."
        ),
        examples=[[{"function": "count"}, {"function": "mean", "column": "dep_delay", "name": "mean_delay"}]],
    )

    _unique = field_validator("group_by")(unique_names)

    @model_validator(mode="after")
    def _distinct_names(self) -> AggregateConfig:
        names = list(self.group_by)
        for agg in self.aggregations:
            if agg.output in names:
                raise PydanticCustomError(
                    "duplicate_name", "two output columns are named '{name}'", {"name": agg.output}
                )
            names.append(agg.output)
        return self


@register
class AggregateStep(StepType[AggregateConfig]):
    slug = "aggregate"
    title = "Aggregate"
    description = (
        "Groups rows and computes count, count_distinct, sum, mean, min, max, first or last per group; "
        "one row per group comes out when the input ends, groups in order of first appearance. It holds "
        "partial aggregates (one row per group, compacted as it goes) and, for count_distinct, the distinct "
        "values per group. "
        'Example: {"group_by": ["carrier"], "aggregations": [{"function": "mean", "column": "dep_delay"}]}.'
    )
    category = "aggregate"
    config_model = AggregateConfig
    buffers = True

    def _types(self, config: AggregateConfig, schema: StreamSchema) -> list[FieldType]:
        for i, key in enumerate(config.group_by):
            typed_field(
                schema, key, f"config.group_by.{i}", ORDERED_TYPES, "a column that can be grouped (not json)"
            )
        return [
            result_type(agg, schema, f"config.aggregations.{i}.column")
            for i, agg in enumerate(config.aggregations)
        ]

    def _output_schema(self, config: AggregateConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        types = self._types(config, schema)
        fields = [schema.field(k) for k in config.group_by]
        for agg, t in zip(config.aggregations, types, strict=True):
            fields.append(Field(agg.output, t, nullable=agg.function not in ("count", "count_distinct")))
        monotonic = (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
        return StreamSchema(
            name=schema.name,
            fields=tuple(fields),
            primary_key=tuple(config.group_by),
            cursor_candidates=tuple(f.name for f in fields if f.type in monotonic),
            supported_sync_modes=schema.supported_sync_modes,
        )

    def aggregator(self, config: AggregateConfig, schema: StreamSchema) -> _Aggregator:
        return _Aggregator(config.group_by, config.aggregations, self._types(config, schema))

    def prepare_and_feed(self, config: AggregateConfig, aggregator: _Aggregator, table: pa.Table) -> None:
        aggregator.feed(table)

    def finish(self, config: AggregateConfig, schema: StreamSchema, aggregator: _Aggregator) -> pa.Table:
        out = self.output_schema(config, [schema])
        table = aggregator.result()
        arrays = [pc.cast(table.column(f.name), arrow_type_for(f.type)) for f in out.fields]
        return pa.Table.from_arrays(
            arrays, schema=pa.schema([pa.field(f.name, arrow_type_for(f.type)) for f in out.fields])
        )

    def _apply(self, config: AggregateConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        aggregator = self.aggregator(config, schema)
        self.prepare_and_feed(config, aggregator, batch.table)
        return StepOutput(Batch(self.finish(config, schema, aggregator), stream=batch.stream))

    def runner(self, config: AggregateConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        config = self._config(config)
        schema = next(iter(inputs.values()))
        return _AggregateRunner(self, config, schema)


class _AggregateRunner(StepRunner):
    def __init__(self, step: Any, config: Any, schema: StreamSchema) -> None:
        self.step = step
        self.config = config
        self.schema = schema
        self.aggregator = step.aggregator(config, schema)
        self.stream = schema.name

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        self.stream = batch.stream or self.stream
        self.step.prepare_and_feed(self.config, self.aggregator, batch.table)
        return ()

    def end(self, input_id: str) -> Iterable[StepOutput]:
        result = self.step.finish(self.config, self.schema, self.aggregator)
        for offset in range(0, max(result.num_rows, 1), DEFAULT_CHUNK_SIZE):
            yield StepOutput(Batch(result.slice(offset, DEFAULT_CHUNK_SIZE), stream=self.stream))


# --- pivot ---------------------------------------------------------------------------------------------

PivotValue = str | int | bool


class PivotConfig(StepConfig):
    index: list[str] = PydanticField(
        min_length=1,
        title="Row keys",
        description="One output row per distinct combination.",
        examples=[["carrier"]],
    )
    column: str = PydanticField(
        title="Pivot column", description="Its values name the new columns.", examples=["origin"]
    )
    values: list[PivotValue] = PydanticField(
        min_length=1,
        title="Column values",
        description=(
            "The values of the pivot column that become columns (declared so the schema is "
            "known before a run); rows with other values are left out."
        ),
        examples=[["EWR", "JFK", "LGA"]],
    )
    function: Function = PydanticField(
        default="sum",
        title="Function",
        description="How the values of a cell are combined.",
        examples=["mean"],
    )
    value: str | None = PydanticField(
        default=None,
        title="Value column",
        description="The column aggregated (leave out to count rows).",
        examples=["dep_delay"],
    )
    prefix: str = PydanticField(
        default="",
        title="Column prefix",
        description="Put before each value to name its column.",
        examples=["delay_"],
    )

    _unique = field_validator("index")(unique_names)

    @model_validator(mode="after")
    def _check(self) -> PivotConfig:
        if self.value is None and self.function != "count":
            raise PydanticCustomError(
                "column_needed", "{function} needs a value column", {"function": self.function}
            )
        names = [self.name_of(v) for v in self.values]
        if len(set(names)) != len(names):
            raise PydanticCustomError("duplicate_value", "a value is listed twice")
        for name in names:
            new_name(name)
        return self

    def name_of(self, value: PivotValue) -> str:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return f"{self.prefix}{text}"

    def aggregation(self) -> Aggregation:
        return Aggregation(function=self.function, column=self.value, name="__ag_value")


@register
class PivotStep(StepType[PivotConfig]):
    slug = "pivot"
    title = "Pivot"
    description = (
        "Turns the values of one column into columns: one row per index key, one column per declared value, "
        "holding the aggregate of the value column for that key and value (null where there is none; 0 for "
        "counts). Buffers partial aggregates like aggregate. "
        'Example: {"index": ["carrier"], "column": "origin", "values": ["EWR", "JFK", "LGA"], '
        '"function": "mean", "value": "dep_delay"}.'
    )
    category = "aggregate"
    config_model = PivotConfig
    buffers = True

    def _value_type(self, config: PivotConfig, schema: StreamSchema) -> FieldType:
        pivot = typed_field(
            schema, config.column, "config.column", ORDERED_TYPES, "a column that can be grouped"
        )
        for i, value in enumerate(config.values):
            ok = {
                FieldType.STRING: isinstance(value, str),
                FieldType.INTEGER: isinstance(value, int) and not isinstance(value, bool),
                FieldType.BOOLEAN: isinstance(value, bool),
            }.get(pivot.type, False)
            if not ok:
                raise StepError(
                    f"{value!r} is not a {pivot.type} value of '{config.column}'", field=f"config.values.{i}"
                )
        for i, key in enumerate(config.index):
            typed_field(
                schema, key, f"config.index.{i}", ORDERED_TYPES, "a column that can be grouped (not json)"
            )
            if key == config.column:
                raise StepError("the pivot column cannot also be a row key", field=f"config.index.{i}")
        return result_type(config.aggregation(), schema, "config.value")

    def _output_schema(self, config: PivotConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        value_type = self._value_type(config, schema)
        fields = [schema.field(k) for k in config.index]
        taken = set(config.index)
        for i, value in enumerate(config.values):
            name = config.name_of(value)
            if name in taken:
                raise StepError(f"the column '{name}' would be made twice", field=f"config.values.{i}")
            taken.add(name)
            fields.append(Field(name, value_type, nullable=config.function != "count"))
        return StreamSchema(
            name=schema.name,
            fields=tuple(fields),
            primary_key=tuple(config.index),
            supported_sync_modes=schema.supported_sync_modes,
        )

    def aggregator(self, config: PivotConfig, schema: StreamSchema) -> _Aggregator:
        return _Aggregator(
            [*config.index, config.column], [config.aggregation()], [self._value_type(config, schema)]
        )

    def prepare_and_feed(self, config: PivotConfig, aggregator: _Aggregator, table: pa.Table) -> None:
        pivot = column(table, config.column, "config.column")
        wanted = pa.array(config.values, pivot.type) if len(pivot) else None
        if wanted is not None:
            aggregator.feed(table.filter(pc.fill_null(pc.is_in(pivot, wanted), False)))

    def finish(self, config: PivotConfig, schema: StreamSchema, aggregator: _Aggregator) -> pa.Table:
        out = self.output_schema(config, [schema])
        grouped = aggregator.result()  # index..., pivot column, __ag_value
        if grouped.num_rows == 0:
            return empty_table(out)
        index_names = [f"k{i}" for i in range(len(config.index))]
        keyed = grouped.rename_columns([*index_names, "__ag_pivot", "__ag_value"])
        first, out_row = _first_appearance(keyed.select(index_names))
        rows = keyed.select(index_names).take(pa.array(first, pa.int64()))
        value_type = arrow_type_for(out.fields[-1].type)
        arrays: list[Any] = [
            pc.cast(rows.column(n), arrow_type_for(f.type))
            for n, f in zip(index_names, out.fields, strict=False)
        ]
        pivot_values = keyed.column("__ag_pivot")
        values = keyed.column("__ag_value")
        for value in config.values:
            hit = pc.fill_null(pc.equal(pivot_values, pa.scalar(value, pivot_values.type)), False)
            hit_np = hit.to_numpy(zero_copy_only=False) if keyed.num_rows else np.zeros(0, bool)
            index = np.full(rows.num_rows, -1, dtype=np.int64)
            index[out_row[hit_np]] = np.flatnonzero(hit_np)
            missing = index < 0
            cell = (
                values.take(pa.array(np.where(missing, 0, index), mask=missing))
                if rows.num_rows
                else pa.array([], value_type)
            )
            if config.function == "count":
                cell = pc.fill_null(cell, 0)
            arrays.append(pc.cast(cell, value_type))
        arrow_schema = pa.schema([pa.field(f.name, arrow_type_for(f.type)) for f in out.fields])
        return pa.Table.from_arrays(arrays, schema=arrow_schema)

    def _apply(self, config: PivotConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        aggregator = self.aggregator(config, schema)
        self.prepare_and_feed(config, aggregator, batch.table)
        return StepOutput(Batch(self.finish(config, schema, aggregator), stream=batch.stream))

    def runner(self, config: PivotConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        return _AggregateRunner(self, self._config(config), next(iter(inputs.values())))
