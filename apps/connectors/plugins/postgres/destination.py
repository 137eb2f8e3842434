"""PostgreSQL destination (`postgres`): bulk loads with COPY (`loading.py`), one transaction per write.

Everything a write does happens in one transaction, which is what keeps the target intact on failure: a
failed write rolls back, and the staging tables it made, having been created in that transaction, disappear
with it. The write follows the SDK's SQL destination flow (`apps/connectors/sdk/destinations.py`):
validated by `plan_write` (names, the reserved platform columns, the key), then

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

import secrets
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from aggregator.dataplane import RUN_ID_COLUMN, Batch, FieldType, StreamSchema, WriteMode, WriteResult
from aggregator.logging import get_logger
from apps.connectors.base import (
    CheckResult,
    ConnectorError,
    ConnectorKind,
    ConnectorType,
    TableColumn,
    TableDescription,
    secret_value,
)
from apps.connectors.sdk.destinations import plan_write
from apps.connectors.sdk.sql import POSTGRES

from .connection import PostgresConfig, _catalogue, _connect, _identifier_ok, _libpq_reason, _table_columns
from .loading import (
    RUN_SETTING,
    CsvEncoder,
    all_columns,
    column_defs,
    copy_batches,
    has_run_defaults,
)
from .types import field_type

logger = get_logger(__name__)

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
        plan = plan_write(
            POSTGRES, stream_schema, write_mode, primary_key, schema=config.db_schema, table=table
        )
        write_mode, schema_name, table_name, key = plan.mode, plan.schema, plan.table, plan.key

        result = WriteResult(table=f"{schema_name}.{table_name}")
        password = secret_value(config.password)
        suffix = secrets.token_hex(4)
        conn = _connect(config)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config(%s, %s, true), now()", (RUN_SETTING, run_id))
                loaded_at = cur.fetchone()[1]  # type: ignore[index]

                def encoder(*, with_run_columns: bool) -> CsvEncoder:
                    return CsvEncoder(stream_schema, run_id, loaded_at, with_run_columns=with_run_columns)

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
                                target, column_defs(all_columns(stream_schema, with_defaults=True))
                            )
                        )
                        if write_mode == WriteMode.MERGE:
                            self._unique_index(cur, schema_name, table_name, key, suffix)
                    else:
                        self._evolve(cur, target, stream_schema, existing, result)
                    if write_mode == WriteMode.APPEND:
                        explicit = existing is not None and not has_run_defaults(cur, schema_name, table_name)
                        copy_batches(cur, target, batches, encoder(with_run_columns=explicit), result)
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
                type=field_type(data_type),
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
        for name, pg_type in all_columns(stream_schema):
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

    def _overwrite(
        self,
        cur: psycopg.Cursor[Any],
        config: PostgresConfig,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        encoder: CsvEncoder,
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
                new, column_defs(all_columns(stream_schema, with_defaults=True))
            )
        )
        copy_batches(cur, new, batches, encoder, result)
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
        encoder: CsvEncoder,
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
            ).format(staging, column_defs(all_columns(stream_schema, with_defaults=True)))
        )
        loaded = WriteResult(table=result.table)
        copy_batches(cur, staging, batches, encoder, loaded)
        result.batches, result.bytes_sent = loaded.batches, loaded.bytes_sent
        null_key = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in key)
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(staging, null_key))
        nulls = cur.fetchone()[0]  # type: ignore[index]
        if nulls:
            raise ConnectorError(
                f"{nulls} rows have an empty primary key ({', '.join(key)}).", field="primary_key"
            )
        names = [name for name, _ in all_columns(stream_schema)]
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
