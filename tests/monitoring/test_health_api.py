"""GET /api/v1/health/: one report of every component for the dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.monitoring import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(user_factory):
    """Health is the whole platform's: staff only."""
    return user_factory(is_staff=True)


@pytest.fixture
def one_worker(monkeypatch):
    monkeypatch.setattr(health, "active_workers", lambda timeout=1.0: ["celery@host"])


def test_all_ok_with_a_worker_and_a_recent_beat(operator, client_for, one_worker, settings, tmp_path):
    settings.AGGREGATOR_DATA_DIR = tmp_path / "data"
    settings.AGGREGATOR_DISK_MIN_FREE_BYTES = 1
    health.beat_heartbeat(at=timezone.now() - timedelta(seconds=30))
    response = client_for(operator).get("/api/v1/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    components = body["components"]
    assert set(components) == {"database", "redis", "workers", "queues", "beat", "disk"}
    assert all(c["ok"] for c in components.values())
    assert components["workers"]["count"] == 1 and components["workers"]["names"] == ["celery@host"]
    assert components["queues"]["lengths"] == {"runs": 0, "default": 0}
    assert 29 <= components["beat"]["age_s"] < 60
    assert components["disk"]["free_bytes"] > 0
    assert str(tmp_path) not in response.content.decode()  # sizes, never paths


def test_stale_beat_missing_workers_and_low_disk_are_not_ok(operator, client_for, monkeypatch, settings):
    monkeypatch.setattr(health, "active_workers", lambda timeout=1.0: [])
    settings.AGGREGATOR_BEAT_STALE_S = 120
    settings.AGGREGATOR_DISK_MIN_FREE_BYTES = 10**18
    health.beat_heartbeat(at=timezone.now() - timedelta(minutes=10))
    body = client_for(operator).get("/api/v1/health/").json()
    assert body["status"] == "degraded"
    components = body["components"]
    assert (components["workers"]["ok"], components["workers"]["detail"]) == (
        False,
        "no worker answered a ping",
    )
    assert components["beat"]["ok"] is False and "stale" in components["beat"]["detail"]
    assert components["disk"]["ok"] is False and "below the minimum" in components["disk"]["detail"]
    assert components["database"]["ok"] and components["redis"]["ok"]


def test_beat_that_never_ticked_and_a_queue_backlog(operator, client_for, one_worker, settings):
    import redis

    settings.AGGREGATOR_QUEUE_BACKLOG_WARN = 2
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("runs")
    broker.rpush("runs", "a", "b", "c")
    try:
        components = client_for(operator).get("/api/v1/health/").json()["components"]
    finally:
        broker.delete("runs")
    assert components["beat"] == {
        "ok": False,
        "detail": "beat has never ticked",
        "last_tick": None,
        "ms": components["beat"]["ms"],
    }
    assert components["queues"]["ok"] is False
    assert components["queues"]["lengths"]["runs"] == 3
    assert components["queues"]["detail"] == "backlog in runs"


def test_a_failing_component_is_reported_not_raised(operator, client_for, one_worker, monkeypatch):
    def broken():
        raise ConnectionError("refused")

    monkeypatch.setattr(health, "queue_lengths", broken)
    components = client_for(operator).get("/api/v1/health/").json()["components"]
    assert components["queues"]["ok"] is False
    assert components["queues"]["detail"] == "ConnectionError: refused"


def test_health_needs_a_signed_in_user(client_for):
    assert client_for(None).get("/api/v1/health/").status_code in (401, 403)


def test_workspace_members_and_admins_who_are_not_staff_get_403(personas, client_for, one_worker):
    """Worker counts and queue lengths are the whole platform's: one tenant must not learn how busy the
    others are."""
    for user in (personas.viewer, personas.owner):
        response = client_for(user).get("/api/v1/health/")
        assert response.status_code == 403
        assert response.json() == {
            "error": {
                "code": "permission_denied",
                "message": "You do not have permission to perform this action.",
            }
        }
        system = client_for(user).get("/api/v1/metrics/system/", {"name": "runs_running"})
        assert system.status_code == 403
        assert system.json()["error"]["message"] == "Platform metrics are for operators (staff users)."
