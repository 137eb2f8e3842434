"""Thin Celery tasks of monitoring; their schedules are in settings.CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.apps import apps
from django.core.cache import cache
from django.utils import timezone

from aggregator.logging import get_logger

from . import alerts, health, metrics, partitions

logger = get_logger(__name__)

# Short: a worker that does not answer within it is as good as absent for the sample, and the task must
# stay well inside its one-minute period.
WORKER_PING_TIMEOUT_S = 1.0


def system_sample() -> list[tuple[str, float, dict[str, Any]]]:
    samples: list[tuple[str, float, dict[str, Any]]] = []
    try:
        for queue, length in health.queue_lengths().items():
            samples.append(("queue_depth", float(length), {"queue": queue}))
    except Exception:
        logger.warning("system_sample_failed", part="queue_depth")
    try:
        samples.append(
            ("active_workers", float(len(health.active_workers(timeout=WORKER_PING_TIMEOUT_S))), {})
        )
    except Exception:
        logger.warning("system_sample_failed", part="active_workers")
    Run = apps.get_model("pipelines", "Run")
    samples.append(("runs_running", float(Run.objects.filter(status="running").count()), {}))
    samples.append(("runs_queued", float(Run.objects.filter(status="queued").count()), {}))
    return samples


@shared_task(name="monitoring.sample_system_metrics", ignore_result=True)
def sample_system_metrics_task() -> int:
    """Every minute: the beat heartbeat first (it proves beat fired, whatever the sample finds), then the
    system sample as points, and the latest values for /metrics."""
    now = timezone.now()
    health.beat_heartbeat(at=now)
    samples = system_sample()
    cache.set(
        "monitoring:system:latest",
        {name: value for name, value, labels in samples if not labels},
        timeout=300,
    )
    return metrics.system_metrics_record(samples=samples, ts=now)


@shared_task(
    name="monitoring.maintain_partitions",
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=60,
    retry_jitter=True,
    max_retries=5,
)
def maintain_partitions_task() -> dict[str, list[str]]:
    return {"created": partitions.ensure_ahead(), "dropped": partitions.drop_expired()}


@shared_task(name="monitoring.check_freshness", ignore_result=True)
def check_freshness_task() -> int:
    return alerts.check_freshness()
