"""Reads of webhooks, deliveries, triggers and push streams, limited to what the caller may see."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from aggregator.crypto import decrypt
from apps.users.selectors import workspace_ids_for_user

from .models import Delivery, DeliveryAttempt, PipelineTrigger, PushRecord, PushStream, Webhook


def webhook_list_for_user(*, user: Any) -> QuerySet[Webhook]:
    return Webhook.objects.filter(workspace_id__in=workspace_ids_for_user(user=user)).order_by("id")


def webhook_secrets(webhook: Webhook, *, now: dt.datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the previous one while its rotation
    overlap lasts. Never log, serialise or return these."""
    now = now or timezone.now()
    out = [decrypt(webhook.secret_encrypted)]
    if (
        webhook.previous_secret_encrypted
        and webhook.previous_secret_expires_at is not None
        and webhook.previous_secret_expires_at > now
    ):
        out.append(decrypt(webhook.previous_secret_encrypted))
    return out


def event_type_matches(patterns: list[str], event_type: str) -> bool:
    """`[]` or `"*"` match everything; `"run.*"` matches `run.failed` (and `run.x.y`); otherwise exact."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def webhooks_for_event(*, workspace_id: int, event_type: str) -> list[Webhook]:
    """Active subscriptions of a workspace that want this event type (one query; filters are matched in
    Python because they are short lists with wildcards)."""
    candidates = Webhook.objects.filter(workspace_id=workspace_id, is_active=True).order_by("id")
    return [w for w in candidates if event_type_matches(list(w.event_types or []), event_type)]


def delivery_list_for_webhook(*, webhook: Webhook) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(webhook=webhook)
        .prefetch_related(Prefetch("attempts", queryset=DeliveryAttempt.objects.order_by("number")))
        .order_by("-id")
    )


def delivery_list_for_user(*, user: Any) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(workspace_id__in=workspace_ids_for_user(user=user))
        .select_related("webhook")
        .prefetch_related(Prefetch("attempts", queryset=DeliveryAttempt.objects.order_by("number")))
        .order_by("-id")
    )


# --- incoming -------------------------------------------------------------------------------------------


def trigger_list_for_user(*, user: Any) -> QuerySet[PipelineTrigger]:
    return (
        PipelineTrigger.objects.filter(workspace_id__in=workspace_ids_for_user(user=user))
        .select_related("pipeline")
        .order_by("id")
    )


def trigger_by_token(*, token: str) -> PipelineTrigger | None:
    """For the unauthenticated hook endpoint: the signature check that follows is the authorisation."""
    return PipelineTrigger.objects.filter(token=token, is_active=True).select_related("pipeline").first()


def push_stream_list_for_user(*, user: Any) -> QuerySet[PushStream]:
    return PushStream.objects.filter(workspace_id__in=workspace_ids_for_user(user=user)).order_by(
        "name", "id"
    )


def push_stream_by_token(*, token: str) -> PushStream | None:
    return PushStream.objects.filter(token=token, is_active=True).first()


def hash_read_key(read_key: str) -> str:
    return hashlib.sha256(read_key.encode()).hexdigest()


def push_stream_for_reader(*, stream_id: int, read_key: str) -> PushStream:
    """The stream a `push_stream` connector names, if its read key is right. LookupError either way, with
    the same message, so a wrong key does not tell whether the stream exists."""
    stream = PushStream.objects.filter(id=stream_id).first()
    if stream is None or not hmac.compare_digest(stream.read_key_hash, hash_read_key(read_key)):
        raise LookupError("No push stream with this id and read key.")
    return stream


def push_records_after(*, stream: PushStream, after_seq: int, chunk: int) -> Iterator[list[PushRecord]]:
    """The stream's records with seq > after_seq, in seq order, `chunk` at a time (keyset paging on the
    (stream, seq) unique index, so each page is one index range scan however long the stream is)."""
    last = after_seq
    while True:
        page = list(
            PushRecord.objects.filter(stream=stream, seq__gt=last)
            .order_by("seq")
            .only("seq", "data", "received_at")[:chunk]
        )
        if not page:
            return
        yield page
        last = page[-1].seq
        if len(page) < chunk:
            return


def push_records_sample(*, stream: PushStream, limit: int) -> list[dict[str, Any]]:
    return list(
        PushRecord.objects.filter(stream=stream).order_by("seq").values_list("data", flat=True)[:limit]
    )


class _PushStreamReader:
    """The reads above as `apps.connectors.push_streams.PushStreamReader`."""

    def stream_for_reader(self, *, stream_id: int, read_key: str) -> PushStream:
        return push_stream_for_reader(stream_id=stream_id, read_key=read_key)

    def records_after(self, *, stream: Any, after_seq: int, chunk: int) -> Iterator[list[PushRecord]]:
        return push_records_after(stream=stream, after_seq=after_seq, chunk=chunk)

    def records_sample(self, *, stream: Any, limit: int) -> list[dict[str, Any]]:
        return push_records_sample(stream=stream, limit=limit)


PUSH_STREAM_READER = _PushStreamReader()
