"""Pipelines and finished runs made directly as rows, for the metrics and alerts tests; `finish` announces
a run's end the way the executor does (events.emit) and runs the after-commit handlers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.monitoring import events
from apps.pipelines.models import NodeRun, Pipeline, PipelineVersion, Run


def make_pipeline(workspace: Any, name: str = "orders") -> Pipeline:
    pipeline = Pipeline.objects.create(workspace=workspace, name=name, definition={}, version=1)
    PipelineVersion.objects.create(pipeline=pipeline, version=1, definition={})
    return pipeline


def make_run(
    pipeline: Pipeline,
    *,
    status: str = "succeeded",
    rows: int = 100,
    duration_s: float = 10.0,
    finished_at: datetime | None = None,
    nodes: bool = True,
    error: str = "",
) -> Run:
    finished_at = finished_at or timezone.now()
    run = Run.objects.create(
        workspace_id=pipeline.workspace_id,
        pipeline=pipeline,
        pipeline_version=pipeline.versions.first(),
        status=status,
        rows_read=rows,
        rows_written=rows,
        started_at=finished_at - timedelta(seconds=duration_s),
        finished_at=finished_at,
        error=error,
    )
    if nodes:
        for node_id, kind in (("src", "source"), ("dst", "destination")):
            NodeRun.objects.create(
                run=run,
                node_id=node_id,
                kind=kind,
                status=status,
                rows_in=rows,
                rows_out=rows,
                bytes=rows * 10,
                duration_s=duration_s / 2,
            )
    return run


def finish(run: Run, capture: Any) -> None:
    """Emit the run's final event as the executor does and run the after-commit callbacks (handlers)."""
    with capture(execute=True):
        events.emit(f"run.{run.status}", run.workspace_id, run, {"pipeline": run.pipeline_id})


MONITORING_HANDLERS = ["apps.monitoring.metrics.handle_event", "apps.monitoring.alerts.handle_event"]


def use_handlers(settings: Any, handlers: list[str] | None = None) -> None:
    settings.AGGREGATOR_EVENT_HANDLERS = MONITORING_HANDLERS if handlers is None else handlers
    events._handlers.cache_clear()


def drop_metric_partitions() -> None:
    """Partitions are DDL: made by a test that commits (transaction=True), they outlive its flush, which
    truncates only the tables Django manages. Tests that count partitions or points start from none."""
    from django.db import connection

    from apps.monitoring import partitions

    with connection.cursor() as cursor:
        for partition in partitions.list_partitions(with_counts=False):
            cursor.execute(f'DROP TABLE "{partition.name}"')


@pytest.fixture
def committed_metrics() -> Iterator[None]:
    """For transaction=True tests: drop what they committed to the metric tables afterwards."""
    yield
    drop_metric_partitions()
