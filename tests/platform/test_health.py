"""/healthz, /readyz and request-id propagation, against the real database, Redis and a real Celery worker."""

from __future__ import annotations

import time

import pytest
import structlog
from celery.contrib.testing.worker import start_worker
from django.core.cache import cache
from rest_framework.test import APIClient

from aggregator.celery import app


@app.task(name="tests.record_request_id")
def record_request_id(cache_key: str) -> None:
    cache.set(cache_key, structlog.contextvars.get_contextvars().get("request_id"), 60)


@pytest.fixture
def celery_worker():
    # A real worker consuming from the real broker, in a thread of the test process.
    with start_worker(
        app, pool="solo", perform_ping_check=False, shutdown_timeout=10, queues=["default"]
    ) as worker:
        yield worker


def test_healthz_answers_without_touching_dependencies():
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_unavailable_without_a_worker():
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["workers"]["ok"] is False


# transaction=True: the worker's Django fixup closes database connections when it starts, which a test
# wrapped in one transaction could not survive.
@pytest.mark.django_db(transaction=True)
def test_readyz_is_ok_with_database_redis_and_a_worker(celery_worker):
    response = APIClient().get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["workers"]["detail"] == "a worker answered"
    assert set(body["checks"]) == {"database", "redis", "workers"}


@pytest.mark.django_db(transaction=True)
def test_request_id_travels_into_celery_tasks(celery_worker):
    structlog.contextvars.bind_contextvars(request_id="req-42")
    try:
        record_request_id.delay("rid-test")
    finally:
        structlog.contextvars.clear_contextvars()
    deadline = time.monotonic() + 10
    while cache.get("rid-test") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.get("rid-test") == "req-42"
