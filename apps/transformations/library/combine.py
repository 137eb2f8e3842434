"""Steps over several inputs: union (stack streams, columns aligned by name) and join / lookup."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PydanticField

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations import limits
from apps.transformations.steps import (
    StepBudgetExceeded,
    StepConfig,
    StepError,
    StepOutput,
    StepRunner,
    StepType,
    register,
)

from ._util import field_of, new_name

_ROW = "__ag_row"
_LOOKUP_ROW = "__ag_lookup_row"


def _align(table: pa.Table, schema: StreamSchema) -> pa.Table:
    """The batch with exactly the schema's columns: missing ones null, others cast to the schema's type."""
    arrays = []
    for f in schema.fields:
        arrow_type = arrow_type_for(f.type)
        index = table.schema.get_field_index(f.name)
        if index < 0:
            arrays.append(pa.nulls(table.num_rows, arrow_type))
            continue
        values = table.column(index)
        arrays.append(values if values.type == arrow_type else pc.cast(values, arrow_type))
    return pa.Table.from_arrays(
        arrays, schema=pa.schema([pa.field(f.name, arrow_type_for(f.type)) for f in schema.fields])
    )


# --- union ---------------------------------------------------------------------------------------------


class UnionConfig(StepConfig):
    source_column: str | None = PydanticField(
        default=None,
        title="Source column",
        description="If given, a text column holding the id of the input node each row came from.",
        examples=["source"],
    )

    @field_validator("source_column")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else new_name(value)


def union_schema(config: UnionConfig, named: list[tuple[str, StreamSchema]]) -> StreamSchema:
    fields: dict[str, Field] = {}
    origin: dict[str, str] = {}
    for label, schema in named:
        for f in schema.fields:
            if f.name not in fields:
                fields[f.name] = f
                origin[f.name] = label
                continue
            seen = fields[f.name]
            if seen.type != f.type:
                if {seen.type, f.type} == {FieldType.INTEGER, FieldType.NUMBER}:
                    merged = FieldType.NUMBER  # integers widen to numbers, as in SQL's UNION
                else:
                    raise StepError(
                        f"column '{f.name}' is {seen.type} in '{origin[f.name]}' but {f.type} in '{label}'",
                        field=f"inputs.{label}.{f.name}",
                    )
            else:
                merged = seen.type
            fields[f.name] = Field(
                f.name, merged, nullable=seen.nullable or f.nullable, description=seen.description
            )
    for name, f in list(fields.items()):
        if any(name not in schema.field_names for _, schema in named):
            fields[name] = Field(name, f.type, nullable=True, description=f.description)
    if config.source_column is not None:
        if config.source_column in fields:
            raise StepError(
                f"the column '{config.source_column}' exists already", field="config.source_column"
            )
        fields[config.source_column] = Field(config.source_column, FieldType.STRING, nullable=False)
    first = named[0][1]
    keys = {schema.primary_key for _, schema in named}
    cursors = {schema.cursor_field for _, schema in named}
    monotonic = (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
    return StreamSchema(
        name=first.name,
        fields=tuple(fields.values()),
        primary_key=first.primary_key if len(keys) == 1 else (),
        cursor_field=first.cursor_field if len(cursors) == 1 else None,
        cursor_candidates=tuple(n for n, f in fields.items() if f.type in monotonic),
        supported_sync_modes=first.supported_sync_modes,
    )


@register
class UnionStep(StepType[UnionConfig]):
    slug = "union"
    title = "Union"
    description = (
        "Stacks the rows of two or more inputs. Columns are matched by name; a column missing from an input "
        "is null in its rows; integer and number columns of one name become number, other type conflicts "
        "are errors. Batches pass straight through: nothing is buffered. "
        'Example: {"source_column": "source"}.'
    )
    category = "combine"
    config_model = UnionConfig
    min_inputs = 2
    max_inputs = None

    def _output_schema(self, config: UnionConfig, inputs: list[StreamSchema]) -> StreamSchema:
        return union_schema(config, [(f"{i}", schema) for i, schema in enumerate(inputs)])

    def output_schema_for(
        self, config: UnionConfig | dict[str, Any], inputs: dict[str, StreamSchema]
    ) -> StreamSchema:
        if len(inputs) < self.min_inputs:
            return self.output_schema(config, list(inputs.values()))  # raises the input-count error
        return union_schema(self._config(config), list(inputs.items()))

    def _apply(self, config: UnionConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        return StepOutput(
            Batch(_align(batch.table, union_schema(config, [("input", schema)])), stream=batch.stream)
        )

    def runner(self, config: UnionConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        config = self._config(config)
        return _UnionRunner(config, self.output_schema_for(config, inputs))


class _UnionRunner(StepRunner):
    def __init__(self, config: UnionConfig, schema: StreamSchema) -> None:
        self.config = config
        self.schema = schema

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        table = batch.table
        if self.config.source_column is not None:
            source = pa.DictionaryArray.from_arrays(np.zeros(len(table), np.int32), pa.array([input_id]))
            table = table.append_column(self.config.source_column, source.dictionary_decode())
        yield StepOutput(Batch(_align(table, self.schema), stream=self.schema.name))


# --- join ----------------------------------------------------------------------------------------------


class JoinKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    left: str = PydanticField(title="Column of the main input", examples=["carrier"])
    right: str = PydanticField(title="Column of the lookup input", examples=["code"])


class JoinConfig(StepConfig):
    lookup: str = PydanticField(
        min_length=1,
        title="Lookup input",
        description=(
            "The id of the upstream node to look rows up in; it is read whole before the other input."
        ),
        examples=["airlines"],
    )
    on: list[str | JoinKey] = PydanticField(
        min_length=1,
        title="Keys",
        description=(
            "Columns to match: a name present in both inputs, or {left, right} when the names differ."
        ),
        examples=[["carrier"], [{"left": "carrier", "right": "code"}]],
    )
    how: Literal["left", "inner"] = PydanticField(
        default="left",
        title="Kind",
        description="left: every main row, with nulls where nothing matches; inner: only rows that match.",
    )
    columns: list[str] | None = PydanticField(
        default=None,
        title="Lookup columns",
        description="Columns of the lookup input to add (default: all but its keys).",
        examples=[["name"]],
    )
    suffix: str = PydanticField(
        default="_lookup",
        min_length=1,
        title="Suffix",
        description="Appended to a lookup column whose name the main input already uses.",
    )

    def pairs(self) -> list[tuple[str, str]]:
        return [(k, k) if isinstance(k, str) else (k.left, k.right) for k in self.on]


class _JoinPlan:
    """Which lookup columns come out under which names, checked against both schemas."""

    def __init__(self, config: JoinConfig, main: StreamSchema, lookup: StreamSchema) -> None:
        self.pairs = config.pairs()
        for i, (left, right) in enumerate(self.pairs):
            lf = field_of(main, left, f"config.on.{i}")
            rf = field_of(lookup, right, f"config.on.{i}")
            if lf.type != rf.type:
                raise StepError(
                    f"key '{left}' is {lf.type} but the lookup's '{right}' is {rf.type}; "
                    "cast one of them first",
                    field=f"config.on.{i}",
                )
        right_keys = {right for _, right in self.pairs}
        if config.columns is None:
            wanted = [f.name for f in lookup.fields if f.name not in right_keys]
        else:
            wanted = config.columns
            for i, name in enumerate(wanted):
                field_of(lookup, name, f"config.columns.{i}")
        taken = set(main.field_names)
        self.renamed: dict[str, str] = {}
        for name in wanted:
            out = name if name not in taken else f"{name}{config.suffix}"
            if out in taken:
                raise StepError(
                    f"the lookup column '{name}' would be named '{out}', which exists", field="config.suffix"
                )
            taken.add(out)
            self.renamed[name] = out
        nullable = config.how == "left"
        self.schema = StreamSchema(
            name=main.name,
            fields=(
                *main.fields,
                *(
                    Field(out, lookup.field(name).type, nullable=nullable or lookup.field(name).nullable)
                    for name, out in self.renamed.items()
                ),
            ),
            # A lookup with several rows per key repeats main rows, so only the cursor survives.
            cursor_field=main.cursor_field,
            cursor_candidates=main.cursor_candidates,
            supported_sync_modes=main.supported_sync_modes,
        )


@register
class JoinStep(StepType[JoinConfig]):
    slug = "join"
    title = "Join / lookup"
    description = (
        "Adds columns from a lookup input to each row of the main input where the keys are equal (null keys "
        "never match; a key matching several lookup rows repeats the main row). The lookup input is read "
        "first and held whole in memory — make it the smaller side (a reference table); the main input "
        'streams through. Example: {"lookup": "airlines", "on": ["carrier"], "how": "left"}.'
    )
    category = "combine"
    config_model = JoinConfig
    min_inputs = 2
    max_inputs = 2
    buffers = True

    def _split(
        self, config: JoinConfig, inputs: dict[str, StreamSchema]
    ) -> tuple[str, StreamSchema, StreamSchema]:
        if config.lookup not in inputs:
            raise StepError(
                f"'{config.lookup}' is not an input of this node (its inputs: {', '.join(inputs)})",
                field="config.lookup",
            )
        main_id = next(i for i in inputs if i != config.lookup)
        return main_id, inputs[main_id], inputs[config.lookup]

    def _output_schema(self, config: JoinConfig, inputs: list[StreamSchema]) -> StreamSchema:
        return _JoinPlan(config, inputs[0], inputs[1]).schema

    def output_schema_for(
        self, config: JoinConfig | dict[str, Any], inputs: dict[str, StreamSchema]
    ) -> StreamSchema:
        if len(inputs) != 2:
            return self.output_schema(config, list(inputs.values()))  # raises the input-count error
        config = self._config(config)
        _, main, lookup = self._split(config, inputs)
        return _JoinPlan(config, main, lookup).schema

    def input_order(self, config: JoinConfig | dict[str, Any], input_ids: list[str]) -> list[str]:
        lookup = self._config(config).lookup
        return [lookup] if lookup in input_ids else []

    def _apply(self, config: JoinConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        raise StepError("a join needs both of its inputs: run it in a pipeline", field="inputs")

    def runner(self, config: JoinConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        config = self._config(config)
        self.output_schema_for(config, inputs)
        _, main, lookup = self._split(config, inputs)
        return _JoinRunner(config, _JoinPlan(config, main, lookup))


class _JoinRunner(StepRunner):
    def __init__(self, config: JoinConfig, plan: _JoinPlan) -> None:
        self.config = config
        self.plan = plan
        self.lookup_tables: list[pa.Table] = []
        self.lookup: pa.Table | None = None
        self.key_counts: pa.Table | None = None
        self.repeats = 1
        # Main batches that arrive before the lookup is complete wait here (the executor reads the lookup
        # side first, so this stays empty unless both inputs share a source).
        self.waiting: list[Batch] = []

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        if input_id == self.config.lookup:
            self.lookup_tables.append(batch.table)
            return
        if self.lookup is None:
            self.waiting.append(batch)
            return
        yield self._join(batch)

    def end(self, input_id: str) -> Iterable[StepOutput]:
        if input_id != self.config.lookup:
            return
        self._build()
        waiting, self.waiting = self.waiting, []
        for batch in waiting:
            yield self._join(batch)

    def _build(self) -> None:
        right_keys = [right for _, right in self.plan.pairs]
        key_types = {
            right: arrow_type_for(self.plan.schema.field(left).type) for left, right in self.plan.pairs
        }
        wanted = [*dict.fromkeys([*right_keys, *self.plan.renamed])]
        arrays, names = [], []
        for name in wanted:
            if self.lookup_tables:
                values = pa.chunked_array([t.column(name) for t in self.lookup_tables]).combine_chunks()
            else:
                values = pa.array([], key_types.get(name, pa.string()))
            target = key_types.get(name)
            if target is not None and values.type != target:
                values = pc.cast(values, target)
            arrays.append(values)
            names.append(
                f"__ag_key_{right_keys.index(name)}" if name in right_keys else self.plan.renamed[name]
            )
        # A lookup column that is also a key is added once more under its output name.
        for name, out in self.plan.renamed.items():
            if name in right_keys:
                arrays.append(arrays[wanted.index(name)])
                names.append(out)
        arrays.append(pa.array(np.arange(len(arrays[0]) if arrays else 0, dtype=np.int64)))
        names.append(_LOOKUP_ROW)
        self.lookup = pa.Table.from_arrays(arrays, names=names)
        self.lookup_tables = []
        # Keys repeated in the lookup multiply main rows: how often each repeats, to refuse a batch whose
        # join would be too big before it is made. A lookup with unique keys (a reference table, the
        # usual case) cannot grow a batch's row count, and costs nothing more.
        keys = [f"__ag_key_{i}" for i in range(len(self.plan.pairs))]
        if self.lookup.num_rows:
            counts = self.lookup.select(keys).group_by(keys, use_threads=False).aggregate([([], "count_all")])
            self.repeats = int(pc.max(counts.column("count_all")).as_py())
            self.key_counts = counts if self.repeats > 1 else None

    def _refuse_fanout(self, batch: Batch) -> None:
        assert self.lookup is not None and self.key_counts is not None
        basis = batch.table.nbytes + self.lookup.nbytes
        row_bytes = batch.table.nbytes / max(1, batch.num_rows) + self.lookup.nbytes / self.lookup.num_rows
        budget = limits.current().output_budget(basis)
        if batch.num_rows * self.repeats * row_bytes <= budget:
            return
        left_keys = [left for left, _ in self.plan.pairs]
        right_keys = [f"__ag_key_{i}" for i in range(len(self.plan.pairs))]
        matched = batch.table.select(left_keys).join(
            self.key_counts, keys=left_keys, right_keys=right_keys, join_type="inner", use_threads=False
        )
        rows = int(pc.sum(matched.column("count_all")).as_py() or 0)
        if self.config.how == "left":
            rows += batch.num_rows - matched.num_rows
        if rows * row_bytes > budget:
            raise StepBudgetExceeded(
                f"joining this batch of {batch.num_rows:,} rows would make {rows:,} rows (about "
                f"{limits.size(rows * row_bytes)}), more than the step's budget of {limits.size(budget)} "
                f"for it ({limits.BUDGET_SETTINGS}): a key is repeated up to {self.repeats:,} times in the "
                "lookup",
                field="config.on",
            )

    def _join(self, batch: Batch) -> StepOutput:
        assert self.lookup is not None
        if self.key_counts is not None:
            self._refuse_fanout(batch)
        left = batch.table.append_column(_ROW, pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        left_keys = [left_name for left_name, _ in self.plan.pairs]
        right_keys = [f"__ag_key_{i}" for i in range(len(self.plan.pairs))]
        joined = left.join(
            self.lookup,
            keys=left_keys,
            right_keys=right_keys,
            join_type="left outer" if self.config.how == "left" else "inner",
            use_threads=False,
        )
        # Arrow's hash join does not keep row order; the row numbers put main rows back in theirs, and
        # the matches of one main row in the lookup's order.
        order = pc.sort_indices(joined, sort_keys=[(_ROW, "ascending"), (_LOOKUP_ROW, "ascending")])
        joined = joined.take(order)
        return StepOutput(Batch(_align(joined, self.plan.schema), stream=batch.stream))
