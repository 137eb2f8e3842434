"""PostgreSQL: a destination (`postgres`: bulk loads with COPY, one transaction per write) and a source
(`postgres_source`).

Source: tables, views and materialized views of `schema` (plus `source_schemas`) and read-only custom
queries become streams. A read is one `COPY (SELECT ...) TO STDOUT (FORMAT csv)` in a READ ONLY
transaction (one consistent snapshot), streamed from the server and parsed by pyarrow's CSV reader, then
cast to the stream's types; values that do not fit (a date of 'infinity', say) are rejected with their row
number, not dropped.
Incremental reads take rows whose `cursor_field` is above the state's value, in cursor order, and checkpoint
the new highest value once, at the end of the stream. Rows whose cursor is NULL are read by a full refresh
only. Custom queries must be one SELECT; besides that check they run as a parenthesised subquery of COPY in
the READ ONLY transaction, so they cannot write.

Destination:

Connection: host/port/database/user/password/sslmode fields, never a DSN or free-form options, so a config
cannot smuggle in libpq parameters. The host goes through the SSRF guard, and libpq connects to the address
that was checked (`hostaddr=`, with `host=` kept for TLS verification).

Loading: each batch is written as CSV by pyarrow (`pyarrow.csv.write_csv`, columnar, no Python per row) and
streamed into `COPY ... FROM STDIN (FORMAT csv)`. Everything a write does happens in one transaction, which
is what keeps the target intact on failure: a failed write rolls back, and the staging tables it made,
having been created in that transaction, disappear with it.

- append: COPY straight into the target table. Nothing is visible to readers until the commit and a failure
  rolls every row back, so a staging table would only double the I/O.
- overwrite: COPY into a new table, then in the same transaction rename the live table away, rename the new
  one into its place and drop the old one. Readers see the old rows until the commit and the new ones after,
  never an empty or mixed table. The new table does not inherit the old one's grants, and views that depend
  on the old table make the drop fail (the write then fails and changes nothing): merge or append suit
  tables that views depend on.
- merge: COPY into a temporary staging table, then `INSERT ... SELECT DISTINCT ON (pk) ... ON CONFLICT (pk)
  DO UPDATE` (the last occurrence of a key in the load wins); a unique index on the key is created when the
  table has none. Only merge creates that index: append and overwrite take rows as they come.

The table is created when missing, new fields become new columns, and a column is widened (integer to
double precision, anything to text, date to timestamptz) when the incoming data needs it. Every row gets
`_ag_run_id` and `_ag_loaded_at`. Identifiers are always composed with `psycopg.sql.Identifier`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql
from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from aggregator import ssrf
from aggregator.dataplane import (
    DEFAULT_CHUNK_SIZE,
    LOADED_AT_COLUMN,
    RESERVED_COLUMNS,
    RUN_ID_COLUMN,
    Batch,
    FieldType,
    ReadItem,
    RejectedRow,
    RejectedRows,
    StateCheckpoint,
    StreamSchema,
    SyncMode,
    WriteMode,
    WriteResult,
    rechunk,
)
from aggregator.dataplane import (
    Field as StreamField,
)
from aggregator.logging import get_logger
from apps.connectors.base import (
    CheckResult,
    ConnectorConfig,
    ConnectorError,
    ConnectorKind,
    ConnectorType,
    TableColumn,
    TableDescription,
    secret_field,
    secret_value,
)

logger = get_logger(__name__)

PG_TYPES: dict[FieldType, str] = {
    FieldType.STRING: "text",
    FieldType.INTEGER: "bigint",
    FieldType.NUMBER: "double precision",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATE: "date",
    FieldType.DATETIME: "timestamp with time zone",
    FieldType.JSON: "jsonb",
}
# (existing column type, incoming field type) -> the wider type the column becomes.
WIDENINGS: dict[tuple[str, FieldType], str] = {
    ("smallint", FieldType.NUMBER): "double precision",
    ("integer", FieldType.NUMBER): "double precision",
    ("bigint", FieldType.NUMBER): "double precision",
    ("real", FieldType.NUMBER): "double precision",
    ("smallint", FieldType.INTEGER): "bigint",
    ("integer", FieldType.INTEGER): "bigint",
    ("date", FieldType.DATETIME): "timestamp with time zone",
    ("timestamp without time zone", FieldType.DATETIME): "timestamp with time zone",
}
TEXT_TYPES = {"text", "character varying", "character"}
MAX_IDENTIFIER_BYTES = 63
# Rows encoded and handed to COPY at a time: the server starts on a batch's first rows while the rest are
# still being encoded, and per-call overhead stays negligible (about 1.5 MB of CSV per slice).
COPY_SLICE_ROWS = 10_000
_HOST_RE = re.compile(r"^[A-Za-z0-9._:\-\[\]]+$")


_SINGLE_SELECT = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


class CustomQuery(ConnectorConfig):
    name: str = Field(title="Stream name", min_length=1, max_length=128)
    sql: str = Field(title="SQL", description="One SELECT (or WITH ... SELECT) statement.", min_length=1)

    @field_validator("sql")
    @classmethod
    def _one_select(cls, value: str) -> str:
        # Defence in depth: the query also runs inside a READ ONLY transaction, as a parenthesised subquery
        # of COPY, where a second statement is a syntax error.
        body = value.strip().rstrip(";").strip()
        if not _SINGLE_SELECT.match(body) or ";" in body:
            raise ValueError("Must be a single SELECT statement.")
        return body


class PostgresConfig(ConnectorConfig):
    host: str = Field(
        title="Host", description="Name or address of the server.", min_length=1, max_length=253
    )
    port: int = Field(default=5432, ge=1, le=65535, title="Port")
    database: str = Field(title="Database", min_length=1, max_length=63)
    user: str = Field(title="User", min_length=1, max_length=63)
    password: SecretStr | None = secret_field(default=None, title="Password")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="prefer", title="SSL mode", description="libpq's sslmode; use verify-full across networks."
    )
    db_schema: str = Field(
        default="public",
        alias="schema",
        title="Schema",
        description="Tables are written in this schema (created if missing).",
        min_length=1,
        max_length=63,
    )
    connect_timeout: int = Field(default=10, ge=1, le=60, title="Connect timeout (s)")

    model_config = {**ConnectorConfig.model_config, "populate_by_name": True}

    @field_validator("host")
    @classmethod
    def _plain_host(cls, value: str) -> str:
        # One host name or address: no socket paths, no host lists, nothing libpq would read as an option.
        if not _HOST_RE.match(value) or value.startswith("-"):
            raise ValueError("Must be one host name or IP address.")
        # A refused address is refused when saved; a name is checked again when a connection opens.
        try:
            ssrf.check_literal_host(value)
        except ssrf.SSRFBlocked as exc:
            raise PydanticCustomError("address_refused", "{reason}", {"reason": str(exc)}) from None
        return value


class PostgresSourceConfig(PostgresConfig):
    db_schema: str = Field(
        default="public",
        alias="schema",
        title="Schema",
        description="The tables and views of this schema become streams.",
        min_length=1,
        max_length=63,
    )
    source_schemas: list[str] = Field(
        default_factory=list,
        title="More schemas",
        description="Further schemas whose tables and views become streams.",
    )
    queries: list[CustomQuery] = Field(
        default_factory=list,
        title="Custom queries",
        description="Each read-only SELECT becomes a stream of its own.",
    )
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")


class ManagedPostgresConfig(PostgresSourceConfig):
    """A connection the platform made itself (the Local warehouse, `local_warehouse.py`): its host is the
    platform's own server, not an address anyone typed, so it skips the SSRF guard that every user-supplied
    host goes through. No registered type has it as its config model, so no API body can produce one."""

    @field_validator("host")
    @classmethod
    def _plain_host(cls, value: str) -> str:
        # Replaces the parent's check of what a user typed: this host comes from the platform's settings.
        return value


def _identifier_ok(name: str, field: str) -> str:
    if not name or len(name.encode()) > MAX_IDENTIFIER_BYTES or "\x00" in name:
        raise ConnectorError(f"{name!r} is not a valid PostgreSQL name (1 to 63 bytes).", field=field)
    return name


def _libpq_reason(exc: Exception, password: str | None) -> tuple[str, str]:
    """A short, secret-free reason from a libpq error, and the config field it points at."""
    text = str(exc).strip()
    if password:
        text = text.replace(password, "[redacted]")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[0] if lines else type(exc).__name__
    # libpq prefixes every attempt with "connection to server at "host" (addr), port N failed:".
    message = re.sub(
        r'^(connection failed: )?(connection to server at "[^"]*"( \([^)]*\))?, port \d+ failed: )?',
        "",
        message,
    )
    message = re.sub(r"^(FATAL|ERROR):\s+", "", message).strip()
    lowered = message.lower()
    if "password" in lowered:
        field = "password"
    elif "database" in lowered and "does not exist" in lowered:
        field = "database"
    elif "role" in lowered and "does not exist" in lowered:
        field = "user"
    elif "ssl" in lowered:
        field = "sslmode"
    else:
        field = "host"
    return message, field


def _connect(config: PostgresConfig) -> psycopg.Connection[Any]:
    password = secret_value(config.password)
    hostaddr = None
    if not isinstance(config, ManagedPostgresConfig):
        try:
            hostaddr = ssrf.vetted_address(config.host, config.port)
        except ssrf.SSRFBlocked as exc:
            raise ConnectorError(f"host: {exc}", field="host") from None
        except ValueError as exc:  # HostLookupError: the name does not resolve
            raise ConnectorError(f"host: {exc}", field="host") from None
    try:
        return psycopg.connect(
            host=config.host,
            hostaddr=hostaddr,
            port=config.port,
            dbname=config.database,
            user=config.user,
            password=password or None,
            sslmode=config.sslmode,
            connect_timeout=config.connect_timeout,
            application_name="aggregator",
            options="-c TimeZone=UTC",
        )
    except psycopg.Error as exc:
        message, field = _libpq_reason(exc, password)
        raise ConnectorError(
            f"Cannot connect to {config.host}:{config.port}: {message}", field=field
        ) from None


# Catalogue reads take milliseconds; a server that stops answering must not hold an API request longer.
CATALOGUE_TIMEOUT_MS = 10_000


@contextlib.contextmanager
def _catalogue(config: PostgresConfig) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor in a READ ONLY transaction with a statement timeout, for reading the catalogue. Driver
    errors become ConnectorErrors with the password scrubbed."""
    password = secret_value(config.password)
    conn = _connect(config)
    try:
        conn.read_only = True
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(CATALOGUE_TIMEOUT_MS),))
            yield cur
    except psycopg.Error as exc:
        message, _ = _libpq_reason(exc, password)
        raise ConnectorError(f"Reading the tables of {config.host}:{config.port} failed: {message}") from None
    finally:
        conn.close()


def _table_columns(cur: psycopg.Cursor[Any], schema: str, table: str) -> dict[str, str] | None:
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    )
    rows = cur.fetchall()
    return {name: data_type for name, data_type in rows} if rows else None


def _column_defs(fields: Iterable[tuple[str, str]]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg)) for name, pg in fields
    )


# Tables this destination creates fill the run columns by default from the write's transaction: the run id
# from a transaction-local setting, the load time as the transaction's start. COPY then sends only the data
# columns, which saves the server parsing a timestamp per row (about a quarter of its COPY time on the
# benchmark table). Tables made elsewhere, without these defaults, get both columns sent explicitly.
RUN_SETTING = "aggregator.run_id"
RUN_DEFAULTS = {RUN_ID_COLUMN: f"current_setting('{RUN_SETTING}', true)", LOADED_AT_COLUMN: "now()"}


def _all_columns(schema: StreamSchema, *, with_defaults: bool = False) -> list[tuple[str, str]]:
    run_columns = [(RUN_ID_COLUMN, "text"), (LOADED_AT_COLUMN, "timestamp with time zone")]
    if with_defaults:
        run_columns = [(name, f"{pg_type} DEFAULT {RUN_DEFAULTS[name]}") for name, pg_type in run_columns]
    return [(f.name, PG_TYPES[f.type]) for f in schema.fields] + run_columns


def _has_run_defaults(cur: psycopg.Cursor[Any], schema: str, table: str) -> bool:
    cur.execute(
        "SELECT column_name, column_default FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s AND column_name IN (%s, %s)",
        (schema, table, RUN_ID_COLUMN, LOADED_AT_COLUMN),
    )
    defaults = dict(cur.fetchall())
    return RUN_SETTING in (defaults.get(RUN_ID_COLUMN) or "") and "now()" in (
        defaults.get(LOADED_AT_COLUMN) or ""
    )


class _CsvEncoder:
    """Turns batches into CSV bytes for COPY, with the run columns appended. Columnar throughout.

    Formatting timestamps is by far the slowest part of pyarrow's CSV writer (about 1 µs a value, more than
    every other column of a typical table together), so temporal columns are dictionary-encoded first and
    only their distinct values are formatted: event times repeat a lot, and the run's own `_ag_loaded_at`
    is a single value. The writer expands a dictionary column as cheaply as a string column."""

    def __init__(self, schema: StreamSchema, run_id: str, loaded_at: Any, *, with_run_columns: bool) -> None:
        self.schema = schema
        self.with_run_columns = with_run_columns
        self.options = pacsv.WriteOptions(include_header=False, batch_size=8192)
        self.run_id = pa.array([run_id], pa.string())
        stamp = pa.array([loaded_at], pa.timestamp("us", tz="UTC"))
        self.loaded_at = stamp.cast(pa.string())

    @staticmethod
    def _constant(value: pa.Array, n: int) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), value)

    @staticmethod
    def _temporal_as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
        chunks = []
        for chunk in column.chunks:
            encoded = pc.dictionary_encode(chunk)
            chunks.append(
                pa.DictionaryArray.from_arrays(encoded.indices, encoded.dictionary.cast(pa.string()))
            )
        return pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()))

    def _column(self, table: pa.Table, name: str, field_type: FieldType) -> pa.Array | pa.ChunkedArray:
        if name not in table.column_names:
            return pa.nulls(table.num_rows, pa.string())
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            if pa.types.is_timestamp(column.type) and column.type.tz is None:
                column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))  # naive values are UTC
            return self._temporal_as_text(column)
        if pa.types.is_nested(column.type) or (
            field_type == FieldType.JSON and not pa.types.is_string(column.type)
        ):
            # Rare path (JSON fields from nested types): Python per value, to produce JSON text.
            return pa.array(
                [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.string()
            )
        return column

    def encode(self, table: pa.Table) -> pa.Buffer:
        n = table.num_rows
        columns = [self._column(table, f.name, f.type) for f in self.schema.fields]
        names = list(self.schema.field_names)
        if self.with_run_columns:
            columns += [self._constant(self.run_id, n), self._constant(self.loaded_at, n)]
            names += [RUN_ID_COLUMN, LOADED_AT_COLUMN]
        sink = pa.BufferOutputStream()
        pacsv.write_csv(pa.Table.from_arrays(columns, names=names), sink, write_options=self.options)
        return sink.getvalue()


class PostgresDestination(ConnectorType):
    slug = "postgres"
    title = "PostgreSQL"
    kind = ConnectorKind.DESTINATION
    description = (
        "Bulk loads into PostgreSQL tables with COPY: append, overwrite (atomic swap) or merge (upsert)."
    )
    config_model = PostgresConfig

    def check(self, config: PostgresConfig) -> CheckResult:
        started = time.monotonic()
        with _connect(config) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]  # type: ignore[index]
            cur.execute(
                "SELECT n.oid IS NOT NULL, COALESCE(has_schema_privilege(n.oid, 'CREATE'), false), "
                "has_database_privilege(current_database(), 'CREATE') "
                "FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = %s",
                (config.db_schema,),
            )
            exists, can_write_schema, can_create_schema = cur.fetchone()  # type: ignore[misc]
        if exists and not can_write_schema:
            return CheckResult(
                ok=False, message=f"schema: {config.user} may not create tables in {config.db_schema}."
            )
        if not exists and not can_create_schema:
            return CheckResult(
                ok=False, message=f"schema: {config.db_schema} does not exist and cannot be created."
            )
        return CheckResult(
            ok=True,
            message=f"Connected to PostgreSQL {version}; schema {config.db_schema} is writable.",
            duration_s=round(time.monotonic() - started, 3),
        )

    def write(
        self,
        config: PostgresConfig,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        write_mode: WriteMode,
        primary_key: list[str] | None,
        run_id: str,
        *,
        table: str | None = None,
    ) -> WriteResult:
        started = time.monotonic()
        write_mode = WriteMode(write_mode)
        schema_name = _identifier_ok(config.db_schema, "schema")
        table_name = _identifier_ok(table or stream_schema.name, "table")
        key = list(primary_key or stream_schema.primary_key)
        for name in stream_schema.field_names:
            _identifier_ok(name, "stream")
            if name in RESERVED_COLUMNS:
                raise ConnectorError(f"Field {name!r} is reserved for the platform.", field="stream")
        missing_key = [k for k in key if k not in stream_schema.field_names]
        if missing_key:
            raise ConnectorError(
                f"Primary key field {missing_key[0]!r} is not in the stream.", field="primary_key"
            )
        if write_mode == WriteMode.MERGE and not key:
            raise ConnectorError("A merge needs a primary key.", field="primary_key")

        result = WriteResult(table=f"{schema_name}.{table_name}")
        password = secret_value(config.password)
        suffix = secrets.token_hex(4)
        conn = _connect(config)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config(%s, %s, true), now()", (RUN_SETTING, run_id))
                loaded_at = cur.fetchone()[1]  # type: ignore[index]

                def encoder(*, with_run_columns: bool) -> _CsvEncoder:
                    return _CsvEncoder(stream_schema, run_id, loaded_at, with_run_columns=with_run_columns)

                self._ensure_schema(cur, schema_name)
                existing = _table_columns(cur, schema_name, table_name)
                target = sql.Identifier(schema_name, table_name)
                if write_mode == WriteMode.OVERWRITE:
                    self._overwrite(
                        cur,
                        config,
                        stream_schema,
                        batches,
                        encoder(with_run_columns=False),
                        key,
                        table_name,
                        existing,
                        suffix,
                        result,
                    )
                else:
                    if existing is None:
                        cur.execute(
                            sql.SQL("CREATE TABLE {} ({})").format(
                                target, _column_defs(_all_columns(stream_schema, with_defaults=True))
                            )
                        )
                        if write_mode == WriteMode.MERGE:
                            self._unique_index(cur, schema_name, table_name, key, suffix)
                    else:
                        self._evolve(cur, target, stream_schema, existing, result)
                    if write_mode == WriteMode.APPEND:
                        explicit = existing is not None and not _has_run_defaults(
                            cur, schema_name, table_name
                        )
                        self._copy(cur, target, batches, encoder(with_run_columns=explicit), result)
                    else:
                        self._merge(
                            cur,
                            schema_name,
                            table_name,
                            stream_schema,
                            batches,
                            encoder(with_run_columns=False),
                            key,
                            existing,
                            suffix,
                            result,
                        )
            conn.commit()
        except ConnectorError:
            conn.rollback()
            raise
        except psycopg.Error as exc:
            conn.rollback()
            message, _ = _libpq_reason(exc, password)
            logger.warning(
                "postgres_write_failed", table=result.table, write_mode=str(write_mode), error=message
            )
            raise ConnectorError(f"Writing {result.table} failed: {message}", field="table") from None
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()
        result.duration_s = round(time.monotonic() - started, 3)
        logger.info(
            "postgres_write_committed",
            table=result.table,
            write_mode=str(write_mode),
            rows=result.rows_written,
            batches=result.batches,
            run_id=run_id,
        )
        return result

    def remove_run_rows(self, config: PostgresConfig, table: str, run_id: str) -> int:
        """Delete the rows of one run (by `_ag_run_id`) in one transaction; a table that does not exist, or
        has no run column, holds none."""
        schema_name = _identifier_ok(config.db_schema, "schema")
        table_name = _identifier_ok(table, "table")
        password = secret_value(config.password)
        conn = _connect(config)
        try:
            with conn.transaction(), conn.cursor() as cur:
                columns = _table_columns(cur, schema_name, table_name)
                if columns is None or RUN_ID_COLUMN not in columns:
                    return 0
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                        sql.Identifier(schema_name, table_name), sql.Identifier(RUN_ID_COLUMN)
                    ),
                    (run_id,),
                )
                removed = cur.rowcount
        except psycopg.Error as exc:
            message, _ = _libpq_reason(exc, password)
            raise ConnectorError(
                f"Removing run {run_id} from {schema_name}.{table_name} failed: {message}", field="table"
            ) from None
        finally:
            conn.close()
        logger.info(
            "postgres_run_rows_removed", table=f"{schema_name}.{table_name}", run_id=run_id, rows=removed
        )
        return removed

    # --- existing tables (for mapping fields onto them) --------------------------------------------------

    describes_tables = True

    def list_tables(self, config: PostgresConfig) -> list[str]:
        schema_name = _identifier_ok(config.db_schema, "schema")
        with _catalogue(config) as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
                (schema_name,),
            )
            return [row[0] for row in cur.fetchall()]

    def describe_table(self, config: PostgresConfig, table: str) -> TableDescription | None:
        schema_name = _identifier_ok(config.db_schema, "schema")
        table_name = _identifier_ok(table, "table")
        with _catalogue(config) as cur:
            # Identity, serial (a nextval default) and generated columns are filled by the server.
            cur.execute(
                "SELECT c.column_name, c.data_type, c.udt_name, c.is_nullable = 'YES', "
                "  c.column_default IS NOT NULL OR c.is_identity = 'YES' OR c.is_generated = 'ALWAYS' "
                "FROM information_schema.columns c JOIN information_schema.tables t "
                "  ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                "WHERE c.table_schema = %s AND c.table_name = %s AND t.table_type = 'BASE TABLE' "
                "ORDER BY c.ordinal_position",
                (schema_name, table_name),
            )
            rows = cur.fetchall()
            if not rows:
                return None
            cur.execute(
                "SELECT a.attname::text FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, pos) "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s ORDER BY k.pos",
                (schema_name, table_name),
            )
            key = tuple(row[0] for row in cur.fetchall())
        columns = tuple(
            TableColumn(
                name=name,
                type=_field_type(data_type),
                nullable=bool(nullable),
                has_default=bool(has_default),
                primary_key=name in key,
                db_type=udt_name if data_type in ("USER-DEFINED", "ARRAY") else data_type,
            )
            for name, data_type, udt_name, nullable, has_default in rows
        )
        return TableDescription(schema=schema_name, name=table_name, columns=columns, primary_key=key)

    # --- steps (all inside the write's transaction) ----------------------------------------------------

    @staticmethod
    def _ensure_schema(cur: psycopg.Cursor[Any], schema_name: str) -> None:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema_name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema_name)))

    @staticmethod
    def _unique_index(
        cur: psycopg.Cursor[Any], schema_name: str, table_name: str, key: list[str], suffix: str
    ) -> None:
        index = f"{table_name[:40]}_ag_pk_{suffix}"
        cur.execute(
            sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
                sql.Identifier(index),
                sql.Identifier(schema_name, table_name),
                sql.SQL(", ").join(map(sql.Identifier, key)),
            )
        )

    @staticmethod
    def _has_unique_index(
        cur: psycopg.Cursor[Any], schema_name: str, table_name: str, key: list[str]
    ) -> bool:
        cur.execute(
            """
            SELECT array_agg(a.attname::text ORDER BY a.attname)
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
            WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL
            GROUP BY i.indexrelid
            """,
            (schema_name, table_name),
        )
        wanted = sorted(key)
        return any(row[0] == wanted for row in cur.fetchall())

    @staticmethod
    def _evolve(
        cur: psycopg.Cursor[Any],
        target: sql.Identifier,
        stream_schema: StreamSchema,
        existing: dict[str, str],
        result: WriteResult,
    ) -> None:
        for name, pg_type in _all_columns(stream_schema):
            if name not in existing:
                cur.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        target, sql.Identifier(name), sql.SQL(pg_type)
                    )
                )
                result.columns_added.append(name)
        for f in stream_schema.fields:
            current = existing.get(f.name)
            if current is None:
                continue
            wider = WIDENINGS.get((current, f.type))
            if wider is None and f.type == FieldType.STRING and current not in TEXT_TYPES:
                wider = "text"
            if wider is not None:
                cur.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
                        target, sql.Identifier(f.name), sql.SQL(wider), sql.Identifier(f.name), sql.SQL(wider)
                    )
                )

    @staticmethod
    def _copy(
        cur: psycopg.Cursor[Any],
        target: sql.Identifier,
        batches: Iterable[Batch],
        encoder: _CsvEncoder,
        result: WriteResult,
    ) -> None:
        names = list(encoder.schema.field_names)
        if encoder.with_run_columns:
            names += [RUN_ID_COLUMN, LOADED_AT_COLUMN]
        columns = sql.SQL(", ").join(map(sql.Identifier, names))
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, columns)
        # A sender thread writes to COPY while this thread reads and encodes the next batch (pyarrow releases
        # the GIL), so the source, the encoder and the server all work at once. The hand-over queue holds at
        # most four encoded slices: memory stays bounded however large the stream.
        with cur.copy(statement) as copy:
            pending: queue.Queue[pa.Buffer | None] = queue.Queue(maxsize=4)
            failures: list[BaseException] = []

            def send() -> None:
                while (payload := pending.get()) is not None:
                    if failures:
                        continue  # drain, so the producer never blocks on a dead sender
                    try:
                        copy.write(memoryview(payload))
                    except BaseException as exc:
                        failures.append(exc)

            sender = threading.Thread(target=send, name="postgres-copy", daemon=True)
            sender.start()
            try:
                for batch in batches:
                    if failures:
                        break
                    if batch.num_rows == 0:
                        continue
                    # Encoded in slices, so the server starts on a batch before all of it is encoded.
                    for offset in range(0, batch.num_rows, COPY_SLICE_ROWS):
                        payload = encoder.encode(batch.table.slice(offset, COPY_SLICE_ROWS))
                        pending.put(payload)
                        result.bytes_sent += payload.size
                    result.rows_written += batch.num_rows
                    result.batches += 1
            finally:
                pending.put(None)
                sender.join()
            if failures:
                raise failures[0]

    def _overwrite(
        self,
        cur: psycopg.Cursor[Any],
        config: PostgresConfig,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        encoder: _CsvEncoder,
        key: list[str],
        table_name: str,
        existing: dict[str, str] | None,
        suffix: str,
        result: WriteResult,
    ) -> None:
        schema_name = config.db_schema
        new_name = f"_ag_new_{table_name[:40]}_{suffix}"
        old_name = f"_ag_old_{table_name[:40]}_{suffix}"
        new = sql.Identifier(schema_name, new_name)
        cur.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                new, _column_defs(_all_columns(stream_schema, with_defaults=True))
            )
        )
        self._copy(cur, new, batches, encoder, result)
        if existing is not None:
            cur.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    sql.Identifier(schema_name, table_name), sql.Identifier(old_name)
                )
            )
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(table_name)))
        if existing is not None:
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema_name, old_name)))

    def _merge(
        self,
        cur: psycopg.Cursor[Any],
        schema_name: str,
        table_name: str,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        encoder: _CsvEncoder,
        key: list[str],
        existing: dict[str, str] | None,
        suffix: str,
        result: WriteResult,
    ) -> None:
        target = sql.Identifier(schema_name, table_name)
        if existing is not None and not self._has_unique_index(cur, schema_name, table_name, key):
            try:
                self._unique_index(cur, schema_name, table_name, key, suffix)
            except psycopg.errors.UniqueViolation:
                raise ConnectorError(
                    f"{schema_name}.{table_name} already holds duplicate values of the key "
                    f"({', '.join(key)}); a merge cannot use it.",
                    field="primary_key",
                ) from None
        staging = sql.Identifier(f"_ag_stage_{table_name[:40]}_{suffix}")
        # A temporary table: no WAL, private to this session, gone at commit or rollback.
        cur.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ({}, _ag_seq bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP"
            ).format(staging, _column_defs(_all_columns(stream_schema, with_defaults=True)))
        )
        loaded = WriteResult(table=result.table)
        self._copy(cur, staging, batches, encoder, loaded)
        result.batches, result.bytes_sent = loaded.batches, loaded.bytes_sent
        null_key = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in key)
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(staging, null_key))
        nulls = cur.fetchone()[0]  # type: ignore[index]
        if nulls:
            raise ConnectorError(
                f"{nulls} rows have an empty primary key ({', '.join(key)}).", field="primary_key"
            )
        names = [name for name, _ in _all_columns(stream_schema)]
        column_list = sql.SQL(", ").join(map(sql.Identifier, names))
        key_list = sql.SQL(", ").join(map(sql.Identifier, key))
        updates = [n for n in names if n not in key]
        statement = sql.SQL(
            "INSERT INTO {target} ({columns}) SELECT DISTINCT ON ({key}) {columns} FROM {staging} "
            "ORDER BY {key}, _ag_seq DESC ON CONFLICT ({key}) DO UPDATE SET {updates}"
        ).format(
            target=target,
            columns=column_list,
            key=key_list,
            staging=staging,
            updates=sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in updates
            ),
        )
        cur.execute(statement)
        result.rows_written = cur.rowcount


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
                        StreamField(name=column, type=_field_type(data_type), nullable=nullable == "YES")
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
                    streams.append(_source_stream(name, fields, tuple(keys.get(name) or ())))
                for query in config.queries:
                    try:
                        cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(sql.SQL(query.sql)))  # type: ignore[arg-type]
                    except psycopg.Error as exc:
                        conn.rollback()
                        message, _ = _libpq_reason(exc, None)
                        raise ConnectorError(f"Query {query.name!r}: {message}", field="queries") from None
                    fields = [
                        StreamField(name=column.name, type=_OID_TYPES.get(column.type_code, FieldType.STRING))
                        for column in cur.description or []
                    ]
                    streams.append(_source_stream(query.name, fields, ()))
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
        rows with a cursor above the state's value, in cursor order; the new state is checkpointed once, at
        the end of the stream (a retry reads the stream again from the previous state)."""
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
        highest: Any = None
        rejected: list[RejectedRow] = []
        with _connect(config) as conn:
            conn.read_only = True
            with conn.cursor() as cur:
                try:
                    with cur.copy(statement) as copy:
                        for table in rechunk(self._typed_blocks(copy, stream, rejected), config.chunk_size):
                            if cursor_field and table.num_rows:
                                top = pc.max(table.column(cursor_field)).as_py()
                                highest = (
                                    top if highest is None or (top is not None and top > highest) else highest
                                )
                            yield Batch(table, stream=stream.name)
                except psycopg.Error as exc:
                    message, _ = _libpq_reason(exc, secret_value(config.password))
                    raise ConnectorError(f"Reading {stream.name}: {message}", field="stream") from None
        if rejected:
            yield RejectedRows(stream=stream.name, rows=tuple(rejected))
        if cursor_field:
            value: Any = highest if highest is not None else previous
            if isinstance(value, dt.date | dt.datetime):
                value = value.isoformat()
            elif isinstance(value, Decimal):
                value = str(value)
            yield StateCheckpoint(stream=stream.name, state={"cursor": value})

    @staticmethod
    def _typed_blocks(copy: Any, stream: StreamSchema, rejected: list[RejectedRow]) -> Iterator[pa.Table]:
        from apps.connectors.plugins.csv_file import cast_block

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


_OID_TYPES: dict[int, FieldType] = {
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


def _field_type(data_type: str) -> FieldType:
    # Everything else (text, varchar, uuid, time, interval, arrays, …) travels as text.
    return _DATA_TYPES.get(data_type, FieldType.STRING)


def _source_stream(name: str, fields: list[StreamField], primary_key: tuple[str, ...]) -> StreamSchema:
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
