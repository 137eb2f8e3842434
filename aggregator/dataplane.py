"""The data plane: the one typed contract between sources, transformations, destinations and the executor.

A source yields, in order, `Batch`es of rows, `RejectedRows` (rows it could not read, with the reason and
where they were) and `StateCheckpoint`s. A destination consumes batches. The engine commits a checkpoint
only after the destination has durably written every batch yielded before it.

Why a `Batch` wraps a pyarrow Table instead of being a bare DataFrame: the native connectors are columnar
end to end (pyarrow's CSV reader in, pyarrow's CSV writer into PostgreSQL COPY out), and a round trip
through pandas for every batch costs more than the load itself on wide tables. So a batch carries its
Arrow table and hands out a pandas DataFrame on demand (`batch.frame`, Arrow-backed dtypes, converted once
and cached); a step that works in pandas builds its result with `Batch.from_frame`. Either way a batch
never holds more than its chunk of rows, so memory is bounded by `chunk_size`, not by the stream.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd
import pyarrow as pa

# 50,000 rows of a 20-column table is about 10-40 MB in Arrow: large enough that per-batch overhead
# (a COPY round trip, a pandas conversion) is amortised, small enough that a worker holding a few batches
# in flight stays far below a few hundred MB.
DEFAULT_CHUNK_SIZE = 50_000

# Columns every destination adds to every row it writes, so a row can be traced to (and removed for) its run.
RUN_ID_COLUMN = "_ag_run_id"
LOADED_AT_COLUMN = "_ag_loaded_at"
RESERVED_COLUMNS = (RUN_ID_COLUMN, LOADED_AT_COLUMN)


class FieldType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    JSON = "json"


class SyncMode(StrEnum):
    FULL_REFRESH = "full_refresh"
    INCREMENTAL = "incremental"


class WriteMode(StrEnum):
    APPEND = "append"
    OVERWRITE = "overwrite"
    MERGE = "merge"


# Arrow types a batch uses for each field type. Datetimes are UTC instants; a naive source value is taken
# as UTC. JSON values travel as their JSON text, so every destination can store them without a nested type.
_ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.INTEGER: pa.int64(),
    FieldType.NUMBER: pa.float64(),
    FieldType.BOOLEAN: pa.bool_(),
    FieldType.DATE: pa.date32(),
    FieldType.DATETIME: pa.timestamp("us", tz="UTC"),
    FieldType.JSON: pa.string(),
}


def arrow_type_for(field_type: FieldType) -> pa.DataType:
    return _ARROW_TYPES[field_type]


def field_type_of(arrow_type: pa.DataType) -> FieldType:
    """The field type an Arrow column maps to (what discovery reports for an inferred column)."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return FieldType.BOOLEAN
    if pa.types.is_integer(t):
        return FieldType.INTEGER
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return FieldType.NUMBER
    if pa.types.is_date(t):
        return FieldType.DATE
    if pa.types.is_timestamp(t):
        return FieldType.DATETIME
    if pa.types.is_nested(t):
        return FieldType.JSON
    return FieldType.STRING


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType = FieldType.STRING
    nullable: bool = True
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": str(self.type), "nullable": self.nullable}
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Field:
        return cls(
            name=str(data["name"]),
            type=FieldType(data.get("type", FieldType.STRING)),
            nullable=bool(data.get("nullable", True)),
            description=str(data.get("description", "")),
        )


@dataclass(frozen=True, slots=True)
class StreamSchema:
    """A stream as discovery reports it: its fields and what the engine needs to sync it."""

    name: str
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...] = ()
    cursor_field: str | None = None
    # Fields that could serve as an incremental cursor (monotonic types: integer, number, date, datetime).
    cursor_candidates: tuple[str, ...] = ()
    supported_sync_modes: tuple[SyncMode, ...] = (SyncMode.FULL_REFRESH,)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"Stream {self.name!r} has duplicate field names.")
        for key in (*self.primary_key, *([self.cursor_field] if self.cursor_field else [])):
            if key not in names:
                raise ValueError(f"Stream {self.name!r} has no field {key!r}.")

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(f.name, arrow_type_for(f.type), nullable=f.nullable) for f in self.fields])

    @classmethod
    def from_arrow(cls, name: str, schema: pa.Schema, **extra: Any) -> StreamSchema:
        fields = tuple(Field(name=f.name, type=field_type_of(f.type), nullable=f.nullable) for f in schema)
        candidates = tuple(
            f.name
            for f in fields
            if f.type in (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
        )
        extra.setdefault("cursor_candidates", candidates)
        return cls(name=name, fields=fields, **extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fields": [f.to_dict() for f in self.fields],
            "primary_key": list(self.primary_key),
            "cursor_field": self.cursor_field,
            "cursor_candidates": list(self.cursor_candidates),
            "supported_sync_modes": [str(m) for m in self.supported_sync_modes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamSchema:
        return cls(
            name=str(data["name"]),
            fields=tuple(Field.from_dict(f) for f in data.get("fields", [])),
            primary_key=tuple(data.get("primary_key") or ()),
            cursor_field=data.get("cursor_field"),
            cursor_candidates=tuple(data.get("cursor_candidates") or ()),
            supported_sync_modes=tuple(
                SyncMode(m) for m in data.get("supported_sync_modes") or [SyncMode.FULL_REFRESH]
            ),
        )


class Batch:
    """At most `chunk_size` rows of one stream. Immutable: steps make new batches."""

    __slots__ = ("_frame", "stream", "table")

    def __init__(self, table: pa.Table, *, stream: str = "") -> None:
        self.table = table
        self.stream = stream
        self._frame: pd.DataFrame | None = None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, stream: str = "") -> Batch:
        batch = cls(pa.Table.from_pandas(frame, preserve_index=False), stream=stream)
        return batch

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], schema: StreamSchema) -> Batch:
        return cls(pa.Table.from_pylist(list(records), schema=schema.arrow_schema()), stream=schema.name)

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame with Arrow-backed dtypes (converted once, then cached)."""
        if self._frame is None:
            self._frame = self.table.to_pandas(types_mapper=pd.ArrowDtype)
        return self._frame

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return f"Batch(stream={self.stream!r}, rows={self.num_rows}, columns={self.table.column_names})"


@dataclass(frozen=True, slots=True)
class StateCheckpoint:
    """Where a stream's read got to; JSON-serialisable. The engine stores it per pipeline and stream once
    everything yielded before it has been written."""

    stream: str
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row a source or step could not accept. `line` is the physical line in a file (1-based) where the
    source can tell, `row` the 1-based record number; `raw` is what was read, as text."""

    reason: str
    raw: dict[str, Any] | list[Any] | str
    line: int | None = None
    row: int | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "row": self.row,
            "reason": self.reason,
            "raw": self.raw,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class RejectedRows:
    """Rejected rows of one stream, routed by the engine to the run's quarantine."""

    stream: str
    rows: tuple[RejectedRow, ...]

    def __len__(self) -> int:
        return len(self.rows)


ReadItem = Batch | StateCheckpoint | RejectedRows


@dataclass(slots=True)
class WriteResult:
    """What a destination reports after it durably committed a write."""

    table: str
    rows_written: int = 0
    batches: int = 0
    bytes_sent: int = 0
    columns_added: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def rechunk(tables: Iterable[pa.Table | pa.RecordBatch], chunk_size: int) -> Iterator[pa.Table]:
    """Regroup a stream of Arrow pieces into tables of exactly `chunk_size` rows (the last may be shorter)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    pending: list[pa.Table] = []
    pending_rows = 0
    for piece in tables:
        if isinstance(piece, pa.RecordBatch):
            piece = pa.Table.from_batches([piece])
        if piece.num_rows == 0:
            continue
        pending.append(piece)
        pending_rows += piece.num_rows
        while pending_rows >= chunk_size:
            combined = pa.concat_tables(pending)
            yield combined.slice(0, chunk_size)
            rest = combined.slice(chunk_size)
            pending = [rest] if rest.num_rows else []
            pending_rows = rest.num_rows
    if pending_rows:
        yield pa.concat_tables(pending)


def utc_now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)
