"""PostgreSQL connection settings and sessions, shared by the destination (`postgres`), the source
(`postgres_source`) and the Local warehouse.

Connection: host/port/database/user/password/sslmode fields, never a DSN or free-form options, so a config
cannot smuggle in libpq parameters. The host goes through the SSRF guard, and libpq connects to the address
that was checked (`hostaddr=`, with `host=` kept for TLS verification).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, Literal

import psycopg
from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from aggregator import ssrf
from aggregator.dataplane import DEFAULT_CHUNK_SIZE
from apps.connectors.base import ConnectorConfig, ConnectorError, secret_field, secret_value
from apps.connectors.sdk.sql import POSTGRES

MAX_IDENTIFIER_BYTES = POSTGRES.max_identifier
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
    return POSTGRES.identifier(name, field)


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
