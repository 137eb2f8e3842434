"""PostgreSQL source (`postgres_source`).

Tables, views and materialized views of `schema` (plus `source_schemas`) and read-only custom queries become
streams. A read is one `COPY (SELECT ...) TO STDOUT (FORMAT csv)` in a READ ONLY transaction (one consistent
snapshot), streamed from the server and parsed by pyarrow's CSV reader, then cast to the stream's types;
values that do not fit (a date of 'infinity', say) are rejected with their row number, not dropped.
Incremental reads take rows whose `cursor_field` is above the state's value, in cursor order, and follow the
SDK's cursor policy (`apps/connectors/sdk/cursor.py`): a checkpoint after each batch at the highest
complete cursor value, the last value at the end of the stream. Rows whose cursor is NULL are read by a full
refresh only. Custom queries must be one SELECT; besides that check they run as a parenthesised subquery of
COPY in the READ ONLY transaction, so they cannot write.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from aggregator.dataplane import (
    Batch,
    FieldType,
    ReadItem,
    RejectedRow,
    RejectedRows,
    StreamSchema,
    rechunk,
)
from aggregator.dataplane import Field as StreamField
from apps.connectors.base import CheckResult, ConnectorError, ConnectorKind, ConnectorType, secret_value
from apps.connectors.sdk.arrow import cast_block
from apps.connectors.sdk.cursor import IncrementalCursor

from .connection import PostgresSourceConfig, _connect, _libpq_reason
from .types import OID_TYPES, field_type, source_stream


class PostgresSource(ConnectorType):
    """A separate type from the destination (`postgres`): a pipeline names a connector per role, and a
    read-only database user is the usual thing for a source."""

    slug = "postgres_source"
    title = "PostgreSQL (source)"
    kind = ConnectorKind.SOURCE
    description = "Tables, views and read-only queries of a PostgreSQL database, streamed with COPY."
    config_model = PostgresSourceConfig

    def check(self, config: PostgresSourceConfig) -> CheckResult:
        started = time.monotonic()
        schemas = [config.db_schema, *config.source_schemas]
        with _connect(config) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]  # type: ignore[index]
            cur.execute(
                "SELECT s.name FROM unnest(%s::text[]) AS s(name) "
                "LEFT JOIN pg_namespace n ON n.nspname = s.name "
                "WHERE n.oid IS NULL OR NOT has_schema_privilege(n.oid, 'USAGE')",
                (schemas,),
            )
            unusable = [row[0] for row in cur.fetchall()]
        if unusable:
            return CheckResult(ok=False, message=f"schema: {unusable[0]} does not exist or is not readable.")
        return CheckResult(
            ok=True,
            message=f"Connected to PostgreSQL {version}; {len(schemas)} schema(s) readable.",
            duration_s=round(time.monotonic() - started, 3),
        )

    def discover(self, config: PostgresSourceConfig) -> list[StreamSchema]:
        schemas = [config.db_schema, *config.source_schemas]
        streams: list[StreamSchema] = []
        with _connect(config) as conn:
            conn.read_only = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable "
                    "FROM information_schema.columns c JOIN information_schema.tables t "
                    "  ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                    "WHERE c.table_schema = ANY(%s) AND t.table_type IN ('BASE TABLE', 'VIEW') "
                    "ORDER BY c.table_schema, c.table_name, c.ordinal_position",
                    (schemas,),
                )
                rows = cur.fetchall()
                # Materialized views are not in information_schema: the catalogue has them (relkind 'm'),
                # with the same type names once the modifiers are left out.
                cur.execute(
                    "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, NULL), "
                    "  CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                    "WHERE c.relkind = 'm' AND n.nspname = ANY(%s) AND has_table_privilege(c.oid, 'SELECT') "
                    "ORDER BY n.nspname, c.relname, a.attnum",
                    (schemas,),
                )
                rows += cur.fetchall()
                tables: dict[str, list[StreamField]] = {}
                for schema_name, table_name, column, data_type, nullable in rows:
                    tables.setdefault(f"{schema_name}.{table_name}", []).append(
                        StreamField(name=column, type=field_type(data_type), nullable=nullable == "YES")
                    )
                cur.execute(
                    "SELECT n.nspname || '.' || c.relname, "
                    "  array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum)) "
                    "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indisprimary AND n.nspname = ANY(%s) GROUP BY 1",
                    (schemas,),
                )
                keys = dict(cur.fetchall())
                for name, fields in tables.items():
                    streams.append(source_stream(name, fields, tuple(keys.get(name) or ())))
                for query in config.queries:
                    try:
                        cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(sql.SQL(query.sql)))  # type: ignore[arg-type]
                    except psycopg.Error as exc:
                        conn.rollback()
                        message, _ = _libpq_reason(exc, None)
                        raise ConnectorError(f"Query {query.name!r}: {message}", field="queries") from None
                    fields = [
                        StreamField(name=column.name, type=OID_TYPES.get(column.type_code, FieldType.STRING))
                        for column in cur.description or []
                    ]
                    streams.append(source_stream(query.name, fields, ()))
        return streams

    def _select(self, config: PostgresSourceConfig, stream: StreamSchema) -> sql.Composable:
        columns = sql.SQL(", ").join(map(sql.Identifier, stream.field_names))
        for query in config.queries:
            if query.name == stream.name:
                return sql.SQL("SELECT {} FROM ({}) AS q").format(columns, sql.SQL(query.sql))  # type: ignore[arg-type]
        schema_name, _, table_name = stream.name.partition(".")
        if not table_name:
            raise ConnectorError(f"No stream {stream.name!r} in this database.", field="stream")
        return sql.SQL("SELECT {} FROM {}").format(columns, sql.Identifier(schema_name, table_name))

    def read(
        self, config: PostgresSourceConfig, stream: StreamSchema, state: dict[str, Any] | None
    ) -> Iterator[ReadItem]:
        """One COPY (SELECT ...) TO STDOUT in a READ ONLY transaction (one consistent snapshot), parsed by
        pyarrow's streaming CSV reader: columnar, no Python per row. Incremental on `stream.cursor_field`:
        rows with a cursor above the state's value, in cursor order, with a checkpoint after each batch
        (the SDK's cursor policy), so a read stopped mid-stream resumes after its last complete batch."""
        select = self._select(config, stream)
        cursor_field = stream.cursor_field
        previous = (state or {}).get("cursor")
        if cursor_field:
            cursor = sql.Identifier(cursor_field)
            if previous is not None:
                select = sql.SQL("SELECT * FROM ({}) AS s WHERE {} > {} ORDER BY {}").format(
                    select, cursor, sql.Literal(previous), cursor
                )
            else:
                select = sql.SQL("SELECT * FROM ({}) AS s ORDER BY {}").format(select, cursor)
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(select)
        tracker = IncrementalCursor(stream.name)
        rejected: list[RejectedRow] = []
        with _connect(config) as conn:
            conn.read_only = True
            with conn.cursor() as cur:
                try:
                    with cur.copy(statement) as copy:
                        for table in rechunk(self._typed_blocks(copy, stream, rejected), config.chunk_size):
                            yield Batch(table, stream=stream.name)
                            if cursor_field and table.num_rows:
                                yield from tracker.after_batch(table.column(cursor_field))
                except psycopg.Error as exc:
                    message, _ = _libpq_reason(exc, secret_value(config.password))
                    raise ConnectorError(f"Reading {stream.name}: {message}", field="stream") from None
        if rejected:
            yield RejectedRows(stream=stream.name, rows=tuple(rejected))
        if cursor_field:
            yield from tracker.final()

    @staticmethod
    def _typed_blocks(copy: Any, stream: StreamSchema, rejected: list[RejectedRow]) -> Iterator[pa.Table]:
        try:
            reader = pacsv.open_csv(
                io.BufferedReader(_CopyStream(copy), buffer_size=1024 * 1024),
                read_options=pacsv.ReadOptions(column_names=stream.field_names, block_size=1024 * 1024),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in stream.field_names},
                    strings_can_be_null=True,
                    null_values=[""],
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return  # no rows (e.g. nothing new since the last incremental read)
            raise ConnectorError(f"Reading {stream.name}: {exc}", field="stream") from None
        booleans = [f.name for f in stream.fields if f.type == FieldType.BOOLEAN]
        seen = 0
        for block in reader:
            text = pa.Table.from_batches([block])
            for name in booleans:  # PostgreSQL writes booleans as t / f
                index = text.schema.get_field_index(name)
                column = pc.replace_substring_regex(text.column(name), "^t$", "true")
                text = text.set_column(index, name, pc.replace_substring_regex(column, "^f$", "false"))
            typed, bad = cast_block(text, stream)
            for index, reason in bad:
                rejected.append(
                    RejectedRow(reason=reason, raw=text.slice(index, 1).to_pylist()[0], row=seen + index + 1)
                )
            seen += text.num_rows
            yield typed


class _CopyStream(io.RawIOBase):
    """The chunks of a COPY TO STDOUT as a readable file, for pyarrow's CSV reader."""

    def __init__(self, copy: Any) -> None:
        self._chunks = iter(copy)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(bytes(next(self._chunks)))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
