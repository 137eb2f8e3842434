"""The SQL destination flow every database destination follows, and the parts of it that must not differ
between them.

1. **validate** (`plan_write`, here): the schema and table names fit the dialect, every field is a valid
   column name and none is a platform column (`RESERVED_COLUMNS`: `_ag_run_id`, `_ag_loaded_at`), the key
   fields are in the stream, a merge has a key. Refused before a connection is opened, with the same
   message whichever the destination.
2. **stage**: the batches go in with the driver's bulk path (PostgreSQL COPY, MySQL LOAD DATA LOCAL INFILE
   or multi-row INSERTs, DuckDB Arrow scans), each row stamped with the run columns (`stamp_table` for
   Arrow-native writers).
3. **apply** the write mode: append, overwrite (a new table swapped in atomically) or merge (upsert on the
   key from a staging table, the last row of a key winning).
4. **remove a run's rows** (`remove_run_rows`, by `_ag_run_id`) when the executor retries or rolls back a
   run: `run_rows_delete` builds the statement.

Steps 2 and 3 are the dialect's (`plugins/postgres/destination.py`, `plugins/mysql/writer.py`,
`plugins/duckdb_dest.py`): the transaction model is the database's own (one transaction in PostgreSQL and
DuckDB; a scratch table with an undo list in MySQL, whose DDL commits implicitly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import (
    LOADED_AT_COLUMN,
    RESERVED_COLUMNS,
    RUN_ID_COLUMN,
    FieldType,
    StreamSchema,
    WriteMode,
    arrow_type_for,
)
from apps.connectors.base import ConnectorError
from apps.connectors.sdk.sql import Dialect


def check_reserved(names: Sequence[str]) -> None:
    """The platform-column rule, one for every destination: a stream may not bring a column the platform
    writes itself (its value would be overwritten or, worse, silently dropped)."""
    for name in names:
        if name in RESERVED_COLUMNS:
            raise ConnectorError(
                f"Field {name!r} is reserved for the platform (every written row gets "
                f"{', '.join(RESERVED_COLUMNS)}): rename or drop it before the destination.",
                field="stream",
            )


def check_stream_columns(
    stream_schema: StreamSchema,
    key: list[str],
    write_mode: WriteMode,
    *,
    max_len: int | None = None,
    dialect: Dialect | None = None,
) -> None:
    """Step 1 for the stream: valid column names (by `dialect`, or at most `max_len` characters), no
    platform column, the key in the stream, a key for a merge."""
    for name in stream_schema.field_names:
        fits = (
            dialect.fits(name)
            if dialect
            else bool(name) and "\x00" not in name and len(name) <= (max_len or 0)
        )
        if not fits:
            raise ConnectorError(
                f"Field {name!r} of stream {stream_schema.name!r} is not a valid column name.", field="stream"
            )
    check_reserved(stream_schema.field_names)
    missing = [k for k in key if k not in stream_schema.field_names]
    if missing:
        raise ConnectorError(f"Primary key field {missing[0]!r} is not in the stream.", field="primary_key")
    if WriteMode(write_mode) == WriteMode.MERGE and not key:
        raise ConnectorError("A merge needs a primary key.", field="primary_key")


@dataclass(frozen=True)
class WritePlan:
    """A validated write: where, how, on which key."""

    schema: str
    table: str
    mode: WriteMode
    key: list[str]


def plan_write(
    dialect: Dialect,
    stream_schema: StreamSchema,
    write_mode: WriteMode | str,
    primary_key: list[str] | None,
    *,
    schema: str,
    table: str | None,
    schema_field: str = "schema",
) -> WritePlan:
    """Step 1 of every SQL destination's write."""
    mode = WriteMode(write_mode)
    schema_name = dialect.identifier(schema, schema_field)
    table_name = dialect.identifier(table or stream_schema.name, "table")
    key = list(primary_key or stream_schema.primary_key)
    check_stream_columns(stream_schema, key, mode, dialect=dialect)
    return WritePlan(schema=schema_name, table=table_name, mode=mode, key=key)


def run_rows_delete(dialect: Dialect, target: str, placeholder: str) -> str:
    """Step 4's statement: the rows of one run, by `_ag_run_id` (the run id a bound parameter)."""
    return f"DELETE FROM {target} WHERE {dialect.quote(RUN_ID_COLUMN)} = {placeholder}"  # noqa: S608


def stamp_table(table: pa.Table, schema: StreamSchema, run_id: str, loaded_at: Any) -> pa.Table:
    """The batch in the stream's column order and types (missing columns null), plus the two run columns
    as constant arrays: vectorised, whatever the number of rows."""
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for field in schema.fields:
        target = arrow_type_for(field.type)
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, target))
            continue
        column = table.column(field.name)
        if column.type != target:
            try:
                column = pc.cast(column, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise ConnectorError(
                    f"Column {field.name!r} of stream {schema.name!r} does not hold {field.type} values "
                    f"({str(exc).splitlines()[0]}).",
                    field="stream",
                ) from None
        arrays.append(column)
    n = table.num_rows
    arrays.append(pa.repeat(pa.scalar(run_id, pa.string()), n))
    arrays.append(pa.repeat(pa.scalar(loaded_at, arrow_type_for(FieldType.DATETIME)), n))
    names = [*schema.field_names, RUN_ID_COLUMN, LOADED_AT_COLUMN]
    return pa.Table.from_arrays(arrays, names=names)
