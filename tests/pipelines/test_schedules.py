"""Schedules fire one run per tick, pause stops them, and dependencies start downstream pipelines."""

from __future__ import annotations

import datetime as dt

import pytest
from django_celery_beat.models import PeriodicTask

from apps.pipelines.models import Run, RunStatus, RunTrigger
from apps.pipelines.schedules import schedule_fire
from apps.pipelines.services import pipeline_create, pipeline_delete, pipeline_update, trigger_dependents

from .conftest import flights_definition

pytestmark = pytest.mark.django_db

TICK = dt.datetime(2026, 11, 25, 6, 0, 12, tzinfo=dt.UTC)


@pytest.fixture
def scheduled(personas, csv_connector, pg_connector):
    return pipeline_create(
        workspace=personas.workspace,
        name="nightly",
        definition=flights_definition(),
        user=None,
        schedule_cron="0 6 * * *",
    )


def test_the_beat_entry_follows_the_pipeline(scheduled):
    task = PeriodicTask.objects.get(name=f"pipeline:{scheduled.id}")
    assert task.task == "pipelines.scheduled_tick"
    assert (task.crontab.minute, task.crontab.hour) == ("0", "6")
    assert task.enabled
    pipeline_update(pipeline=scheduled, user=None, schedule_cron="", schedule_interval_s=300)
    task.refresh_from_db()
    assert task.crontab is None and task.interval.every == 300
    pipeline_update(pipeline=scheduled, user=None, schedule_interval_s=None)
    assert not PeriodicTask.objects.filter(name=f"pipeline:{scheduled.id}").exists()


def test_deleting_the_pipeline_removes_its_beat_entry(scheduled):
    pipeline_delete(pipeline=scheduled)
    assert not PeriodicTask.objects.filter(name=f"pipeline:{scheduled.id}").exists()


def test_one_tick_makes_one_run_even_when_fired_twice(scheduled):
    assert schedule_fire(pipeline_id=scheduled.id, now=TICK) == "started"
    Run.objects.update(status=RunStatus.SUCCEEDED)  # so the skip policy does not hide the duplicate check
    assert schedule_fire(pipeline_id=scheduled.id, now=TICK + dt.timedelta(seconds=20)) == "duplicate"
    runs = list(Run.objects.filter(pipeline=scheduled))
    assert len(runs) == 1
    assert runs[0].trigger == RunTrigger.SCHEDULE
    assert runs[0].scheduled_for == TICK.replace(second=0)
    assert schedule_fire(pipeline_id=scheduled.id, now=TICK + dt.timedelta(days=1)) == "started"
    assert Run.objects.filter(pipeline=scheduled).count() == 2


def test_skip_policy_skips_while_a_run_is_going(scheduled):
    schedule_fire(pipeline_id=scheduled.id, now=TICK)
    assert schedule_fire(pipeline_id=scheduled.id, now=TICK + dt.timedelta(days=1)) == "skipped"
    pipeline_update(pipeline=scheduled, user=None, concurrency_policy="queue")
    assert schedule_fire(pipeline_id=scheduled.id, now=TICK + dt.timedelta(days=1)) == "started"
    assert Run.objects.filter(pipeline=scheduled, status=RunStatus.QUEUED).count() == 2


def test_pause_stops_the_schedule(scheduled):
    pipeline_update(pipeline=scheduled, user=None, is_paused=True)
    assert PeriodicTask.objects.get(name=f"pipeline:{scheduled.id}").enabled is False
    assert schedule_fire(pipeline_id=scheduled.id, now=TICK) == "skipped"
    assert Run.objects.count() == 0


def test_dependency_starts_downstream_when_all_upstreams_succeeded(personas, csv_connector, pg_connector):
    from django.utils import timezone

    a = pipeline_create(
        workspace=personas.workspace, name="a", definition=flights_definition(table="a"), user=None
    )
    b = pipeline_create(
        workspace=personas.workspace, name="b", definition=flights_definition(table="b"), user=None
    )
    c = pipeline_create(
        workspace=personas.workspace, name="c", definition=flights_definition(table="c"), user=None
    )
    pipeline_update(pipeline=c, user=None, depends_on=[a, b])

    def succeed(pipeline):
        from apps.pipelines.services import run_start

        run = run_start(pipeline=pipeline)
        Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())

    succeed(a)
    assert trigger_dependents(pipeline=a) == []
    succeed(b)
    (started,) = trigger_dependents(pipeline=b)
    assert (started.pipeline_id, started.trigger) == (c.id, RunTrigger.DEPENDENCY)


def test_dependencies_cannot_form_a_cycle(personas, csv_connector, pg_connector):
    from django.core.exceptions import ValidationError

    a = pipeline_create(workspace=personas.workspace, name="a", definition=flights_definition(), user=None)
    b = pipeline_create(workspace=personas.workspace, name="b", definition=flights_definition(), user=None)
    pipeline_update(pipeline=b, user=None, depends_on=[a])
    with pytest.raises(ValidationError) as info:
        pipeline_update(pipeline=a, user=None, depends_on=[b])
    assert "cycle" in info.value.message_dict["depends_on"][0]
