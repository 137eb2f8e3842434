"""A retry of an append run first removes what an earlier attempt of the same run committed, so a worker
that died after its destination committed does not leave the rows loaded twice."""

from __future__ import annotations

import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, WriteMode
from apps.connectors.plugins.postgres import PostgresDestination
from apps.pipelines.executor import run_execute
from apps.pipelines.models import Run, RunLog, RunStatus
from apps.pipelines.services import pipeline_create, run_start

from .conftest import flights_definition

pytestmark = pytest.mark.django_db(transaction=True)

LATE = [(2013, 1, 3, 61, "AA", 33), (2013, 1, 1, 75, "AA", 1141), (2013, 1, 2, 101, "UA", 1696)]


def _rows(conn, schema):
    return conn.execute(
        f'SELECT year, month, day, dep_delay, carrier, flight, _ag_run_id FROM "{schema}".late_flights '
        "ORDER BY _ag_run_id, flight"
    ).fetchall()


def test_a_retried_append_run_ends_with_the_source_rows_exactly_once(
    personas, csv_connector, pg_connector, pg_config, scratch_conn, pg_schema
):
    pipeline = pipeline_create(
        workspace=personas.workspace, name="late flights", definition=flights_definition(), user=None
    )
    # An earlier, finished run: its rows must survive the retry of the next one.
    earlier = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=earlier.id, attempt=1) == RunStatus.SUCCEEDED

    run = run_start(pipeline=pipeline, user=None)
    # Attempt 1 of this run committed two of its rows, then its worker died before recording anything.
    destination = PostgresDestination()
    schema = StreamSchema(
        name="late",
        fields=(
            *(Field(name, FieldType.INTEGER) for name in ("year", "month", "day", "dep_delay")),
            Field("carrier", FieldType.STRING),
            Field("flight", FieldType.INTEGER),
            Field("origin", FieldType.STRING),
        ),
    )
    partial = Batch.from_records(
        [
            {
                "year": 2013,
                "month": 1,
                "day": 3,
                "dep_delay": 61,
                "carrier": "AA",
                "flight": 33,
                "origin": "JFK",
            },
            {
                "year": 2013,
                "month": 1,
                "day": 1,
                "dep_delay": 75,
                "carrier": "AA",
                "flight": 1141,
                "origin": "JFK",
            },
        ],
        schema,
    )
    destination.write(
        destination.validate_config(pg_config),
        schema,
        [partial],
        WriteMode.APPEND,
        None,
        str(run.id),
        table="late_flights",
    )
    assert len(_rows(scratch_conn, pg_schema)) == 5
    Run.objects.filter(id=run.id).update(status=RunStatus.QUEUED, attempt=2)

    assert run_execute(run_id=run.id, attempt=2) == RunStatus.SUCCEEDED

    ids = sorted([str(earlier.id), str(run.id)])
    assert _rows(scratch_conn, pg_schema) == [
        (*row, run_id) for run_id in ids for row in sorted(LATE, key=lambda r: r[5])
    ]
    run.refresh_from_db()
    assert (run.status, run.attempt, run.rows_written) == (RunStatus.SUCCEEDED, 2, 3)
    messages = list(RunLog.objects.filter(run=run).values_list("message", flat=True))
    assert "Removed 2 rows written by an earlier attempt." in messages
