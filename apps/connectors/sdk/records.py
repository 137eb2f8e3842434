"""Records to Arrow: the one conversion of Python values (parsed JSON records, spreadsheet cells, API
responses, pushed events) to the Arrow batches of a stream, and the type inference of discovery.

- `convert_values(values, field_type)`: one column of Python values to the Arrow type of the field,
  vectorised; strict (1.5 is not an integer, "x" is not a number, a datetime with a time of day is not a
  date); ISO text to dates and datetimes (naive datetimes are taken as UTC, `text_to_datetime`); objects
  and arrays to their JSON text for `json` fields. A value that does not convert raises one of
  `CONVERT_ERRORS`, the one list of conversion errors every source catches.
- `columns_to_table` / `records_to_table`: a batch table of the stream's schema plus {row index: reason} for
  the rows holding a value that does not convert (found by bisection: a clean chunk costs one conversion
  per column); keys not in the schema are ignored, missing keys are null. Past `MAX_BAD_VALUES_PER_CHUNK`
  bad values in one column of one chunk the column is not of its type at all and the read fails.
- `infer_field_type` / `build_schema`: the fields of a sample: booleans, integers, numbers (integers mixed
  with floats), ISO dates and datetimes (strings that all parse as such), strings, `json` for objects and
  arrays; mixed kinds of scalars become strings. `column_types` pins a field's type.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import Field as StreamField
from aggregator.dataplane import FieldType, StreamSchema, SyncMode, arrow_type_for
from apps.connectors.base import ConnectorError

# What a conversion of values to an Arrow type raises when a value does not convert (not a bug).
CONVERT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError)
# What a cast of a text column raises when a value does not parse as the type (the CSV source's casts).
TEXT_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError)
# Past this many bad values in one column of one chunk, the column is not of the declared type at all.
MAX_BAD_VALUES_PER_CHUNK = 1000
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)?$"
# A datetime text ending in an offset (or Z): an instant; without one it is naive, taken as UTC.
ZONED = r"(Z|z|[+-]\d\d(:?\d\d)?)$"


def short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def text_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return str(value)


def text_to_datetime(arr: pa.Array) -> pa.Array:
    """ISO text to UTC instants; values with an offset are converted, naive values are taken as UTC."""
    target = arrow_type_for(FieldType.DATETIME)
    zoned = pc.fill_null(pc.match_substring_regex(arr, ZONED), False)
    if pc.all(zoned).as_py():
        return pc.cast(arr, target)
    if not pc.any(zoned).as_py():
        return pc.cast(pc.cast(arr, pa.timestamp("us")), target)
    with_offset = pc.cast(pc.if_else(zoned, arr, None), target)
    naive = pc.cast(pc.cast(pc.if_else(zoned, None, arr), pa.timestamp("us")), target)
    return pc.if_else(zoned, with_offset, naive)


def convert_values(values: list[Any], field_type: FieldType) -> pa.Array:
    """Python values of one column to the Arrow type of `field_type`, vectorised; raises one of
    `CONVERT_ERRORS` if any value does not convert (never truncates: 1.5 is not an integer)."""
    target = arrow_type_for(field_type)
    if field_type == FieldType.JSON:
        return pa.array(
            [None if v is None else orjson.dumps(v, default=text_value).decode() for v in values],
            pa.string(),
        )
    if field_type == FieldType.STRING:
        try:
            return pa.array(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else text_value(v) for v in values], pa.string())
    arr = pa.array(values)  # inferred: a mix of kinds (1 and "a") raises here
    if pa.types.is_null(arr.type):
        return pa.nulls(len(values), target)
    if pa.types.is_boolean(arr.type) and field_type in (FieldType.INTEGER, FieldType.NUMBER):
        raise ValueError("a boolean is not a number")
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        if field_type == FieldType.DATETIME:
            return text_to_datetime(pc.utf8_trim_whitespace(arr))
        # Arrow's text casts are strict: "1.5" and "1.0" are not integers, "x" is not a number.
        return pc.cast(pc.utf8_trim_whitespace(arr), target)
    if field_type == FieldType.DATETIME and pa.types.is_timestamp(arr.type) and arr.type.tz is None:
        return pc.cast(arr, target)  # naive instants are taken as UTC
    if field_type == FieldType.DATE and pa.types.is_timestamp(arr.type):
        times = pc.subtract(arr, pc.floor_temporal(arr, unit="day"))
        if pc.any(pc.not_equal(times, pa.scalar(0, times.type))).as_py():
            raise ValueError("a datetime with a time of day is not a date")
        return pc.cast(pc.cast(arr, pa.timestamp("us")), pa.date32())
    return pc.cast(arr, target)


def _bad_positions(values: list[Any], field_type: FieldType, offset: int, out: list[int]) -> None:
    """Positions of the values that do not convert, by bisection: O(bad * log n) conversions."""
    if len(out) > MAX_BAD_VALUES_PER_CHUNK:
        return
    try:
        convert_values(values, field_type)
        return
    except CONVERT_ERRORS:
        pass
    if len(values) == 1:
        out.append(offset)
        return
    middle = len(values) // 2
    _bad_positions(values[:middle], field_type, offset, out)
    _bad_positions(values[middle:], field_type, offset + middle, out)


def columns_to_table(
    columns: dict[str, list[Any]], schema: StreamSchema, num_rows: int
) -> tuple[pa.Table, dict[int, str]]:
    """Build a batch table from Python column lists; returns the good rows and {row index: reason}."""
    arrays: list[pa.Array] = []
    bad: dict[int, str] = {}
    for field in schema.fields:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(num_rows, arrow_type_for(field.type)))
            continue
        try:
            arrays.append(convert_values(values, field.type))
            continue
        except CONVERT_ERRORS:
            pass
        positions: list[int] = []
        _bad_positions(values, field.type, 0, positions)
        if len(positions) > MAX_BAD_VALUES_PER_CHUNK:
            raise ConnectorError(
                f"Field {field.name!r} does not hold {field.type} values (over {MAX_BAD_VALUES_PER_CHUNK} "
                "failures in one chunk); set its type in column_types.",
                field="column_types",
            )
        for position in positions:
            bad.setdefault(
                position, f"{field.name}: {short_repr(values[position])} is not a valid {field.type}"
            )
        dropped = set(positions)
        arrays.append(convert_values([None if i in dropped else v for i, v in enumerate(values)], field.type))
    table = pa.Table.from_arrays(arrays, schema=schema.arrow_schema())
    if bad:
        table = table.filter(pa.array([i not in bad for i in range(num_rows)]))
    return table, bad


def records_to_table(records: list[dict[str, Any]], schema: StreamSchema) -> tuple[pa.Table, dict[int, str]]:
    columns = {f.name: [r.get(f.name) for r in records] for f in schema.fields}
    return columns_to_table(columns, schema, len(records))


def infer_field_type(values: list[Any]) -> FieldType:
    """The field type of a sample of Python values (None ignored); see the module."""
    kinds: set[str] = set()
    texts: list[str] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add("bool")
        elif isinstance(value, int):
            kinds.add("int")
        elif isinstance(value, float):
            kinds.add("float")
        elif isinstance(value, dt.datetime):
            kinds.add("datetime" if value.time() != dt.time(0) else "midnight")
        elif isinstance(value, dt.date):
            kinds.add("date")
        elif isinstance(value, str):
            kinds.add("str")
            texts.append(value)
        elif isinstance(value, (dict, list)):
            kinds.add("json")
        else:
            kinds.add("str")
    if not kinds:
        return FieldType.STRING
    if kinds == {"bool"}:
        return FieldType.BOOLEAN
    if kinds == {"int"}:
        return FieldType.INTEGER
    if kinds <= {"int", "float"}:
        return FieldType.NUMBER
    if kinds <= {"date", "midnight"}:
        return FieldType.DATE
    if kinds <= {"date", "midnight", "datetime"}:
        return FieldType.DATETIME
    if "json" in kinds:
        return FieldType.JSON if kinds == {"json"} else FieldType.STRING
    if kinds == {"str"}:
        arr = pa.array(texts, pa.string())
        for pattern, field_type in ((ISO_DATE, FieldType.DATE), (ISO_DATETIME, FieldType.DATETIME)):
            if pc.all(pc.match_substring_regex(arr, pattern)).as_py():
                try:
                    convert_values(texts, field_type)
                except CONVERT_ERRORS:
                    continue
                return field_type
    return FieldType.STRING


def build_schema(
    name: str,
    columns: dict[str, list[Any]],
    column_types: dict[str, FieldType],
    *,
    field: str = "column_types",
) -> StreamSchema:
    unknown = set(column_types) - set(columns)
    if unknown:
        raise ConnectorError(f"No field {sorted(unknown)[0]!r} in the data.", field=field)
    fields = tuple(
        StreamField(name=key, type=column_types.get(key) or infer_field_type(values))
        for key, values in columns.items()
    )
    candidates = tuple(
        f.name
        for f in fields
        if f.type in (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
    )
    modes = (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL) if candidates else (SyncMode.FULL_REFRESH,)
    return StreamSchema(name=name, fields=fields, cursor_candidates=candidates, supported_sync_modes=modes)
