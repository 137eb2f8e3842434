"""The Local warehouse: a database and role per workspace on the platform's own PostgreSQL, given to every
new workspace, loading like the PostgreSQL destination, and out of reach of every other workspace and of
anything a user types."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from psycopg.conninfo import make_conninfo

from aggregator.dataplane import Batch, FieldType, StreamSchema
from aggregator.dataplane import Field as StreamField
from apps.connectors.models import Connector
from apps.connectors.plugins.postgres import local_warehouse
from apps.connectors.selectors import connector_runtime, connector_type_list
from apps.connectors.services import connector_check, connector_create, connector_local_warehouse_ensure
from apps.users.services import workspace_create

from .conftest import _server

pytestmark = pytest.mark.django_db(transaction=True)


def admin_url() -> str:
    server = _server()
    return make_conninfo(
        host=server["host"],
        port=server["port"],
        user=server["user"],
        password=server["password"],
        dbname="postgres",
    )


@pytest.fixture
def warehouse_settings(settings: Any) -> Iterator[str]:
    """The Local warehouse on the test server, with a prefix of this test's own; its databases and roles
    are dropped afterwards."""
    prefix = f"test_wh_{secrets.token_hex(3)}_"
    settings.AGGREGATOR_LOCAL_WAREHOUSE_URL = admin_url()
    settings.AGGREGATOR_LOCAL_WAREHOUSE_DB_PREFIX = prefix
    yield prefix
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
        ]
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        roles = [
            r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (prefix + "%",))
        ]
        for role in roles:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    local_warehouse._provisioned.clear()


def _schema() -> StreamSchema:
    return StreamSchema(
        name="late",
        fields=(StreamField("flight", FieldType.INTEGER), StreamField("carrier", FieldType.STRING)),
        primary_key=("flight",),
    )


def _batch(rows: list[tuple[int, str]]) -> Batch:
    table = pa.table({"flight": [r[0] for r in rows], "carrier": [r[1] for r in rows]})
    return Batch(table, stream="late")


def _write(connector: Connector, rows: list[tuple[int, str]], run_id: str = "1") -> None:
    connector_type, config = connector_runtime(connector)
    connector_type.write(config, _schema(), [_batch(rows)], "append", None, run_id, table="late_flights")


def _rows(workspace_id: int, prefix: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(make_conninfo(admin_url(), dbname=f"{prefix}{workspace_id}")) as conn:
        return conn.execute(
            "SELECT flight, carrier, _ag_run_id FROM public.late_flights ORDER BY flight"
        ).fetchall()


def test_without_a_server_the_type_is_neither_offered_nor_creatable(personas, settings):
    settings.AGGREGATOR_LOCAL_WAREHOUSE_URL = ""
    assert "local_warehouse" not in [t.slug for t in connector_type_list()]
    assert connector_local_warehouse_ensure(workspace=personas.workspace) is None
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        connector_create(
            workspace=personas.workspace,
            user=personas.owner,
            name="lw",
            connector_type="local_warehouse",
            config={},
        )
    assert excinfo.value.message_dict == {
        "connector_type": ["Connector type 'local_warehouse' is not available here."]
    }


def test_a_new_workspace_gets_its_local_warehouse(
    warehouse_settings, user_factory, django_capture_on_commit_callbacks
):
    user = user_factory()
    with django_capture_on_commit_callbacks(execute=True):
        workspace = workspace_create(name="Fresh", created_by=user)
    connectors = list(
        Connector.objects.filter(workspace=workspace).values_list("name", "connector_type", "config")
    )
    assert connectors == [("Local warehouse", "local_warehouse", {"schema": "public", "chunk_size": 50_000})]
    # Idempotent: asking again gives the same connector.
    assert connector_local_warehouse_ensure(workspace=workspace).name == "Local warehouse"
    assert Connector.objects.filter(workspace=workspace).count() == 1


def test_loads_into_the_workspaces_own_database_owned_by_its_own_role(warehouse_settings, personas):
    connector = connector_local_warehouse_ensure(workspace=personas.workspace, user=personas.owner)
    checked = connector_check(connector=connector)
    database = f"{warehouse_settings}{personas.workspace.id}"
    assert checked.last_check_status == "succeeded", checked.last_check_message
    assert checked.last_check_message == f"Local warehouse ready: database {database}, schema public."

    _write(connector, [(2, "AA"), (1, "UA")], run_id="41")
    assert _rows(personas.workspace.id, warehouse_settings) == [(1, "UA", "41"), (2, "AA", "41")]

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        owner, public_can_connect = conn.execute(
            "SELECT pg_get_userbyid(datdba), has_database_privilege('public', oid, 'CONNECT') "
            "FROM pg_database WHERE datname = %s",
            (database,),
        ).fetchone()
        role = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s", (database,)
        ).fetchone()
    assert (owner, public_can_connect) == (database, False)
    assert role == (False, False, False)

    # Read back as a source: its tables are streams.
    connector_type, config = connector_runtime(connector)
    streams = {s.name: [f.name for f in s.fields] for s in connector_type.discover(config)}
    assert streams == {"public.late_flights": ["flight", "carrier", "_ag_run_id", "_ag_loaded_at"]}


def test_two_workspaces_never_share_a_database(warehouse_settings, personas):
    mine = connector_local_warehouse_ensure(workspace=personas.workspace)
    theirs = connector_local_warehouse_ensure(workspace=personas.other_workspace)
    _write(mine, [(1, "UA")], run_id="1")
    _write(theirs, [(7, "DL")], run_id="2")
    assert _rows(personas.workspace.id, warehouse_settings) == [(1, "UA", "1")]
    assert _rows(personas.other_workspace.id, warehouse_settings) == [(7, "DL", "2")]
    _, config = connector_runtime(theirs)
    assert (config.database, config.user) == ((f"{warehouse_settings}{personas.other_workspace.id}",) * 2)


def test_a_config_cannot_name_a_server_database_or_role(warehouse_settings, personas, client_for):
    body = {
        "name": "sneaky",
        "connector_type": "local_warehouse",
        "config": {"host": "10.0.0.1", "database": "aggregator", "user": "postgres"},
    }
    response = client_for(personas.owner).post("/api/v1/connectors/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"config.host", "config.database", "config.user"}
    assert not Connector.objects.filter(name="sneaky").exists()


def test_the_platforms_server_stays_refused_to_what_users_type(warehouse_settings, personas, client_for):
    """The warehouse skips the SSRF guard only because no user wrote its host: a PostgreSQL connector that
    names the very same server is refused, when saved and (for a name) when it connects."""
    server = _server()
    client = client_for(personas.owner)
    refused = {
        "127.0.0.1": "Address 127.0.0.1 of host 127.0.0.1 is not allowed (loopback)",
        "localhost": "Host localhost is this server (loopback) and is not allowed",
    }
    for host, reason in refused.items():
        body = {
            "name": "typed",
            "connector_type": "postgres",
            "config": {"host": host, "port": server["port"], "database": "postgres", "user": "postgres"},
        }
        response = client.post("/api/v1/connectors/", body, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"config.host": [reason]}
    assert not Connector.objects.filter(name="typed").exists()


class _NeverProvisioned(set):
    def __contains__(self, item: object) -> bool:
        return False


def test_worker_processes_provisioning_at_once_all_succeed(warehouse_settings, personas, monkeypatch):
    """Each worker process provisions on its first use, its thread lock shared with no other process: the
    threads here go without it (and without the memory of what is provisioned), as processes do. ALTER ROLE
    and REVOKE on one role and database at once failed a run with "tuple concurrently updated"."""
    monkeypatch.setattr(local_warehouse, "_provision_lock", contextlib.nullcontext())
    monkeypatch.setattr(local_warehouse, "_provisioned", _NeverProvisioned())
    config = local_warehouse._bound_config(local_warehouse.LocalWarehouseConfig(), personas.workspace.id)
    errors: list[Exception] = []

    def provision(start: threading.Barrier) -> None:
        start.wait()
        try:
            local_warehouse.provision(config)
        except Exception as exc:
            errors.append(exc)

    for _ in range(3):
        start = threading.Barrier(6)
        threads = [threading.Thread(target=provision, args=(start,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (config.database,)
        ).fetchone()
    assert owner == (config.database,)
