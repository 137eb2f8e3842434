"""Prometheus exposition at /metrics, and the counters behind it.

Web and worker processes are many (and on many machines), so in-process prometheus_client counters would
each hold a fraction of the truth and vanish on restart. Counters therefore live in Redis: the run-metrics
event handler bumps run counts and the run-duration histogram once per finished run, and a small middleware
bumps HTTP request counts and the latency histogram (one pipelined round trip per request). Gauges are read
at scrape time (queue lengths from the broker, runs in progress from the database, the last system sample).
prometheus_client only renders; the rendered page is cached a few seconds so a tight scrape interval or
several Prometheus replicas cost one computation.

Redis losing its data is a counter reset, which Prometheus' rate() already handles.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from aggregator.logging import get_logger

logger = get_logger(__name__)

_PREFIX = "aggregator:prom:"
RUN_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUEUES = ("runs", "default")
_CACHE_KEY = "monitoring:prometheus:page"


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)


def _bucket_index(value: float, buckets: tuple[float, ...]) -> int:
    for i, bound in enumerate(buckets):
        if value <= bound:
            return i
    return len(buckets)  # +Inf


def count_run(*, status: str, duration_s: float | None) -> None:
    """Called once per finished run (the run-metrics handler writes its points exactly once)."""
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.hincrby(_PREFIX + "runs", status, 1)
        if duration_s is not None:
            pipe.hincrby(_PREFIX + "run_duration", f"b{_bucket_index(duration_s, RUN_DURATION_BUCKETS)}", 1)
            pipe.hincrbyfloat(_PREFIX + "run_duration", "sum", duration_s)
            pipe.hincrby(_PREFIX + "run_duration", "count", 1)
        pipe.execute()
    except Exception:  # a metrics hiccup must never fail a run's bookkeeping
        logger.warning("prometheus_count_failed", metric="runs")


class HttpMetricsMiddleware:
    """Counts requests by method, view name and status, and their latency. View names (not paths) keep
    the label set small: `/api/v1/runs/123/` and `/api/v1/runs/124/` are both `run-detail`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.url_name or "other") if match else "unmatched"
        labels = f"{request.method}|{view.replace('|', '_')}"
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.hincrby(_PREFIX + "http", f"{labels}|{response.status_code}", 1)
            pipe.hincrby(
                _PREFIX + "http_duration", f"{labels}|b{_bucket_index(elapsed, HTTP_DURATION_BUCKETS)}", 1
            )
            pipe.hincrbyfloat(_PREFIX + "http_duration", f"{labels}|sum", elapsed)
            pipe.execute()
        except Exception:
            logger.warning("prometheus_count_failed", metric="http")
        return response


def _decoded(mapping: dict[bytes, bytes]) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in mapping.items()}


def _histogram(
    counts: dict[str, float], buckets: tuple[float, ...], prefix: str = ""
) -> tuple[list[tuple[str, float]], float]:
    cumulative, out = 0.0, []
    for i, bound in enumerate((*buckets, float("inf"))):
        cumulative += counts.get(f"{prefix}b{i}", 0.0)
        out.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return out, counts.get(f"{prefix}sum", 0.0)


class _Collector:
    def collect(self) -> Iterator[Any]:
        from django.apps import apps
        from django.db.models import Count
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from .health import queue_lengths

        client = _redis()
        runs = CounterMetricFamily("aggregator_runs", "Runs finished, by final status.", labels=["status"])
        for status, value in sorted(_decoded(client.hgetall(_PREFIX + "runs")).items()):
            runs.add_metric([status], value)
        yield runs

        durations = _decoded(client.hgetall(_PREFIX + "run_duration"))
        buckets, total = _histogram(durations, RUN_DURATION_BUCKETS)
        histogram = HistogramMetricFamily("aggregator_run_duration_seconds", "Duration of finished runs.")
        histogram.add_metric([], buckets, sum_value=total)
        yield histogram

        Run = apps.get_model("pipelines", "Run")
        in_progress = dict(
            Run.objects.filter(status__in=["queued", "running"])
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        gauge = GaugeMetricFamily("aggregator_runs_in_progress", "Runs queued or running.", labels=["status"])
        for status in ("queued", "running"):
            gauge.add_metric([status], in_progress.get(status, 0))
        yield gauge

        queues = GaugeMetricFamily("aggregator_queue_depth", "Messages waiting in a queue.", labels=["queue"])
        for queue, length in queue_lengths().items():
            queues.add_metric([queue], length)
        yield queues

        from django.core.cache import cache as django_cache

        latest = django_cache.get("monitoring:system:latest") or {}
        workers = GaugeMetricFamily(
            "aggregator_workers_active", "Celery workers that answered the last ping (sampled each minute)."
        )
        workers.add_metric([], latest.get("active_workers", 0))
        yield workers

        requests = CounterMetricFamily(
            "aggregator_http_requests",
            "HTTP requests by method, view and status.",
            labels=["method", "view", "status"],
        )
        for key, value in sorted(_decoded(client.hgetall(_PREFIX + "http")).items()):
            method, view, status = key.split("|")
            requests.add_metric([method, view, status], value)
        yield requests

        latency = HistogramMetricFamily(
            "aggregator_http_request_duration_seconds", "HTTP request latency.", labels=["method", "view"]
        )
        raw = _decoded(client.hgetall(_PREFIX + "http_duration"))
        for method, view in sorted({tuple(k.split("|")[:2]) for k in raw}):
            buckets, total = _histogram(raw, HTTP_DURATION_BUCKETS, prefix=f"{method}|{view}|")
            latency.add_metric([method, view], buckets, sum_value=total)
        yield latency


def render() -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())  # type: ignore[arg-type]
    return generate_latest(registry)


def _authorised(request: HttpRequest, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """/metrics for Prometheus, behind `Authorization: Bearer <AGGREGATOR_METRICS_TOKEN>`. With no token
    configured the page does not exist (404): metrics are never public by default."""
    from django.core.cache import cache as django_cache
    from prometheus_client import CONTENT_TYPE_LATEST

    token = settings.AGGREGATOR_METRICS_TOKEN
    if not token:
        return HttpResponse(status=404)
    if not _authorised(request, token):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    page = django_cache.get(_CACHE_KEY)
    if page is None:
        page = render()
        django_cache.set(_CACHE_KEY, page, settings.AGGREGATOR_METRICS_CACHE_S)
    return HttpResponse(page, content_type=CONTENT_TYPE_LATEST)
