"""Schema contracts on a drifting source: a CSV whose header gains a column or whose column changes type
between runs, run by the real executor into PostgreSQL. Each policy, freeze until approval (API personas),
rejection until the source goes back."""

from __future__ import annotations

from typing import Any

import pytest

from apps.monitoring.models import Event
from apps.pipelines.executor import run_execute
from apps.pipelines.models import RejectedRecord, Run, RunLog, RunStatus
from apps.pipelines.services import pipeline_create, run_start
from apps.schemas.models import SchemaChange, SchemaChangeStatus, StreamSchemaVersion
from apps.schemas.services import stream_contract_set

from .conftest import FLIGHTS_CSV

pytestmark = pytest.mark.django_db(transaction=True)

WITH_TAILNUM = """year,month,day,dep_delay,carrier,flight,origin,tailnum
2013,1,1,2,UA,1545,EWR,N14228
2013,1,1,4,UA,1714,LGA,
2013,1,1,75,AA,1141,JFK,N619AA
"""
DELAY_AS_TEXT = """year,month,day,dep_delay,carrier,flight,origin
2013,1,1,2,UA,1545,EWR
2013,1,1,late,UA,1714,LGA
2013,1,1,75,AA,1141,JFK
"""


def direct_definition(table: str = "flights_copy") -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "flights", "kind": "source", "connector": "flights-files", "stream": "flights"},
            {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg", "table": table},
        ],
        "edges": [{"from": "flights", "to": "warehouse"}],
    }


@pytest.fixture
def pipeline(personas, csv_connector, pg_connector):
    return pipeline_create(
        workspace=personas.workspace, name="copy", definition=direct_definition(), user=personas.owner
    )


def run_once(pipeline) -> Run:
    run = run_start(pipeline=pipeline, user=None)
    run_execute(run_id=run.id, attempt=1)
    run.refresh_from_db()
    return run


def columns(conn, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows if not r[0].startswith("_ag_")]


def versions(connector) -> list[tuple[int, bool]]:
    return list(
        StreamSchemaVersion.objects.filter(connector=connector, stream="flights")
        .order_by("version")
        .values_list("version", "is_accepted")
    )


def test_every_run_records_a_version_and_evolve_accepts_new_columns(
    pipeline, csv_connector, flights_file, scratch_conn, pg_schema
):
    assert run_once(pipeline).status == RunStatus.SUCCEEDED
    assert versions(csv_connector) == [(1, True)]

    flights_file.write_text(WITH_TAILNUM)
    run = run_once(pipeline)
    assert run.status == RunStatus.SUCCEEDED
    # Discovered, recorded and accepted before anything is read, so this very run is planned again and
    # reads the new column; the destination table gains it.
    assert versions(csv_connector) == [(1, True), (2, True)]
    (drift,) = Event.objects.filter(type="schema.drift_detected")
    assert drift.payload["stream"] == "flights"
    assert drift.payload["contract"] == "accepted"
    assert drift.payload["changes"]["added_fields"] == ["tailnum"]
    (note,) = RunLog.objects.filter(run=run, message__contains="changed since it was last read")
    assert "new column(s) tailnum" in note.message and "version 2" in note.message
    assert columns(scratch_conn, pg_schema, "flights_copy") == [
        "year",
        "month",
        "day",
        "dep_delay",
        "carrier",
        "flight",
        "origin",
        "tailnum",
    ]
    loaded = scratch_conn.execute(
        f'SELECT flight, tailnum FROM "{pg_schema}".flights_copy WHERE _ag_run_id = %s ORDER BY flight',
        (str(run.id),),
    ).fetchall()
    assert loaded == [(1141, "N619AA"), (1545, "N14228"), (1714, None)]

    # The next run finds nothing new: one discovery per run, no new version, no second drift event.
    run = run_once(pipeline)
    assert (run.status, run.rows_written) == (RunStatus.SUCCEEDED, 3)
    assert versions(csv_connector) == [(1, True), (2, True)]
    assert Event.objects.filter(type="schema.drift_detected").count() == 1
    assert not RunLog.objects.filter(run=run, message__contains="changed since it was last read").exists()


def test_freeze_blocks_runs_until_an_editor_approves(
    pipeline, personas, csv_connector, flights_file, client_for, scratch_conn, pg_schema
):
    stream_contract_set(connector=csv_connector, stream="flights", user=personas.editor, new_columns="freeze")
    assert run_once(pipeline).status == RunStatus.SUCCEEDED

    flights_file.write_text(WITH_TAILNUM)
    run = run_once(pipeline)
    (change,) = SchemaChange.objects.all()
    assert (change.status, change.from_version, change.to_version, change.frozen) == (
        "pending",
        1,
        2,
        ["new_columns"],
    )
    assert run.status == RunStatus.FAILED and run.error_kind == "config"
    assert run.error == (
        f"Stream 'flights' of connector 'flights-files' has pending schema change #{change.id} "
        "(new column(s) 'tailnum'); its contract freezes new_columns, so an editor must approve or "
        "reject it first."
    )
    assert run.rows_written == 0
    drift = Event.objects.get(type="schema.drift_detected")
    assert (drift.payload["contract"], drift.payload["schema_change"]) == ("pending", change.id)

    # Still blocked, by the same change, without a second one.
    assert run_once(pipeline).status == RunStatus.FAILED
    assert SchemaChange.objects.count() == 1

    url = f"/api/v1/schemas/changes/{change.id}/approve/"
    assert client_for(personas.viewer).post(url).status_code == 403
    assert client_for(personas.outsider).post(url).status_code == 404
    assert SchemaChange.objects.get().status == SchemaChangeStatus.PENDING
    response = client_for(personas.editor).post(url)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "approved" and body["decided_by"] == "editor@acme.test"
    assert versions(csv_connector) == [(1, True), (2, True)]

    assert run_once(pipeline).status == RunStatus.SUCCEEDED
    assert "tailnum" in columns(scratch_conn, pg_schema, "flights_copy")
    assert client_for(personas.editor).post(url).status_code == 400  # decided already


def test_a_rejected_change_fails_runs_until_the_source_goes_back(
    pipeline, personas, csv_connector, flights_file
):
    stream_contract_set(connector=csv_connector, stream="", user=None, type_changes="freeze")
    assert run_once(pipeline).status == RunStatus.SUCCEEDED
    flights_file.write_text(DELAY_AS_TEXT)
    assert run_once(pipeline).status == RunStatus.FAILED
    change = SchemaChange.objects.get()
    assert change.changes["type_changes"] == {"dep_delay": {"from": "integer", "to": "string"}}

    from apps.schemas.services import schema_change_reject

    schema_change_reject(change=change, user=personas.editor)
    run = run_once(pipeline)
    assert run.status == RunStatus.FAILED
    assert f"schema change #{change.id} was rejected" in run.error

    flights_file.write_text(FLIGHTS_CSV)
    run = run_once(pipeline)
    assert run.status == RunStatus.SUCCEEDED and run.rows_written == 7
    # The source's return is a version of its own, equal to the accepted one and so accepted.
    assert versions(csv_connector) == [(1, True), (2, False), (3, True)]


def test_discard_value_drops_new_columns_and_nulls_values_of_the_old_type(
    pipeline, csv_connector, flights_file, scratch_conn, pg_schema
):
    stream_contract_set(
        connector=csv_connector,
        stream="flights",
        user=None,
        new_columns="discard_value",
        type_changes="discard_value",
    )
    assert run_once(pipeline).status == RunStatus.SUCCEEDED
    flights_file.write_text(WITH_TAILNUM)
    run = run_once(pipeline)
    assert (run.status, run.rows_written, run.rows_rejected) == (RunStatus.SUCCEEDED, 3, 0)
    assert versions(csv_connector) == [(1, True), (2, False)]
    assert "tailnum" not in columns(scratch_conn, pg_schema, "flights_copy")

    flights_file.write_text(DELAY_AS_TEXT)
    run = run_once(pipeline)
    assert (run.status, run.rows_written, run.rows_rejected) == (RunStatus.SUCCEEDED, 3, 0)
    loaded = scratch_conn.execute(
        f'SELECT flight, dep_delay FROM "{pg_schema}".flights_copy WHERE _ag_run_id = %s ORDER BY flight',
        (str(run.id),),
    ).fetchall()
    assert loaded == [(1141, 75), (1545, 2), (1714, None)]


def test_discard_row_quarantines_rows_with_new_values_or_values_of_the_old_type(
    pipeline, csv_connector, flights_file, scratch_conn, pg_schema
):
    stream_contract_set(
        connector=csv_connector,
        stream="flights",
        user=None,
        new_columns="discard_row",
        type_changes="discard_row",
    )
    assert run_once(pipeline).status == RunStatus.SUCCEEDED
    flights_file.write_text(WITH_TAILNUM)
    run = run_once(pipeline)
    assert (run.status, run.rows_read, run.rows_written, run.rows_rejected) == (RunStatus.SUCCEEDED, 1, 1, 2)
    refused = RejectedRecord.objects.filter(run=run).order_by("id")
    assert [r.raw["flight"] for r in refused] == [1545, 1141]
    assert refused[0].node_id == "flights" and refused[0].source == "schema contract"
    assert refused[0].reason == (
        "a value in new column(s) 'tailnum', which stream 'flights' does not accept "
        "(contract new_columns: discard_row)"
    )
    assert refused[0].raw["tailnum"] == "N14228"

    flights_file.write_text(DELAY_AS_TEXT)
    run = run_once(pipeline)
    assert (run.status, run.rows_written, run.rows_rejected) == (RunStatus.SUCCEEDED, 2, 1)
    (bad,) = RejectedRecord.objects.filter(run=run)
    # The column is read as its accepted type: the CSV source refuses the value, naming it and its line.
    assert bad.raw["dep_delay"] == "late"
    assert bad.reason == "dep_delay: 'late' is not a valid integer"
    assert bad.line is not None


@pytest.fixture
def app_table(scratch_conn):
    import secrets

    schema = f"src_{secrets.token_hex(4)}"
    scratch_conn.execute(f'CREATE SCHEMA "{schema}"')
    scratch_conn.execute(f'CREATE TABLE "{schema}".orders (id int PRIMARY KEY, amount int)')
    scratch_conn.execute(f'INSERT INTO "{schema}".orders SELECT g, g * 10 FROM generate_series(1, 4) AS g')
    yield schema
    scratch_conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def orders_pipeline(personas, pg_config, pg_connector, app_table):
    from apps.connectors.services import connector_create

    source = connector_create(
        workspace=personas.workspace,
        name="app-db",
        connector_type="postgres_source",
        config={**pg_config, "schema": app_table},
        user=None,
    )
    definition = {
        "nodes": [
            {"id": "orders", "kind": "source", "connector": "app-db", "stream": f"{app_table}.orders"},
            {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg", "table": "orders"},
        ],
        "edges": [{"from": "orders", "to": "warehouse"}],
    }
    pipeline = pipeline_create(workspace=personas.workspace, name="orders", definition=definition, user=None)
    return pipeline, source


def test_a_postgres_table_with_an_added_column_under_freeze_then_discard_row(
    orders_pipeline, personas, app_table, scratch_conn, pg_schema
):
    pipeline, source = orders_pipeline
    stream = f"{app_table}.orders"
    stream_contract_set(connector=source, stream=stream, user=None, new_columns="freeze")
    assert run_once(pipeline).status == RunStatus.SUCCEEDED

    scratch_conn.execute(f'ALTER TABLE "{app_table}".orders ADD COLUMN coupon text')
    scratch_conn.execute(f"UPDATE \"{app_table}\".orders SET coupon = 'SPRING' WHERE id = 2")
    run = run_once(pipeline)
    change = SchemaChange.objects.get()
    assert run.status == RunStatus.FAILED
    assert f"Stream '{stream}' of connector 'app-db' has pending schema change #{change.id}" in run.error
    assert change.changes["added_fields"] == ["coupon"]

    # The contract changes instead of the change being approved: rows with a coupon are refused.
    stream_contract_set(connector=source, stream=stream, user=None, new_columns="discard_row")
    run = run_once(pipeline)
    assert (run.status, run.rows_written, run.rows_rejected) == (RunStatus.SUCCEEDED, 3, 1)
    (refused,) = RejectedRecord.objects.filter(run=run)
    assert refused.raw == {"id": 2, "amount": 20, "coupon": "SPRING"}
    assert columns(scratch_conn, pg_schema, "orders") == ["id", "amount"]
