"""/metrics: token-protected Prometheus exposition of run counters and durations, queues, HTTP metrics."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from apps.monitoring import metrics

from .metric_helpers import make_pipeline, make_run

pytestmark = pytest.mark.django_db

TOKEN = "prom-token-0123456789abcdef"


@pytest.fixture
def token(settings):
    settings.AGGREGATOR_METRICS_TOKEN = TOKEN
    settings.AGGREGATOR_METRICS_CACHE_S = 0
    return TOKEN


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_without_a_configured_token_metrics_do_not_exist(settings):
    settings.AGGREGATOR_METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_a_missing_or_wrong_token_is_401(token):
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


def test_runs_counters_durations_queues_and_http(token, personas, client_for):
    pipeline = make_pipeline(personas.workspace)
    for status, duration in (("succeeded", 3.0), ("succeeded", 40.0), ("failed", 400.0)):
        run = make_run(pipeline, status=status, duration_s=duration, nodes=False)
        metrics.run_metrics_record(run_id=run.id)
    make_run(pipeline, status="running", nodes=False)
    client_for(personas.viewer).get("/api/v1/alerts/")
    client_for(personas.viewer).get("/api/v1/alerts/")

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response.content.decode())
    assert found[("aggregator_runs_total", (("status", "succeeded"),))] == 2
    assert found[("aggregator_runs_total", (("status", "failed"),))] == 1
    assert found[("aggregator_run_duration_seconds_bucket", (("le", "5.0"),))] == 1
    assert found[("aggregator_run_duration_seconds_bucket", (("le", "60.0"),))] == 2
    assert found[("aggregator_run_duration_seconds_bucket", (("le", "+Inf"),))] == 3
    assert found[("aggregator_run_duration_seconds_count", ())] == 3
    assert found[("aggregator_run_duration_seconds_sum", ())] == 443.0
    assert found[("aggregator_runs_in_progress", (("status", "running"),))] == 1
    assert found[("aggregator_runs_in_progress", (("status", "queued"),))] == 0
    assert ("aggregator_queue_depth", (("queue", "runs"),)) in found
    assert (
        found[
            ("aggregator_http_requests_total", (("method", "GET"), ("status", "200"), ("view", "alert-list")))
        ]
        == 2
    )
    key = ("aggregator_http_request_duration_seconds_count", (("method", "GET"), ("view", "alert-list")))
    assert found[key] == 2


def test_the_page_is_cached_briefly(token, settings, personas):
    settings.AGGREGATOR_METRICS_CACHE_S = 60
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    first = Client().get("/metrics", **auth).content
    run = make_run(make_pipeline(personas.workspace), nodes=False)
    metrics.run_metrics_record(run_id=run.id)
    assert Client().get("/metrics", **auth).content == first
