"""Deliveries: a delivery per subscribed endpoint for each event, sent by a task with retries; every
attempt is a row. Endpoints that keep failing are disabled.

Settings (read on every call, so tests can shrink them):
- AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S: delays before the 2nd, 3rd, … attempt of a delivery (default
  5 s, 5 min, 30 min, 2 h, 5 h, 10 h: seven attempts over about 17.5 hours).
- AGGREGATOR_WEBHOOK_DISABLE_AFTER: consecutive deliveries that failed for good before an endpoint is
  disabled (default 5). A 410 Gone disables at once.
- AGGREGATOR_WEBHOOK_TIMEOUT_S: the whole request's timeout per attempt (default 10).
- AGGREGATOR_WEBHOOK_DELIVERY_RETENTION_DAYS: finished deliveries older than this are deleted (default 30).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aggregator.logging import get_logger
from aggregator.ssrf import SSRFBlocked, guarded_httpx_client
from apps.monitoring import events
from apps.monitoring.events import Event

from . import signing
from .models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Webhook,
)
from .selectors import webhook_secrets, webhooks_for_event

logger = get_logger(__name__)

DEFAULT_RETRY_SCHEDULE_S = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600)
DEFAULT_DISABLE_AFTER = 5
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_DELIVERY_RETENTION_DAYS = 30
RESPONSE_BODY_LIMIT = 1024
USER_AGENT = "Aggregator-Webhooks/1"


def retry_schedule() -> list[float]:
    return [
        float(s) for s in getattr(settings, "AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S", DEFAULT_RETRY_SCHEDULE_S)
    ]


def _disable_after() -> int:
    return int(getattr(settings, "AGGREGATOR_WEBHOOK_DISABLE_AFTER", DEFAULT_DISABLE_AFTER))


def _timeout_s() -> float:
    return float(getattr(settings, "AGGREGATOR_WEBHOOK_TIMEOUT_S", DEFAULT_TIMEOUT_S))


def _body(*, event_type: str, timestamp: dt.datetime, data: dict[str, Any]) -> str:
    return json.dumps(
        {"type": event_type, "timestamp": timestamp.isoformat(), "data": data},
        separators=(",", ":"),
        default=str,
    )


def _event_data(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "workspace": event.workspace_id,
        "subject": {"type": event.subject_type, "id": event.subject_id},
        "payload": event.payload,
    }


def _enqueue(delivery_id: int, countdown: float = 0) -> None:
    from .tasks import delivery_send_task

    try:
        delivery_send_task.apply_async(args=[delivery_id], countdown=max(0.0, countdown))
    except Exception as exc:
        # The delivery row is committed and pending: the sweeper (webhooks.deliveries_resend_lost) sends it
        # once the broker is back, so a broker hiccup must not fail the request or task that queued it.
        logger.warning("webhook_enqueue_failed", delivery_id=delivery_id, error=type(exc).__name__)


def _new_delivery(
    *, webhook: Webhook, event_type: str, body: str, event_id: int | None, is_test: bool
) -> Delivery:
    delivery = Delivery.objects.create(
        workspace_id=webhook.workspace_id,
        webhook=webhook,
        event_id=event_id,
        event_type=event_type,
        message_id=signing.generate_message_id(),
        body=body,
        is_test=is_test,
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(lambda: _enqueue(delivery.id))
    return delivery


@transaction.atomic
def deliveries_queue_for_event(*, event: Event) -> list[Delivery]:
    """A delivery per active subscription of the event's workspace that wants this type."""
    targets = webhooks_for_event(workspace_id=event.workspace_id, event_type=event.type)
    if not targets:
        return []
    body = _body(event_type=event.type, timestamp=event.created_at, data=_event_data(event))
    made = [
        _new_delivery(webhook=w, event_type=event.type, body=body, event_id=event.id, is_test=False)
        for w in targets
    ]
    logger.info("webhook_deliveries_queued", event_id=event.id, event_type=event.type, count=len(made))
    return made


def handle_event(event: Event) -> None:
    """The handler listed in settings.AGGREGATOR_EVENT_HANDLERS; monitoring calls it after the emitting
    transaction has committed."""
    deliveries_queue_for_event(event=event)


@transaction.atomic
def webhook_send_test(*, webhook: Webhook) -> Delivery:
    """A `webhook.test` message to this one endpoint (also when it is disabled: that is how one checks an
    endpoint before switching it back on). Test deliveries do not count towards disabling."""
    now = timezone.now()
    body = _body(
        event_type="webhook.test",
        timestamp=now,
        data={"webhook": webhook.id, "workspace": webhook.workspace_id, "message": "A test delivery."},
    )
    delivery = _new_delivery(
        webhook=webhook, event_type="webhook.test", body=body, event_id=None, is_test=True
    )
    logger.info("webhook_test_queued", webhook_id=webhook.id, delivery_id=delivery.id)
    return delivery


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send an existing delivery again (same body and webhook-id), with a fresh retry schedule."""
    delivery = Delivery.objects.select_for_update().select_related("webhook").get(pk=delivery.pk)
    if delivery.status == DeliveryStatus.SENDING:
        raise ValidationError({"status": ["This delivery is being sent right now."]})
    if not delivery.webhook.is_active and not delivery.is_test:
        raise ValidationError({"webhook": ["The webhook is disabled: switch it on first."]})
    delivery.status = DeliveryStatus.PENDING
    delivery.round_attempts = 0
    delivery.next_attempt_at = timezone.now()
    delivery.finished_at = None
    delivery.save(update_fields=["status", "round_attempts", "next_attempt_at", "finished_at"])
    transaction.on_commit(lambda: _enqueue(delivery.id))
    logger.info("webhook_redeliver_queued", delivery_id=delivery.id)
    return delivery


@dataclass(frozen=True)
class _Result:
    ok: bool
    retry: bool
    status: int | None = None
    body: str = ""
    error: str = ""
    gone: bool = False


def _read_limited(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_BODY_LIMIT:
            break
    text = b"".join(chunks)[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")
    # PostgreSQL text cannot hold NUL: left in, one odd answer would make the attempt impossible to record.
    return text.replace("\x00", "\ufffd")


def _classify(status: int, body: str) -> _Result:
    if 200 <= status < 300:
        return _Result(ok=True, retry=False, status=status, body=body)
    if 300 <= status < 400:
        return _Result(ok=False, retry=True, status=status, body=body, error="Redirects are not followed.")
    if status == 410:
        return _Result(
            ok=False, retry=False, status=status, body=body, error="Gone: endpoint removed.", gone=True
        )
    if status == 429 or status >= 500:
        return _Result(ok=False, retry=True, status=status, body=body, error=f"HTTP {status}.")
    return _Result(ok=False, retry=False, status=status, body=body, error=f"HTTP {status}: not retried.")


def _post(webhook: Webhook, delivery: Delivery) -> _Result:
    body = delivery.body.encode()
    headers = signing.sign_headers(webhook_secrets(webhook), delivery.message_id, body)
    headers.update({"content-type": "application/json", "user-agent": USER_AGENT})
    timeout = _timeout_s()
    try:
        # No redirects: a 3xx is a failure (the target must be the URL that was checked and saved).
        with (
            guarded_httpx_client(timeout=httpx.Timeout(timeout), follow_redirects=False) as client,
            client.stream("POST", webhook.url, content=body, headers=headers) as response,
        ):
            return _classify(response.status_code, _read_limited(response))
    except SSRFBlocked as exc:
        return _Result(ok=False, retry=False, error=f"Refused: {exc}"[:300])
    except httpx.TimeoutException:
        return _Result(ok=False, retry=True, error=f"No answer within {timeout:g} seconds.")
    except httpx.HTTPError as exc:
        # The exception's text can quote the remote side; only its class goes on the record.
        return _Result(ok=False, retry=True, error=f"Connection failed ({type(exc).__name__}).")


def delivery_send(*, delivery_id: int) -> str:
    """One attempt of a delivery (the Celery task's body). Claims the delivery first, so a duplicated task
    (a redelivered broker message, a sweeper re-enqueue) finds nothing to do."""
    now = timezone.now()
    claimed = Delivery.objects.filter(
        id=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(status=DeliveryStatus.SENDING, claimed_at=now)
    if claimed != 1:
        return "not_due"
    delivery = Delivery.objects.select_related("webhook").get(pk=delivery_id)
    webhook = delivery.webhook
    if not webhook.is_active and not delivery.is_test:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, finished_at=timezone.now()
        )
        logger.info("webhook_delivery_dropped", delivery_id=delivery.id, webhook_id=webhook.id)
        return "webhook_disabled"

    started = timezone.now()
    clock = time.monotonic()
    try:
        result = _post(webhook, delivery)
    except Exception as exc:
        # A bug or an undecryptable secret must still end as a recorded attempt: left 'sending', the
        # sweeper would free and retry it for ever without a trace.
        logger.exception("webhook_send_crashed", delivery_id=delivery.id, error=type(exc).__name__)
        result = _Result(ok=False, retry=True, error=f"Internal error ({type(exc).__name__}).")
    latency_ms = int((time.monotonic() - clock) * 1000)
    return _record(delivery=delivery, result=result, started=started, latency_ms=latency_ms)


@transaction.atomic
def _record(*, delivery: Delivery, result: _Result, started: dt.datetime, latency_ms: int) -> str:
    if not Delivery.objects.select_for_update().filter(pk=delivery.pk).exists():
        return "gone"  # the webhook was deleted while its message was on the wire
    now = timezone.now()
    number = delivery.attempt_count + 1
    round_number = delivery.round_attempts + 1
    schedule = retry_schedule()
    next_at: dt.datetime | None = None
    if not result.ok and result.retry and round_number <= len(schedule):
        next_at = now + dt.timedelta(seconds=schedule[round_number - 1])
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        outcome=AttemptOutcome.SUCCEEDED if result.ok else AttemptOutcome.FAILED,
        response_status=result.status,
        response_body=result.body,
        error=result.error,
        latency_ms=latency_ms,
        started_at=started,
        next_retry_at=next_at,
    )
    fields: dict[str, Any] = {"attempt_count": number, "round_attempts": round_number}
    if result.ok:
        fields.update(status=DeliveryStatus.SUCCEEDED, finished_at=now, next_attempt_at=None)
        outcome = "succeeded"
    elif next_at is not None:
        fields.update(status=DeliveryStatus.PENDING, next_attempt_at=next_at)
        outcome = "retrying"
    else:
        fields.update(status=DeliveryStatus.FAILED, finished_at=now, next_attempt_at=None)
        outcome = "failed"
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    # The response body stays out of the log line: it is the remote side's words.
    logger.info(
        "webhook_attempt_recorded",
        delivery_id=delivery.id,
        webhook_id=delivery.webhook_id,
        attempt=number,
        response_status=result.status,
        latency_ms=latency_ms,
        outcome=outcome,
    )
    if next_at is not None:
        delay = (next_at - now).total_seconds()
        transaction.on_commit(lambda: _enqueue(delivery.id, countdown=delay))
    _update_endpoint_health(delivery=delivery, result=result, finished=outcome != "retrying")
    return outcome


def _update_endpoint_health(*, delivery: Delivery, result: _Result, finished: bool) -> None:
    webhook = Webhook.objects.select_for_update().get(pk=delivery.webhook_id)
    if result.gone:
        _disable(webhook, "The endpoint answered 410 Gone.")
        return
    if delivery.is_test or not finished:
        return
    if result.ok:
        if webhook.consecutive_failures:
            Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=0)
        return
    Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    webhook.refresh_from_db(fields=["consecutive_failures"])
    limit = _disable_after()
    if webhook.consecutive_failures >= limit:
        _disable(webhook, f"{webhook.consecutive_failures} deliveries in a row failed.")


def _disable(webhook: Webhook, reason: str) -> None:
    if not webhook.is_active:
        return
    webhook.is_active = False
    webhook.disabled_reason = reason
    webhook.disabled_at = timezone.now()
    webhook.save(update_fields=["is_active", "disabled_reason", "disabled_at", "updated_at"])
    events.emit(
        "webhook.disabled",
        webhook.workspace_id,
        ("webhook", webhook.id),
        {"webhook": webhook.id, "reason": reason},
    )
    logger.warning("webhook_disabled", webhook_id=webhook.id, reason=reason)


def deliveries_resend_lost(*, now: dt.datetime | None = None, grace_s: float = 120) -> int:
    """Beat task body: enqueue due deliveries whose message was lost (a broker restart, a countdown past
    Redis's visibility timeout), and free deliveries a dead worker left 'sending'. Claiming is idempotent,
    so an extra enqueue costs nothing."""
    now = now or timezone.now()
    stuck_before = now - dt.timedelta(seconds=_timeout_s() * 3 + grace_s)
    stuck = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_at__lt=stuck_before).values_list(
            "id", flat=True
        )[:1000]
    )
    freed = Delivery.objects.filter(id__in=stuck, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.PENDING, next_attempt_at=now
    )
    due = list(
        Delivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lt=now - dt.timedelta(seconds=grace_s)
        ).values_list("id", flat=True)[:1000]
    )
    due = sorted(set(due) | set(stuck))
    for delivery_id in due:
        _enqueue(delivery_id)
    if freed or due:
        logger.info("webhook_deliveries_resent", freed=freed, enqueued=len(due))
    return len(due)


def deliveries_prune(*, now: dt.datetime | None = None, batch: int = 5000) -> int:
    """Beat task body: delete finished deliveries (and their attempts) older than
    AGGREGATOR_WEBHOOK_DELIVERY_RETENTION_DAYS, a batch per statement so no single delete holds locks on
    millions of rows."""
    days = int(
        getattr(settings, "AGGREGATOR_WEBHOOK_DELIVERY_RETENTION_DAYS", DEFAULT_DELIVERY_RETENTION_DAYS)
    )
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    finished = (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED)
    deleted = 0
    while True:
        ids = list(
            Delivery.objects.filter(created_at__lt=cutoff, status__in=finished).values_list("id", flat=True)[
                :batch
            ]
        )
        if not ids:
            break
        DeliveryAttempt.objects.filter(delivery_id__in=ids).delete()
        Delivery.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    if deleted:
        logger.info("webhook_deliveries_pruned", deleted=deleted, retention_days=days)
    return deleted
