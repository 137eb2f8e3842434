"""PostgreSQL → PostgreSQL incremental merge: the second run loads only new and changed rows; a backfill
loads just its range and leaves the saved state alone."""

from __future__ import annotations

import pytest

from apps.connectors.services import connector_create
from apps.pipelines.executor import run_execute
from apps.pipelines.models import RunStatus, StreamState
from apps.pipelines.services import pipeline_create, run_start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source_table(scratch_conn, pg_schema):
    schema = f"{pg_schema}_src"
    scratch_conn.execute(f'CREATE SCHEMA "{schema}"')
    scratch_conn.execute(
        f'CREATE TABLE "{schema}".events (id int PRIMARY KEY, amount numeric, updated_at int NOT NULL)'
    )
    scratch_conn.execute(
        f'INSERT INTO "{schema}".events SELECT g, g * 1.5, g FROM generate_series(1, 100) AS g'
    )
    yield schema
    scratch_conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pipeline(personas, pg_config, pg_connector, source_table):
    connector_create(
        workspace=personas.workspace,
        name="app-db",
        connector_type="postgres_source",
        config={**pg_config, "schema": source_table},
        user=None,
    )
    definition = {
        "nodes": [
            {
                "id": "events",
                "kind": "source",
                "connector": "app-db",
                "stream": f"{source_table}.events",
                "sync_mode": "incremental",
                "cursor_field": "updated_at",
            },
            {
                "id": "warehouse",
                "kind": "destination",
                "connector": "warehouse-pg",
                "table": "events",
                "write_mode": "merge",
                "primary_key": ["id"],
            },
        ],
        "edges": [{"from": "events", "to": "warehouse"}],
    }
    return pipeline_create(workspace=personas.workspace, name="events", definition=definition, user=None)


def run_once(pipeline, **options):
    run = run_start(pipeline=pipeline, options=options)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED, run.error
    run.refresh_from_db()
    return run


def dest(scratch_conn, pg_schema):
    return scratch_conn.execute(
        f'SELECT id, amount::float, updated_at FROM "{pg_schema}".events ORDER BY id'
    ).fetchall()


def test_second_run_loads_only_new_and_changed_rows(pipeline, scratch_conn, pg_schema, source_table):
    first = run_once(pipeline)
    assert (first.rows_read, first.rows_written) == (100, 100)
    assert StreamState.objects.get(pipeline=pipeline, node_id="events").state == {"cursor": 100}

    scratch_conn.execute(
        f'UPDATE "{source_table}".events SET amount = -1, updated_at = 101 WHERE id IN (3, 7)'
    )
    scratch_conn.execute(f'INSERT INTO "{source_table}".events VALUES (101, 9.5, 102), (102, 8.5, 103)')
    second = run_once(pipeline)
    assert (second.rows_read, second.rows_written) == (4, 4)
    rows = dest(scratch_conn, pg_schema)
    assert len(rows) == 102
    assert rows[2] == (3, -1.0, 101) and rows[6] == (7, -1.0, 101)
    assert rows[-2:] == [(101, 9.5, 102), (102, 8.5, 103)]
    assert StreamState.objects.get(pipeline=pipeline, node_id="events").state == {"cursor": 103}

    third = run_once(pipeline)
    assert third.rows_read == 0
    assert StreamState.objects.get(pipeline=pipeline, node_id="events").state == {"cursor": 103}


def test_backfill_loads_only_its_range_and_keeps_the_state(pipeline, scratch_conn, pg_schema, source_table):
    run_once(pipeline)
    scratch_conn.execute(f'TRUNCATE "{pg_schema}".events')
    backfill = run_once(pipeline, backfill={"node": "events", "from": 10, "to": 20})
    assert backfill.rows_read == 10  # cursor in (10, 20]
    assert [r[0] for r in dest(scratch_conn, pg_schema)] == list(range(11, 21))
    assert StreamState.objects.get(pipeline=pipeline, node_id="events").state == {"cursor": 100}


def test_full_refresh_ignores_the_state(pipeline, scratch_conn, pg_schema):
    run_once(pipeline)
    again = run_once(pipeline, full_refresh=True)
    assert again.rows_read == 100
    assert len(dest(scratch_conn, pg_schema)) == 100
