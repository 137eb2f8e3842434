from __future__ import annotations

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
