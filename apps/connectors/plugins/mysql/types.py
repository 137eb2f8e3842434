"""MySQL column types as the data plane's field types, server text as Arrow columns, and cursor values
between the server and the state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import Field, FieldType, StreamSchema, arrow_type_for
from apps.connectors.base import ConnectorError
from apps.connectors.sdk.sql import MYSQL

_INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"})
_NUMBER_TYPES = frozenset({"decimal", "numeric", "float", "double", "real", "double precision"})
_CURSOR_TYPES = (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)


def _is_json_check(name: str, clause: str) -> bool:
    """Whether a CHECK constraint is MariaDB's mark of a JSON column (`json_valid(`col`)`, named after it)."""
    return clause.replace(" ", "").lower() == f"json_valid({MYSQL.spelled(name)})".lower()


def field_type_for(data_type: str, column_type: str, *, json_column: bool = False) -> FieldType:
    """The FieldType of a MySQL column, from information_schema's DATA_TYPE and COLUMN_TYPE."""
    data_type = data_type.lower()
    column_type = column_type.lower()
    if json_column or data_type == "json":
        return FieldType.JSON
    if data_type == "tinyint" and column_type.startswith("tinyint(1)"):
        return FieldType.BOOLEAN
    if data_type in _INTEGER_TYPES:
        return FieldType.INTEGER
    if data_type in _NUMBER_TYPES:
        return FieldType.NUMBER
    if data_type == "date":
        return FieldType.DATE
    if data_type in ("datetime", "timestamp"):
        return FieldType.DATETIME
    return FieldType.STRING


# PyMySQL's field type codes (pymysql.constants.FIELD_TYPE) for a custom query's result columns.
_CODE_TYPES: dict[int, FieldType] = {
    1: FieldType.INTEGER,  # TINY (boolean when its length is 1, see below)
    2: FieldType.INTEGER,  # SHORT
    3: FieldType.INTEGER,  # LONG
    8: FieldType.INTEGER,  # LONGLONG
    9: FieldType.INTEGER,  # INT24
    13: FieldType.INTEGER,  # YEAR
    0: FieldType.NUMBER,  # DECIMAL
    246: FieldType.NUMBER,  # NEWDECIMAL
    4: FieldType.NUMBER,  # FLOAT
    5: FieldType.NUMBER,  # DOUBLE
    10: FieldType.DATE,  # DATE
    14: FieldType.DATE,  # NEWDATE
    7: FieldType.DATETIME,  # TIMESTAMP
    12: FieldType.DATETIME,  # DATETIME
    245: FieldType.JSON,  # JSON (MySQL; MariaDB reports JSON columns as text)
}


def _text_array(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Binary columns: valid UTF-8 stays text, anything else is written as hex (lossless, and a string
        # is what the data plane has for bytes).
        return pa.array([_bytes_text(v) for v in values], type=pa.string())


def _bytes_text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + bytes(value).hex()
    return value


def _without_zero_dates(text: pa.Array) -> pa.Array:
    # MySQL's '0000-00-00' (and '0000-00-00 00:00:00') is its "no date": null here, as Connector/J does.
    zero = pc.fill_null(pc.starts_with(text, "0000-00-00"), False)
    return pc.if_else(zero, pa.scalar(None, pa.string()), text) if pc.any(zero).as_py() else text


def column_to_arrow(values: Sequence[Any], field: Field) -> pa.Array:
    """One column of server text values as the Arrow array of `field`'s type (one vectorised cast)."""
    text = _text_array(values)
    if field.type in (FieldType.STRING, FieldType.JSON):
        return text
    if field.type == FieldType.BOOLEAN:
        return pc.not_equal(text.cast(pa.int64()), 0)
    if field.type == FieldType.DATE:
        return _without_zero_dates(text).cast(pa.date32())
    if field.type == FieldType.DATETIME:
        return _without_zero_dates(text).cast(pa.timestamp("us")).cast(arrow_type_for(FieldType.DATETIME))
    return text.cast(arrow_type_for(field.type))


def rows_to_table(rows: Sequence[Sequence[Any]], stream: StreamSchema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in stream.fields]
    arrays = []
    for values, field in zip(columns, stream.fields, strict=True):
        try:
            arrays.append(column_to_arrow(values, field))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ConnectorError(
                f"Stream {stream.name!r}, column {field.name!r}: a value is not a valid {field.type} ({exc})."
            ) from None
    return pa.Table.from_arrays(arrays, schema=stream.arrow_schema())


def _cursor_state_value(raw: Any, field_type: FieldType) -> Any:
    """A cursor value as the server sent it (text) → its JSON form in the state."""
    raw = _bytes_text(raw)
    if field_type == FieldType.INTEGER:
        return int(raw)
    if field_type == FieldType.NUMBER:
        return float(raw)
    if field_type == FieldType.DATETIME:
        return dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC).isoformat()
    return raw


def _cursor_param(value: Any, field_type: FieldType, stream: str) -> Any:
    """The state's cursor value → the query parameter (naive UTC for datetimes: the session is UTC)."""
    if field_type == FieldType.DATETIME and isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConnectorError(f"Stream {stream!r}: state cursor {value!r} is not a datetime.") from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        return parsed
    return value
