"""MySQL / MariaDB connector settings: the config model, custom queries and the limits the connector works
within."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field as PydanticField
from pydantic import SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import DEFAULT_CHUNK_SIZE
from aggregator.ssrf import SSRFBlocked, check_literal_host
from apps.connectors.base import ConnectorConfig, secret_field
from apps.connectors.sdk.sql import MYSQL

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
MAX_IDENTIFIER_LENGTH = MYSQL.max_identifier
# Connect and answer timeout of catalogue reads made for a person waiting on an API request.
CATALOGUE_TIMEOUT_S = 10.0
# Errors meaning "LOAD DATA LOCAL is not allowed here": fall back to INSERTs. 1148: not allowed (MariaDB,
# old MySQL); 3948: local data disabled (MySQL 8).
_LOAD_DATA_REFUSED = frozenset({1148, 3948})
# The write connection refuses silent truncation: a value that does not fit its column is an error, so a
# failed batch fails the write instead of landing damaged.
WRITE_SQL_MODE = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
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
