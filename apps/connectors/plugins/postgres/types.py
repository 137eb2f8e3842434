"""PostgreSQL column types as the data plane's field types (catalogue names and result OIDs)."""

from __future__ import annotations

from aggregator.dataplane import Field as StreamField
from aggregator.dataplane import FieldType, StreamSchema, SyncMode

OID_TYPES: dict[int, FieldType] = {
    16: FieldType.BOOLEAN,
    20: FieldType.INTEGER,
    21: FieldType.INTEGER,
    23: FieldType.INTEGER,
    700: FieldType.NUMBER,
    701: FieldType.NUMBER,
    1700: FieldType.NUMBER,
    1082: FieldType.DATE,
    1114: FieldType.DATETIME,
    1184: FieldType.DATETIME,
    114: FieldType.JSON,
    3802: FieldType.JSON,
}
_DATA_TYPES: dict[str, FieldType] = {
    "smallint": FieldType.INTEGER,
    "integer": FieldType.INTEGER,
    "bigint": FieldType.INTEGER,
    "real": FieldType.NUMBER,
    "double precision": FieldType.NUMBER,
    "numeric": FieldType.NUMBER,
    "boolean": FieldType.BOOLEAN,
    "date": FieldType.DATE,
    "timestamp without time zone": FieldType.DATETIME,
    "timestamp with time zone": FieldType.DATETIME,
    "json": FieldType.JSON,
    "jsonb": FieldType.JSON,
}


def field_type(data_type: str) -> FieldType:
    # Everything else (text, varchar, uuid, time, interval, arrays, …) travels as text.
    return _DATA_TYPES.get(data_type, FieldType.STRING)


def source_stream(name: str, fields: list[StreamField], primary_key: tuple[str, ...]) -> StreamSchema:
    candidates = tuple(
        f.name
        for f in fields
        if f.type in (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
    )
    return StreamSchema(
        name=name,
        fields=tuple(fields),
        primary_key=primary_key,
        cursor_candidates=candidates,
        supported_sync_modes=(SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL),
    )
