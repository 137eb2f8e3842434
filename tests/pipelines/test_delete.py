"""Deleting a pipeline takes its versions and run history with it (once a 500: the runs' versions were
protected), and is refused while one of its runs is queued or running."""

from __future__ import annotations

import pytest

from apps.pipelines.models import NodeRun, Pipeline, PipelineVersion, Run, RunStatus
from apps.pipelines.services import pipeline_create, pipeline_update, run_start

from .conftest import flights_definition

pytestmark = pytest.mark.django_db


@pytest.fixture
def pipeline(personas, csv_connector, pg_connector):
    made = pipeline_create(
        workspace=personas.workspace,
        name="late flights",
        definition=flights_definition(),
        user=personas.owner,
    )
    pipeline_update(
        pipeline=made, user=personas.owner, definition=flights_definition(expression="dep_delay > 1")
    )
    return made


def test_a_pipeline_with_finished_runs_is_deleted_with_its_history(personas, client_for, pipeline):
    first = run_start(pipeline=pipeline, user=personas.owner)
    Run.objects.filter(id=first.id).update(status=RunStatus.SUCCEEDED)
    NodeRun.objects.create(run=first, node_id="flights", kind="source", status=RunStatus.SUCCEEDED)
    second = run_start(pipeline=pipeline, user=personas.owner)
    Run.objects.filter(id=second.id).update(status=RunStatus.FAILED)

    response = client_for(personas.editor).delete(f"/api/v1/pipelines/{pipeline.id}/")
    assert response.status_code == 204, response.content
    assert not Pipeline.objects.filter(id=pipeline.id).exists()
    assert not PipelineVersion.objects.filter(pipeline_id=pipeline.id).exists()
    assert not Run.objects.filter(id__in=[first.id, second.id]).exists()
    assert not NodeRun.objects.filter(run_id=first.id).exists()


def test_a_pipeline_with_a_queued_run_is_not_deleted(personas, client_for, pipeline):
    queued = run_start(pipeline=pipeline, user=personas.owner)
    response = client_for(personas.editor).delete(f"/api/v1/pipelines/{pipeline.id}/")
    assert response.status_code == 400
    message = (
        f"Run #{queued.id} of this pipeline is queued or running: cancel it or let it finish, then "
        "delete the pipeline."
    )
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": message,
        "fields": {"non_field_errors": [message]},
    }
    assert Pipeline.objects.filter(id=pipeline.id).exists()
    assert Run.objects.filter(id=queued.id, status=RunStatus.QUEUED).exists()


def test_a_version_a_run_used_cannot_be_deleted_alone(personas, pipeline):
    from django.db.models import RestrictedError

    run = run_start(pipeline=pipeline, user=personas.owner)
    with pytest.raises(RestrictedError):
        run.pipeline_version.delete()
