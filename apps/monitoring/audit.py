"""The audit log: every change a user makes to a workspace's configuration, with who, what, before/after
(secrets masked), when, from which address and with which credential.

django-auditlog records the diffs from model signals, so a change is audited whichever code path made it
(API, admin, a management command). What it cannot know is added here:

- `AuditContextMiddleware` remembers the current request. The actor and the credential are read from it
  when an entry is written, not when the request arrives: DRF authenticates JWTs and API keys inside the
  view, long after middleware ran, and copies the user and `auth` onto the Django request when it does.
- `register_models()` tracks the other apps' models by label (`apps.get_model`), so monitoring imports
  none of them; every field whose name says secret, password, hash or token is masked.
- `audit_prune` (a daily beat task) deletes entries older than AGGREGATOR_AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from auditlog.registry import auditlog
from auditlog.signals import pre_log
from celery import shared_task
from django.apps import apps
from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework_simplejwt.tokens import Token

from aggregator.clientip import client_ip
from aggregator.logging import get_logger
from apps.users.selectors import ApiKey, Role, workspace_ids_for_user

from .models import AuditCredential, AuditEntry

logger = get_logger(__name__)

_current_request: ContextVar[HttpRequest | None] = ContextVar("aggregator_audit_request", default=None)

# Field names that hold a secret or something that grants access: never stored, only "changed".
SECRET_FIELD = re.compile(r"secret|password|hash|token", re.IGNORECASE)
MASK = "***"

# What is tracked: app label → model → fields left out (bookkeeping a person does not change).
# `request_only`: record a change only when a signed-in user made it (runs change all the time by
# themselves; a user starting or cancelling one is the action worth recording).
TRACKED: dict[str, dict[str, Any]] = {
    "users.Workspace": {},
    "users.Membership": {},
    "users.Invitation": {},
    "users.ApiKey": {"exclude": ["last_used_at"]},
    "users.User": {"exclude": ["last_login"]},
    "connectors.Connector": {"exclude": ["last_check_status", "last_check_message", "last_check_at"]},
    "pipelines.Pipeline": {"exclude": ["periodic_task"], "m2m": ["depends_on"]},
    "pipelines.Run": {"include": ["status", "cancel_requested"], "request_only": True},
    "webhooks.Webhook": {"exclude": ["consecutive_failures"]},
    "webhooks.PipelineTrigger": {"exclude": ["last_triggered_at"]},
    "webhooks.PushStream": {"exclude": ["last_seq"]},
}
# Timestamps the database sets on every save say nothing the entry's own timestamp does not.
ALWAYS_EXCLUDED = ["updated_at"]

_request_only: set[type] = set()


def mask(value: str) -> str:
    """AUDITLOG mask callable: say whether a secret was set, never any part of it."""
    return "" if value in ("", "None") else MASK


def register_models() -> None:
    """Called from MonitoringConfig.ready(). Models of apps that are not installed are skipped."""
    for label, options in TRACKED.items():
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        if auditlog.contains(model):
            continue
        names = [f.name for f in model._meta.concrete_fields]
        auditlog.register(
            model,
            include_fields=options.get("include"),
            exclude_fields=[*ALWAYS_EXCLUDED, *options.get("exclude", [])],
            mask_fields=[name for name in names if SECRET_FIELD.search(name)],
            mask_callable=f"{__name__}.mask",
            m2m_fields=set(options.get("m2m", [])),
        )
        if options.get("request_only"):
            _request_only.add(model)
    pre_log.connect(_skip_unattended, dispatch_uid="monitoring_audit_skip_unattended")


def _skip_unattended(sender: type, instance: Any, action: int, **kwargs: Any) -> bool | None:
    if sender in _request_only:
        user = getattr(_current_request.get(), "user", None)
        if user is None or not user.is_authenticated:
            return False  # returning False tells django-auditlog not to write this entry
    return None


class AuditContextMiddleware:
    """Makes the current request available to the audit log while it is handled."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def credential_of(request: HttpRequest | None) -> str:
    if request is None:
        return AuditCredential.SYSTEM
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return AuditCredential.ANONYMOUS
    auth = getattr(request, "auth", None)  # set on the Django request by DRF after authenticating
    if isinstance(auth, ApiKey):
        return AuditCredential.API_KEY
    if isinstance(auth, Token):
        return AuditCredential.JWT
    return AuditCredential.SESSION


def remote_addr_of(request: HttpRequest) -> str | None:
    # The reading django-axes and the rate limits use: a forged X-Forwarded-For cannot choose it.
    return client_ip(request)


def workspace_id_of(instance: Any) -> int | None:
    meta = instance._meta
    if meta.label == "users.Workspace":
        return int(instance.pk)
    if hasattr(instance, "workspace_id"):
        return instance.workspace_id
    return None


def entry_context(instance: Any) -> dict[str, Any]:
    """The fields of an entry that django-auditlog does not fill (see AuditEntryManager)."""
    request = _current_request.get()
    context: dict[str, Any] = {
        "workspace_id": workspace_id_of(instance),
        "credential": credential_of(request),
    }
    if request is not None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            context["actor_id"] = user.pk
            context["actor_email"] = user.email
        context["remote_addr"] = remote_addr_of(request)
    return context


def audit_entry_list_for_user(*, user: Any, min_role: Role = Role.ADMIN) -> QuerySet[AuditEntry]:
    """Entries of the workspaces where the caller has at least `min_role` (admins read the audit log)."""
    return (
        AuditEntry.objects.filter(workspace_id__in=workspace_ids_for_user(user=user, min_role=min_role))
        .select_related("content_type")
        .order_by("-timestamp", "-id")
    )


def audit_prune(*, now: Any = None) -> int:
    """Delete entries older than the retention period; returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.AGGREGATOR_AUDIT_RETENTION_DAYS)
    deleted, _ = AuditEntry.objects.filter(timestamp__lt=cutoff).delete()
    logger.info("audit_pruned", deleted=deleted, cutoff=cutoff.isoformat())
    return deleted


@shared_task(name="monitoring.audit_prune")
def audit_prune_task() -> int:
    return audit_prune()
