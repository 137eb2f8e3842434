"""Subscriptions: webhook endpoints, the event types they want, and their signing secrets (with an
overlap window when one is rotated)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from aggregator.crypto import encrypt
from aggregator.logging import get_logger
from aggregator.ssrf import HostLookupError, SSRFBlocked, check_url

from . import signing
from .models import (
    Webhook,
)

logger = get_logger(__name__)

DEFAULT_OVERLAP_S = 24 * 3600
MAX_OVERLAP_S = 7 * 24 * 3600

_EVENT_PATTERN = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")


def _check_target(url: str) -> None:
    try:
        check_url(url)
    except SSRFBlocked as exc:
        raise ValidationError({"url": [str(exc)]}) from None
    except HostLookupError as exc:
        raise ValidationError({"url": [str(exc)]}) from None


def _clean_event_types(event_types: list[str] | None) -> list[str]:
    cleaned: list[str] = []
    for value in event_types or []:
        if not isinstance(value, str) or not _EVENT_PATTERN.match(value):
            raise ValidationError(
                {"event_types": [f"{value!r} is not an event type (run.failed), a wildcard (run.*) or *."]}
            )
        if value not in cleaned:
            cleaned.append(value)
    return cleaned


@transaction.atomic
def webhook_create(
    *,
    workspace: Any,
    user: Any,
    url: str,
    event_types: list[str] | None = None,
    description: str = "",
    is_active: bool = True,
) -> tuple[Webhook, str]:
    """A subscription and its secret; the secret is returned here once and never again."""
    cleaned = _clean_event_types(event_types)  # before the URL check, which may wait on DNS
    _check_target(url)
    secret = signing.generate_secret()
    webhook = Webhook.objects.create(
        workspace=workspace,
        url=url,
        description=description,
        event_types=cleaned,
        is_active=is_active,
        secret_encrypted=encrypt(secret),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    logger.info("webhook_created", webhook_id=webhook.id, workspace_id=webhook.workspace_id)
    return webhook, secret


@transaction.atomic
def webhook_update(
    *,
    webhook: Webhook,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> Webhook:
    if url is not None and url != webhook.url:
        _check_target(url)
        webhook.url = url
    if event_types is not None:
        webhook.event_types = _clean_event_types(event_types)
    if description is not None:
        webhook.description = description
    if is_active is not None and is_active != webhook.is_active:
        webhook.is_active = is_active
        if is_active:
            # Switched back on by a person: the failure streak that disabled it starts over.
            webhook.consecutive_failures = 0
            webhook.disabled_reason = ""
            webhook.disabled_at = None
    webhook.save()
    logger.info("webhook_updated", webhook_id=webhook.id)
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook) -> None:
    logger.info("webhook_deleted", webhook_id=webhook.id)
    webhook.delete()


@transaction.atomic
def webhook_rotate_secret(*, webhook: Webhook, overlap_s: int = DEFAULT_OVERLAP_S) -> tuple[Webhook, str]:
    """A new secret, returned once. For `overlap_s` seconds deliveries are signed with the old one as
    well, so receivers can move to the new secret without missing a message."""
    if overlap_s < 0 or overlap_s > MAX_OVERLAP_S:
        raise ValidationError({"overlap_seconds": [f"Between 0 and {MAX_OVERLAP_S} seconds."]})
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    secret = signing.generate_secret()
    if overlap_s:
        webhook.previous_secret_encrypted = webhook.secret_encrypted
        webhook.previous_secret_expires_at = timezone.now() + dt.timedelta(seconds=overlap_s)
    else:
        webhook.previous_secret_encrypted = ""
        webhook.previous_secret_expires_at = None
    webhook.secret_encrypted = encrypt(secret)
    webhook.save()
    logger.info("webhook_secret_rotated", webhook_id=webhook.id, overlap_s=overlap_s)
    return webhook, secret
