"""Fixtures for connector tests: an import directory of the test's own, and a scratch PostgreSQL database
(created for the session on the server the tests run against, dropped at the end)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings as django_settings

from apps.connectors.services import connector_create

CANARY_PASSWORD = "canary-Pa55-" + "7f3e9c1d"


def _server() -> dict[str, Any]:
    db = django_settings.DATABASES["default"]
    return {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
    }


@pytest.fixture(scope="session")
def scratch_database() -> Iterator[str]:
    name = f"ag_connectors_test_{os.getpid()}"
    server = _server()
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_schema() -> str:
    return f"t_{secrets.token_hex(4)}"


@pytest.fixture
def pg_config(settings: Any, scratch_database: str, pg_schema: str) -> dict[str, Any]:
    """A PostgreSQL destination config for the scratch database (the SSRF guard allows this host only)."""
    server = _server()
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    config = {
        "host": "127.0.0.1",
        "port": server["port"],
        "database": scratch_database,
        "user": server["user"],
        "schema": pg_schema,
        "sslmode": "disable",
    }
    if server["password"]:
        config["password"] = server["password"]
    return config


@pytest.fixture
def scratch_conn(scratch_database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dbname=scratch_database, autocommit=True, **_server()) as conn:
        yield conn


@pytest.fixture
def import_dir(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "import"
    root.mkdir()
    settings.AGGREGATOR_IMPORT_DIR = root
    return root


@pytest.fixture
def csv_connector(personas: Any, import_dir: Path) -> Any:
    (import_dir / "people.csv").write_text("id,name,score\n1,alice,1.5\n2,bob,2.5\n3,carol,x\n")
    return connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="people-files",
        connector_type="csv_file",
        config={"path": "people.csv", "column_types": {"score": "number"}},
    )


@pytest.fixture
def pg_connector(personas: Any, pg_config: dict[str, Any]) -> Any:
    return connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="warehouse",
        connector_type="postgres",
        config={**pg_config, "password": CANARY_PASSWORD},
    )
