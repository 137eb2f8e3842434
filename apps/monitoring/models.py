from __future__ import annotations

from typing import Any

from auditlog.models import AbstractLogEntry, LogEntryManager
from django.db import models


class Event(models.Model):
    """Something that happened, for the record and for whoever listens (WebSocket clients, webhooks, alerts).

    Append-only. `subject_type`/`subject_id` name what it is about (e.g. "run", 42) without a foreign key,
    so any app can emit events and deleting a subject never rewrites history."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=64, help_text="Dotted: run.started, schema.drift_detected, …")
    subject_type = models.CharField(max_length=32, blank=True, default="")
    subject_id = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        # Newest first by id: ids are assigned in commit order closely enough, and the index on id is free.
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["workspace", "-created_at"]),
            models.Index(fields=["workspace", "type", "-created_at"]),
            models.Index(fields=["subject_type", "subject_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.subject_type}:{self.subject_id}"


# --- Audit log ---------------------------------------------------------------------------------------
# django-auditlog computes the diffs from model signals; this concrete entry model (AUDITLOG_LOGENTRY_MODEL)
# adds what the library does not know: the workspace the change belongs to and the credential used.


class AuditCredential(models.TextChoices):
    SESSION = "session", "Session"
    JWT = "jwt", "JWT"
    API_KEY = "api_key", "API key"
    ANONYMOUS = "anonymous", "Anonymous request"
    SYSTEM = "system", "System (no request)"


class AuditEntryManager(LogEntryManager):
    def log_create(self, instance: Any, force_log: bool = False, **kwargs: Any) -> Any:
        from .audit import entry_context

        for key, value in entry_context(instance).items():
            kwargs.setdefault(key, value)
        return super().log_create(instance, force_log=force_log, **kwargs)

    def log_m2m_changes(
        self, changed_queryset: Any, instance: Any, operation: str, field_name: str, **kwargs: Any
    ) -> Any:
        from .audit import entry_context

        for key, value in entry_context(instance).items():
            kwargs.setdefault(key, value)
        return super().log_m2m_changes(changed_queryset, instance, operation, field_name, **kwargs)


class AuditEntry(AbstractLogEntry):
    """Who changed what (object type + id + action), the before/after of each changed field with secret
    fields masked, when, from which address and with which credential.

    `workspace_id` is a plain integer, not a foreign key: the entry recording a workspace's deletion must
    survive it, and nothing cascades into the audit trail."""

    workspace_id = models.BigIntegerField(null=True, blank=True)
    credential = models.CharField(
        max_length=16, choices=AuditCredential.choices, default=AuditCredential.SYSTEM
    )

    objects = AuditEntryManager()

    class Meta(AbstractLogEntry.Meta):
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        # The API lists one workspace's entries newest first; retention deletes by timestamp alone.
        indexes = [models.Index(fields=["workspace_id", "-timestamp"], name="monitoring_audit_ws_ts")]
