"""Runs end to end on real services: CSV file → filter → PostgreSQL, executed by the real executor."""

from __future__ import annotations

import pytest

from apps.pipelines.executor import run_execute
from apps.pipelines.models import NodeRun, RejectedRecord, Run, RunLog, RunStatus
from apps.pipelines.services import pipeline_create, run_cancel, run_start

from .conftest import flights_definition

pytestmark = pytest.mark.django_db(transaction=True)


def table_rows(conn, schema, table, columns="year, month, day, dep_delay, carrier, flight"):
    return conn.execute(f'SELECT {columns} FROM "{schema}"."{table}" ORDER BY flight').fetchall()


@pytest.fixture
def pipeline(personas, csv_connector, pg_connector):
    return pipeline_create(
        workspace=personas.workspace,
        name="late flights",
        definition=flights_definition(),
        user=personas.owner,
    )


def test_csv_filter_postgres_loads_exactly_the_matching_rows(pipeline, scratch_conn, pg_schema):
    run = run_start(pipeline=pipeline, user=None)
    assert run.status == RunStatus.QUEUED

    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert (run.status, run.rows_read, run.rows_written, run.rows_rejected) == (RunStatus.SUCCEEDED, 7, 3, 0)
    assert run.started_at and run.finished_at and run.finished_at >= run.started_at

    assert table_rows(scratch_conn, pg_schema, "late_flights") == [
        (2013, 1, 3, 61, "AA", 33),
        (2013, 1, 1, 75, "AA", 1141),
        (2013, 1, 2, 101, "UA", 1696),
    ]
    run_ids = scratch_conn.execute(f'SELECT DISTINCT _ag_run_id FROM "{pg_schema}".late_flights').fetchall()
    assert run_ids == [(str(run.id),)]

    nodes = {n.node_id: (n.status, n.rows_in, n.rows_out) for n in NodeRun.objects.filter(run=run)}
    assert nodes == {
        "flights": (RunStatus.SUCCEEDED, 7, 7),
        "late": (RunStatus.SUCCEEDED, 7, 3),
        "warehouse": (RunStatus.SUCCEEDED, 3, 3),
    }
    messages = list(RunLog.objects.filter(run=run).values_list("message", flat=True))
    assert messages[0].startswith("Run started")
    assert messages[-1] == "Run succeeded: 3 rows written."


def test_a_run_is_executed_once_even_if_delivered_twice(pipeline):
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    assert run_execute(run_id=run.id, attempt=1) == "skipped"
    assert Run.objects.get(id=run.id).rows_written == 3


def test_bad_rows_are_quarantined_with_their_line(pipeline, flights_file, scratch_conn, pg_schema):
    flights_file.write_text(flights_file.read_text() + "2013,1,4,abc,UA,9,EWR\n2013,1,4,90,UA,10,EWR\n")
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.rows_rejected == 1
    (rejected,) = RejectedRecord.objects.filter(run=run)
    assert rejected.node_id == "flights"
    assert rejected.line == 9
    assert "abc" in str(rejected.raw) and "dep_delay" in rejected.reason
    assert [r[5] for r in table_rows(scratch_conn, pg_schema, "late_flights")] == [10, 33, 1141, 1696]


def test_a_configuration_error_fails_at_once_without_retry(pipeline, pg_connector):
    from apps.connectors.models import Connector

    Connector.objects.filter(pk=pg_connector.pk).update(config={**pg_connector.config, "port": 1})
    run = run_start(pipeline=pipeline, user=None)
    status = run_execute(run_id=run.id, attempt=1)
    run.refresh_from_db()
    assert status in (RunStatus.FAILED, RunStatus.QUEUED)
    assert run.error  # says what failed
    assert "password" not in run.error.lower() or "canary" not in run.error


def test_cancel_a_queued_run(pipeline):
    run = run_start(pipeline=pipeline, user=None)
    run = run_cancel(run=run)
    assert run.status == RunStatus.CANCELLED
    assert run_execute(run_id=run.id, attempt=1) == "skipped"


def test_overwrite_replaces_and_merge_upserts(
    personas, csv_connector, pg_connector, flights_file, scratch_conn, pg_schema
):
    over = pipeline_create(
        workspace=personas.workspace,
        name="over",
        definition=flights_definition(write_mode="overwrite", table="o"),
        user=None,
    )
    for _ in range(2):
        run = run_start(pipeline=over, user=None)
        assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    assert len(table_rows(scratch_conn, pg_schema, "o")) == 3
    assert scratch_conn.execute(f'SELECT DISTINCT _ag_run_id FROM "{pg_schema}".o').fetchall() == [
        (str(run.id),)
    ]

    merge = pipeline_create(
        workspace=personas.workspace,
        name="merge",
        definition=flights_definition(write_mode="merge", table="m"),
        user=None,
    )
    run = run_start(pipeline=merge, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    flights_file.write_text(
        flights_file.read_text().replace("2013,1,3,61,AA,33,JFK", "2013,1,3,99,AA,33,JFK")
    )
    run = run_start(pipeline=merge, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    rows = table_rows(scratch_conn, pg_schema, "m")
    assert len(rows) == 3
    assert (2013, 1, 3, 99, "AA", 33) in rows


def test_each_node_reports_its_own_duration(pipeline):
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    durations = dict(NodeRun.objects.filter(run=run).values_list("node_id", "duration_s"))
    assert set(durations) == {"flights", "late", "warehouse"}
    assert all(d >= 0 for d in durations.values()) and durations["warehouse"] > 0, durations
    # Each node's own time, not one run-wide figure copied onto every node.
    assert len(set(durations.values())) > 1, durations
