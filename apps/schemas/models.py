from __future__ import annotations

from django.db import models


class StreamSchemaVersion(models.Model):
    """One version of a stream's schema as a connector's discovery reported it. A new row is written only
    when the schema changed (same fingerprint → no new version), so versions read as the stream's history."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    connector = models.ForeignKey(
        "connectors.Connector", on_delete=models.CASCADE, related_name="schema_versions"
    )
    stream = models.CharField(max_length=255)
    version = models.PositiveIntegerField()
    schema = models.JSONField(help_text="The StreamSchema as a dict (fields, primary key, cursor …).")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the schema's canonical JSON.")
    changes = models.JSONField(default=dict, blank=True, help_text="What changed since the previous version.")
    is_removed = models.BooleanField(default=False, help_text="The stream was no longer discovered.")
    discovered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["connector_id", "stream", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "stream", "version"], name="schemas_stream_version_unique"
            )
        ]
        indexes = [models.Index(fields=["workspace", "connector", "stream"])]

    def __str__(self) -> str:
        return f"{self.stream} v{self.version}"
