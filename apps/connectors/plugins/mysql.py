"""MySQL / MariaDB: a source (tables and views of chosen databases, read-only custom queries) and a
destination (append / overwrite / merge through a staging table).

Driver: PyMySQL (pure Python, no client library or build headers needed on any machine). Why it is still
fast enough on the read side: the connection is opened without result decoders, so every value arrives as
the server's text (the per-value cost inside the driver is a bytes-to-str decode, not an int()/Decimal()/
datetime() construction), rows are transposed to columns in C (`zip(*rows)`) and each column is cast to the
stream's type by Arrow in one vectorised call. docs/connectors/mysql.md has the figures and the reasoning.

Safety:
- The host goes through the SSRF guard (`vetted_address`) and the driver connects to the vetted IP, with
  connect / read / write timeouts.
- `local_infile` is off on every reading connection: with it on, a malicious server can ask the client for
  any file it can read (the server names the file, not the client), and a plain PyMySQL connection would
  send it. Only the destination's connection turns it on, because LOAD DATA LOCAL INFILE writes 3-4x
  faster end to end than multi-row INSERTs, and that connection is an `_OfferedFileConnection`: it answers a
  file request only for the one temporary CSV file it is loading at that moment and refuses any other
  name. When the server refuses LOAD DATA LOCAL (MySQL 8 disables it by default) or `load_data` is off,
  the destination falls back to batched multi-row INSERTs. LOCAL implies IGNORE (a value that does not fit
  is only a warning), so any warning after a load fails the write.
- Identifiers are quoted by `quote_ident` (backticks, embedded backticks doubled) and values are always
  query parameters. PyMySQL formats a parametrised query with `%`, so quoted identifiers also have their
  `%` doubled and every statement is executed with a parameter tuple (possibly empty).
- Reads run in a `START TRANSACTION READ ONLY`; a custom query is one SELECT/WITH statement and is wrapped
  as a derived table, so it cannot be anything else.

Times: each session runs with `time_zone = '+00:00'`, so TIMESTAMP columns come out (and go in) as UTC and
DATETIME values are taken as UTC, as the data plane defines datetimes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import ssl
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pymysql
import pymysql.converters
import pymysql.cursors
import pymysql.protocol
from pydantic import Field as PydanticField
from pydantic import SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import (
    DEFAULT_CHUNK_SIZE,
    LOADED_AT_COLUMN,
    RESERVED_COLUMNS,
    RUN_ID_COLUMN,
    Batch,
    Field,
    FieldType,
    ReadItem,
    StateCheckpoint,
    StreamSchema,
    SyncMode,
    WriteMode,
    WriteResult,
    arrow_type_for,
    utc_now,
)
from aggregator.logging import get_logger
from aggregator.ssrf import HostLookupError, SSRFBlocked, check_literal_host, vetted_address
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

# Rows per executemany call. PyMySQL turns each call into multi-row INSERT statements of at most
# `max_stmt_length` bytes; a few thousand rows keeps the Python-side list slices small while the statements
# stay large enough that the round trips do not dominate.
INSERT_ROWS = 5_000
# Upper bound of one multi-row INSERT. It must stay under the server's max_allowed_packet (read per
# connection; 4 MB on old MySQL defaults, 16 MB on MariaDB, 64 MB on MySQL 8).
MAX_STATEMENT_BYTES = 8 * 1024 * 1024
# The server aborts an unbuffered result when the client has not read for net_write_timeout seconds (60 by
# default). A reader pauses while the engine writes the previous batch downstream, which can take longer.
READ_NET_WRITE_TIMEOUT_S = 3600
MAX_IDENTIFIER_LENGTH = 64
# Connect and answer timeout of catalogue reads made for a person waiting on an API request.
CATALOGUE_TIMEOUT_S = 10.0
# Errors meaning "LOAD DATA LOCAL is not allowed here": fall back to INSERTs. 1148: not allowed (MariaDB,
# old MySQL); 3948: local data disabled (MySQL 8).
_LOAD_DATA_REFUSED = frozenset({1148, 3948})
# The write connection refuses silent truncation: a value that does not fit its column is an error, so a
# failed batch fails the write instead of landing damaged.
WRITE_SQL_MODE = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

# Encoders only, no decoders: every result value arrives as text (bytes for binary columns).
_ENCODERS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}

_INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"})
_NUMBER_TYPES = frozenset({"decimal", "numeric", "float", "double", "real", "double precision"})
_CURSOR_TYPES = (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)

# MySQL column types of the columns the destination creates.
_SQL_TYPES: dict[FieldType, str] = {
    FieldType.STRING: "LONGTEXT",
    FieldType.INTEGER: "BIGINT",
    FieldType.NUMBER: "DOUBLE",
    FieldType.BOOLEAN: "TINYINT(1)",
    FieldType.DATE: "DATE",
    FieldType.DATETIME: "DATETIME(6)",
    FieldType.JSON: "JSON",
}
# A key cannot cover a TEXT column without a prefix length; 255 characters of utf8mb4 is 1020 bytes, so a
# key of up to three such columns fits InnoDB's 3072-byte limit.
_KEY_STRING_TYPE = "VARCHAR(255)"


class SslMode(StrEnum):
    DISABLED = "disabled"
    PREFERRED = "preferred"
    REQUIRED = "required"
    VERIFY_CA = "verify_ca"


_FORBIDDEN_SQL = (
    (re.compile(r"/\*[!M]"), "must not contain executable comments (/*! … */)"),
    (re.compile(r"\binto\s+(outfile|dumpfile|@)", re.IGNORECASE), "must not write INTO a file or variable"),
    (re.compile(r"\bfor\s+update\b|\block\s+in\s+share\s+mode\b", re.IGNORECASE), "must not take locks"),
)


def validate_select(sql: str) -> str:
    """One SELECT or WITH statement (a trailing `;` is dropped). Raises ValueError with the reason."""
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise ValueError("Must not be empty.")
    if ";" in text:
        raise ValueError("Must be a single statement (no ';').")
    if not re.match(r"(select|with)\b", text, re.IGNORECASE):
        raise ValueError("Must be a SELECT or WITH query.")
    for pattern, reason in _FORBIDDEN_SQL:
        if pattern.search(text):
            raise ValueError(f"The query {reason}.")
    return text


class CustomQuery(ConnectorConfig):
    name: str = PydanticField(title="Stream name", min_length=1, max_length=128)
    sql: str = PydanticField(
        title="SQL",
        description="One SELECT (or WITH … SELECT) statement; it runs in a read-only transaction.",
        min_length=1,
        max_length=100_000,
    )

    @field_validator("sql")
    @classmethod
    def _single_select(cls, value: str) -> str:
        return validate_select(value)


class MySqlConfig(ConnectorConfig):
    host: str = PydanticField(
        title="Host",
        description="Host name or IP address; it must pass the SSRF guard (see AGGREGATOR_ALLOWED_HOSTS).",
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9._:\[\]-]+$",
    )

    @field_validator("host")
    @classmethod
    def _no_refused_literal(cls, value: str) -> str:
        # A refused address is refused when saved; a name is checked again when a connection opens.
        try:
            check_literal_host(value)
        except SSRFBlocked as exc:
            raise PydanticCustomError("address_refused", "{reason}", {"reason": str(exc)}) from None
        return value

    port: int = PydanticField(default=3306, ge=1, le=65535, title="Port")
    database: str = PydanticField(title="Database", min_length=1, max_length=MAX_IDENTIFIER_LENGTH)
    user: str = PydanticField(title="User", min_length=1, max_length=128)
    password: SecretStr | None = secret_field(default=None, title="Password")
    ssl_mode: SslMode = PydanticField(
        default=SslMode.PREFERRED,
        title="SSL mode",
        description="disabled; preferred (TLS when the server offers it, unverified); required (TLS, "
        "unverified); verify_ca (TLS, certificate checked against the CA below or the system CAs).",
    )
    ssl_ca: str | None = PydanticField(
        default=None,
        title="CA certificate (PEM)",
        description="Only for verify_ca; the system CAs are used when empty.",
        max_length=100_000,
    )
    databases: list[str] = PydanticField(
        default_factory=list,
        title="Other databases to include",
        description="Discovered besides `database`; their streams are named `database.table`.",
        max_length=100,
    )
    queries: list[CustomQuery] = PydanticField(
        default_factory=list, title="Custom query streams", max_length=100
    )
    chunk_size: int = PydanticField(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")
    load_data: bool = PydanticField(
        default=True,
        title="Bulk load with LOAD DATA LOCAL INFILE",
        description="Destination only: load batches from a temporary CSV file (much faster); the client "
        "sends the server that file and no other. Falls back to INSERTs where the server refuses it.",
    )
    connect_timeout_s: float = PydanticField(default=10.0, gt=0, le=120, title="Connect timeout (s)")
    read_timeout_s: float = PydanticField(
        default=600.0,
        gt=0,
        le=86_400,
        title="Query timeout (s)",
        description="How long one read from the server may wait (a slow query must start answering by then).",
    )

    @field_validator("databases")
    @classmethod
    def _database_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > MAX_IDENTIFIER_LENGTH or "\x00" in name:
                raise ValueError(f"{name!r} is not a database name.")
        return value

    @field_validator("ssl_ca")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("Must be a PEM certificate (-----BEGIN CERTIFICATE-----).")
        return value or None

    @model_validator(mode="after")
    def _unique_query_names(self) -> MySqlConfig:
        names = [q.name for q in self.queries]
        if len(set(names)) != len(names):
            raise ValueError("Custom query stream names must be unique.")
        return self


# --- identifiers and errors ----------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    """A MySQL identifier in backticks, safe to put in a statement that is executed with parameters
    (PyMySQL %-formats such statements, so `%` is doubled as well)."""
    if not name or "\x00" in name:
        raise ConnectorError(f"{name!r} is not a valid identifier.")
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def _check_table_name(name: str) -> None:
    if not name or len(name) > MAX_IDENTIFIER_LENGTH or "\x00" in name or name != name.rstrip():
        raise ConnectorError(
            f"{name!r} is not a valid MySQL table name (1-{MAX_IDENTIFIER_LENGTH} characters).", field="table"
        )


def _error_code(exc: pymysql.MySQLError) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def _error_text(exc: pymysql.MySQLError) -> str:
    return str(exc.args[1]) if len(exc.args) > 1 else type(exc).__name__


def _translate(exc: pymysql.MySQLError, config: MySqlConfig, *, doing: str) -> ConnectorError:
    """A driver error as a ConnectorError naming the field at fault. Built from the error code, never from
    the password (the server never echoes it, and the message is composed here anyway)."""
    code = _error_code(exc)
    where = f"{config.host}:{config.port}"
    if code == 1045:
        return ConnectorError(
            f"Access denied for user {config.user!r} on {where}: check the user and password.",
            field="password",
        )
    if code == 1044:
        return ConnectorError(
            f"User {config.user!r} may not use database {config.database!r}.", field="database"
        )
    if code == 1049:
        return ConnectorError(f"Unknown database {config.database!r} on {where}.", field="database")
    if code in (2002, 2003, 2006):
        detail = _error_text(exc)
        reason = "timed out" if "timed out" in detail else "refused or unreachable"
        return ConnectorError(f"Cannot connect to {where} ({reason}).", field="host")
    if code == 2013:
        if "timed out" in _error_text(exc):
            return ConnectorError(f"{where} did not answer in time while {doing}.", field="host")
        return ConnectorError(f"Lost the connection to {where} while {doing}.", field="host")
    if code == 2026 or (code is not None and "SSL" in _error_text(exc)):
        return ConnectorError(
            f"TLS to {where} failed ({_error_text(exc)}); check ssl_mode and ssl_ca.", field="ssl_mode"
        )
    return ConnectorError(f"MySQL error {code} while {doing}: {_error_text(exc)}")


def _ssl_kwargs(config: MySqlConfig) -> dict[str, Any]:
    if config.ssl_mode == SslMode.DISABLED:
        return {"ssl_disabled": True}
    if config.ssl_mode == SslMode.PREFERRED:
        # PyMySQL's default: TLS without verification when the server offers it, plain otherwise.
        return {}
    if config.ssl_mode == SslMode.REQUIRED:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl": context}
    try:
        context = (
            ssl.create_default_context(cadata=config.ssl_ca)
            if config.ssl_ca
            else ssl.create_default_context()
        )
    except ssl.SSLError:
        raise ConnectorError("The CA certificate cannot be loaded.", field="ssl_ca") from None
    # The driver connects to the vetted IP, so the certificate's name cannot be checked against the host
    # name the user typed: verify_ca checks the chain only (the same as MySQL's VERIFY_CA).
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return {"ssl": context}


def _execute(cursor: Any, sql: str, params: Sequence[Any] = ()) -> int:
    # Always with a parameter tuple, so `%%` in quoted identifiers is unescaped consistently.
    return int(cursor.execute(sql, tuple(params)))


# --- types -----------------------------------------------------------------------------------------------


def _is_json_check(name: str, clause: str) -> bool:
    """Whether a CHECK constraint is MariaDB's mark of a JSON column (`json_valid(`col`)`, named after it)."""
    return clause.replace(" ", "").lower() == f"json_valid(`{name.replace('`', '``')}`)".lower()


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


# --- incremental cursor ----------------------------------------------------------------------------------


class CursorTracker:
    """Which cursor value is safe to checkpoint while rows arrive in cursor order.

    A batch can end in the middle of a run of rows sharing one cursor value; a checkpoint at that value
    would make a resumed read (`cursor > value`) skip the rest of the run. So after each batch the tracker
    offers the last value that is *complete* (strictly below the batch's last value, or the previous
    batch's last value when this batch moved past it) and only the final checkpoint, at the end of the
    stream, carries the very last value."""

    def __init__(self) -> None:
        self.last: Any = None
        self.safe: Any = None

    def add(self, values: Sequence[Any]) -> Any:
        """Feed one batch's cursor values (in order); returns a new safe value or None."""
        non_null = [v for v in values[-1:] if v is not None]
        if not non_null:
            return None
        last = non_null[0]
        candidate = None
        for value in reversed(values):
            if value is not None and value != last:
                candidate = value
                break
        if candidate is None and self.last is not None and self.last != last:
            candidate = self.last
        self.last = last
        if candidate is not None and candidate != self.safe:
            self.safe = candidate
            return candidate
        return None


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


# --- writing ---------------------------------------------------------------------------------------------


def _writable_columns(table: pa.Table, fields: Sequence[Field]) -> list[pa.Array | pa.ChunkedArray]:
    """The batch's columns in the stream's field order, as what MySQL reads back exactly: datetimes as naive
    UTC text, dates as ISO text, booleans as 0/1, NaN/inf as NULL, nested values as JSON text, a missing
    column as NULLs. Vectorised, except for nested values (rare: JSON fields travel as text already)."""
    out: list[pa.Array | pa.ChunkedArray] = []
    for field in fields:
        if field.name not in table.column_names:
            out.append(pa.nulls(table.num_rows, arrow_type_for(field.type)))
            continue
        col: pa.ChunkedArray = table.column(field.name)
        kind = col.type
        if pa.types.is_dictionary(kind):
            col = col.cast(kind.value_type)
            kind = col.type
        if pa.types.is_timestamp(kind):
            if kind.tz is not None:
                col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
            col = col.cast(pa.timestamp("us")).cast(pa.string())
        elif pa.types.is_date(kind):
            col = col.cast(pa.string())
        elif pa.types.is_boolean(kind):
            col = col.cast(pa.int8())
        elif pa.types.is_floating(kind):
            col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, kind))
        elif pa.types.is_nested(kind):
            col = pa.chunked_array(
                [
                    pa.array(
                        [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()],
                        pa.string(),
                    )
                ]
            )
        out.append(col)
    return out


def _column_ddl(field: Field, *, key: bool) -> str:
    sql_type = _KEY_STRING_TYPE if key and field.type == FieldType.STRING else _SQL_TYPES[field.type]
    return f"{quote_ident(field.name)} {sql_type} NULL"


_RUN_COLUMNS_DDL = (
    f"{quote_ident(RUN_ID_COLUMN)} VARCHAR(64) NULL",
    f"{quote_ident(LOADED_AT_COLUMN)} DATETIME(6) NULL",
)


class _OfferedFileResult(pymysql.connections.MySQLResult):  # type: ignore[misc]
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn = self.connection
        requested = pymysql.protocol.LoadLocalPacketWrapper(first_packet).filename
        offered = getattr(conn, "offered_file", None)
        if offered is None or requested != offered:
            # Answer with an empty file (the protocol needs an answer), read the server's reply, refuse.
            logger.warning("mysql_local_file_request_refused")
            conn.write_packet(b"")
            with contextlib.suppress(pymysql.MySQLError):
                conn._read_packet()
            raise ConnectorError(
                "The server asked for a local file it was not offered; refused.", field="host"
            )
        super()._read_load_local_packet(first_packet)


class _OfferedFileConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """A connection with local_infile on that sends the server only `offered_file` (bytes path, set while
    a LOAD DATA LOCAL INFILE of that file runs), never a file the server picks."""

    offered_file: bytes | None = None

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own method (1.2), with the result class swapped: the driver has no hook for it.
        self._result = None
        result = _OfferedFileResult(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return int(result.affected_rows or 0)


# If a PyMySQL upgrade moves what the guard overrides, the destination uses INSERTs (never an unguarded
# local_infile); a test asserts this is True, so an upgrade that breaks it is noticed.
LOAD_DATA_GUARD_AVAILABLE = hasattr(pymysql.connections.MySQLResult, "_read_load_local_packet") and hasattr(
    pymysql.connections.Connection, "_read_query_result"
)


def _arrow_for_csv(table: pa.Table, fields: Sequence[Field], run_id: str, loaded_at: str) -> pa.Table:
    """The batch as the columns LOAD DATA reads, the run columns appended."""
    arrays = _writable_columns(table, fields)
    arrays.append(pa.array([run_id] * table.num_rows, pa.string()))
    arrays.append(pa.array([loaded_at] * table.num_rows, pa.string()))
    names = [f"c{i}" for i in range(len(arrays))]  # column names are not written (no header)
    return pa.Table.from_arrays(arrays, names=names)


# What LOAD DATA expects of the file pyarrow writes: every value quoted (a quote inside doubled), NULL as
# the bare word NULL, no escape character, so a backslash in a value stays a backslash.
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, null_string="NULL", quoting_style="all_valid")


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
        try:
            address = vetted_address(config.host, config.port)
        except SSRFBlocked as exc:
            raise ConnectorError(str(exc), field="host") from None
        except HostLookupError as exc:
            raise ConnectorError(str(exc), field="host") from None
        timeout = read_timeout or config.read_timeout_s
        bulk = write and config.load_data and LOAD_DATA_GUARD_AVAILABLE
        connection_class = _OfferedFileConnection if bulk else pymysql.connections.Connection
        try:
            conn = connection_class(
                host=address,
                port=config.port,
                user=config.user,
                password=secret_value(config.password) or "",
                database=config.database,
                charset="utf8mb4",
                connect_timeout=config.connect_timeout_s,
                read_timeout=timeout,
                write_timeout=timeout,
                local_infile=bulk,
                autocommit=False,
                conv=_ENCODERS,
                init_command="SET time_zone = '+00:00'",
                **_ssl_kwargs(config),
            )
        except pymysql.MySQLError as exc:
            raise _translate(exc, config, doing="connecting") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectorError(
                f"Cannot connect to {config.host}:{config.port} ({type(exc).__name__}).", field="host"
            ) from None
        if config.ssl_mode in (SslMode.REQUIRED, SslMode.VERIFY_CA) and not isinstance(
            getattr(conn, "_sock", None), ssl.SSLSocket
        ):
            # PyMySQL refuses a server without TLS when given a context; this is a second line of defence.
            conn.close()
            raise ConnectorError("The server did not agree to TLS.", field="ssl_mode")
        if write:
            with conn.cursor() as cur:
                _execute(cur, "SET SESSION sql_mode = %s", (WRITE_SQL_MODE,))
        return conn

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

            tracker = CursorTracker()
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
                    safe = tracker.add([row[cursor_index] for row in rows])
                    if safe is not None:
                        yield StateCheckpoint(
                            stream=stream.name, state={"cursor": _cursor_state_value(safe, cursor_type)}
                        )
            if cursor_field and tracker.last is not None:
                yield StateCheckpoint(
                    stream=stream.name, state={"cursor": _cursor_state_value(tracker.last, cursor_type)}
                )
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
        fields = [f for f in stream_schema.fields if f.name not in RESERVED_COLUMNS]
        if not fields:
            raise ConnectorError(f"Stream {stream_schema.name!r} has no fields to write.")
        key = list(primary_key or stream_schema.primary_key)
        unknown = [k for k in key if k not in {f.name for f in fields}]
        if unknown:
            raise ConnectorError(
                f"Primary key field {unknown[0]!r} is not in the stream.", field="primary_key"
            )
        if mode == WriteMode.MERGE and not key:
            raise ConnectorError("Merge needs a primary key.", field="primary_key")
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
                    cur,
                    f"DELETE FROM {quote_ident(config.database)}.{quote_ident(table)} "  # noqa: S608 - identifiers quoted, values are parameters
                    f"WHERE {quote_ident(RUN_ID_COLUMN)} = %s",
                    (run_id,),
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


class _Writer:
    """One write: load into a scratch table, then apply it to the target in one step. Keeps what it
    created or changed, so a failure can put everything back."""

    def __init__(
        self,
        conn: Any,
        database: str,
        target: str,
        fields: list[Field],
        key: list[str],
        run_id: str,
        *,
        load_data: bool = True,
    ) -> None:
        self.conn = conn
        self.load_data = load_data
        self.database = database
        self.target = target
        self.fields = fields
        self.key = key
        self.run_id = run_id
        self.loaded_at = utc_now().replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        suffix = uuid.uuid4().hex[:16]
        self.scratch = f"_ag_stage_{suffix}"
        self.old = f"_ag_old_{suffix}"
        self.undo: list[str] = []  # statements that put things back, run in reverse order on failure

    def q(self, table: str) -> str:
        return f"{quote_ident(self.database)}.{quote_ident(table)}"

    def exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.conn.cursor() as cur:
            return _execute(cur, sql, params)

    def existing_columns(self, table: str) -> list[str]:
        with self.conn.cursor() as cur:
            _execute(
                cur,
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (self.database, table),
            )
            return [row[0] for row in cur.fetchall()]

    def create_table(self, table: str, *, seq: bool = False, unique: bool = False) -> None:
        columns = [_column_ddl(f, key=f.name in self.key) for f in self.fields]
        columns.extend(_RUN_COLUMNS_DDL)
        if seq:
            # Load order, so a merge applies the last of several rows with the same key last.
            columns.insert(0, "`_ag_seq` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY")
        if unique and self.key:
            columns.append(f"UNIQUE KEY `_ag_pk` ({', '.join(quote_ident(k) for k in self.key)})")
        self.exec(
            f"CREATE TABLE {self.q(table)} ({', '.join(columns)}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        self.undo.append(f"DROP TABLE IF EXISTS {self.q(table)}")

    def add_missing_columns(self, table: str) -> list[str]:
        present = {name.lower() for name in self.existing_columns(table)}
        added: list[str] = []
        definitions: list[str] = []
        for field in self.fields:
            if field.name.lower() not in present:
                added.append(field.name)
                definitions.append(_column_ddl(field, key=field.name in self.key))
        for name, ddl in zip(RESERVED_COLUMNS, _RUN_COLUMNS_DDL, strict=True):
            if name.lower() not in present:
                added.append(name)
                definitions.append(ddl)
        if definitions:
            self.exec(f"ALTER TABLE {self.q(table)} " + ", ".join(f"ADD COLUMN {d}" for d in definitions))
            if table == self.target:
                self.undo.append(
                    f"ALTER TABLE {self.q(table)} "
                    + ", ".join(f"DROP COLUMN {quote_ident(name)}" for name in added)
                )
        return added

    def ensure_unique_key(self) -> None:
        with self.conn.cursor() as cur:
            _execute(
                cur,
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0",
                (self.database, self.target),
            )
            indexes: dict[str, set[str]] = {}
            for index, column in cur.fetchall():
                indexes.setdefault(index, set()).add(column.lower())
        if {k.lower() for k in self.key} in indexes.values():
            return
        name = f"_ag_pk_{uuid.uuid4().hex[:8]}"
        try:
            self.exec(
                f"ALTER TABLE {self.q(self.target)} ADD UNIQUE KEY {quote_ident(name)} "
                f"({', '.join(quote_ident(k) for k in self.key)})"
            )
        except pymysql.MySQLError as exc:
            code = _error_code(exc)
            if code == 1062:
                reason = "already holds duplicate values of the key"
            elif code == 1170:
                reason = "has a TEXT/BLOB key column, which a unique key cannot cover"
            else:
                raise
            raise ConnectorError(
                f"Table {self.target!r} {reason} ({', '.join(self.key)}); a merge cannot use it.",
                field="primary_key",
            ) from None
        self.undo.append(f"ALTER TABLE {self.q(self.target)} DROP INDEX {quote_ident(name)}")

    def reject_null_keys(self) -> None:
        # A NULL never matches in a unique key: such a row would be inserted again on every merge.
        condition = " OR ".join(f"{quote_ident(k)} IS NULL" for k in self.key)
        with self.conn.cursor() as cur:
            _execute(cur, f"SELECT COUNT(*) FROM {self.q(self.scratch)} WHERE {condition}")  # noqa: S608
            nulls = int(cur.fetchone()[0])
        if nulls:
            raise ConnectorError(
                f"{nulls} rows have an empty primary key ({', '.join(self.key)}).", field="primary_key"
            )

    def load(self, table: str, batches: Iterable[Batch]) -> tuple[int, int, int]:
        """Every batch into `table`, committed per batch: LOAD DATA LOCAL INFILE from a temporary CSV file,
        or multi-row INSERTs where that is off or refused. Returns rows, batches and bytes (Arrow size)."""
        columns = [*(f.name for f in self.fields), RUN_ID_COLUMN, LOADED_AT_COLUMN]
        column_list = ", ".join(quote_ident(c) for c in columns)
        rows = batches_done = size = 0
        with tempfile.TemporaryDirectory(prefix="ag_mysql_") as directory:
            path = Path(directory) / "batch.csv"
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                if self.load_data:
                    try:
                        self._load_file(table, column_list, batch, path)
                    except pymysql.MySQLError as exc:
                        if _error_code(exc) not in _LOAD_DATA_REFUSED:
                            raise
                        logger.info("mysql_load_data_refused", table=self.target, code=_error_code(exc))
                        self.conn.rollback()
                        self.load_data = False
                if not self.load_data:
                    self._insert(table, column_list, len(columns), batch)
                self.conn.commit()
                rows += batch.num_rows
                batches_done += 1
                size += batch.table.nbytes
        return rows, batches_done, size

    def _load_file(self, table: str, column_list: str, batch: Batch, path: Path) -> None:
        pacsv.write_csv(
            _arrow_for_csv(batch.table, self.fields, self.run_id, self.loaded_at), path, _CSV_OPTIONS
        )
        self.conn.offered_file = str(path).encode()
        try:
            with self.conn.cursor() as cur:
                _execute(
                    cur,
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.q(table)} CHARACTER SET utf8mb4 "
                    "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                    f"LINES TERMINATED BY '\\n' ({column_list})",
                    (str(path),),
                )
                # LOCAL implies IGNORE: a value that does not fit is a warning, not an error, and the row is
                # loaded damaged. Any warning fails the write instead.
                _execute(cur, "SHOW WARNINGS LIMIT 3")
                warnings = [row for row in cur.fetchall() if row[0] != "Note"]
        finally:
            self.conn.offered_file = None
            path.unlink(missing_ok=True)
        if warnings:
            raise ConnectorError(f"Table {self.target!r}: {'; '.join(str(w[2]) for w in warnings)}")

    def _insert(self, table: str, column_list: str, width: int, batch: Batch) -> None:
        with self.conn.cursor() as cur:
            _execute(cur, "SELECT @@max_allowed_packet")
            packet = int(cur.fetchone()[0])
        sql = f"INSERT INTO {self.q(table)} ({column_list}) VALUES ({', '.join(['%s'] * width)})"  # noqa: S608
        values = [col.to_pylist() for col in _writable_columns(batch.table, self.fields)]
        records = list(zip(*values, repeat(self.run_id), repeat(self.loaded_at)))
        with self.conn.cursor() as cur:
            cur.max_stmt_length = max(64 * 1024, min(MAX_STATEMENT_BYTES, packet - 64 * 1024))
            for start in range(0, len(records), INSERT_ROWS):
                cur.executemany(sql, records[start : start + INSERT_ROWS])

    def run(self, mode: WriteMode, batches: Iterable[Batch]) -> WriteResult:
        present = self.existing_columns(self.target)
        if mode == WriteMode.OVERWRITE:
            return self._overwrite(batches, exists=bool(present))
        self.create_table(self.scratch, seq=True)
        rows, count, size = self.load(self.scratch, batches)
        added: list[str] = []
        if present:
            added = self.add_missing_columns(self.target)
        else:
            # Only a merge needs the key to be unique; an append keeps repeated keys, as it must.
            self.create_table(self.target, unique=mode == WriteMode.MERGE)
        if mode == WriteMode.MERGE:
            self.reject_null_keys()
            self.ensure_unique_key()
        columns = ", ".join(quote_ident(c) for c in [*(f.name for f in self.fields), *RESERVED_COLUMNS])
        sql = (
            f"INSERT INTO {self.q(self.target)} ({columns}) "  # noqa: S608 - identifiers quoted, values are parameters
            f"SELECT {columns} FROM {self.q(self.scratch)} ORDER BY `_ag_seq`"
        )
        if mode == WriteMode.MERGE:
            keys = {k.lower() for k in self.key}
            updates = [
                f"{quote_ident(c)} = VALUES({quote_ident(c)})"
                for c in [*(f.name for f in self.fields), *RESERVED_COLUMNS]
                if c.lower() not in keys
            ]
            sql += " ON DUPLICATE KEY UPDATE " + ", ".join(updates)
        # One InnoDB transaction: the target gets every staged row or none.
        self.exec(sql)
        self.conn.commit()
        self.undo.clear()
        self._drop_scratch()
        return WriteResult(
            table=f"{self.database}.{self.target}",
            rows_written=rows,
            batches=count,
            bytes_sent=size,
            columns_added=[c for c in added if c not in RESERVED_COLUMNS],
        )

    def _overwrite(self, batches: Iterable[Batch], *, exists: bool) -> WriteResult:
        added: list[str] = []
        if exists:
            # The new table keeps the live table's definition (types, indexes, defaults), plus new columns.
            self.exec(f"CREATE TABLE {self.q(self.scratch)} LIKE {self.q(self.target)}")
            self.undo.append(f"DROP TABLE IF EXISTS {self.q(self.scratch)}")
            added = self.add_missing_columns(self.scratch)
        else:
            self.create_table(self.scratch)
        rows, count, size = self.load(self.scratch, batches)
        if exists:
            # One atomic statement: readers see the old table or the new one, never an empty or mixed one.
            self.exec(
                f"RENAME TABLE {self.q(self.target)} TO {self.q(self.old)}, "
                f"{self.q(self.scratch)} TO {self.q(self.target)}"
            )
            self.undo.clear()
            self.exec(f"DROP TABLE IF EXISTS {self.q(self.old)}")
        else:
            self.exec(f"RENAME TABLE {self.q(self.scratch)} TO {self.q(self.target)}")
            self.undo.clear()
        return WriteResult(
            table=f"{self.database}.{self.target}",
            rows_written=rows,
            batches=count,
            bytes_sent=size,
            columns_added=[c for c in added if c not in RESERVED_COLUMNS],
        )

    def _drop_scratch(self) -> None:
        self.exec(f"DROP TABLE IF EXISTS {self.q(self.scratch)}")

    def rollback(self) -> None:
        """Best effort after a failure: roll back, drop the scratch table, undo what was changed."""
        try:
            if not self.conn.open:
                self.conn.ping(reconnect=True)
            self.conn.rollback()
            for statement in [f"DROP TABLE IF EXISTS {self.q(self.scratch)}", *reversed(self.undo)]:
                self.exec(statement)
        except Exception as exc:  # the original error matters more than a failed cleanup
            logger.warning(
                "mysql_write_cleanup_failed",
                table=self.target,
                scratch=self.scratch,
                error=type(exc).__name__,
            )
