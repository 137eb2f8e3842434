"""A real Celery beat (database scheduler) and worker fire a scheduled pipeline: each tick makes one run,
and pausing stops the ticks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from apps.pipelines.models import Run, RunStatus, RunTrigger
from apps.pipelines.services import pipeline_create, pipeline_update

from .conftest import flights_definition
from .worker import ROOT, Worker, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def beat(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aggregator", "beat", "--scheduler",
         "django_celery_beat.schedulers:DatabaseScheduler", "--max-interval", "2",
         "--pidfile", str(tmp_path / "beat.pid")],
        cwd=ROOT, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


def test_beat_fires_each_tick_once_and_pause_stops_it(personas, csv_connector, pg_connector, beat):
    pipeline = pipeline_create(
        workspace=personas.workspace, name="every ten seconds", definition=flights_definition(), user=None,
        schedule_interval_s=10,
    )  # fmt: skip
    with Worker():
        assert wait_for(
            lambda: Run.objects.filter(pipeline=pipeline, status=RunStatus.SUCCEEDED).count() >= 2, timeout=90
        )
        pipeline_update(pipeline=pipeline, user=None, is_paused=True)
        time.sleep(3)  # beat re-reads its schedule within --max-interval
        paused_at = Run.objects.filter(pipeline=pipeline).count()
        time.sleep(12)
        assert Run.objects.filter(pipeline=pipeline).count() == paused_at
    runs = list(Run.objects.filter(pipeline=pipeline).order_by("id"))
    assert all(run.trigger == RunTrigger.SCHEDULE for run in runs)
    ticks = [run.scheduled_for for run in runs]
    assert len(ticks) == len(set(ticks))  # one run per tick
    assert all(t.timestamp() % 10 == 0 for t in ticks)
