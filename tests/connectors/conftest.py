"""Fixtures for connector tests: import and data directories of the test's own (the fixtures are the test
workspace's areas in them), and a scratch PostgreSQL database (created for the session on the server the
tests run against, dropped at the end)."""

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
# The workspace of tests that run a connector type directly, without a database: configs are bound to it.
TEST_WORKSPACE_ID = 7


def bound(connector_type: Any, raw: dict[str, Any], *, workspace_id: int = TEST_WORKSPACE_ID) -> Any:
    """A config validated and bound to a workspace, as `selectors.connector_runtime` hands it over."""
    instance = connector_type() if isinstance(connector_type, type) else connector_type
    return instance.bind(instance.validate_config(raw), workspace_id=workspace_id)


def _test_workspace_id(request: pytest.FixtureRequest) -> int:
    if "personas" in request.fixturenames:
        return int(request.getfixturevalue("personas").workspace.id)
    return TEST_WORKSPACE_ID


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
def import_dir(settings: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The import area of the test's workspace (the personas' when the test has them, else
    TEST_WORKSPACE_ID's) in an import directory of the test's own: a file written here is what a
    connector's `path` names by its path relative to it."""
    root = tmp_path / "import"
    root.mkdir()
    settings.AGGREGATOR_IMPORT_DIR = root
    area = root / "workspaces" / str(_test_workspace_id(request))
    area.mkdir(parents=True)
    return area


@pytest.fixture
def data_dir(settings: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The data area of the test's workspace, as `import_dir` for the destinations that write files."""
    root = tmp_path / "data"
    root.mkdir()
    settings.AGGREGATOR_DATA_DIR = root
    area = root / "workspaces" / str(_test_workspace_id(request))
    area.mkdir(parents=True)
    return area


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
