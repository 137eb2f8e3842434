"""MySQL / MariaDB sessions: connecting (SSRF-vetted address, TLS, timeouts), errors as ConnectorErrors,
statement execution, identifier quoting (the SDK's MySQL dialect) and the guarded LOAD DATA LOCAL INFILE
connection."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

import pymysql
import pymysql.converters
import pymysql.protocol

from aggregator.logging import get_logger
from aggregator.ssrf import HostLookupError, SSRFBlocked, vetted_address
from apps.connectors.base import ConnectorError, secret_value
from apps.connectors.sdk.sql import MYSQL

from .config import MAX_IDENTIFIER_LENGTH, WRITE_SQL_MODE, MySqlConfig, SslMode

logger = get_logger(__name__)

# Encoders only, no decoders: every result value arrives as text (bytes for binary columns).
_ENCODERS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


def quote_ident(name: str) -> str:
    """A MySQL identifier in backticks, safe to put in a statement that is executed with parameters
    (PyMySQL %-formats such statements, so `%` is doubled as well): the SDK's MySQL dialect."""
    return MYSQL.quote(name)


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


def connect(config: MySqlConfig, *, read_timeout: float | None = None, write: bool = False) -> Any:
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
