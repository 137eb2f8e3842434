"""The webhooks app's services, for other apps and the app's own views and tasks: subscriptions
(`subscriptions.py`), deliveries (`delivery.py`) and incoming triggers and push streams (`incoming.py`)
are re-exported here; the re-encryption of the app's secrets (the webhooks part of the project's
`rotate_encryption_keys`) lives here because it spans all three."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from aggregator.crypto import DecryptionError, is_current, rotate
from aggregator.logging import get_logger

from .delivery import (
    DEFAULT_DELIVERY_RETENTION_DAYS,
    DEFAULT_DISABLE_AFTER,
    DEFAULT_RETRY_SCHEDULE_S,
    DEFAULT_TIMEOUT_S,
    RESPONSE_BODY_LIMIT,
    USER_AGENT,
    deliveries_prune,
    deliveries_queue_for_event,
    deliveries_resend_lost,
    delivery_redeliver,
    delivery_send,
    handle_event,
    retry_schedule,
    webhook_send_test,
)
from .incoming import (
    DEFAULT_PUSH_MAX_BYTES,
    DEFAULT_PUSH_MAX_RECORDS,
    DEFAULT_TOLERANCE_S,
    RUN_OPTION_KEYS,
    parse_push_body,
    pipeline_trigger_create,
    pipeline_trigger_delete,
    pipeline_trigger_fire,
    push_records_append,
    push_stream_create,
    push_stream_delete,
    push_stream_secret,
    tolerance_s,
    trigger_secret,
    verify_incoming,
)
from .models import PipelineTrigger, PushStream, Webhook
from .subscriptions import (
    DEFAULT_OVERLAP_S,
    MAX_OVERLAP_S,
    webhook_create,
    webhook_delete,
    webhook_rotate_secret,
    webhook_update,
)

__all__ = [
    "DEFAULT_DELIVERY_RETENTION_DAYS",
    "DEFAULT_DISABLE_AFTER",
    "DEFAULT_OVERLAP_S",
    "DEFAULT_PUSH_MAX_BYTES",
    "DEFAULT_PUSH_MAX_RECORDS",
    "DEFAULT_RETRY_SCHEDULE_S",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_TOLERANCE_S",
    "MAX_OVERLAP_S",
    "RESPONSE_BODY_LIMIT",
    "RUN_OPTION_KEYS",
    "USER_AGENT",
    "deliveries_prune",
    "deliveries_queue_for_event",
    "deliveries_resend_lost",
    "delivery_redeliver",
    "delivery_send",
    "handle_event",
    "parse_push_body",
    "pipeline_trigger_create",
    "pipeline_trigger_delete",
    "pipeline_trigger_fire",
    "push_records_append",
    "push_stream_create",
    "push_stream_delete",
    "push_stream_secret",
    "retry_schedule",
    "secrets_reencrypt",
    "tolerance_s",
    "trigger_secret",
    "verify_incoming",
    "webhook_create",
    "webhook_delete",
    "webhook_rotate_secret",
    "webhook_send_test",
    "webhook_update",
]

logger = get_logger(__name__)


def secrets_reencrypt(*, dry_run: bool = False) -> dict[str, int]:
    """Re-seal every stored webhook, trigger and push-stream secret with the first of
    AGGREGATOR_ENCRYPTION_KEYS (the webhooks part of `rotate_encryption_keys`). Idempotent: tokens already
    sealed with the first key are left alone."""
    counts = {"rotated": 0, "current": 0, "failed": 0}
    targets: list[tuple[Any, tuple[str, ...]]] = [
        (Webhook, ("secret_encrypted", "previous_secret_encrypted")),
        (PipelineTrigger, ("secret_encrypted",)),
        (PushStream, ("secret_encrypted",)),
    ]
    for model, fields in targets:
        with transaction.atomic():
            # Locked so a rotation saving a new secret at the same moment is not overwritten with the old.
            for row in model.objects.select_for_update().only("id", *fields).order_by("id"):
                changed: dict[str, str] = {}
                for name in fields:
                    token = getattr(row, name)
                    if not token:
                        continue
                    if is_current(token):
                        counts["current"] += 1
                        continue
                    try:
                        changed[name] = rotate(token)
                    except DecryptionError:
                        counts["failed"] += 1
                        logger.warning("webhook_secret_undecryptable", model=model.__name__, row_id=row.id)
                        continue
                    counts["rotated"] += 1
                if changed and not dry_run:
                    model.objects.filter(id=row.id).update(**changed)
    logger.info("webhook_secrets_reencrypted", dry_run=dry_run, **counts)
    return counts
