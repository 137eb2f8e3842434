"""The sample pipeline: one POST makes the sample source, the Local warehouse and the pipeline between
them, starts a run, and that run loads exactly the late flights of the sample file."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from apps.connectors.models import Connector
from apps.connectors.services import SAMPLE_FILE
from apps.pipelines.executor import run_execute
from apps.pipelines.models import NodeRun, Pipeline, Run, RunStatus
from tests.connectors.conftest import import_dir  # noqa: F401
from tests.connectors.test_local_warehouse import admin_url, warehouse_settings  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def expected_late_flights() -> list[tuple[int, int, int, str, int, int]]:
    """(month, day, flight, carrier, dep_delay, made_up_min) of the sample's flights more than 30 minutes
    late, read from the file with the csv module."""
    rows = []
    with SAMPLE_FILE.open(newline="") as file:
        for row in csv.DictReader(file):
            if row["dep_delay"] and int(row["dep_delay"]) > 30:
                made_up = int(row["dep_delay"]) - int(row["arr_delay"]) if row["arr_delay"] else None
                rows.append(
                    (
                        int(row["month"]),
                        int(row["day"]),
                        int(row["flight"]),
                        row["carrier"],
                        int(row["dep_delay"]),
                        made_up,
                    )
                )
    return sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3], r[4]))


def test_an_editor_makes_and_runs_the_sample_pipeline(
    warehouse_settings,  # noqa: F811
    import_dir,  # noqa: F811
    personas,
    client_for,
):
    response = client_for(personas.editor).post("/api/v1/pipelines/sample/", {}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    pipeline = Pipeline.objects.get(id=body["pipeline"]["id"])
    run = Run.objects.get(id=body["run"]["id"])
    assert (body["pipeline"]["name"], body["pipeline"]["workspace"]) == (
        "Sample: late flights",
        personas.workspace.id,
    )
    assert (body["run"]["status"], body["run"]["pipeline"]) == ("queued", pipeline.id)
    assert [n["id"] for n in body["pipeline"]["definition"]["nodes"]] == [
        "flights",
        "late",
        "made_up",
        "warehouse",
    ]

    connectors = dict(
        Connector.objects.filter(workspace=personas.workspace).values_list("name", "connector_type")
    )
    assert connectors == {"Local warehouse": "local_warehouse", "Sample flights": "csv_file"}
    sample = Connector.objects.get(workspace=personas.workspace, name="Sample flights")
    copied = Path(import_dir) / sample.config["path"]
    assert re.fullmatch(r"uploads/[0-9a-f]{32}\.csv", sample.config["path"])  # the workspace's own upload
    assert copied.read_bytes() == SAMPLE_FILE.read_bytes()

    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    expected = expected_late_flights()
    run.refresh_from_db()
    assert (run.rows_read, run.rows_written, run.rows_rejected) == (6099, len(expected), 0)
    nodes = {n.node_id: (n.rows_in, n.rows_out) for n in NodeRun.objects.filter(run=run)}
    assert nodes == {
        "flights": (6099, 6099),
        "late": (6099, len(expected)),
        "made_up": (len(expected), len(expected)),
        "warehouse": (len(expected), len(expected)),
    }
    database = f"{warehouse_settings}{personas.workspace.id}"
    with psycopg.connect(make_conninfo(admin_url(), dbname=database)) as conn:
        loaded = conn.execute(
            "SELECT month, day, flight, carrier, dep_delay, made_up_min FROM public.late_flights "
            "ORDER BY month, day, flight, carrier, dep_delay"
        ).fetchall()
    assert loaded == expected
    assert len(expected) == 686

    # A second sample gets names of its own and loads into the same Local warehouse.
    again = client_for(personas.editor).post("/api/v1/pipelines/sample/", {}, format="json").json()
    assert again["pipeline"]["name"] == "Sample: late flights 2"
    assert (
        Connector.objects.filter(workspace=personas.workspace, connector_type="local_warehouse").count() == 1
    )


def test_viewers_and_outsiders_cannot_make_it(warehouse_settings, import_dir, personas, client_for):  # noqa: F811
    viewer = client_for(personas.viewer).post("/api/v1/pipelines/sample/", {}, format="json")
    assert viewer.status_code == 403
    outsider = client_for(personas.outsider).post(
        "/api/v1/pipelines/sample/", {"workspace": personas.workspace.id}, format="json"
    )
    assert outsider.status_code == 400
    assert outsider.json()["error"]["fields"] == {"workspace": ["No such workspace."]}
    assert not Pipeline.objects.exists()
    assert not Connector.objects.exists()


def test_without_a_local_warehouse_it_says_why_and_makes_nothing(import_dir, personas, client_for, settings):  # noqa: F811
    settings.AGGREGATOR_LOCAL_WAREHOUSE_URL = ""
    response = client_for(personas.owner).post("/api/v1/pipelines/sample/", {}, format="json")
    assert response.status_code == 400
    assert "Local warehouse, which is not available here" in response.json()["error"]["message"]
    assert not Pipeline.objects.exists()
    assert not Connector.objects.exists()
    assert not list(Path(import_dir).rglob("*.csv"))
