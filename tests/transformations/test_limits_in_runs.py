# ruff: noqa: F811 - pytest fixtures imported from the pipeline and connector conftests are parameters here
"""The limits in real runs: a node whose output would pass its bounds fails with the reason recorded on
the node and the run, and nothing is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apps.connectors.services import connector_create
from apps.pipelines.executor import run_execute
from apps.pipelines.models import NodeRun, RunStatus
from apps.pipelines.services import pipeline_create, run_start
from tests.connectors.conftest import import_dir, pg_config, pg_schema, scratch_conn, scratch_database  # noqa: F401
from tests.pipelines.conftest import pg_connector  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def x(n: int) -> str:
    return "'" + "x" * n + "'"


def _pipeline(personas: Any, import_dir: Path, rows: str, step: dict[str, Any]) -> Any:
    (import_dir / "notes.csv").write_text(f"id,note\n{rows}")
    connector_create(
        workspace=personas.workspace,
        name="notes-files",
        connector_type="csv_file",
        config={"path": "notes.csv"},
        user=personas.owner,
    )
    nodes = [
        {"id": "notes", "kind": "source", "connector": "notes-files", "stream": "notes"},
        step,
        {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg", "table": "notes"},
    ]
    edges = [{"from": "notes", "to": step["id"]}, {"from": step["id"], "to": "warehouse"}]
    return pipeline_create(
        workspace=personas.workspace, name="notes", definition={"nodes": nodes, "edges": edges}, user=None
    )


def test_a_value_that_grows_past_the_limit_fails_its_node(
    personas, pg_connector, import_dir, scratch_conn, pg_schema
):
    # The expression is fine for short notes; the second note makes it build 1.2 MB.
    step = {
        "id": "widen",
        "kind": "transform",
        "step": "derive",
        "config": {"column": "wide", "expression": f"replace(note, 'x', {x(4)})"},
    }
    pipeline = _pipeline(personas, import_dir, f"1,short\n2,{'x' * 300_000}\n", step)
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.FAILED
    run.refresh_from_db()
    reason = (
        "'replace' would build a text of 1,200,000 bytes (row index 1 of the batch), more than the limit of "
        "1,048,576 bytes for one value at 1:1, the limit is set by AGGREGATOR_EXPRESSION_MAX_STRING"
    )
    assert (run.error_kind, run.error) == ("config", f"Node 'widen': {reason}")
    node = NodeRun.objects.get(run=run, node_id="widen")
    assert (node.status, node.error) == (RunStatus.FAILED, reason)
    loaded = scratch_conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'notes'",
        (pg_schema,),
    ).fetchone()
    assert loaded == (0,)


def test_a_step_past_its_batch_budget_fails_its_node(personas, pg_connector, import_dir, settings):
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 50_000
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 2
    # Each row's 300 elements become 300 rows, each repeating the row's 1.5 kB array: 900 kB from 3 kB.
    array = "[" + ",".join(str(i) for i in range(300)) + "]"
    step = {
        "id": "fan",
        "kind": "transform",
        "step": "explode",
        "config": {"column": "note", "element_type": "integer", "target": "k"},
    }
    pipeline = _pipeline(personas, import_dir, f'1,"{array}"\n2,"{array}"\n', step)
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.FAILED
    run.refresh_from_db()
    node = NodeRun.objects.get(run=run, node_id="fan")
    assert node.status == RunStatus.FAILED
    assert node.error.startswith("the step produced more than its budget of 48.8 KiB from a batch of ")
    assert run.error == f"Node 'fan': {node.error}"
