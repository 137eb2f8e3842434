"""The dashboard's health report: database, Redis, workers, beat, queues and the data directory's disk.

Unlike /readyz (for a load balancer, terse), this says what is wrong in words a person can act on. Each
component answers `{"ok": bool, "detail": str, ...}`; a failing check is reported, never raised, and each
is bounded by a short timeout so the page answers even while something hangs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

CHECK_TIMEOUT_S = 1.0
BEAT_HEARTBEAT_KEY = "monitoring:beat:last_tick"
QUEUES = ("runs", "default")


def beat_heartbeat(*, at: datetime | None = None) -> None:
    """Recorded by the system-metrics beat task each minute: proof that beat is scheduling."""
    # No expiry: an old value is exactly what tells the dashboard beat has stopped.
    cache.set(BEAT_HEARTBEAT_KEY, (at or timezone.now()).isoformat(), timeout=None)


def _broker() -> Any:
    import redis

    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )


def queue_lengths() -> dict[str, int]:
    """Messages waiting per Celery queue: the Redis transport keeps each queue as a list of its name."""
    client = _broker()
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))
    finally:
        client.close()


def active_workers(*, timeout: float = CHECK_TIMEOUT_S) -> list[str]:
    from aggregator.celery import app

    replies = app.control.ping(timeout=timeout) or []
    return sorted(name for reply in replies for name in reply)


def _check(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # the report names the failure; it never raises
        result = {"ok": False, "detail": f"{type(exc).__name__}: {str(exc)[:200]}"}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True, "detail": "answers"}


def _redis() -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True, "detail": "answers"}


def _workers() -> dict[str, Any]:
    names = active_workers()
    if not names:
        return {"ok": False, "detail": "no worker answered a ping", "count": 0}
    return {"ok": True, "detail": f"{len(names)} answered", "count": len(names), "names": names}


def _beat() -> dict[str, Any]:
    raw = cache.get(BEAT_HEARTBEAT_KEY)
    if not raw:
        return {"ok": False, "detail": "beat has never ticked", "last_tick": None}
    last = datetime.fromisoformat(raw)
    age = (timezone.now() - last).total_seconds()
    ok = age <= settings.AGGREGATOR_BEAT_STALE_S
    detail = f"last tick {age:.0f} s ago" + ("" if ok else " (stale: is beat running?)")
    return {"ok": ok, "detail": detail, "last_tick": raw, "age_s": round(age, 1)}


def _queues() -> dict[str, Any]:
    lengths = queue_lengths()
    backlog = {q: n for q, n in lengths.items() if n > settings.AGGREGATOR_QUEUE_BACKLOG_WARN}
    detail = "backlog in " + ", ".join(backlog) if backlog else "no backlog"
    return {"ok": not backlog, "detail": detail, "lengths": lengths}


def _disk() -> dict[str, Any]:
    path = settings.AGGREGATOR_DATA_DIR
    path.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(path)
    free_ratio = usage.free / usage.total if usage.total else 0.0
    ok = usage.free >= settings.AGGREGATOR_DISK_MIN_FREE_BYTES
    detail = f"{usage.free / 2**30:.1f} GiB free ({free_ratio:.0%})" + ("" if ok else ", below the minimum")
    # The path itself is configuration: the report gives sizes only.
    return {"ok": ok, "detail": detail, "free_bytes": usage.free, "total_bytes": usage.total}


def health_report() -> dict[str, Any]:
    components = {
        "database": _check(_database),
        "redis": _check(_redis),
    }
    if components["redis"]["ok"]:
        components["workers"] = _check(_workers)
        components["queues"] = _check(_queues)
    else:
        components["workers"] = {"ok": False, "detail": "no broker", "ms": 0.0}
        components["queues"] = {"ok": False, "detail": "no broker", "ms": 0.0}
    components["beat"] = _check(_beat)
    components["disk"] = _check(_disk)
    return {
        "status": "ok" if all(c["ok"] for c in components.values()) else "degraded",
        "checked_at": timezone.now(),
        "components": components,
    }
