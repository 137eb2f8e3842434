"""DuckDB destination: the embedded warehouse, one database file in the workspace's data directory,
`<AGGREGATOR_DATA_DIR>/workspaces/<workspace id>/` (`file_areas`).

Every write is one DuckDB transaction on a connection of its own:

- **append**: create the table if missing (or add the stream's new columns), insert every batch;
- **overwrite**: create a new table `<table>__ag_new_<hex>`, insert every batch into it, drop the old
  table and rename the new one into its place — readers see the old rows or the new ones, never a mix;
- **merge** (on the primary key): insert every batch into a temporary staging table, keep the last row of
  each key, delete the target's rows with those keys and insert the staged rows (NULL keys match NULL).
  A table that merge creates gets the key as its PRIMARY KEY.

A failure anywhere (a batch that cannot be read, a conversion error, a crash of the source feeding the
batches) rolls the transaction back: the table is as it was and no staging table is left behind.

Batches go in columnar: each Arrow table (with `_ag_run_id` and `_ag_loaded_at` appended as constant
columns) is registered with the connection under a random view name and inserted with
`INSERT INTO … BY NAME SELECT * FROM <view>` — DuckDB scans the Arrow memory directly, no row loop.

Column types: string VARCHAR, integer BIGINT, number DOUBLE, boolean BOOLEAN, date DATE, datetime
TIMESTAMPTZ, json JSON. New columns of the stream are added to an existing table; an existing BIGINT column
that now receives numbers is widened to DOUBLE, and any column that now receives strings to VARCHAR.
Columns of the table that the stream no longer has are left alone (null in the new rows).

DuckDB allows one process to write a database file at a time: a write while another process holds the
file fails with a clear error rather than waiting.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterable
from typing import ClassVar

import duckdb
from pydantic import Field

from aggregator.dataplane import (
    RUN_ID_COLUMN,
    Batch,
    FieldType,
    StreamSchema,
    WriteMode,
    WriteResult,
    utc_now,
)
from aggregator.logging import get_logger
from apps.connectors.base import (
    CheckResult,
    ConnectorConfig,
    ConnectorError,
    ConnectorKind,
    TableColumn,
    TableDescription,
)
from apps.connectors.sdk.destinations import check_stream_columns, plan_write, run_rows_delete, stamp_table
from apps.connectors.sdk.paths import DataPath, Kind, WorkspaceFilesConfig, WorkspaceFilesType
from apps.connectors.sdk.sql import DUCKDB

logger = get_logger(__name__)

MAX_IDENTIFIER_CHARS = DUCKDB.max_identifier
DUCKDB_TYPES = DUCKDB.types
RUN_COLUMN_TYPES = DUCKDB.run_columns
# SQL in this module is built from fixed text and identifiers passed through `quote_identifier` (the SDK's
# DuckDB dialect: double quotes, inner quotes doubled; the Python client has no helper for it and
# identifiers cannot be bound as parameters); values always travel as bound parameters or as Arrow data.
quote_identifier = DUCKDB.quote
identifier_ok = DUCKDB.identifier
# Still exported for files_dest, which takes them from here until it imports them from the SDK.
__all__ = ["DuckDbConfig", "DuckDbDestination", "check_stream_columns", "quote_identifier", "stamp_table"]


class DuckDbConfig(WorkspaceFilesConfig):
    database: DataPath = Field(
        title="Database file",
        description="Path of the DuckDB file in the workspace's data directory, e.g. `warehouse.duckdb` "
        "(created if missing).",
        min_length=1,
        max_length=1000,
    )
    db_schema: str = Field(
        default="main",
        alias="schema",
        title="Schema",
        description="Tables are written in this schema (created if missing).",
        min_length=1,
        max_length=MAX_IDENTIFIER_CHARS,
    )

    model_config = {**ConnectorConfig.model_config, "populate_by_name": True}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DuckDbDestination(WorkspaceFilesType):
    slug = "duckdb"
    title = "DuckDB"
    kind = ConnectorKind.DESTINATION
    description = "Tables in a DuckDB file in the workspace's data directory: the embedded warehouse."
    config_model = DuckDbConfig
    file_area: ClassVar[Kind] = "data"
    path_field: ClassVar[str] = "database"

    def _connect(self, config: DuckDbConfig) -> duckdb.DuckDBPyConnection:
        path = config.area.output(config.database, field="database")
        try:
            return duckdb.connect(str(path))
        except duckdb.Error as exc:
            message = config.area.scrub(_first_line(exc))
            raise ConnectorError(f"Cannot open {config.database}: {message}", field="database") from None

    def check(self, config: DuckDbConfig) -> CheckResult:
        started = time.monotonic()
        con = self._connect(config)
        try:
            con.execute("SELECT 1").fetchall()
        finally:
            con.close()
        return CheckResult(
            ok=True,
            message=f"DuckDB {duckdb.__version__}: {config.database} is ready.",
            duration_s=round(time.monotonic() - started, 3),
        )

    def write(
        self,
        config: DuckDbConfig,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        write_mode: WriteMode,
        primary_key: list[str] | None,
        run_id: str,
        *,
        table: str | None = None,
    ) -> WriteResult:
        started = time.monotonic()
        plan = plan_write(
            DUCKDB, stream_schema, write_mode, primary_key, schema=config.db_schema, table=table
        )
        write_mode, schema_name, table_name, key = plan.mode, plan.schema, plan.table, plan.key
        result = WriteResult(table=f"{schema_name}.{table_name}")
        writer = _Writer(stream_schema, run_id, result)
        con = self._connect(config)
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema_name)}")
            existing = self._columns(con, schema_name, table_name)
            target = f"{quote_identifier(schema_name)}.{quote_identifier(table_name)}"
            if write_mode == WriteMode.OVERWRITE:
                staging_name = f"{table_name}__ag_new_{secrets.token_hex(4)}"
                staging = f"{quote_identifier(schema_name)}.{quote_identifier(staging_name)}"
                con.execute(f"CREATE TABLE {staging} ({_column_defs(stream_schema)})")
                writer.insert(con, staging, batches)
                con.execute(f"DROP TABLE IF EXISTS {target}")
                con.execute(f"ALTER TABLE {staging} RENAME TO {quote_identifier(table_name)}")
            else:
                if existing is None:
                    pk = write_mode == WriteMode.MERGE
                    con.execute(f"CREATE TABLE {target} ({_column_defs(stream_schema, key if pk else [])})")
                else:
                    self._evolve(con, target, stream_schema, existing, key, result)
                if write_mode == WriteMode.APPEND:
                    writer.insert(con, target, batches)
                else:
                    self._merge(con, target, stream_schema, batches, key, writer)
            con.execute("COMMIT")
        except BaseException as exc:
            # The transaction may already be gone (DuckDB aborts it on some errors).
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            con.close()
            if isinstance(exc, duckdb.Error):
                logger.warning(
                    "duckdb_write_failed",
                    table=result.table,
                    write_mode=str(write_mode),
                    error=_first_line(exc),
                )
                raise ConnectorError(
                    f"Writing {result.table} failed: {_first_line(exc)}", field="table"
                ) from None
            raise
        con.close()
        result.duration_s = round(time.monotonic() - started, 3)
        logger.info(
            "duckdb_write_committed",
            table=result.table,
            write_mode=str(write_mode),
            rows=result.rows_written,
            batches=result.batches,
            run_id=run_id,
        )
        return result

    def remove_run_rows(self, config: DuckDbConfig, table: str, run_id: str) -> int:
        """Delete the rows of one run (by `_ag_run_id`) in one transaction; a database file or table that
        does not exist holds none (and is not created)."""
        schema_name = identifier_ok(config.db_schema, "schema")
        table_name = identifier_ok(table, "table")
        if not config.area.output(config.database, field="database", make_parent=False).exists():
            return 0
        con = self._connect(config)
        try:
            columns = self._columns(con, schema_name, table_name)
            if columns is None or RUN_ID_COLUMN not in columns:
                return 0
            target = f"{quote_identifier(schema_name)}.{quote_identifier(table_name)}"
            con.execute("BEGIN TRANSACTION")
            # DuckDB's DELETE answers with one row holding the number of rows deleted.
            deleted = con.execute(run_rows_delete(DUCKDB, target, "?"), [run_id]).fetchone()
            con.execute("COMMIT")
            removed = int(deleted[0]) if deleted else 0
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise ConnectorError(
                f"Removing run {run_id} from {schema_name}.{table_name} failed: {_first_line(exc)}",
                field="table",
            ) from None
        finally:
            con.close()
        logger.info(
            "duckdb_run_rows_removed", table=f"{schema_name}.{table_name}", run_id=run_id, rows=removed
        )
        return removed

    # --- existing tables (for mapping fields onto them) --------------------------------------------------

    describes_tables = True

    def _open_existing(self, config: DuckDbConfig) -> duckdb.DuckDBPyConnection | None:
        """A read-only connection to the database file, or None when the file does not exist (looking at
        tables never creates it)."""
        path = config.area.output(config.database, field="database", make_parent=False)
        if not path.exists():
            return None
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            message = config.area.scrub(_first_line(exc))
            raise ConnectorError(f"Cannot open {config.database}: {message}", field="database") from None

    def list_tables(self, config: DuckDbConfig) -> list[str]:
        schema_name = identifier_ok(config.db_schema, "schema")
        con = self._open_existing(config)
        if con is None:
            return []
        try:
            rows = con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
                "AND table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
                [schema_name],
            ).fetchall()
        except duckdb.Error as exc:
            raise ConnectorError(
                f"Listing the tables of {config.database} failed: {_first_line(exc)}"
            ) from None
        finally:
            con.close()
        return [row[0] for row in rows]

    def describe_table(self, config: DuckDbConfig, table: str) -> TableDescription | None:
        schema_name = identifier_ok(config.db_schema, "schema")
        table_name = identifier_ok(table, "table")
        con = self._open_existing(config)
        if con is None:
            return None
        try:
            rows = con.execute(
                "SELECT c.column_name, c.data_type, c.is_nullable = 'YES', c.column_default IS NOT NULL "
                "FROM information_schema.columns c JOIN information_schema.tables t "
                "ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema "
                "AND t.table_name = c.table_name "
                "WHERE c.table_catalog = current_database() AND c.table_schema = ? AND c.table_name = ? "
                "AND t.table_type = 'BASE TABLE' ORDER BY c.ordinal_position",
                [schema_name, table_name],
            ).fetchall()
            keys = con.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
                "AND constraint_type = 'PRIMARY KEY'",
                [schema_name, table_name],
            ).fetchall()
        except duckdb.Error as exc:
            raise ConnectorError(
                f"Describing {schema_name}.{table_name} failed: {_first_line(exc)}", field="table"
            ) from None
        finally:
            con.close()
        if not rows:
            return None
        key = tuple(keys[0][0]) if keys else ()
        columns = tuple(
            TableColumn(
                name=name,
                type=duckdb_field_type(data_type),
                nullable=bool(nullable),
                has_default=bool(has_default),
                primary_key=name in key,
                db_type=data_type,
            )
            for name, data_type, nullable, has_default in rows
        )
        return TableDescription(schema=schema_name, name=table_name, columns=columns, primary_key=key)

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, schema_name: str, table_name: str) -> dict[str, str] | None:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema_name, table_name],
        ).fetchall()
        return {name: dtype for name, dtype in rows} if rows else None

    @staticmethod
    def _evolve(
        con: duckdb.DuckDBPyConnection,
        target: str,
        stream_schema: StreamSchema,
        existing: dict[str, str],
        key: list[str],
        result: WriteResult,
    ) -> None:
        wanted = [(f.name, DUCKDB_TYPES[f.type]) for f in stream_schema.fields] + list(RUN_COLUMN_TYPES)
        for name, dtype in wanted:
            current = existing.get(name)
            if current is None:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_identifier(name)} {dtype}")
                result.columns_added.append(name)
            elif name not in key and _widens(current, dtype):
                con.execute(f"ALTER TABLE {target} ALTER COLUMN {quote_identifier(name)} TYPE {dtype}")

    @staticmethod
    def _merge(
        con: duckdb.DuckDBPyConnection,
        target: str,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        key: list[str],
        writer: _Writer,
    ) -> None:
        stage = quote_identifier(f"_ag_stage_{secrets.token_hex(6)}")
        # A temporary table: private to this connection, dropped by the rollback if anything fails.
        con.execute(f"CREATE TEMP TABLE {stage} ({_column_defs(stream_schema)})")
        writer.insert(con, stage, batches)
        keys = ", ".join(quote_identifier(k) for k in key)
        # Within one write the last row of a key wins (rowid follows insertion order in a fresh table).
        con.execute(
            f"DELETE FROM {stage} WHERE rowid NOT IN (SELECT max(rowid) FROM {stage} GROUP BY {keys})"  # noqa: S608
        )
        match = " AND ".join(
            f"t.{quote_identifier(k)} IS NOT DISTINCT FROM s.{quote_identifier(k)}" for k in key
        )
        con.execute(f"DELETE FROM {target} AS t USING {stage} AS s WHERE {match}")  # noqa: S608
        con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {stage}")  # noqa: S608
        con.execute(f"DROP TABLE {stage}")


class _Writer:
    """Inserts batches (stamped with the run columns) into a table; counts what it wrote."""

    def __init__(self, stream_schema: StreamSchema, run_id: str, result: WriteResult) -> None:
        self.schema = stream_schema
        self.run_id = run_id
        self.loaded_at = utc_now()
        self.result = result

    def insert(self, con: duckdb.DuckDBPyConnection, target: str, batches: Iterable[Batch]) -> None:
        view = f"_ag_batch_{secrets.token_hex(6)}"
        for batch in batches:
            if batch.num_rows == 0:
                continue
            stamped = stamp_table(batch.table, self.schema, self.run_id, self.loaded_at)
            con.register(view, stamped)
            try:
                con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {quote_identifier(view)}")  # noqa: S608
            finally:
                # After a failed INSERT the transaction is aborted and unregistering fails too: that second
                # error must not hide the first.
                with contextlib.suppress(duckdb.Error):
                    con.unregister(view)
            self.result.rows_written += stamped.num_rows
            self.result.batches += 1
            self.result.bytes_sent += stamped.nbytes


def _column_defs(stream_schema: StreamSchema, primary_key: list[str] | None = None) -> str:
    columns = [(f.name, DUCKDB_TYPES[f.type]) for f in stream_schema.fields] + list(RUN_COLUMN_TYPES)
    defs = [f"{quote_identifier(name)} {dtype}" for name, dtype in columns]
    if primary_key:
        defs.append(f"PRIMARY KEY ({', '.join(quote_identifier(k) for k in primary_key)})")
    return ", ".join(defs)


_WIDER = {("BIGINT", "DOUBLE"), ("INTEGER", "DOUBLE"), ("INTEGER", "BIGINT")}


_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
    | {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
_NUMBER_TYPES = frozenset({"FLOAT", "REAL", "DOUBLE"})


def duckdb_field_type(data_type: str) -> FieldType:
    """The platform type of a DuckDB column type (`information_schema.columns.data_type`); lists, structs,
    UUIDs, times, intervals and the rest travel as text."""
    data_type = data_type.upper()
    if data_type in _INTEGER_TYPES:
        return FieldType.INTEGER
    if data_type in _NUMBER_TYPES or data_type.startswith("DECIMAL"):
        return FieldType.NUMBER
    if data_type == "BOOLEAN":
        return FieldType.BOOLEAN
    if data_type == "DATE":
        return FieldType.DATE
    if data_type.startswith("TIMESTAMP"):
        return FieldType.DATETIME
    if data_type == "JSON":
        return FieldType.JSON
    return FieldType.STRING


def _widens(current: str, wanted: str) -> bool:
    current = current.upper()
    if current == wanted:
        return False
    if wanted == "VARCHAR":
        return current != "JSON"
    return (current, wanted) in _WIDER
