"""JSON records to Arrow for the REST source: the records of a page, the schema inferred from a first
page, and the incremental cursor compared as the cursor field's type."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import Field as SchemaField
from aggregator.dataplane import FieldType, StreamSchema, SyncMode, arrow_type_for
from apps.connectors.base import ConnectorError
from apps.connectors.sdk.http import MISSING, Page, resolve_path

from .config import RestStreamConfig


def records_of(page: Page, stream: RestStreamConfig, page_number: int) -> list[Any]:
    """The records at the stream's `records_path` in a page: a list, one object as one record, null as
    none."""
    records = resolve_path(page.body, stream.records_path)
    if records is MISSING:
        raise ConnectorError(
            f"Stream {stream.name!r}: no {stream.records_path!r} in the body of page {page_number}; check "
            "records_path.",
            field="streams",
        )
    if records is None:
        return []
    if isinstance(records, dict):
        return [records]
    if not isinstance(records, list):
        raise ConnectorError(
            f"Stream {stream.name!r}: {stream.records_path or 'the body'!r} of page {page_number} is not a "
            "list of records; check records_path.",
            field="streams",
        )
    return records


_ZONED = r"(Z|z|[+-]\d\d(:?\d\d)?)$"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _cast_text(arr: pa.Array, field_type: FieldType) -> pa.Array:
    """Text to a date or datetime column; values with an offset are instants, naive ones are UTC."""
    target = arrow_type_for(field_type)
    if field_type != FieldType.DATETIME:
        return pc.cast(arr, target)
    zoned = pc.fill_null(pc.match_substring_regex(arr, _ZONED), False)
    if pc.all(zoned).as_py():
        return pc.cast(arr, target)
    if not pc.any(zoned).as_py():
        return pc.cast(pc.cast(arr, pa.timestamp("us")), target)
    with_zone = pc.cast(pc.if_else(zoned, arr, None), target)
    naive = pc.cast(pc.cast(pc.if_else(zoned, None, arr), pa.timestamp("us")), target)
    return pc.if_else(zoned, with_zone, naive)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _convert_fast(values: list[Any], field_type: FieldType) -> pa.Array:
    """The column in one pass of pyarrow's converter; raises when any value does not fit the type (the
    checks on the inferred type are what keep 2.5 out of an integer and true out of a number column)."""
    target = arrow_type_for(field_type)
    if field_type == FieldType.JSON:
        return pa.array([None if v is None else _json_text(v) for v in values], type=target)
    inferred = pa.array(values, from_pandas=False)
    t = inferred.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), target)
    if field_type == FieldType.STRING and pa.types.is_string(t):
        return inferred
    if field_type == FieldType.INTEGER and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return pc.cast(inferred, target)  # a safe cast: 2.0 passes, 2.5 raises
    if field_type == FieldType.NUMBER and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return pc.cast(inferred, target)
    if field_type == FieldType.BOOLEAN and pa.types.is_boolean(t):
        return inferred
    if field_type in (FieldType.DATE, FieldType.DATETIME) and pa.types.is_string(t):
        return _cast_text(inferred, field_type)
    raise pa.ArrowInvalid(f"{t} is not {field_type}")


def _fits(value: Any, field_type: FieldType) -> bool:
    if value is None or field_type in (FieldType.STRING, FieldType.JSON):
        return True
    if isinstance(value, bool):
        return field_type == FieldType.BOOLEAN
    if field_type == FieldType.INTEGER:
        if isinstance(value, float):
            return value.is_integer() and _INT64_MIN <= value <= _INT64_MAX
        return isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX
    if field_type == FieldType.NUMBER:
        return isinstance(value, int | float)
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        if not isinstance(value, str):
            return False
        try:
            _cast_text(pa.array([value]), field_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return True
    return False


def convert_column(values: list[Any], field_type: FieldType) -> tuple[pa.Array, list[int]]:
    """One field of a page as an Arrow array of its type, and the positions of the values that do not fit
    (they are null in the array). A string field takes any scalar as its text and a nested value as JSON."""
    try:
        return _convert_fast(values, field_type), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        pass
    # Only a page with a misfit gets here: find the misfits value by value, convert the rest.
    if field_type == FieldType.STRING:
        text = [v if v is None or isinstance(v, str) else _json_text(v) for v in values]
        return pa.array(text, type=pa.string()), []
    bad = [i for i, v in enumerate(values) if not _fits(v, field_type)]
    bad_set = set(bad)
    cleaned = [None if i in bad_set else v for i, v in enumerate(values)]
    if field_type == FieldType.INTEGER:
        cleaned = [int(v) if isinstance(v, float) else v for v in cleaned]
    elif field_type == FieldType.NUMBER:
        cleaned = [None if v is None else float(v) for v in cleaned]  # ints past int64 too
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        return _cast_text(pa.array(cleaned, type=pa.string()), field_type), bad
    return pa.array(cleaned, type=arrow_type_for(field_type)), bad


def _describe(value: Any) -> str:
    text = _json_text(value)
    return text if len(text) <= 80 else text[:77] + "..."


def records_to_table(records: list[Any], schema: StreamSchema) -> tuple[pa.Table, list[tuple[int, str, Any]]]:
    """A page of records cast to the stream schema: the table of the records that fit, and
    (0-based index, reason, record) of those that do not. Fields the schema does not have are ignored."""
    rejected: dict[int, tuple[str, Any]] = {}
    objects = records
    if not all(isinstance(r, dict) for r in records):
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                rejected[i] = ("record is not a JSON object", r)
        objects = [r if isinstance(r, dict) else {} for r in records]
    columns: list[pa.Array] = []
    for field in schema.fields:
        values = [r.get(field.name) for r in objects]
        array, bad = convert_column(values, field.type)
        columns.append(array)
        for i in bad:
            reason = f"{field.name}: {_describe(values[i])} is not a valid {field.type}"
            rejected.setdefault(i, (reason, records[i]))
    table = pa.Table.from_arrays(columns, schema=schema.arrow_schema())
    if rejected:
        table = table.filter(pa.array([i not in rejected for i in range(len(records))]))
    return table, [(i, reason, raw) for i, (reason, raw) in sorted(rejected.items())]


def infer_schema(
    name: str, records: list[Any], stream: RestStreamConfig, *, supports_incremental: bool
) -> StreamSchema:
    """Field types from the records of a first page: pyarrow's inference per field over the union of the
    records' keys (in first-seen order), nested objects and arrays as JSON, mixed types as string."""
    objects = [r for r in records if isinstance(r, dict)]
    names: dict[str, None] = {}
    for record in objects:
        names.update(dict.fromkeys(record))
    for declared in (*stream.primary_key, *([stream.cursor_field] if stream.cursor_field else [])):
        if objects and declared not in names:
            raise ConnectorError(
                f"Stream {name!r}: field {declared!r} is not in the records of the first page.",
                field="streams",
            )
        names.setdefault(declared, None)
    names.update(dict.fromkeys(stream.field_types))
    arrow_fields = []
    for field_name in names:
        try:
            inferred = pa.array([r.get(field_name) for r in objects], from_pandas=False).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            inferred = pa.string()
        arrow_fields.append(pa.field(field_name, inferred))
    inferred_schema = StreamSchema.from_arrow(name, pa.schema(arrow_fields))
    fields = tuple(
        SchemaField(name=f.name, type=stream.field_types.get(f.name, f.type)) for f in inferred_schema.fields
    )
    candidates = [
        f.name
        for f in fields
        if f.type in (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
    ]
    if stream.cursor_field and stream.cursor_field not in candidates:
        candidates.insert(0, stream.cursor_field)
    modes = (
        (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL) if supports_incremental else (SyncMode.FULL_REFRESH,)
    )
    return StreamSchema(
        name=name,
        fields=fields,
        primary_key=tuple(stream.primary_key),
        cursor_field=stream.cursor_field,
        cursor_candidates=tuple(candidates),
        supported_sync_modes=modes,
    )


def _json_state_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def advance_cursor(column: pa.ChunkedArray, field_type: FieldType, current: Any) -> Any:
    """The larger of the stored cursor value and the column's maximum, as a JSON value."""
    if len(column) == 0:
        return current
    page_max = pc.max(column)
    if not page_max.is_valid:
        return current
    if current is not None and not pc.greater(page_max, cursor_scalar(current, field_type)).as_py():
        return current
    return _json_state_value(page_max.as_py())


def cursor_scalar(value: Any, field_type: FieldType) -> pa.Scalar:
    """A stored cursor value as a scalar of the cursor column's type, to compare the column with."""
    target = arrow_type_for(field_type)
    try:
        if isinstance(value, str) and field_type in (FieldType.DATE, FieldType.DATETIME):
            return _cast_text(pa.array([value]), field_type)[0]
        return pc.cast(pa.array([value]), target)[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        raise ConnectorError(
            f"The saved cursor value is not a valid {field_type}; reset the stream's state."
        ) from None
