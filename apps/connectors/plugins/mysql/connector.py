"""MySQL / MariaDB (`mysql`): a source (tables and views of chosen databases, read-only custom queries) and a
destination (append / overwrite / merge through a staging table, `writer.py`).

Driver: PyMySQL (pure Python, no client library or build headers needed on any machine). Why it is still
fast enough on the read side: the connection is opened without result decoders, so every value arrives as
the server's text, rows are transposed to columns in C (`zip(*rows)`) and each column is cast to the
stream's type by Arrow in one vectorised call (`types.py`). docs/connectors/mysql.md has the figures and the
reasoning; `session.py` the connection's safety (SSRF guard, TLS, the guarded LOAD DATA LOCAL INFILE).

Reads run in a `START TRANSACTION READ ONLY`; a custom query is one SELECT/WITH statement and is wrapped as a
derived table, so it cannot be anything else. Incremental reads follow the SDK's cursor policy
(`apps/connectors/sdk/cursor.py`); writes follow the SDK's destination flow (`sdk/destinations.py`), whose
reserved-column rule refuses a stream field named like a platform column.

Times: each session runs with `time_zone = '+00:00'`, so TIMESTAMP columns come out (and go in) as UTC and
DATETIME values are taken as UTC, as the data plane defines datetimes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pymysql
import pymysql.cursors

from aggregator.dataplane import (
    RUN_ID_COLUMN,
    Batch,
    Field,
    FieldType,
    ReadItem,
    StreamSchema,
    SyncMode,
    WriteMode,
    WriteResult,
)
from aggregator.logging import get_logger
from apps.connectors.base import (
    CheckResult,
    ConnectorError,
    ConnectorKind,
    ConnectorType,
    TableColumn,
    TableDescription,
)
from apps.connectors.sdk.cursor import IncrementalCursor
from apps.connectors.sdk.destinations import check_stream_columns, run_rows_delete
from apps.connectors.sdk.sql import MYSQL

from .config import CATALOGUE_TIMEOUT_S, READ_NET_WRITE_TIMEOUT_S, CustomQuery, MySqlConfig
from .session import (
    _check_table_name,
    _error_code,
    _error_text,
    _execute,
    _OfferedFileConnection,
    _translate,
    connect,
    quote_ident,
)
from .types import (
    _CODE_TYPES,
    _CURSOR_TYPES,
    _cursor_param,
    _cursor_state_value,
    _is_json_check,
    field_type_for,
    rows_to_table,
)
from .writer import _Writer

logger = get_logger(__name__)


class MySqlConnector(ConnectorType):
    slug = "mysql"
    title = "MySQL / MariaDB"
    kind = ConnectorKind.BOTH
    description = (
        "Tables, views and read-only queries of MySQL or MariaDB; writes with append, overwrite or merge."
    )
    config_model = MySqlConfig

    # --- connections ---------------------------------------------------------------------------------
    def _connect(self, config: MySqlConfig, *, read_timeout: float | None = None, write: bool = False) -> Any:
        return connect(config, read_timeout=read_timeout, write=write)

    def check(self, config: MySqlConfig) -> CheckResult:
        # Connecting and the first answer each get under half of the check's budget, so a silent server
        # gets this check's own message (naming the host) before run_check's outer timeout fires.
        budget = 0.45 * self.check_timeout_s
        conn = self._connect(
            config.model_copy(update={"connect_timeout_s": min(config.connect_timeout_s, budget)}),
            read_timeout=budget,
        )
        try:
            with conn.cursor() as cur:
                _execute(cur, "SELECT 1")
                cur.fetchall()
            server = conn.get_server_info()
        except pymysql.MySQLError as exc:
            raise _translate(exc, config, doing="checking") from None
        finally:
            conn.close()
        return CheckResult(ok=True, message=f"Connected to {server} at {config.host}:{config.port}.")

    # --- discovery -------------------------------------------------------------------------------------

    def _databases(self, config: MySqlConfig) -> list[str]:
        return list(dict.fromkeys([config.database, *config.databases]))

    def _stream_name(self, config: MySqlConfig, database: str, table: str) -> str:
        return table if database == config.database else f"{database}.{table}"

    def discover(self, config: MySqlConfig) -> list[StreamSchema]:
        conn = self._connect(config)
        try:
            with conn.cursor() as cur:
                streams = self._discover_tables(conn, cur, config)
                for query in config.queries:
                    streams.append(self._discover_query(cur, config, query))
        except pymysql.MySQLError as exc:
            raise _translate(exc, config, doing="discovering") from None
        finally:
            conn.close()
        return streams

    def _discover_tables(self, conn: Any, cur: Any, config: MySqlConfig) -> list[StreamSchema]:
        databases = self._databases(config)
        placeholders = ", ".join(["%s"] * len(databases))
        _execute(
            cur,
            "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE "  # noqa: S608 - identifiers quoted, values are parameters
            "FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
            "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            f"WHERE c.TABLE_SCHEMA IN ({placeholders}) "
            "ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION",
            databases,
        )
        columns = cur.fetchall()
        _execute(
            cur,
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "  # noqa: S608 - identifiers quoted, values are parameters
            f"WHERE TABLE_SCHEMA IN ({placeholders}) AND INDEX_NAME = 'PRIMARY' "
            "ORDER BY TABLE_SCHEMA, TABLE_NAME, SEQ_IN_INDEX",
            databases,
        )
        keys: dict[tuple[str, str], list[str]] = {}
        for schema, table, column in cur.fetchall():
            keys.setdefault((schema, table), []).append(column)
        json_columns: set[tuple[str, str, str]] = set()
        if "mariadb" in conn.get_server_info().lower():
            # MariaDB stores JSON as LONGTEXT with a json_valid() check named after the column.
            _execute(
                cur,
                "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE "  # noqa: S608 - identifiers quoted, values are parameters
                f"FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN ({placeholders})",
                databases,
            )
            for schema, table, name, clause in cur.fetchall():
                if _is_json_check(name, clause):
                    json_columns.add((schema, table, name))

        grouped: dict[tuple[str, str], list[Field]] = {}
        for schema, table, column, data_type, column_type, nullable in columns:
            field_type = field_type_for(
                data_type, column_type, json_column=(schema, table, column) in json_columns
            )
            grouped.setdefault((schema, table), []).append(
                Field(name=column, type=field_type, nullable=nullable == "YES")
            )
        return [
            self._schema(self._stream_name(config, schema, table), fields, keys.get((schema, table), []))
            for (schema, table), fields in grouped.items()
        ]

    def _schema(self, name: str, fields: list[Field], primary_key: Sequence[str] = ()) -> StreamSchema:
        candidates = tuple(f.name for f in fields if f.type in _CURSOR_TYPES)
        modes = (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL) if candidates else (SyncMode.FULL_REFRESH,)
        return StreamSchema(
            name=name,
            fields=tuple(fields),
            primary_key=tuple(primary_key),
            cursor_candidates=candidates,
            supported_sync_modes=modes,
        )

    def _discover_query(self, cur: Any, config: MySqlConfig, query: CustomQuery) -> StreamSchema:
        _execute(cur, "START TRANSACTION READ ONLY")
        try:
            # The validated custom query, wrapped so it can only be a derived table.
            _execute(cur, f"SELECT * FROM ({self._escaped(query.sql)}) AS _ag_q LIMIT 0")  # noqa: S608
            description = cur.description or ()
        except pymysql.MySQLError as exc:
            raise ConnectorError(
                f"Custom query {query.name!r} failed: {_error_text(exc)}", field="queries"
            ) from None
        finally:
            cur.connection.rollback()
        fields = []
        for name, code, _display, length, *_rest in description:
            field_type = _CODE_TYPES.get(code, FieldType.STRING)
            if code == 1 and length == 1:
                field_type = FieldType.BOOLEAN
            fields.append(Field(name=name, type=field_type))
        try:
            return self._schema(query.name, fields)
        except ValueError as exc:
            raise ConnectorError(f"Custom query {query.name!r}: {exc}", field="queries") from None

    @staticmethod
    def _escaped(sql: str) -> str:
        # The query is executed with parameters, so its own `%` must reach the server as `%`.
        return sql.replace("%", "%%")

    # --- reading ---------------------------------------------------------------------------------------

    def _source_sql(self, conn: Any, config: MySqlConfig, stream: StreamSchema) -> str:
        """`FROM …` target of a stream: a custom query as a derived table, or a quoted table."""
        for query in config.queries:
            if query.name == stream.name:
                return f"({self._escaped(query.sql)}) AS _ag_q"
        candidates = [(config.database, stream.name)]
        if "." in stream.name:
            database, table = stream.name.split(".", 1)
            if database in config.databases:
                candidates.append((database, table))
        with conn.cursor() as cur:
            for database, table in candidates:
                _execute(
                    cur,
                    "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (database, table),
                )
                if cur.fetchone():
                    return f"{quote_ident(database)}.{quote_ident(table)}"
        raise ConnectorError(f"Unknown stream {stream.name!r}: no such table, view or custom query.")

    def read(
        self, config: MySqlConfig, stream: StreamSchema, state: dict[str, Any] | None
    ) -> Iterator[ReadItem]:
        if not stream.fields:
            raise ConnectorError(f"Stream {stream.name!r} has no fields to read.")
        conn = self._connect(config)
        try:
            try:
                source = self._source_sql(conn, config, stream)
                columns = ", ".join(quote_ident(f.name) for f in stream.fields)
                sql = f"SELECT {columns} FROM {source}"  # noqa: S608 - quoted identifiers
                params: list[Any] = []
                cursor_field = stream.cursor_field
                cursor_type = stream.field(cursor_field).type if cursor_field else FieldType.STRING
                if cursor_field:
                    last = (state or {}).get("cursor")
                    if last is not None:
                        sql += f" WHERE {quote_ident(cursor_field)} > %s"
                        params.append(_cursor_param(last, cursor_type, stream.name))
                    sql += f" ORDER BY {quote_ident(cursor_field)}"
                with conn.cursor() as setup:
                    _execute(setup, "SET SESSION net_write_timeout = %s", (READ_NET_WRITE_TIMEOUT_S,))
                    _execute(setup, "START TRANSACTION READ ONLY")
                cur = conn.cursor(pymysql.cursors.SSCursor)
                _execute(cur, sql, params)
            except pymysql.MySQLError as exc:
                raise self._read_error(exc, config, stream) from None

            tracker = IncrementalCursor(stream.name, lambda raw: _cursor_state_value(raw, cursor_type))
            cursor_index = stream.field_names.index(cursor_field) if cursor_field else -1
            while True:
                try:
                    rows = cur.fetchmany(config.chunk_size)
                except pymysql.MySQLError as exc:
                    raise self._read_error(exc, config, stream) from None
                if not rows:
                    break
                yield Batch(rows_to_table(rows, stream), stream=stream.name)
                if cursor_field:
                    yield from tracker.after_batch([row[cursor_index] for row in rows])
            if cursor_field:
                yield from tracker.final()
        finally:
            # Closing the connection, not the cursor: an unbuffered cursor's close() would first drain
            # every remaining row of an abandoned read. The pending result is detached first, or PyMySQL
            # would try to drain it from the closed socket when it is garbage-collected.
            pending = getattr(conn, "_result", None)
            if pending is not None and getattr(pending, "unbuffered_active", False):
                pending.unbuffered_active = False
                pending.connection = None
            conn.close()

    def _read_error(
        self, exc: pymysql.MySQLError, config: MySqlConfig, stream: StreamSchema
    ) -> ConnectorError:
        code = _error_code(exc)
        if code in (1054, 1146, 1064, 1142, 1792):
            # unknown column / table, syntax, no privilege, write in a read-only transaction
            return ConnectorError(f"Stream {stream.name!r}: {_error_text(exc)}")
        return _translate(exc, config, doing=f"reading stream {stream.name!r}")

    # --- writing ---------------------------------------------------------------------------------------

    def write(
        self,
        config: MySqlConfig,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        write_mode: WriteMode,
        primary_key: list[str] | None,
        run_id: str,
        *,
        table: str | None = None,
    ) -> WriteResult:
        started = time.monotonic()
        target = table or stream_schema.name
        _check_table_name(target)
        mode = WriteMode(write_mode)
        if not stream_schema.fields:
            raise ConnectorError(f"Stream {stream_schema.name!r} has no fields to write.")
        key = list(primary_key or stream_schema.primary_key)
        # The SDK's step 1, the same as every destination's: a field named like a platform column is refused.
        check_stream_columns(stream_schema, key, mode, dialect=MYSQL)
        fields = list(stream_schema.fields)
        if len(run_id) > 64:
            raise ConnectorError("The run id is longer than 64 characters.")

        conn = self._connect(config, write=True)
        writer = _Writer(
            conn,
            config.database,
            target,
            fields,
            key,
            run_id,
            load_data=isinstance(conn, _OfferedFileConnection),
        )
        try:
            result = writer.run(mode, batches)
        except pymysql.MySQLError as exc:
            writer.rollback()
            raise _translate(exc, config, doing=f"writing table {target!r}") from None
        except BaseException:
            writer.rollback()
            raise
        finally:
            conn.close()
        result.duration_s = round(time.monotonic() - started, 3)
        logger.info(
            "mysql_write_done",
            table=target,
            write_mode=str(mode),
            rows=result.rows_written,
            batches=result.batches,
            duration_s=result.duration_s,
        )
        return result

    def remove_run_rows(self, config: MySqlConfig, table: str, run_id: str) -> int:
        """Delete the rows of one run (by `_ag_run_id`) in one transaction; a table that does not exist, or
        has no run column, holds none."""
        _check_table_name(table)
        conn = self._connect(config, write=True)
        try:
            with conn.cursor() as cur:
                _execute(
                    cur,
                    "SELECT COUNT(*) FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND COLUMN_NAME = %s",
                    (config.database, table, RUN_ID_COLUMN),
                )
                # No decoders are installed (see _ENCODERS): the count arrives as text.
                if not int(cur.fetchone()[0]):
                    return 0
                removed = _execute(
                    cur, run_rows_delete(MYSQL, MYSQL.qualified(config.database, table), "%s"), (run_id,)
                )
            conn.commit()
        except pymysql.MySQLError as exc:
            conn.rollback()
            raise _translate(exc, config, doing=f"removing run {run_id} from table {table!r}") from None
        finally:
            conn.close()
        logger.info("mysql_run_rows_removed", table=table, run_id=run_id, rows=removed)
        return removed

    # --- existing tables (for mapping fields onto them) --------------------------------------------------

    describes_tables = True

    def _catalogue_connect(self, config: MySqlConfig) -> Any:
        # Catalogue reads take milliseconds: a silent server must not hold an API request for the
        # connector's query timeout (minutes).
        timeout = min(config.connect_timeout_s, CATALOGUE_TIMEOUT_S)
        return self._connect(
            config.model_copy(update={"connect_timeout_s": timeout}), read_timeout=CATALOGUE_TIMEOUT_S
        )

    def list_tables(self, config: MySqlConfig) -> list[str]:
        conn = self._catalogue_connect(config)
        try:
            with conn.cursor() as cur:
                _execute(
                    cur,
                    # Tables a destination can write: MariaDB's system-versioned ones too, not views.
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
                    (config.database,),
                )
                return [row[0] for row in cur.fetchall()]
        except pymysql.MySQLError as exc:
            raise _translate(exc, config, doing="listing tables") from None
        finally:
            conn.close()

    def describe_table(self, config: MySqlConfig, table: str) -> TableDescription | None:
        _check_table_name(table)
        conn = self._catalogue_connect(config)
        try:
            with conn.cursor() as cur:
                _execute(
                    cur,
                    "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE, c.COLUMN_DEFAULT, "
                    "c.EXTRA FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
                    "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
                    "WHERE c.TABLE_SCHEMA = %s AND c.TABLE_NAME = %s "
                    "AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY c.ORDINAL_POSITION",
                    (config.database, table),
                )
                rows = cur.fetchall()
                if not rows:
                    return None
                _execute(
                    cur,
                    "SELECT COLUMN_NAME FROM information_schema.STATISTICS "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' "
                    "ORDER BY SEQ_IN_INDEX",
                    (config.database, table),
                )
                key = tuple(row[0] for row in cur.fetchall())
                json_columns: set[str] = set()
                if "mariadb" in conn.get_server_info().lower():
                    _execute(
                        cur,
                        "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                        "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                        (config.database, table),
                    )
                    json_columns = {name for name, clause in cur.fetchall() if _is_json_check(name, clause)}
        except pymysql.MySQLError as exc:
            raise _translate(exc, config, doing=f"describing table {table!r}") from None
        finally:
            conn.close()
        columns = []
        for name, data_type, column_type, nullable, default, extra in rows:
            extra = (extra or "").lower()
            # MariaDB reports "no default" of a nullable column as the text NULL; a NOT NULL column without
            # a default has none at all. Auto-increment and generated values come from the server.
            has_default = (default is not None and default != "NULL") or any(
                word in extra for word in ("auto_increment", "generated")
            )
            columns.append(
                TableColumn(
                    name=name,
                    type=field_type_for(data_type, column_type, json_column=name in json_columns),
                    nullable=nullable == "YES",
                    has_default=has_default,
                    primary_key=name in key,
                    db_type=column_type,
                )
            )
        return TableDescription(schema=config.database, name=table, columns=tuple(columns), primary_key=key)
