"""The `map_fields` step: source fields to destination fields, with casts and defaults, as one step.

It produces exactly the mapped columns, in the listed order. It is validated against the input schema
(an unknown source field is an error naming the mapping's index) and, when the destination's fields are
given (`destination_schema`, as a destination's discovery or the builder knows them), against those:
a mapped field the destination lacks, a type that differs from the destination's, and a required
(non-nullable) destination field left unmapped are errors. Casting reuses the cast step's rules and
error policy (fail, null, or reject the row to quarantine); defaults fill nulls after the cast.

Registered in the step registry from `SchemasConfig.ready()`.
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PydanticField
from pydantic_core import PydanticCustomError

from aggregator.dataplane import RESERVED_COLUMNS, Batch, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations.steps import (
    CASTS,
    StepConfig,
    StepError,
    StepOutput,
    StepType,
    derive_schema,
    get_step_type,
    register,
    unknown_column,
)


class FieldMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = PydanticField(alias="from", min_length=1, title="From", examples=["dep_delay"])
    to: str = PydanticField(min_length=1, title="To", examples=["departure_delay_min"])
    cast: FieldType | None = PydanticField(
        default=None, title="Cast to", description="Keep the type when empty."
    )
    default: Any = PydanticField(
        default=None, title="Default", description="A JSON value that replaces nulls (after the cast)."
    )


class DestinationField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PydanticField(min_length=1)
    type: FieldType = FieldType.STRING
    nullable: bool = True


class MapFieldsConfig(StepConfig):
    mappings: list[FieldMapping] = PydanticField(
        min_length=1,
        title="Mappings",
        description="Each output column: the input column it comes from, an optional cast and default.",
        examples=[[{"from": "dep_delay", "to": "delay", "cast": "number", "default": 0}]],
    )
    destination_schema: list[DestinationField] | None = PydanticField(
        default=None,
        title="Destination fields",
        description="The destination's fields, to check the mapping against (required ones must be mapped).",
    )
    on_error: Literal["fail", "null", "reject"] = PydanticField(
        default="fail",
        title="On a value that does not cast",
        description="Fail the run, null, or reject the row.",
    )

    @field_validator("mappings")
    @classmethod
    def _targets(cls, mappings: list[FieldMapping]) -> list[FieldMapping]:
        seen: set[str] = set()
        for mapping in mappings:
            if mapping.to in RESERVED_COLUMNS:
                raise PydanticCustomError(
                    "reserved_name", "'{to}' is reserved for the loader's own column", {"to": mapping.to}
                )
            if mapping.to in seen:
                raise PydanticCustomError(
                    "duplicate_target", "'{to}' is the target of two mappings", {"to": mapping.to}
                )
            seen.add(mapping.to)
        return mappings


def _default_scalar(value: Any, field_type: FieldType, index: int) -> pa.Scalar:
    try:
        return pa.scalar(value).cast(arrow_type_for(field_type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        raise StepError(
            f"mappings[{index}]: the default {value!r} is not a valid {field_type} value",
            field=f"config.mappings.{index}.default",
        ) from None


@register
class MapFieldsStep(StepType[MapFieldsConfig]):
    slug = "map_fields"
    title = "Map fields"
    description = (
        "Maps input columns to output columns with an optional cast and default each, and keeps only the "
        "mapped columns. Checked against the destination's fields when they are given."
    )
    category = "columns"
    config_model = MapFieldsConfig

    def _mapped(self, config: MapFieldsConfig, schema: StreamSchema) -> tuple[list[Field], list[Field]]:
        """(the mapped columns before the casts, after the casts and defaults)."""
        before, after = [], []
        for i, m in enumerate(config.mappings):
            try:
                source = schema.field(m.source)
            except KeyError:
                error = unknown_column(m.source, schema.field_names, field=f"config.mappings.{i}.from")
                raise StepError(f"mappings[{i}]: {error.message}", field=error.field) from None
            target = m.cast or source.type
            if m.cast is not None and source.type not in CASTS[m.cast]:
                raise StepError(
                    f"mappings[{i}]: cannot cast '{m.source}' from {source.type} to {m.cast}",
                    field=f"config.mappings.{i}.cast",
                )
            if m.default is not None:
                _default_scalar(m.default, target, i)
            nullable = (source.nullable or m.cast is not None) and m.default is None
            before.append(Field(name=m.to, type=source.type, nullable=True, description=source.description))
            after.append(Field(name=m.to, type=target, nullable=nullable, description=source.description))
        return before, after

    def _check_destination(self, config: MapFieldsConfig, fields: list[Field]) -> None:
        if config.destination_schema is None:
            return
        wanted = {f.name: f for f in config.destination_schema}
        for i, f in enumerate(fields):
            dest = wanted.get(f.name)
            if dest is None:
                raise StepError(
                    f"mappings[{i}]: the destination has no field '{f.name}'", field=f"config.mappings.{i}.to"
                )
            if dest.type != f.type:
                raise StepError(
                    f"mappings[{i}]: gives {f.type} but the destination's '{f.name}' is {dest.type}; cast it",
                    field=f"config.mappings.{i}.cast",
                )
        mapped = {f.name for f in fields}
        missing = [d.name for d in config.destination_schema if not d.nullable and d.name not in mapped]
        if missing:
            raise StepError(
                f"required destination field(s) {', '.join(repr(n) for n in missing)} are not mapped",
                field="config.destination_schema",
            )

    def _output_schema(self, config: MapFieldsConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        _, fields = self._mapped(config, schema)
        self._check_destination(config, fields)
        return derive_schema(schema, fields, renamed={m.source: m.to for m in config.mappings})

    def _apply(self, config: MapFieldsConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        for i, m in enumerate(config.mappings):
            if m.source not in table.column_names:
                error = unknown_column(m.source, table.column_names, field=f"config.mappings.{i}.from")
                raise StepError(f"mappings[{i}]: {error.message}", field=error.field)
        before, after = self._mapped(config, schema)
        out = pa.Table.from_arrays(
            [table.column(m.source) for m in config.mappings], names=[f.name for f in before]
        )
        rejected = []
        casts = {m.to: str(m.cast) for m in config.mappings if m.cast is not None}
        if casts:
            staged = StreamSchema(name=schema.name, fields=tuple(before))
            try:
                output = get_step_type("cast").apply(
                    {"columns": casts, "on_error": config.on_error}, Batch(out), staged
                )
            except StepError as exc:
                index = next(
                    (i for i, m in enumerate(config.mappings) if exc.field == f"config.columns.{m.to}"), None
                )
                if index is None:
                    raise
                raise StepError(
                    f"mappings[{index}]: {exc.message}", field=f"config.mappings.{index}.cast"
                ) from None
            out, rejected = output.batch.table, output.rejected
        for i, (m, f) in enumerate(zip(config.mappings, after, strict=True)):
            if m.default is not None:
                position = out.schema.get_field_index(f.name)
                filled = pc.fill_null(out.column(position), _default_scalar(m.default, f.type, i))
                out = out.set_column(position, pa.field(f.name, arrow_type_for(f.type)), filled)
        return StepOutput(Batch(out, stream=batch.stream), rejected=rejected)
