from __future__ import annotations

from django.conf import settings
from django.db import models


class Webhook(models.Model):
    """An outgoing subscription: events of its workspace whose type matches `event_types` are POSTed to
    `url`, signed per the Standard Webhooks specification with the endpoint's secret.

    The secret (`whsec_<base64>`) is stored encrypted and shown once. During a rotation's overlap
    (`previous_secret_expires_at` in the future) deliveries carry a signature with the old secret too, so a
    receiver can switch keys without dropping a message."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    event_types = models.JSONField(
        default=list, blank=True, help_text='Exact ("run.failed") or wildcard ("run.*") types; empty = all.'
    )
    is_active = models.BooleanField(default=True)
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Deliveries that failed for good since the last success."
    )
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["workspace", "is_active"])]

    def __str__(self) -> str:
        return f"Webhook {self.pk} ({'active' if self.is_active else 'disabled'})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One message to one endpoint. `body` is fixed when the delivery is made, so every attempt (and a
    manual redeliver) sends the same bytes under the same `message_id` (the `webhook-id` header receivers
    deduplicate on); only the timestamp and signatures are made afresh per attempt.

    A worker claims a delivery by moving it from pending to sending (a conditional update), so a
    duplicated task never sends the same delivery twice at once."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    # No foreign key into the event store: events may be pruned by retention while deliveries are kept.
    event_id = models.BigIntegerField(null=True, blank=True)
    event_type = models.CharField(max_length=64)
    message_id = models.CharField(max_length=64, unique=True)
    body = models.TextField()
    is_test = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, db_index=True
    )
    attempt_count = models.PositiveSmallIntegerField(default=0)
    # Attempts made since the delivery was (re)queued; the retry schedule is counted from here.
    round_attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Newest first by id: ids follow creation and the primary key index serves the sort.
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["webhook", "-id"]),
            models.Index(fields=["status", "next_attempt_at"]),
            # The daily retention prune looks for old finished deliveries by age.
            models.Index(fields=["created_at"], name="webhooks_delivery_created"),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} of {self.event_type} ({self.status})"


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class DeliveryAttempt(models.Model):
    """One HTTP request of a delivery: the row is the record of what the endpoint answered.

    `response_body` keeps at most 1 KB of what the remote side said. It is shown only here (the attempt
    record) and never logged nor copied into an error message."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    error = models.CharField(max_length=300, blank=True, default="", help_text="Our own words, never theirs.")
    latency_ms = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhooks_attempt_number_unique")
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of delivery {self.delivery_id}: {self.outcome}"


class PipelineTrigger(models.Model):
    """An incoming webhook that starts a run of one pipeline: `POST /hooks/pipelines/<token>/trigger`,
    signed with the trigger's own secret the same way outgoing deliveries are."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    pipeline = models.ForeignKey("pipelines.Pipeline", on_delete=models.CASCADE, related_name="+")
    # The URL names the trigger by an unguessable token, not by id, so trigger URLs cannot be enumerated.
    token = models.CharField(max_length=64, unique=True, editable=False)
    secret_encrypted = models.TextField(editable=False)
    is_active = models.BooleanField(default=True)
    last_triggered_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Trigger {self.pk} of pipeline {self.pipeline_id}"


class PushStream(models.Model):
    """A stream that outside systems fill by POSTing JSON records to `/hooks/ingest/<token>` (signed with
    the stream's secret), and that pipelines read through the `push_stream` connector type (which needs
    the stream's read key, so another workspace cannot read it by naming its id)."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    token = models.CharField(max_length=64, unique=True, editable=False)
    secret_encrypted = models.TextField(editable=False)
    read_key_hash = models.CharField(max_length=64, editable=False)
    # The last sequence number handed out. Appends lock this row, so sequence numbers commit in order and
    # an incremental reader that has seen N can never later find a record below N.
    last_seq = models.BigIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="webhooks_pushstream_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class PushRecord(models.Model):
    """One pushed JSON record. One jsonb table for every push stream, keyed by (stream, seq)."""

    stream = models.ForeignKey(PushStream, on_delete=models.CASCADE, related_name="records")
    seq = models.BigIntegerField()
    data = models.JSONField()
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["stream_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "seq"], name="webhooks_pushrecord_seq_unique")
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}#{self.seq}"
