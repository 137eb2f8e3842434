"""Run metrics: recorded from finished runs (rows made directly and one real run), queried through the API
with bucketing and aggregates, scoped per workspace, and pruned to the partitions in range."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.monitoring import metrics, partitions
from apps.monitoring.tasks import sample_system_metrics_task
from tests.connectors.conftest import import_dir, pg_config, pg_schema, scratch_database  # noqa: F401
from tests.pipelines.conftest import csv_connector, flights_definition, flights_file, pg_connector  # noqa: F401

from .metric_helpers import committed_metrics, finish, make_pipeline, make_run, use_handlers  # noqa: F401

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 11, 20, tzinfo=UTC)


def points(run_id: int) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT node_id, kind, status, rows_in, rows_out, bytes, duration_s FROM monitoring_run_metric "
            "WHERE run_id = %s ORDER BY node_id",
            [run_id],
        )
        return cursor.fetchall()


@pytest.fixture
def handlers(settings):
    use_handlers(settings, ["apps.monitoring.metrics.handle_event"])
    yield
    use_handlers(settings, [])


def test_a_finished_run_becomes_one_point_per_run_and_per_node(
    personas, handlers, django_capture_on_commit_callbacks
):
    pipeline = make_pipeline(personas.workspace)
    run = make_run(pipeline, rows=40, duration_s=8.0)
    finish(run, django_capture_on_commit_callbacks)
    assert points(run.id) == [
        ("", "run", "succeeded", 40, 40, 800, 8.0),
        ("dst", "destination", "succeeded", 40, 40, 400, 4.0),
        ("src", "source", "succeeded", 40, 40, 400, 4.0),
    ]
    # The same event delivered twice writes nothing more.
    finish(run, django_capture_on_commit_callbacks)
    assert len(points(run.id)) == 3


def test_other_events_write_no_points(personas, handlers, django_capture_on_commit_callbacks):
    from apps.monitoring import events

    pipeline = make_pipeline(personas.workspace)
    run = make_run(pipeline, status="running")
    with django_capture_on_commit_callbacks(execute=True):
        events.emit("run.started", personas.workspace, run, {})
        events.emit("run.failed", personas.workspace, run, {})  # the row says it is still running
    assert points(run.id) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed_metrics")
def test_a_real_run_records_its_nodes(personas, csv_connector, pg_connector, settings):  # noqa: F811
    from apps.pipelines.executor import run_execute
    from apps.pipelines.services import pipeline_create, run_start

    use_handlers(settings, ["apps.monitoring.metrics.handle_event"])
    try:
        pipeline = pipeline_create(
            workspace=personas.workspace, name="late", definition=flights_definition(), user=None
        )
        run = run_start(pipeline=pipeline, user=None)
        assert run_execute(run_id=run.id, attempt=1) == "succeeded"
    finally:
        use_handlers(settings, [])
    recorded = {p[0]: p[1:5] for p in points(run.id)}
    assert recorded == {
        "": ("run", "succeeded", 7, 3),
        "flights": ("source", "succeeded", 7, 7),
        "late": ("transform", "succeeded", 7, 3),
        "warehouse": ("destination", "succeeded", 3, 3),
    }


def _record(pipeline, *, at, status="succeeded", rows=10, duration_s=10.0):
    run = make_run(pipeline, status=status, rows=rows, duration_s=duration_s, finished_at=at, nodes=False)
    metrics.run_metrics_record(run_id=run.id)
    return run


@pytest.fixture
def history(personas, settings):
    """Two pipelines of `workspace` and one of the other workspace, runs over two days."""
    settings.AGGREGATOR_METRICS_RETENTION_DAYS = 3650
    orders = make_pipeline(personas.workspace, "orders")
    users = make_pipeline(personas.workspace, "users")
    foreign = make_pipeline(personas.other_workspace, "foreign")
    _record(orders, at=BASE + timedelta(hours=1, minutes=5), duration_s=10.0, rows=100)
    _record(orders, at=BASE + timedelta(hours=1, minutes=50), duration_s=20.0, rows=50)
    _record(orders, at=BASE + timedelta(hours=2, minutes=1), status="failed", duration_s=30.0, rows=0)
    _record(users, at=BASE + timedelta(hours=2, minutes=30), duration_s=40.0, rows=7)
    _record(users, at=BASE + timedelta(hours=3), status="cancelled", duration_s=1.0, rows=0)
    _record(orders, at=BASE + timedelta(days=1, hours=5), duration_s=10.0, rows=1)
    _record(foreign, at=BASE + timedelta(hours=1), duration_s=99.0, rows=999)
    return orders, users, foreign


def test_series_buckets_by_hour_with_counts_rate_rows_and_percentiles(personas, client_for, history):
    response = client_for(personas.viewer).get(
        "/api/v1/metrics/runs/",
        {"since": "2026-11-20T00:00:00Z", "until": "2026-11-21T00:00:00Z", "bucket": "hour"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "since": "2026-11-20T00:00:00Z",
        "until": "2026-11-21T00:00:00Z",
        "bucket": "hour",
        "points": [
            {
                "bucket": "2026-11-20T01:00:00Z",
                "runs": 2,
                "succeeded": 2,
                "failed": 0,
                "cancelled": 0,
                "success_rate": 1.0,
                "rows": 150,
                "duration_p50_s": 15.0,
                "duration_p95_s": 19.5,
            },
            {
                "bucket": "2026-11-20T02:00:00Z",
                "runs": 2,
                "succeeded": 1,
                "failed": 1,
                "cancelled": 0,
                "success_rate": 0.5,
                "rows": 7,
                "duration_p50_s": 35.0,
                "duration_p95_s": 39.5,
            },
            {
                "bucket": "2026-11-20T03:00:00Z",
                "runs": 1,
                "succeeded": 0,
                "failed": 0,
                "cancelled": 1,
                "success_rate": None,
                "rows": 0,
                "duration_p50_s": 1.0,
                "duration_p95_s": 1.0,
            },
        ],
    }


def test_summary_per_pipeline_and_per_workspace(personas, client_for, history):
    orders, users, _ = history
    client = client_for(personas.owner)
    window = {"since": "2026-11-20T00:00:00Z", "until": "2026-11-22T00:00:00Z"}
    by_pipeline = client.get("/api/v1/metrics/summary/", window).json()["rows"]
    assert [(r["pipeline"], r["runs"], r["failed"], r["rows"], r["success_rate"]) for r in by_pipeline] == [
        (orders.id, 4, 1, 151, 0.75),
        (users.id, 2, 0, 7, 1.0),
    ]
    by_workspace = client.get("/api/v1/metrics/summary/", {**window, "group_by": "workspace"}).json()["rows"]
    assert by_workspace == [
        {
            "workspace": personas.workspace.id,
            "pipeline": None,
            "runs": 6,
            "succeeded": 4,
            "failed": 1,
            "cancelled": 1,
            "success_rate": 0.8,
            "rows": 158,
            "duration_p50_s": 15.0,
            "duration_p95_s": 37.5,
        }
    ]
    one = client.get("/api/v1/metrics/summary/", {**window, "pipeline": users.id}).json()["rows"]
    assert [(r["pipeline"], r["runs"]) for r in one] == [(users.id, 2)]
    daily = client.get("/api/v1/metrics/runs/", {**window, "bucket": "day", "pipeline": orders.id}).json()
    assert [(p["bucket"], p["runs"]) for p in daily["points"]] == [
        ("2026-11-20T00:00:00Z", 3),
        ("2026-11-21T00:00:00Z", 1),
    ]


def test_outsider_sees_none_of_it_and_gets_404_when_naming_it(personas, client_for, history):
    orders, _, foreign = history
    client = client_for(personas.outsider)
    window = {"since": "2026-11-20T00:00:00Z", "until": "2026-11-22T00:00:00Z"}
    rows = client.get("/api/v1/metrics/summary/", window).json()["rows"]
    assert [(r["pipeline"], r["rows"]) for r in rows] == [(foreign.id, 999)]
    assert client.get("/api/v1/metrics/runs/", {**window, "pipeline": orders.id}).status_code == 404
    response = client.get("/api/v1/metrics/summary/", {**window, "workspace": personas.workspace.id})
    assert response.status_code == 404
    assert client_for(None).get("/api/v1/metrics/runs/").status_code in (401, 403)


def test_the_range_defaults_to_the_last_24_hours_and_is_checked(personas, client_for):
    client = client_for(personas.viewer)
    body = client.get("/api/v1/metrics/runs/").json()
    since = datetime.fromisoformat(body["since"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(body["until"].replace("Z", "+00:00"))
    assert until - since == timedelta(hours=24)
    assert abs((timezone.now() - until).total_seconds()) < 60
    assert body["points"] == []
    reversed_range = client.get(
        "/api/v1/metrics/runs/", {"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"}
    )
    assert reversed_range.status_code == 400
    assert "since" in str(reversed_range.json())
    too_fine = client.get(
        "/api/v1/metrics/runs/",
        {"since": "2026-01-01T00:00:00Z", "until": "2026-11-01T00:00:00Z", "bucket": "minute"},
    )
    assert too_fine.status_code == 400
    assert "bucket" in str(too_fine.json())


def _scanned(plan: str) -> list[str]:
    return sorted(set(re.findall(r"monitoring_run_metric_p\d{8}", plan)))


def test_queries_scan_only_the_partitions_in_range(personas, settings):
    settings.AGGREGATOR_METRICS_RETENTION_DAYS = 3650
    partitions.ensure_partitions(days=[BASE.date() + timedelta(days=i) for i in range(-3, 7)])
    window = metrics.Window(BASE + timedelta(days=1, hours=6), BASE + timedelta(days=3))
    for sql, params in (
        metrics.run_series_sql(
            workspace_ids=[personas.workspace.id], pipeline_id=None, window=window, bucket="hour"
        ),
        metrics.run_summary_sql(
            workspace_ids=[personas.workspace.id], pipeline_id=7, window=window, group_by="pipeline"
        ),
    ):
        assert _scanned(metrics.explain(sql, params)) == [
            "monitoring_run_metric_p20261121",
            "monitoring_run_metric_p20261122",
        ]


def test_the_system_sample_records_points_and_the_beat_heartbeat(personas, client_for, monkeypatch):
    from apps.monitoring import health, tasks

    monkeypatch.setattr(tasks.health, "active_workers", lambda timeout: ["w1@host", "w2@host"])
    pipeline = make_pipeline(personas.workspace)
    make_run(pipeline, status="running", nodes=False)
    assert sample_system_metrics_task() == 5
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, value, labels FROM monitoring_system_metric ORDER BY name, labels::text")
        rows = [
            (n, v, lab if isinstance(lab, dict) else __import__("json").loads(lab)) for n, v, lab in cursor
        ]
    assert rows == [
        ("active_workers", 2.0, {}),
        ("queue_depth", 0.0, {"queue": "default"}),
        ("queue_depth", 0.0, {"queue": "runs"}),
        ("runs_queued", 0.0, {}),
        ("runs_running", 1.0, {}),
    ]
    from django.core.cache import cache

    assert cache.get(health.BEAT_HEARTBEAT_KEY)
    operator = personas.viewer
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    body = client_for(operator).get("/api/v1/metrics/system/", {"name": "runs_running"}).json()
    assert [(p["labels"], p["avg"], p["max"]) for p in body["points"]] == [({}, 1.0, 1.0)]
