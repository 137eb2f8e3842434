"""The pipelines and runs API for the owner, an editor, a viewer and an outsider."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.pipelines.models import Pipeline, PipelineVersion, Run, RunLog, RunStatus
from apps.pipelines.services import pipeline_create, run_start

from .conftest import flights_definition

pytestmark = pytest.mark.django_db


@pytest.fixture
def pipeline(personas, csv_connector, pg_connector):
    return pipeline_create(
        workspace=personas.workspace,
        name="late flights",
        definition=flights_definition(),
        user=personas.owner,
    )


def test_editor_creates_a_pipeline_with_its_first_version(personas, client_for, csv_connector, pg_connector):
    response = client_for(personas.editor).post(
        "/api/v1/pipelines/",
        {
            "name": "late flights",
            "definition": flights_definition(),
            "schedule_cron": "0 6 * * 1-5",
            "schedule_timezone": "Europe/Paris",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "late flights"
    assert body["version"] == 1
    assert body["workspace"] == personas.workspace.id
    assert body["definition"] == flights_definition()
    assert body["schedule_description"] == "At 06:00 AM, Monday through Friday (Europe/Paris)"
    assert body["last_run"] is None
    pipeline = Pipeline.objects.get(id=body["id"])
    assert pipeline.periodic_task is not None and pipeline.periodic_task.enabled
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1


def test_an_invalid_document_is_refused_with_errors_naming_nodes(
    personas, client_for, csv_connector, pg_connector
):
    definition = flights_definition(expression="dep_dely > 60")
    response = client_for(personas.editor).post(
        "/api/v1/pipelines/", {"name": "bad", "definition": definition}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(key.startswith("nodes.late") for key in error["fields"])
    assert not Pipeline.objects.filter(name="bad").exists()


def test_viewer_reads_and_validates_but_cannot_change_or_run(personas, client_for, pipeline):
    client = client_for(personas.viewer)
    listed = client.get("/api/v1/pipelines/").json()
    assert [p["name"] for p in listed["results"]] == ["late flights"]
    assert (
        client.post(f"/api/v1/pipelines/{pipeline.id}/validate/", {}, format="json").json()["valid"] is True
    )
    assert (
        client.patch(f"/api/v1/pipelines/{pipeline.id}/", {"description": "x"}, format="json").status_code
        == 403
    )
    assert client.post(f"/api/v1/pipelines/{pipeline.id}/runs/", {}, format="json").status_code == 403
    assert client.delete(f"/api/v1/pipelines/{pipeline.id}/").status_code == 403
    assert Run.objects.count() == 0


def test_outsider_gets_404_everywhere(personas, client_for, pipeline):
    run = run_start(pipeline=pipeline, user=None)
    client = client_for(personas.outsider)
    assert client.get("/api/v1/pipelines/").json()["results"] == []
    assert client.get("/api/v1/runs/").json()["results"] == []
    for method, url in [
        ("get", f"/api/v1/pipelines/{pipeline.id}/"),
        ("patch", f"/api/v1/pipelines/{pipeline.id}/"),
        ("delete", f"/api/v1/pipelines/{pipeline.id}/"),
        ("post", f"/api/v1/pipelines/{pipeline.id}/validate/"),
        ("get", f"/api/v1/pipelines/{pipeline.id}/versions/"),
        ("post", f"/api/v1/pipelines/{pipeline.id}/runs/"),
        ("get", f"/api/v1/runs/{run.id}/"),
        ("post", f"/api/v1/runs/{run.id}/cancel/"),
        ("get", f"/api/v1/runs/{run.id}/logs/"),
        ("get", f"/api/v1/runs/{run.id}/rejected/"),
    ]:
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and not run.cancel_requested


def test_start_run_answers_201_with_id_and_status(
    personas, client_for, pipeline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(personas.editor).post(
            f"/api/v1/pipelines/{pipeline.id}/runs/", {"full_refresh": True}, format="json"
        )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["options"] == {"full_refresh": True}
    assert body["version"] == 1
    assert Run.objects.get(id=body["id"]).pipeline_id == pipeline.id
    assert len(callbacks) >= 1  # the worker is asked only after commit


def test_run_options_are_checked(personas, client_for, pipeline):
    client = client_for(personas.editor)
    bad = client.post(f"/api/v1/pipelines/{pipeline.id}/runs/", {"streams": ["late"]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {
        "options.streams": ["'late' is not a source node of this pipeline."]
    }


def test_every_document_change_makes_a_version_and_the_diff_says_what(personas, client_for, pipeline):
    client = client_for(personas.editor)
    changed = flights_definition(expression="dep_delay > 120")
    response = client.patch(
        f"/api/v1/pipelines/{pipeline.id}/", {"definition": changed, "message": "stricter"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2
    # A settings-only change makes no version.
    client.patch(f"/api/v1/pipelines/{pipeline.id}/", {"max_attempts": 5}, format="json")
    versions = client.get(f"/api/v1/pipelines/{pipeline.id}/versions/").json()["results"]
    assert [(v["version"], v["message"]) for v in versions] == [(2, "stricter"), (1, "Created")]
    diff = client.get(f"/api/v1/pipelines/{pipeline.id}/versions/diff/?base=1&other=2").json()
    assert diff == {
        "base": 1,
        "other": 2,
        "added_nodes": [],
        "removed_nodes": [],
        "changed_nodes": {
            "late": {
                "config": {"from": {"expression": "dep_delay > 60"}, "to": {"expression": "dep_delay > 120"}}
            }
        },
        "added_edges": [],
        "removed_edges": [],
    }


def test_runs_list_filters_and_query_count(personas, client_for, pipeline):
    for _ in range(3):
        run_start(pipeline=pipeline, user=None)
    Run.objects.filter(id=Run.objects.order_by("id").first().id).update(status=RunStatus.FAILED)
    client = client_for(personas.viewer)
    with CaptureQueriesContext(connection) as first:
        body = client.get("/api/v1/runs/").json()
    assert body["count"] == 3
    for _ in range(4):
        run_start(pipeline=pipeline, user=None)
    with CaptureQueriesContext(connection) as second:
        assert client.get("/api/v1/runs/").json()["count"] == 7
    assert len(second.captured_queries) == len(first.captured_queries)
    failed = client.get(f"/api/v1/runs/?status=failed&pipeline={pipeline.id}").json()
    assert failed["count"] == 1


def test_pipeline_list_query_count_is_constant(personas, client_for, pipeline, csv_connector):
    client = client_for(personas.viewer)
    with CaptureQueriesContext(connection) as first:
        client.get("/api/v1/pipelines/")
    for n in range(3):
        pipeline_create(
            workspace=personas.workspace, name=f"p{n}", definition=flights_definition(), user=None
        )
    with CaptureQueriesContext(connection) as second:
        assert client.get("/api/v1/pipelines/").json()["count"] == 4
    assert len(second.captured_queries) == len(first.captured_queries)


def test_logs_tail_after_an_id(personas, client_for, pipeline):
    run = run_start(pipeline=pipeline, user=None)
    lines = [RunLog.objects.create(run=run, message=f"line {n}", level="info") for n in range(5)]
    RunLog.objects.create(run=run, message="bad", level="error")
    client = client_for(personas.viewer)
    tail = client.get(f"/api/v1/runs/{run.id}/logs/?after={lines[2].id}").json()
    assert [line["message"] for line in tail["results"]] == ["line 3", "line 4", "bad"]
    errors = client.get(f"/api/v1/runs/{run.id}/logs/?level=error").json()
    assert [line["message"] for line in errors["results"]] == ["bad"]


def test_pause_and_resume_toggle_the_beat_entry(personas, client_for, pipeline):
    client = client_for(personas.editor)
    client.patch(f"/api/v1/pipelines/{pipeline.id}/", {"schedule_interval_s": 60}, format="json")
    pipeline.refresh_from_db()
    assert pipeline.periodic_task.enabled
    assert client.post(f"/api/v1/pipelines/{pipeline.id}/pause/").json()["is_paused"] is True
    pipeline.refresh_from_db()
    assert pipeline.periodic_task.enabled is False
    assert client.post(f"/api/v1/pipelines/{pipeline.id}/resume/").json()["is_paused"] is False
    pipeline.refresh_from_db()
    assert pipeline.periodic_task.enabled is True


def test_bad_schedule_names_the_field(personas, client_for, pipeline):
    response = client_for(personas.editor).patch(
        f"/api/v1/pipelines/{pipeline.id}/", {"schedule_cron": "every day"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["schedule_cron"]
