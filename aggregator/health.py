"""/healthz says the process is alive; /readyz says it can do its work: the database, Redis and at least
one Celery worker answer. Both are JSON, unauthenticated, and reveal no configuration."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

READY_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # a failed dependency is reported, not raised
        detail, ok = type(exc).__name__, False
    result: dict[str, Any] = {"ok": ok, "ms": round((time.monotonic() - started) * 1000, 1)}
    if detail:
        result["detail"] = detail
    return result


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=READY_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()


def _check_workers() -> str:
    from aggregator.celery import app

    # limit=1: return at the first reply instead of waiting out the timeout for every worker.
    replies = app.control.ping(timeout=READY_TIMEOUT_SECONDS, limit=1)
    if not replies:
        raise RuntimeError("no worker answered")
    return "a worker answered"


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _timed(_check_database), "redis": _timed(_check_redis)}
    checks["workers"] = (
        _timed(_check_workers) if checks["redis"]["ok"] else {"ok": False, "detail": "no broker"}
    )
    ready = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
