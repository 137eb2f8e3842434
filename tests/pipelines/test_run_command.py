"""`manage.py run_pipeline --wait` with a real worker process: progress, exit status, rows loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from apps.pipelines.models import Run, RunStatus, RunTrigger
from apps.pipelines.services import pipeline_create

from .conftest import flights_definition
from .worker import ROOT, Worker, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(300)]


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "run_pipeline", *args],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_run_pipeline_waits_shows_progress_and_exits_zero_on_success(
    personas, csv_connector, pg_connector, scratch_conn, pg_schema
):
    pipeline_create(
        workspace=personas.workspace, name="late flights", definition=flights_definition(), user=None
    )
    with Worker():
        result = run_command("late flights", "--workspace", personas.workspace.slug, "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    run = Run.objects.get()
    assert (run.status, run.trigger, run.rows_written) == (RunStatus.SUCCEEDED, RunTrigger.CLI, 3)
    assert f"Run {run.id} succeeded: 7 rows read, 3 written, 0 rejected." in result.stdout
    assert "warehouse" in result.stderr and "rows" in result.stderr  # the progress bars
    count = scratch_conn.execute(f'SELECT count(*) FROM "{pg_schema}".late_flights').fetchone()[0]
    assert count == 3


def test_run_pipeline_exits_non_zero_when_the_run_fails(personas, csv_connector, pg_connector):
    from apps.connectors.models import Connector

    pipeline_create(
        workspace=personas.workspace, name="late flights", definition=flights_definition(), user=None
    )
    Connector.objects.filter(pk=csv_connector.pk).update(config={"path": "missing.csv"})
    with Worker():
        result = run_command("late flights", "--workspace", personas.workspace.slug, "--wait")
    assert result.returncode != 0
    run = Run.objects.get()
    assert run.status == RunStatus.FAILED
    assert run.error and run.error in result.stderr


def test_unknown_pipeline_is_a_clear_error(personas):
    result = run_command("nope", "--workspace", personas.workspace.slug)
    assert result.returncode != 0
    assert "No pipeline 'nope'" in result.stderr
