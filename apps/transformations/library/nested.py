"""JSON steps: flatten objects held as JSON text into columns, explode arrays into rows.

JSON values travel as text in the data plane. Both steps read them with DuckDB's JSON functions over the
batch's Arrow column (vectorised, in a sandboxed in-memory connection); text that is not valid JSON is
treated as missing, or failed/rejected as the config says.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import Batch, Field, FieldType, RejectedRow, StreamSchema
from apps.transformations.steps import StepConfig, StepError, StepOutput, StepType, derive_schema, register

from ._util import TEXT_TYPES, column, duck, new_name, quote_literal, set_column, text, typed_field

_DUCK_TYPES = {
    FieldType.INTEGER: "BIGINT",
    FieldType.NUMBER: "DOUBLE",
    FieldType.BOOLEAN: "BOOLEAN",
    FieldType.DATE: "DATE",
    FieldType.DATETIME: "TIMESTAMPTZ",
}
MAX_DEPTH_LIMIT = 20


def _typed(text_expr: str, field_type: FieldType) -> str:
    """DuckDB SQL turning JSON scalar text into the type, null where it is not one (DuckDB would round
    2.5 to an integer 3, so integers must look like integers first)."""
    if field_type == FieldType.STRING:
        return text_expr
    cast = f"TRY_CAST({text_expr} AS {_DUCK_TYPES[field_type]})"
    if field_type == FieldType.INTEGER:
        return f"CASE WHEN regexp_full_match({text_expr}, '-?[0-9]+') THEN {cast} END"
    if field_type == FieldType.BOOLEAN:
        return f"CASE WHEN {text_expr} IN ('true', 'false') THEN {cast} END"
    return cast


def _valid_json(values: pa.Array) -> pa.Array:
    """Per row: true for valid JSON, false for text that is not, null for null."""
    result = duck("SELECT json_valid(c) AS ok FROM v", {"v": pa.table({"c": values})})
    return result.column("ok").combine_chunks()


def _bad_json(
    step: str, config_on_error: str, table: pa.Table, values: pa.Array, name: str
) -> tuple[pa.Table, list[RejectedRow]]:
    """Apply the on_error policy to rows whose text is not JSON: keep them (their values become null),
    fail, or reject them to quarantine."""
    if config_on_error == "null":
        return table, []
    bad = pc.fill_null(pc.invert(_valid_json(values)), False)
    if not pc.any(bad).as_py():
        return table, []
    if config_on_error == "fail":
        row = pc.index(bad, True).as_py()
        shown = str(values[row].as_py())[:80]
        raise StepError(
            f"column '{name}' value '{shown}' is not valid JSON (row index {row} of the batch)",
            field="config.column",
        )
    rows = table.filter(bad).to_pylist()
    rejected = [
        RejectedRow(
            reason=f"column '{name}' is not valid JSON", raw={k: _plain(v) for k, v in r.items()}, source=step
        )
        for r in rows
    ]
    return table.filter(pc.invert(bad)), rejected


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# --- flatten -------------------------------------------------------------------------------------------


class FlattenJsonConfig(StepConfig):
    column: str = PydanticField(
        title="Column", description="A json (or text) column holding objects.", examples=["payload"]
    )
    fields: dict[str, FieldType] = PydanticField(
        min_length=1,
        title="Fields",
        description=(
            "Path → type of each value to bring out, keys joined by dots ('customer.address.city'). A "
            "value of type json keeps its subtree as JSON text. The columns are declared here so that "
            "every run has the same schema, whatever keys a batch happens to hold."
        ),
        examples=[{"customer.id": "integer", "customer.address.city": "string", "items": "json"}],
    )
    max_depth: int = PydanticField(
        default=5,
        ge=1,
        le=MAX_DEPTH_LIMIT,
        title="Depth limit",
        description="The deepest path allowed (keys per path).",
    )
    separator: str = PydanticField(
        default="_", title="Separator", description="Joins the keys in column names."
    )
    prefix: str | None = PydanticField(
        default=None, title="Prefix", description="Column names start with this; default <column><separator>."
    )
    drop_source: bool = PydanticField(
        default=False,
        title="Drop the JSON column",
        description="Remove the JSON column once its values are out.",
    )
    on_error: Literal["null", "fail", "reject"] = PydanticField(
        default="null",
        title="Text that is not JSON",
        description="null: its fields are null; fail: stop the run; reject: send the row to quarantine.",
    )

    @model_validator(mode="after")
    def _paths(self) -> FlattenJsonConfig:
        for path in self.fields:
            keys = path.split(".")
            if any(not key for key in keys) or any('"' in key for key in keys):
                raise PydanticCustomError(
                    "bad_path", "'{path}' is not a path of keys joined by dots", {"path": path}
                )
            if len(keys) > self.max_depth:
                raise PydanticCustomError(
                    "too_deep",
                    "'{path}' is {n} keys deep, deeper than max_depth {d}",
                    {"path": path, "n": len(keys), "d": self.max_depth},
                )
            new_name(self.name_of(path))
        return self

    def name_of(self, path: str) -> str:
        prefix = self.prefix if self.prefix is not None else f"{self.column}{self.separator}"
        return prefix + self.separator.join(path.split("."))


def _json_path(path: str) -> str:
    return "$." + ".".join(f'"{key}"' for key in path.split("."))


@register
class FlattenJsonStep(StepType[FlattenJsonConfig]):
    slug = "flatten_json"
    title = "Flatten JSON"
    description = (
        "Brings values out of JSON objects into typed columns, one per declared path (up to max_depth keys "
        "deep). A missing key, a value of another type, or a JSON null gives null. "
        'Example: {"column": "payload", "fields": {"customer.id": "integer"}} adds payload_customer_id.'
    )
    category = "json"
    config_model = FlattenJsonConfig

    def _output_schema(self, config: FlattenJsonConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        typed_field(schema, config.column, "config.column", TEXT_TYPES, "json or text")
        kept = [f for f in schema.fields if not (config.drop_source and f.name == config.column)]
        names = {f.name for f in kept}
        new = []
        for path, field_type in config.fields.items():
            name = config.name_of(path)
            if name in names:
                raise StepError(
                    f"the path '{path}' would overwrite the column '{name}'", field=f"config.fields.{path}"
                )
            names.add(name)
            new.append(Field(name, field_type))
        return derive_schema(schema, [*kept, *new])

    def _apply(self, config: FlattenJsonConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        values = text(column(batch.table, config.column, "config.column"))
        table, rejected = _bad_json(self.slug, config.on_error, batch.table, values, config.column)
        if rejected:
            values = text(column(table, config.column, "config.column"))
        selects = []
        for i, (path, field_type) in enumerate(config.fields.items()):
            json_path = quote_literal(_json_path(path))
            if field_type == FieldType.JSON:
                expr = f"nullif(json_extract(c, {json_path})::VARCHAR, 'null')"
            else:
                expr = _typed(f"json_extract_string(c, {json_path})", field_type)
            selects.append(f"{expr} AS f{i}")
        # Invalid JSON is made null first: DuckDB's JSON functions raise on it even inside a CASE.
        query = (
            "WITH v AS (SELECT if(json_valid(c), c, NULL)::JSON AS c FROM src) "  # noqa: S608 - paths are quoted literals
            f"SELECT {', '.join(selects)} FROM v"
        )
        extracted = duck(query, {"src": pa.table({"c": values})})
        if config.drop_source:
            table = table.drop_columns([config.column])
        for i, (path, field_type) in enumerate(config.fields.items()):
            table = set_column(
                table, config.name_of(path), extracted.column(f"f{i}").combine_chunks(), field_type
            )
        return StepOutput(Batch(table, stream=batch.stream), rejected=rejected)


# --- explode -------------------------------------------------------------------------------------------


class ExplodeConfig(StepConfig):
    column: str = PydanticField(
        title="Column", description="A json (or text) column holding arrays.", examples=["tags"]
    )
    element_type: Literal["string", "integer", "number", "boolean", "json"] = PydanticField(
        default="string",
        title="Element type",
        description="The type of the elements; an element that is not of it becomes null (json keeps any).",
    )
    target: str | None = PydanticField(
        default=None, title="Element column", description="Default: the array column itself."
    )
    index_column: str | None = PydanticField(
        default=None,
        title="Position column",
        description="If given, an integer column with each element's position (from 0).",
    )
    keep_empty: bool = PydanticField(
        default=False,
        title="Keep rows without elements",
        description=(
            "Rows whose array is empty, null or not an array: keep one row with a null "
            "element (true) or drop them (false)."
        ),
    )

    @field_validator("target", "index_column")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else new_name(value)


@register
class ExplodeStep(StepType[ExplodeConfig]):
    slug = "explode"
    title = "Explode array"
    description = (
        "Turns each element of a JSON array into its own row, repeating the row's other columns. "
        'Example: {"column": "tags", "element_type": "string", "index_column": "tag_position"}.'
    )
    category = "json"
    config_model = ExplodeConfig

    def _output_schema(self, config: ExplodeConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        typed_field(schema, config.column, "config.column", TEXT_TYPES, "json or text")
        target = Field(config.target or config.column, FieldType(config.element_type))
        fields = [target if f.name == target.name else f for f in schema.fields]
        if target.name not in schema.field_names:
            fields.append(target)
        if config.index_column is not None:
            if config.index_column in {f.name for f in fields}:
                raise StepError(
                    f"the column '{config.index_column}' exists already", field="config.index_column"
                )
            fields.append(Field(config.index_column, FieldType.INTEGER))
        # One input row becomes several: the primary key no longer identifies a row.
        return derive_schema(
            StreamSchema(
                name=schema.name,
                fields=schema.fields,
                cursor_field=schema.cursor_field,
                cursor_candidates=schema.cursor_candidates,
                supported_sync_modes=schema.supported_sync_modes,
            ),
            fields,
        )

    def _elements(self, config: ExplodeConfig, values: pa.Array) -> pa.ListArray:
        if config.element_type == "json":
            each = "list_transform(json_extract(c, '$[*]')::VARCHAR[], lambda x: nullif(x, 'null'))"
        elif config.element_type == "string":
            each = "json_extract_string(c, '$[*]')"
        else:
            typed = _typed("x", FieldType(config.element_type))
            each = f"list_transform(json_extract_string(c, '$[*]'), lambda x: {typed})"
        query = (
            "WITH v AS (SELECT if(json_valid(c), c, NULL)::JSON AS c FROM src) "  # noqa: S608 - fixed text
            f"SELECT CASE WHEN json_type(c) = 'ARRAY' THEN {each} END AS l FROM v"
        )
        return duck(query, {"src": pa.table({"c": values})}).column("l").combine_chunks()

    def _apply(self, config: ExplodeConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        lists = self._elements(config, text(column(table, config.column, "config.column")))
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        counts = np.maximum(lengths, 1) if config.keep_empty else lengths
        rows = np.repeat(np.arange(len(lengths)), counts)
        # Position of each output row within its input row, and where its element sits in the flat values.
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
        position = np.arange(len(rows)) - np.repeat(starts, counts)
        offsets = lists.offsets.to_numpy()
        flat_index = np.repeat(offsets[:-1] - offsets[0], counts) + position
        has = position < np.repeat(lengths, counts)
        flat = lists.flatten()
        elements = (
            flat.take(pa.array(np.where(has, flat_index, 0), mask=~has))
            if len(flat)
            else pa.nulls(len(rows), flat.type)
        )
        out = table.take(pa.array(rows, pa.int64()))
        out = set_column(out, config.target or config.column, elements, FieldType(config.element_type))
        if config.index_column is not None:
            out = set_column(
                out, config.index_column, pa.array(np.where(has, position, 0), mask=~has), FieldType.INTEGER
            )
        return StepOutput(Batch(out, stream=batch.stream))
