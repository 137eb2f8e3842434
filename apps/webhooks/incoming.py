"""Incoming: signed requests from outside — pipeline triggers (a POST starts a run) and push streams (a
POST appends records that the `push_stream` connector reads back).

Settings (read on every call, so tests can shrink them):
- AGGREGATOR_WEBHOOK_TOLERANCE_S: how far an incoming webhook-timestamp may be from now (default 300).
- AGGREGATOR_PUSH_MAX_BYTES / AGGREGATOR_PUSH_MAX_RECORDS: the largest ingestion request.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from aggregator.crypto import decrypt, encrypt
from aggregator.logging import get_logger
from apps.pipelines.services import RunTrigger, run_start

from . import signing
from .models import (
    PipelineTrigger,
    PushRecord,
    PushStream,
)
from .selectors import hash_read_key

logger = get_logger(__name__)

DEFAULT_TOLERANCE_S = 300
# Pushed requests are parsed whole in memory, so the limit bounds the web process's memory per request.
DEFAULT_PUSH_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_PUSH_MAX_RECORDS = 50_000


def tolerance_s() -> int:
    return int(getattr(settings, "AGGREGATOR_WEBHOOK_TOLERANCE_S", DEFAULT_TOLERANCE_S))


def verify_incoming(*, kind: str, owner_id: int, secret: str, headers: Any, body: bytes) -> None:
    """Signature, timestamp window and replay check of an incoming request (SignatureError if refused).
    A webhook-id is remembered (in the shared cache) for twice the tolerance: past that the timestamp
    check refuses the message anyway."""
    tolerance = tolerance_s()
    message_id, _ts = signing.verify([secret], headers, body, tolerance_s=tolerance)
    key = f"webhooks:seen:{kind}:{owner_id}:{message_id}"
    if not cache.add(key, 1, timeout=tolerance * 2):
        raise signing.SignatureError("This webhook-id was received already.")


def _token() -> str:
    return secrets.token_urlsafe(24)


@transaction.atomic
def pipeline_trigger_create(*, pipeline: Any, user: Any) -> tuple[PipelineTrigger, str]:
    secret = signing.generate_secret()
    trigger = PipelineTrigger.objects.create(
        workspace_id=pipeline.workspace_id,
        pipeline=pipeline,
        token=_token(),
        secret_encrypted=encrypt(secret),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    logger.info("pipeline_trigger_created", trigger_id=trigger.id, pipeline_id=pipeline.id)
    return trigger, secret


@transaction.atomic
def pipeline_trigger_delete(*, trigger: PipelineTrigger) -> None:
    logger.info("pipeline_trigger_deleted", trigger_id=trigger.id)
    trigger.delete()


RUN_OPTION_KEYS = ("full_refresh", "streams", "backfill")


@transaction.atomic
def pipeline_trigger_fire(*, trigger: PipelineTrigger, payload: Any) -> Any:
    """Start a run of the trigger's pipeline with the payload's options (`full_refresh`, `streams`,
    `backfill`; anything else is refused). Called after the signature was verified."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    unknown = sorted(set(payload) - set(RUN_OPTION_KEYS))
    if unknown:
        raise ValidationError({k: ["Unknown run option."] for k in unknown})
    run = run_start(pipeline=trigger.pipeline, trigger=RunTrigger.WEBHOOK, options=dict(payload))
    PipelineTrigger.objects.filter(pk=trigger.pk).update(last_triggered_at=timezone.now())
    logger.info(
        "pipeline_trigger_fired", trigger_id=trigger.id, pipeline_id=trigger.pipeline_id, run_id=run.id
    )
    return run


# --- incoming: push streams ------------------------------------------------------------------------------


@transaction.atomic
def push_stream_create(*, workspace: Any, user: Any, name: str) -> tuple[PushStream, str, str]:
    """A push stream, its signing secret and its read key (both returned here once)."""
    if PushStream.objects.filter(workspace=workspace, name=name).exists():
        raise ValidationError({"name": ["A push stream with this name already exists in this workspace."]})
    secret = signing.generate_secret()
    read_key = "prk_" + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            stream = PushStream.objects.create(
                workspace=workspace,
                name=name,
                token=_token(),
                secret_encrypted=encrypt(secret),
                read_key_hash=hash_read_key(read_key),
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:
        raise ValidationError(
            {"name": ["A push stream with this name already exists in this workspace."]}
        ) from None
    logger.info("push_stream_created", push_stream_id=stream.id, workspace_id=stream.workspace_id)
    return stream, secret, read_key


@transaction.atomic
def push_stream_delete(*, stream: PushStream) -> None:
    logger.info("push_stream_deleted", push_stream_id=stream.id)
    stream.delete()


def parse_push_body(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """A JSON array of objects, or JSON Lines (one object per line) when the content type says so or the
    body does not start with `[`."""
    max_records = int(getattr(settings, "AGGREGATOR_PUSH_MAX_RECORDS", DEFAULT_PUSH_MAX_RECORDS))
    text = body.decode("utf-8")
    stripped = text.lstrip()
    records: list[Any]
    if stripped.startswith("[") and "ndjson" not in content_type and "jsonl" not in content_type:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError({"body": [f"Not valid JSON (line {exc.lineno})."]}) from None
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValidationError({"body": [f"Line {number} is not valid JSON."]}) from None
            if len(records) > max_records:
                break
    if not records:
        raise ValidationError({"body": ["No records."]})
    if len(records) > max_records:
        raise ValidationError({"body": [f"At most {max_records} records per request."]})
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValidationError({"body": [f"Record {index + 1} is not a JSON object."]})
    if "\\u0000" in text:
        # PostgreSQL's jsonb cannot store the NUL character; refusing is better than a failed insert.
        raise ValidationError({"body": ["Records may not contain the NUL character (\\u0000)."]})
    return records


@transaction.atomic
def push_records_append(*, stream: PushStream, records: list[dict[str, Any]]) -> tuple[int, int]:
    """Append records; returns (first seq, last seq). The stream row is locked until commit, so sequence
    numbers become visible in order (the incremental read relies on that)."""
    locked = PushStream.objects.select_for_update().get(pk=stream.pk)
    first = locked.last_seq + 1
    now = timezone.now()
    PushRecord.objects.bulk_create(
        [PushRecord(stream=locked, seq=first + i, data=r, received_at=now) for i, r in enumerate(records)],
        batch_size=2000,
    )
    locked.last_seq = first + len(records) - 1
    locked.save(update_fields=["last_seq"])
    logger.info(
        "push_records_appended", push_stream_id=stream.id, count=len(records), last_seq=locked.last_seq
    )
    return first, locked.last_seq


def push_stream_secret(stream: PushStream) -> str:
    return decrypt(stream.secret_encrypted)


def trigger_secret(trigger: PipelineTrigger) -> str:
    return decrypt(trigger.secret_encrypted)
