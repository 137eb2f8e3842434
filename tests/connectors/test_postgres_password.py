"""A wrong password against a real PostgreSQL that asks for one. The machine's server trusts local
connections, so this starts its own (`aggregator.embedded.EmbeddedPostgres`) and makes 127.0.0.1 require
scram-sha-256 for every role but the `postgres` superuser the fixture itself uses."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aggregator.embedded import EmbeddedPostgres
from apps.connectors.base import ConnectorError, ConnectorType, run_check
from apps.connectors.plugins.postgres import PostgresDestination, PostgresSource
from tests.connectors.conftest import CANARY_PASSWORD

ROLE = "agg_checker"
RIGHT_PASSWORD = "right-" + secrets.token_hex(8)
PG_HBA = """\
# Written by tests/connectors/test_postgres_password.py: the harness's superuser stays trusted, every other
# role must prove its password.
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    data_dir = tmp_path_factory.mktemp("pw") / "pg"
    server = EmbeddedPostgres(data_dir, settings={"fsync": "off"})
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(RIGHT_PASSWORD)
                )
            )
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(ROLE)))
            # Rewrite pg_hba.conf in place (its owner, the server's system user, stays) and reload.
            hba = data_dir / "pg_hba.conf"
            hba.write_text(PG_HBA)
            conn.execute("SELECT pg_reload_conf()")
            errors = conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL").fetchone()
            assert errors == (0,)
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _config(server: EmbeddedPostgres, password: str) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "database": "postgres",
        "user": ROLE,
        "password": password,
        "schema": "public",
        "sslmode": "disable",
    }


@pytest.fixture(autouse=True)
def _allow_loopback(settings: Any) -> None:
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]


def test_the_server_really_asks_for_the_password(password_server: EmbeddedPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1", port=password_server.port, dbname="postgres", user=ROLE, password="nope"
        ).close()
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(host="127.0.0.1", port=password_server.port, dbname="postgres", user=ROLE).close()


@pytest.mark.parametrize(
    "connector_type", [PostgresDestination, PostgresSource], ids=["postgres", "postgres_source"]
)
def test_a_wrong_password_names_the_password_field_and_not_the_password(
    password_server: EmbeddedPostgres, connector_type: type[ConnectorType], caplog: Any
) -> None:
    connector = connector_type()
    config = connector.validate_config(_config(password_server, CANARY_PASSWORD))
    expected = (
        f"Cannot connect to 127.0.0.1:{password_server.port}: "
        f'password authentication failed for user "{ROLE}"'
    )

    with pytest.raises(ConnectorError) as error:
        connector.check(config)
    assert (error.value.message, error.value.field) == (expected, "password")

    result = run_check(connector, config)
    assert (result.ok, result.message) == (False, expected)
    for text in (error.value.message, result.message, repr(config), caplog.text):
        assert CANARY_PASSWORD not in text


@pytest.mark.parametrize(
    "connector_type", [PostgresDestination, PostgresSource], ids=["postgres", "postgres_source"]
)
def test_the_right_password_passes_the_check(
    password_server: EmbeddedPostgres, connector_type: type[ConnectorType]
) -> None:
    connector = connector_type()
    result = run_check(connector, connector.validate_config(_config(password_server, RIGHT_PASSWORD)))
    assert result.ok, result.message
    assert result.message.startswith("Connected to PostgreSQL ")


def test_a_missing_password_names_the_password_field(password_server: EmbeddedPostgres) -> None:
    raw = _config(password_server, "")
    del raw["password"]
    with pytest.raises(ConnectorError) as error:
        PostgresDestination().check(PostgresDestination.validate_config(raw))
    assert error.value.field == "password"
    assert "no password supplied" in error.value.message
