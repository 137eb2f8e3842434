from __future__ import annotations

from django.conf import settings
from django.db import models


class CheckStatus(models.TextChoices):
    NEVER = "never", "Never checked"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Connector(models.Model):
    """A configured instance of a connector type in one workspace.

    `config` holds the non-secret settings as plain JSON (searchable, shown in the API); the fields the
    type marks secret live only in `secrets_encrypted`, one Fernet token over their JSON, sealed with the
    first of AGGREGATOR_ENCRYPTION_KEYS. Keeping them apart means no code path that serialises `config`
    can leak a secret."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="connectors")
    name = models.CharField(max_length=100)
    connector_type = models.CharField(max_length=100, help_text="The slug of a registered connector type.")
    config = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    last_check_status = models.CharField(
        max_length=16, choices=CheckStatus.choices, default=CheckStatus.NEVER
    )
    last_check_message = models.TextField(blank=True, default="")
    last_check_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Name then id: names are unique per workspace, so the id only orders across workspaces.
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="connectors_connector_name_unique")
        ]
        indexes = [models.Index(fields=["workspace", "connector_type"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.connector_type})"
