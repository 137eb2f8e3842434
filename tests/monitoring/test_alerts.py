"""Alerts: each rule kind, one incident per (rule, subject), rate-limited notifications, auto-resolution,
and the alert-rules / alerts API for owner, editor, viewer and outsider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.monitoring import alerts, events
from apps.monitoring.models import Alert, AlertRule, AlertStatus, Event
from apps.pipelines.models import Pipeline
from tests.connectors.conftest import import_dir, pg_config, pg_schema, scratch_database  # noqa: F401
from tests.pipelines.conftest import csv_connector, flights_definition, flights_file, pg_connector  # noqa: F401

from .metric_helpers import committed_metrics, finish, make_pipeline, make_run, use_handlers  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def handlers(settings):
    use_handlers(settings, ["apps.monitoring.alerts.handle_event"])
    yield
    use_handlers(settings, [])


@pytest.fixture
def pipeline(personas):
    return make_pipeline(personas.workspace, "orders")


def rule(personas, kind, pipeline=None, **values):
    return AlertRule.objects.create(
        workspace=personas.workspace, pipeline=pipeline, name=f"{kind} rule", kind=kind, **values
    )


def alert_events(type_: str) -> list[dict]:
    return list(Event.objects.filter(type=type_).order_by("id").values_list("payload", flat=True))


def test_a_failed_run_opens_one_alert_counts_repeats_and_the_next_success_resolves_it(
    personas, pipeline, handlers, django_capture_on_commit_callbacks
):
    failed = rule(personas, "run_failed")
    finish(
        make_run(pipeline, status="failed", error="connection refused"), django_capture_on_commit_callbacks
    )
    (alert,) = Alert.objects.all()
    assert (alert.rule_id, alert.subject_type, alert.subject_id, alert.status, alert.count) == (
        failed.id,
        "pipeline",
        str(pipeline.id),
        AlertStatus.OPEN,
        1,
    )
    assert alert.context["error"] == "connection refused"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["owner@acme.test"]  # the workspace's admins by default
    assert mail.outbox[0].subject.startswith("[Aggregator] Alert: Pipeline orders: run")
    (triggered,) = alert_events("alert.triggered")
    assert (triggered["alert"], triggered["kind"], triggered["count"]) == (alert.id, "run_failed", 1)

    # The same incident again: counted, not a new alert, not a new notification (within the interval).
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert (Alert.objects.count(), alert.count, alert.status) == (1, 2, AlertStatus.OPEN)
    assert len(mail.outbox) == 1 and len(alert_events("alert.triggered")) == 1

    finish(make_run(pipeline, status="succeeded"), django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_reason.endswith("succeeded")
    assert [e["status"] for e in alert_events("alert.resolved")] == ["resolved"]
    assert mail.outbox[-1].subject.startswith("[Aggregator] Resolved:")

    # A new failure after resolution is a new incident.
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    assert Alert.objects.filter(status=AlertStatus.OPEN).count() == 1
    assert Alert.objects.count() == 2


def test_notifications_repeat_after_the_interval_but_not_once_acknowledged(
    personas, pipeline, handlers, django_capture_on_commit_callbacks
):
    rule(personas, "run_failed", notify_interval_s=0, email_recipients=["oncall@acme.test"])
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    assert [m.to for m in mail.outbox] == [["oncall@acme.test"], ["oncall@acme.test"]]
    alert = Alert.objects.get()
    alerts.alert_acknowledge(alert=alert, user=personas.editor)
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert (alert.status, alert.count, len(mail.outbox)) == (AlertStatus.ACKNOWLEDGED, 3, 2)


def test_consecutive_failures_wait_for_n(personas, pipeline, handlers, django_capture_on_commit_callbacks):
    rule(personas, "consecutive_failures", pipeline=pipeline, threshold=3)
    finish(make_run(pipeline, status="succeeded"), django_capture_on_commit_callbacks)
    for _ in range(2):
        finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    assert not Alert.objects.exists()
    finish(make_run(pipeline, status="cancelled"), django_capture_on_commit_callbacks)  # says nothing
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    assert alert.title == "Pipeline orders: 3 runs failed in a row"
    finish(make_run(pipeline, status="succeeded"), django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED


def test_rules_of_another_pipeline_do_not_fire(
    personas, pipeline, handlers, django_capture_on_commit_callbacks
):
    other = make_pipeline(personas.workspace, "other")
    rule(personas, "run_failed", pipeline=other)
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    ("kind", "threshold", "rows", "duration", "fires"),
    [
        ("duration_over", 60, 10, 61.0, True),
        ("duration_over", 60, 10, 59.0, False),
        ("rows_below", 100, 99, 1.0, True),
        ("rows_below", 100, 100, 1.0, False),
        ("rows_above", 1000, 1001, 1.0, True),
        ("rows_above", 1000, 1000, 1.0, False),
    ],
)
def test_bounds_on_duration_and_rows(
    personas, pipeline, handlers, django_capture_on_commit_callbacks, kind, threshold, rows, duration, fires
):
    rule(personas, kind, threshold=threshold)
    finish(make_run(pipeline, rows=rows, duration_s=duration), django_capture_on_commit_callbacks)
    assert Alert.objects.filter(status=AlertStatus.OPEN).exists() is fires


def test_robust_z_score():
    history = [1000, 1010, 990, 1005, 995, 1002, 998]
    assert alerts.robust_z(1000, history[:4]) is None  # too little history
    assert abs(alerts.robust_z(1000, history)) < 0.5
    assert alerts.robust_z(10, history) < -3.5
    assert alerts.robust_z(5000, history) > 3.5
    # Half the history identical (MAD 0): the mean absolute deviation stands in.
    assert alerts.robust_z(150, [100, 100, 100, 100, 100, 120]) > 3.5
    assert alerts.robust_z(100, [100] * 6) == 0.0
    assert alerts.robust_z(101, [100] * 6) == float("inf")


def test_rows_anomalous_against_the_pipelines_own_history(
    personas, pipeline, handlers, django_capture_on_commit_callbacks
):
    anomaly = rule(personas, "rows_anomaly", pipeline=pipeline, window=10)
    for rows in (1000, 1010, 990, 1005, 995, 1002):
        finish(make_run(pipeline, rows=rows), django_capture_on_commit_callbacks)
    assert not Alert.objects.exists()
    finish(make_run(pipeline, rows=12), django_capture_on_commit_callbacks)
    alert = Alert.objects.get(rule=anomaly)
    assert alert.context["rows"] == 12 and alert.context["median"] == 1001.0 and alert.context["z"] < -3.5
    finish(make_run(pipeline, rows=1001), django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED


def test_freshness_is_checked_by_the_beat_task_and_cleared_by_a_success(
    personas, pipeline, handlers, django_capture_on_commit_callbacks
):
    from apps.monitoring.tasks import check_freshness_task

    Pipeline.objects.filter(pk=pipeline.pk).update(created_at=timezone.now() - timedelta(days=3))
    make_pipeline(personas.workspace, "brand-new")  # younger than the window: not judged yet
    rule(personas, "freshness", window=3600)
    make_run(pipeline, finished_at=timezone.now() - timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert check_freshness_task() == 1
    alert = Alert.objects.get()
    assert alert.title.startswith("Pipeline orders: no successful run since ")
    with django_capture_on_commit_callbacks(execute=True):
        check_freshness_task()
    alert.refresh_from_db()
    assert alert.count == 2
    finish(make_run(pipeline), django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED


def test_schema_drift_and_quality_failures_from_events(
    personas, pipeline, handlers, django_capture_on_commit_callbacks
):
    drift = rule(personas, "schema_drift")
    quality = rule(personas, "quality_failed", pipeline=pipeline)
    with django_capture_on_commit_callbacks(execute=True):
        events.emit("schema.drift_detected", personas.workspace, ("stream", "17"), {"added": ["email"]})
        events.emit(
            "quality.failed", personas.workspace, ("run", "5"), {"pipeline": pipeline.id, "check": "not_null"}
        )
        events.emit("quality.failed", personas.workspace, ("run", "6"), {"pipeline": 999999})
    by_rule = {a.rule_id: a for a in Alert.objects.all()}
    assert set(by_rule) == {drift.id, quality.id}
    assert (by_rule[drift.id].subject_type, by_rule[drift.id].subject_id) == ("stream", "17")
    assert by_rule[drift.id].title == "Schema drift on stream:17"
    assert by_rule[quality.id].context["payload"]["check"] == "not_null"


def test_a_disabled_rule_is_silent(personas, pipeline, handlers, django_capture_on_commit_callbacks):
    rule(personas, "run_failed", is_enabled=False)
    finish(make_run(pipeline, status="failed"), django_capture_on_commit_callbacks)
    assert not Alert.objects.exists()


def test_a_trigger_racing_an_insert_counts_on_the_existing_alert(personas, pipeline, monkeypatch):
    failed = rule(personas, "run_failed")
    first = alerts.alert_trigger(
        rule=failed, subject_type="pipeline", subject_id=pipeline.id, title="x", context={}
    )
    # Simulate the race: our read finds nothing, the insert hits the unique index, the retry updates.
    real_filter = Alert.objects.select_for_update
    calls = {"n": 0}

    def first_read_misses():
        qs = real_filter()
        calls["n"] += 1
        return qs.none() if calls["n"] == 1 else qs

    monkeypatch.setattr(Alert.objects, "select_for_update", first_read_misses)
    second = alerts.alert_trigger(
        rule=failed, subject_type="pipeline", subject_id=pipeline.id, title="x", context={}
    )
    assert second.pk == first.pk and second.count == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed_metrics")
def test_a_real_run_below_the_row_bound_raises_an_alert(personas, csv_connector, pg_connector, settings):  # noqa: F811
    from apps.pipelines.executor import run_execute
    from apps.pipelines.services import pipeline_create, run_start

    use_handlers(settings)
    try:
        pipeline = pipeline_create(
            workspace=personas.workspace, name="late", definition=flights_definition(), user=None
        )
        AlertRule.objects.create(
            workspace=personas.workspace, pipeline=pipeline, name="too few", kind="rows_below", threshold=10
        )
        run = run_start(pipeline=pipeline, user=None)
        assert run_execute(run_id=run.id, attempt=1) == "succeeded"
    finally:
        use_handlers(settings, [])
    alert = Alert.objects.get()
    assert (alert.title, alert.context["rows"], alert.context["run"]) == (
        "Pipeline late: 3 rows moved (below 10)",
        3,
        run.id,
    )
    assert Event.objects.filter(
        type="alert.triggered", subject_type="alert", subject_id=str(alert.id)
    ).exists()
    assert len(mail.outbox) == 1


# --- API ----------------------------------------------------------------------------------------------


def test_editor_creates_and_updates_rules_viewer_reads_only(personas, client_for, pipeline):
    editor = client_for(personas.editor)
    response = editor.post(
        "/api/v1/alert-rules/",
        {"name": "three strikes", "kind": "consecutive_failures", "threshold": 3, "pipeline": pipeline.id},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    created = AlertRule.objects.get()
    assert body == {
        "id": created.id,
        "workspace": personas.workspace.id,
        "pipeline": pipeline.id,
        "name": "three strikes",
        "kind": "consecutive_failures",
        "threshold": 3.0,
        "window": None,
        "is_enabled": True,
        "notify_email": True,
        "email_recipients": [],
        "notify_interval_s": 3600,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert created.created_by == personas.editor
    patched = editor.patch(f"/api/v1/alert-rules/{created.id}/", {"threshold": 5}, format="json")
    assert patched.status_code == 200 and patched.json()["threshold"] == 5.0

    viewer = client_for(personas.viewer)
    assert viewer.get("/api/v1/alert-rules/").json()["results"][0]["id"] == created.id
    assert (
        viewer.post("/api/v1/alert-rules/", {"name": "x", "kind": "run_failed"}, format="json").status_code
        == 403
    )
    assert viewer.delete(f"/api/v1/alert-rules/{created.id}/").status_code == 403
    assert client_for(personas.owner).delete(f"/api/v1/alert-rules/{created.id}/").status_code == 204
    assert not AlertRule.objects.exists()


def test_rule_list_query_count_does_not_grow_with_rules(personas, client_for, django_assert_max_num_queries):
    for i in range(5):
        rule(personas, "run_failed", pipeline=make_pipeline(personas.workspace, f"p{i}"))
    with django_assert_max_num_queries(5):
        body = client_for(personas.viewer).get("/api/v1/alert-rules/").json()
    assert body["count"] == 5


def test_events_about_unknown_or_odd_subjects_are_ignored(
    personas, handlers, django_capture_on_commit_callbacks
):
    rule(personas, "run_failed")
    with django_capture_on_commit_callbacks(execute=True):
        events.emit("run.failed", personas.workspace, ("run", "999999"), {})
        events.emit("run.failed", personas.workspace, ("run", "not-a-number"), {})
    assert not Alert.objects.exists()


def test_rule_validation_names_the_field(personas, client_for):
    editor = client_for(personas.editor)
    missing = editor.post("/api/v1/alert-rules/", {"name": "slow", "kind": "duration_over"}, format="json")
    assert missing.status_code == 400 and "threshold" in str(missing.json())
    foreign = make_pipeline(personas.other_workspace, "theirs")
    response = editor.post(
        "/api/v1/alert-rules/", {"name": "x", "kind": "run_failed", "pipeline": foreign.id}, format="json"
    )
    assert response.status_code == 400 and "pipeline" in str(response.json())
    assert not AlertRule.objects.exists()


def test_outsider_gets_404_for_rules_and_alerts(personas, client_for, pipeline):
    failed = rule(personas, "run_failed")
    alert = alerts.alert_trigger(
        rule=failed, subject_type="pipeline", subject_id=pipeline.id, title="t", context={}
    )
    outsider = client_for(personas.outsider)
    assert outsider.get("/api/v1/alert-rules/").json()["results"] == []
    assert outsider.get("/api/v1/alerts/").json()["results"] == []
    assert outsider.get(f"/api/v1/alert-rules/{failed.id}/").status_code == 404
    assert (
        outsider.patch(f"/api/v1/alert-rules/{failed.id}/", {"name": "mine"}, format="json").status_code
        == 404
    )
    assert outsider.get(f"/api/v1/alerts/{alert.id}/").status_code == 404
    assert outsider.post(f"/api/v1/alerts/{alert.id}/acknowledge/").status_code == 404
    assert outsider.post(f"/api/v1/alerts/{alert.id}/resolve/").status_code == 404
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN


def test_alerts_list_acknowledge_and_resolve(personas, client_for, pipeline, django_assert_max_num_queries):
    failed = rule(personas, "run_failed")
    slow = rule(personas, "duration_over", threshold=1)
    for r in (failed, slow):
        for _ in range(3):
            other = make_pipeline(personas.workspace, f"p-{r.id}-{_}")
            alerts.alert_trigger(
                rule=r, subject_type="pipeline", subject_id=other.id, title=f"{r.kind}", context={}
            )
    viewer = client_for(personas.viewer)
    with django_assert_max_num_queries(6):
        listed = viewer.get("/api/v1/alerts/").json()
    assert listed["count"] == 6
    first = listed["results"][0]
    assert set(first) == {
        *("id", "workspace", "rule", "kind", "subject_type", "subject_id", "status", "title", "context"),
        *("count", "first_seen", "last_seen", "last_notified_at", "acknowledged_at", "acknowledged_by"),
        *("resolved_at", "resolved_by", "resolved_reason"),
    }
    assert viewer.get("/api/v1/alerts/", {"kind": "duration_over"}).json()["count"] == 3
    assert viewer.post(f"/api/v1/alerts/{first['id']}/acknowledge/").status_code == 403

    editor = client_for(personas.editor)
    acked = editor.post(f"/api/v1/alerts/{first['id']}/acknowledge/").json()
    assert (acked["status"], acked["acknowledged_by"]) == ("acknowledged", personas.editor.id)
    resolved = editor.post(f"/api/v1/alerts/{first['id']}/resolve/").json()
    assert (resolved["status"], resolved["resolved_by"], resolved["resolved_reason"]) == (
        "resolved",
        personas.editor.id,
        "resolved by editor@acme.test",
    )
    assert Alert.objects.get(pk=first["id"]).status == AlertStatus.RESOLVED
    again = editor.post(f"/api/v1/alerts/{first['id']}/acknowledge/")
    assert again.status_code == 400
    assert viewer.get("/api/v1/alerts/", {"status": "open"}).json()["count"] == 5
