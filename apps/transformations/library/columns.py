"""Column steps: drop and reorder (select, rename and cast live in core.py)."""

from __future__ import annotations

from pydantic import Field as PydanticField
from pydantic import field_validator

from aggregator.dataplane import Batch, StreamSchema
from apps.transformations.steps import (
    StepConfig,
    StepError,
    StepOutput,
    StepType,
    derive_schema,
    register,
    unknown_column,
)

from ._util import field_of, unique_names


class DropConfig(StepConfig):
    columns: list[str] = PydanticField(
        min_length=1,
        title="Columns to drop",
        description="These columns are removed; every other column passes through in its place.",
        examples=[["tailnum", "air_time"]],
    )
    missing_ok: bool = PydanticField(
        default=False,
        title="Ignore missing columns",
        description="When true, a listed column that is not in the input is ignored instead of an error.",
    )

    _unique = field_validator("columns")(unique_names)


@register
class DropStep(StepType[DropConfig]):
    slug = "drop"
    title = "Drop columns"
    description = (
        "Removes the listed columns (also the way to drop personal data before it is loaded). "
        'Example: {"columns": ["tailnum", "air_time"]}.'
    )
    category = "columns"
    config_model = DropConfig

    def _dropped(self, config: DropConfig, names: list[str]) -> list[str]:
        dropped = []
        for i, name in enumerate(config.columns):
            if name in names:
                dropped.append(name)
            elif not config.missing_ok:
                raise unknown_column(name, names, field=f"config.columns.{i}")
        if len(dropped) == len(names):
            raise StepError("dropping every column leaves nothing to load", field="config.columns")
        return dropped

    def _output_schema(self, config: DropConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        dropped = set(self._dropped(config, schema.field_names))
        return derive_schema(schema, [f for f in schema.fields if f.name not in dropped])

    def _apply(self, config: DropConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        dropped = self._dropped(config, batch.table.column_names)
        return StepOutput(Batch(batch.table.drop_columns(dropped), stream=batch.stream))


class ReorderConfig(StepConfig):
    columns: list[str] = PydanticField(
        min_length=1,
        title="Columns first",
        description="These columns come first, in this order; the others follow in their original order.",
        examples=[["carrier", "flight", "dep_delay"]],
    )

    _unique = field_validator("columns")(unique_names)


@register
class ReorderStep(StepType[ReorderConfig]):
    slug = "reorder"
    title = "Reorder columns"
    description = (
        "Moves the listed columns to the front in the listed order; every other column follows in its "
        'original order, so nothing is dropped. Example: {"columns": ["carrier", "flight"]}.'
    )
    category = "columns"
    config_model = ReorderConfig

    def _order(self, config: ReorderConfig, schema: StreamSchema) -> list[str]:
        for i, name in enumerate(config.columns):
            field_of(schema, name, f"config.columns.{i}")
        listed = set(config.columns)
        return [*config.columns, *(n for n in schema.field_names if n not in listed)]

    def _output_schema(self, config: ReorderConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        return derive_schema(schema, [schema.field(n) for n in self._order(config, schema)])

    def _apply(self, config: ReorderConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        order = self._order(config, StreamSchema.from_arrow(batch.stream or "batch", table.schema))
        return StepOutput(Batch(table.select(order), stream=batch.stream))
