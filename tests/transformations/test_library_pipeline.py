# ruff: noqa: F811 - pytest fixtures imported from the pipeline and connector conftests are parameters here
"""Multi-input steps in real runs: two CSV sources joined (and unioned) into PostgreSQL by the executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apps.connectors.services import connector_create
from apps.pipelines.executor import run_execute
from apps.pipelines.models import NodeRun, RunStatus
from apps.pipelines.services import pipeline_create, run_start
from tests.connectors.conftest import import_dir, pg_config, pg_schema, scratch_conn, scratch_database  # noqa: F401
from tests.pipelines.conftest import csv_connector, flights_file, pg_connector  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

AIRLINES_CSV = "carrier,name\nUA,United Air Lines Inc.\nAA,American Airlines Inc.\nB6,JetBlue Airways\n"
MORE_CSV = "year,month,day,carrier,flight,gate\n2013,2,1,WN,7,A1\n2013,2,1,UA,8,\n"


def _csv(workspace: Any, owner: Any, import_root: Path, name: str, text: str) -> Any:
    (import_root / f"{name}.csv").write_text(text)
    return connector_create(
        workspace=workspace,
        name=f"{name}-files",
        connector_type="csv_file",
        config={"path": f"{name}.csv"},
        user=owner,
    )


def _source(node_id: str, connector: str, stream: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": "source",
        "connector": connector,
        "stream": stream,
        "sync_mode": "full_refresh",
    }


def _destination(table: str) -> dict[str, Any]:
    return {
        "id": "warehouse",
        "kind": "destination",
        "connector": "warehouse-pg",
        "table": table,
        "write_mode": "append",
    }


def test_a_join_of_two_csv_sources_lands_in_postgres(
    personas,
    csv_connector,
    pg_connector,
    import_dir,
    scratch_conn,
    pg_schema,
):
    _csv(personas.workspace, personas.owner, import_dir, "airlines", AIRLINES_CSV)
    definition = {
        "nodes": [
            _source("flights", "flights-files", "flights"),
            _source("airlines", "airlines-files", "airlines"),
            {
                "id": "named",
                "kind": "transform",
                "step": "join",
                "config": {"lookup": "airlines", "on": ["carrier"], "how": "left"},
            },
            {
                "id": "keep",
                "kind": "transform",
                "step": "select",
                "config": {"columns": ["flight", "carrier", "name"]},
            },
            _destination("named_flights"),
        ],
        "edges": [
            {"from": "flights", "to": "named"},
            {"from": "airlines", "to": "named"},
            {"from": "named", "to": "keep"},
            {"from": "keep", "to": "warehouse"},
        ],
    }
    pipeline = pipeline_create(
        workspace=personas.workspace, name="named", definition=definition, user=personas.owner
    )
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    rows = scratch_conn.execute(
        f'SELECT flight, carrier, name FROM "{pg_schema}".named_flights ORDER BY flight'
    ).fetchall()
    assert rows == [
        (33, "AA", "American Airlines Inc."),
        (461, "DL", None),
        (725, "B6", "JetBlue Airways"),
        (1141, "AA", "American Airlines Inc."),
        (1545, "UA", "United Air Lines Inc."),
        (1696, "UA", "United Air Lines Inc."),
        (1714, "UA", "United Air Lines Inc."),
    ]
    nodes = {n.node_id: (n.status, n.rows_in, n.rows_out) for n in NodeRun.objects.filter(run=run)}
    assert nodes["named"] == (RunStatus.SUCCEEDED, 7 + 3, 7)
    assert nodes["warehouse"] == (RunStatus.SUCCEEDED, 7, 7)


def test_a_union_of_two_csv_sources_with_different_columns(
    personas,
    csv_connector,
    pg_connector,
    import_dir,
    scratch_conn,
    pg_schema,
):
    _csv(personas.workspace, personas.owner, import_dir, "more", MORE_CSV)
    definition = {
        "nodes": [
            _source("flights", "flights-files", "flights"),
            _source("more", "more-files", "more"),
            {"id": "all", "kind": "transform", "step": "union", "config": {"source_column": "source"}},
            _destination("all_flights"),
        ],
        "edges": [
            {"from": "flights", "to": "all"},
            {"from": "more", "to": "all"},
            {"from": "all", "to": "warehouse"},
        ],
    }
    pipeline = pipeline_create(
        workspace=personas.workspace, name="all", definition=definition, user=personas.owner
    )
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    rows = scratch_conn.execute(
        f'SELECT flight, carrier, dep_delay, gate, source FROM "{pg_schema}".all_flights ORDER BY flight'
    ).fetchall()
    assert len(rows) == 9
    assert rows[:3] == [
        (7, "WN", None, "A1", "more"),
        (8, "UA", None, None, "more"),
        (33, "AA", 61, None, "flights"),
    ]
    run.refresh_from_db()
    assert (run.rows_read, run.rows_written) == (9, 9)
