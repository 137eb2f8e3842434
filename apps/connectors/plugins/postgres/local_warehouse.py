"""Local warehouse: a PostgreSQL database of the workspace's own on the platform's server, with nothing to
set up — the destination a first pipeline can load into before anyone has a warehouse to point at.

The server is the one `settings.AGGREGATOR_LOCAL_WAREHOUSE_URL` names (an admin connection): `manage.py up`
sets it to its embedded PostgreSQL; elsewhere an operator may set it, and without it the type is not offered.
For workspace N the platform makes, on first use, a role and a database both named
`<AGGREGATOR_LOCAL_WAREHOUSE_DB_PREFIX>N` (`warehouse_N`), the database owned by that role and closed to
every other role. A connector's config holds only the schema: the server, database and role come from the
connector's workspace (`bind`), so a workspace can name no other's database, and the host — the platform's
own, typically loopback — never passes through a config a user wrote, which is why the SSRF guard that
refuses loopback for every typed host can stay strict.

Reading and writing are the `postgres` destination's and the `postgres_source` source's (COPY through
staging, append / overwrite / merge, `_ag_*` columns), so a Local warehouse is also a source: its tables are
streams for the next pipeline. That is why this type lives in the `postgres` plugin package rather than
in a module of its own: it is a PostgreSQL adapter with a provisioning step, and a plugin never imports
another plugin.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from django.conf import settings
from psycopg import errors as pg_errors
from psycopg import sql
from pydantic import Field, SecretStr

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, Batch, ReadItem, StreamSchema, WriteMode, WriteResult
from apps.connectors.base import (
    CheckResult,
    ConnectorConfig,
    ConnectorError,
    ConnectorKind,
    ConnectorType,
    TableDescription,
)

from .connection import ManagedPostgresConfig, _libpq_reason
from .destination import PostgresDestination
from .source import PostgresSource

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
ADMIN_CONNECT_TIMEOUT_S = 10
ADVISORY_LOCK_PREFIX = "aggregator.local_warehouse:"
UNAVAILABLE = (
    "The Local warehouse is not available here: it lives on the platform's own PostgreSQL, which "
    "`manage.py up` runs (or set AGGREGATOR_LOCAL_WAREHOUSE_URL)."
)

# Databases known to exist, per admin URL: provisioning costs a few catalogue queries, once per process.
_provisioned: set[tuple[str, str]] = set()
_provision_lock = threading.Lock()


class LocalWarehouseConfig(ConnectorConfig):
    db_schema: str = Field(
        default="public",
        alias="schema",
        title="Schema",
        description="Tables are written (and read) in this schema of the workspace's database.",
        min_length=1,
        max_length=63,
        pattern=r"^[^\x00]+$",
    )
    chunk_size: int = Field(
        default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch (when read as a source)"
    )

    model_config = {**ConnectorConfig.model_config, "populate_by_name": True}


def _admin_url() -> str:
    url = str(getattr(settings, "AGGREGATOR_LOCAL_WAREHOUSE_URL", "") or "")
    if not url:
        raise ConnectorError(UNAVAILABLE, field="connector")
    return url


def database_name(workspace_id: int) -> str:
    """The database (and role) of a workspace's Local warehouse."""
    prefix = str(settings.AGGREGATOR_LOCAL_WAREHOUSE_DB_PREFIX)
    if not _PREFIX.match(prefix):
        raise ConnectorError(
            "AGGREGATOR_LOCAL_WAREHOUSE_DB_PREFIX must be lower-case letters, digits and underscores.",
            field="connector",
        )
    return f"{prefix}{int(workspace_id)}"


def _role_password(database: str) -> str:
    # Derived, not stored: nothing to lose or rotate by hand, and it follows SECRET_KEY (the next provisioning
    # sets the new one). The embedded server trusts loopback anyway; an operator's server may not.
    return hmac.new(
        str(settings.SECRET_KEY).encode(), f"local-warehouse:{database}".encode(), hashlib.sha256
    ).hexdigest()


def _bound_config(config: LocalWarehouseConfig, workspace_id: int) -> ManagedPostgresConfig:
    admin = psycopg.conninfo.conninfo_to_dict(_admin_url())
    database = database_name(workspace_id)
    return ManagedPostgresConfig(
        host=str(admin.get("host") or "127.0.0.1"),
        port=int(admin.get("port") or 5432),
        database=database,
        user=database,
        password=SecretStr(_role_password(database)),
        sslmode=str(admin.get("sslmode") or "prefer"),  # type: ignore[arg-type]
        schema=config.db_schema,
        chunk_size=config.chunk_size,
    )


def provision(config: ManagedPostgresConfig) -> None:
    """Make the workspace's role and database if they do not exist yet (idempotent, safe to race)."""
    url = _admin_url()
    key = (url, config.database)
    if key in _provisioned:
        return
    with _provision_lock:
        if key in _provisioned:
            return
        admin_password = str(psycopg.conninfo.conninfo_to_dict(url).get("password") or "") or None
        name = sql.Identifier(config.database)
        password = sql.Literal(_role_password(config.database))
        try:
            with psycopg.connect(
                url, autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT_S, application_name="aggregator"
            ) as conn:
                # The thread lock above holds only within this process: each worker process provisions on its
                # first use, and two doing ALTER ROLE or REVOKE on the same role or database at once fail
                # with "tuple concurrently updated". Held until the connection closes.
                conn.execute(
                    "SELECT pg_advisory_lock(hashtext(%s))", (f"{ADVISORY_LOCK_PREFIX}{config.database}",)
                )
                # Not a superuser, cannot make roles or databases: it owns one database and nothing else.
                try:
                    conn.execute(
                        sql.SQL(
                            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
                        ).format(name, password)
                    )
                except (pg_errors.DuplicateObject, pg_errors.UniqueViolation):
                    conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(name, password))
                with contextlib.suppress(pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, name))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
        except psycopg.Error as exc:
            message, _ = _libpq_reason(exc, admin_password)
            raise ConnectorError(
                f"The Local warehouse's server could not prepare the workspace's database: {message}",
                field="connector",
            ) from None
        _provisioned.add(key)


def drop_database(workspace_id: int) -> None:
    """Drop a workspace's Local warehouse database and role (operations and tests; nothing calls it on its
    own, so deleting a connector never deletes loaded data)."""
    database = database_name(workspace_id)
    with psycopg.connect(_admin_url(), autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT_S) as conn:
        name = sql.Identifier(database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(name))
    with _provision_lock:
        _provisioned.difference_update({key for key in _provisioned if key[1] == database})


class LocalWarehouse(ConnectorType):
    slug = "local_warehouse"
    title = "Local warehouse"
    kind = ConnectorKind.BOTH
    description = (
        "A PostgreSQL database of this workspace on the platform's own server: nothing to set up. Loads "
        "like the PostgreSQL destination; its tables can be read back as streams."
    )
    config_model = LocalWarehouseConfig
    describes_tables = True

    @classmethod
    def available(cls) -> bool:
        return bool(getattr(settings, "AGGREGATOR_LOCAL_WAREHOUSE_URL", ""))

    def bind(self, config: Any, *, workspace_id: int) -> Any:
        if not isinstance(config, LocalWarehouseConfig):
            return config
        if not self.available():
            # Left unbound: each operation then says why it cannot run.
            return config
        return _bound_config(config, workspace_id)

    @staticmethod
    def _ready(config: Any) -> ManagedPostgresConfig:
        if not isinstance(config, ManagedPostgresConfig):
            raise ConnectorError(UNAVAILABLE, field="connector")
        provision(config)
        return config

    def check(self, config: Any) -> CheckResult:
        result = PostgresDestination().check(self._ready(config))
        if not result.ok:
            return result
        return CheckResult(
            ok=True,
            message=f"Local warehouse ready: database {config.database}, schema {config.db_schema}.",
            duration_s=result.duration_s,
        )

    def discover(self, config: Any) -> list[StreamSchema]:
        return PostgresSource().discover(self._ready(config))

    def read(self, config: Any, stream: StreamSchema, state: dict[str, Any] | None) -> Iterator[ReadItem]:
        return PostgresSource().read(self._ready(config), stream, state)

    def write(
        self,
        config: Any,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        write_mode: WriteMode,
        primary_key: list[str] | None,
        run_id: str,
        *,
        table: str | None = None,
    ) -> WriteResult:
        return PostgresDestination().write(
            self._ready(config), stream_schema, batches, write_mode, primary_key, run_id, table=table
        )

    def remove_run_rows(self, config: Any, table: str, run_id: str) -> int | None:
        return PostgresDestination().remove_run_rows(self._ready(config), table, run_id)

    def list_tables(self, config: Any) -> list[str]:
        return PostgresDestination().list_tables(self._ready(config))

    def describe_table(self, config: Any, table: str) -> TableDescription | None:
        return PostgresDestination().describe_table(self._ready(config), table)
