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


# --- Metrics ------------------------------------------------------------------------------------------
# Both tables are RANGE-partitioned by day on `ts` (raw SQL in migration 0002_metrics_alerts; partitions are
# kept by partitions.py). Django does not manage them: it cannot declare a partitioned table, and the primary
# key must include the partition key, hence the composite key. Nothing has a foreign key into them (a
# partition is dropped whole at retention) and they have none out: a deleted pipeline keeps its history.


class RunMetric(models.Model):
    """One point per finished run (`kind="run"`, `node_id=""`) and one per node of that run."""

    pk = models.CompositePrimaryKey("ts", "id")
    id = models.BigIntegerField()
    ts = models.DateTimeField(help_text="When the run finished (the partition key).")
    workspace_id = models.BigIntegerField()
    pipeline_id = models.BigIntegerField()
    run_id = models.BigIntegerField()
    node_id = models.CharField(max_length=100, blank=True, default="")
    kind = models.CharField(max_length=16, help_text="run, source, transform or destination")
    status = models.CharField(max_length=16)
    rows_in = models.BigIntegerField(default=0)
    rows_out = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    duration_s = models.FloatField(null=True)

    class Meta:
        managed = False
        db_table = "monitoring_run_metric"

    def __str__(self) -> str:
        return f"run {self.run_id} {self.node_id or 'run'} @ {self.ts}"


class SystemMetric(models.Model):
    """A sample of the platform: queue depth per queue, active workers, runs running."""

    pk = models.CompositePrimaryKey("ts", "id")
    id = models.BigIntegerField()
    ts = models.DateTimeField()
    name = models.CharField(max_length=64)
    value = models.FloatField()
    labels = models.JSONField(default=dict)

    class Meta:
        managed = False
        db_table = "monitoring_system_metric"

    def __str__(self) -> str:
        return f"{self.name}={self.value} @ {self.ts}"


# --- Alerts -------------------------------------------------------------------------------------------


class AlertKind(models.TextChoices):
    RUN_FAILED = "run_failed", "A run failed"
    CONSECUTIVE_FAILURES = "consecutive_failures", "N consecutive failed runs"
    DURATION_OVER = "duration_over", "Run took longer than a bound"
    ROWS_BELOW = "rows_below", "Rows moved below a bound"
    ROWS_ABOVE = "rows_above", "Rows moved above a bound"
    ROWS_ANOMALY = "rows_anomaly", "Rows moved anomalous against the pipeline's last runs"
    FRESHNESS = "freshness", "No successful run within a window"
    SCHEMA_DRIFT = "schema_drift", "Schema drift detected"
    QUALITY_FAILED = "quality_failed", "Quality check failed"


class AlertRule(models.Model):
    """What to watch (`kind` with its `threshold`/`window`) in a workspace or one pipeline of it."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    # A string label, not an import: monitoring stays ignorant of the pipelines app's code.
    pipeline = models.ForeignKey(
        "pipelines.Pipeline", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="N failures, seconds, rows, or the robust z-score bound, depending on the kind.",
    )
    window = models.PositiveIntegerField(
        null=True, blank=True, help_text="Freshness window in seconds, or the number of past runs compared."
    )
    is_enabled = models.BooleanField(default=True)
    notify_email = models.BooleanField(default=True)
    email_recipients = models.JSONField(
        default=list, blank=True, help_text="Addresses; empty means the workspace's admins."
    )
    notify_interval_s = models.PositiveIntegerField(
        default=3600, help_text="At most one notification per open alert per this many seconds."
    )
    created_by = models.ForeignKey(
        "users.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["workspace", "kind"])]

    def __str__(self) -> str:
        return self.name


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """One incident: a rule's condition holding for one subject (usually a pipeline). While it is open (or
    acknowledged) a re-trigger only counts; it resolves when the condition clears or a person says so."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    subject_type = models.CharField(max_length=32)
    subject_id = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    title = models.CharField(max_length=255)
    context = models.JSONField(default=dict, blank=True)
    count = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    last_notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        "users.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        "users.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_reason = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-last_seen", "-id"]
        constraints = [
            # Deduplication is the database's job: two workers seeing the same failure make one incident.
            models.UniqueConstraint(
                fields=["rule", "subject_type", "subject_id"],
                condition=~models.Q(status="resolved"),
                name="monitoring_alert_one_open_per_subject",
            )
        ]
        indexes = [models.Index(fields=["workspace", "status", "-last_seen"])]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"


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
