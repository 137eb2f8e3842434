from __future__ import annotations

from django.conf import settings
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
    # Pipelines are planned with the latest *accepted* version. Under the default contract (evolve) every
    # version is accepted when recorded; a frozen or discarded change leaves the previous one in force.
    is_accepted = models.BooleanField(
        default=True, help_text="Pipelines read the stream as its latest accepted version."
    )
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


class ContractPolicy(models.TextChoices):
    EVOLVE = "evolve", "Evolve: accept the change"
    FREEZE = "freeze", "Freeze: fail runs until an editor approves the change"
    DISCARD_VALUE = "discard_value", "Discard the value: keep reading the accepted schema"
    DISCARD_ROW = "discard_row", "Discard the row: rows carrying the change go to quarantine"


# What holds for a stream without a contract. New columns and streams evolve (as in dlt). A column whose
# discovered type changed keeps its accepted type and a value that does not fit goes to quarantine with its
# reason: type inference from a sample flips on a single bad value (one "n/a" turns an integer column into
# text), and following it would silently break every numeric step and rule downstream.
DEFAULT_CONTRACT = {
    "new_columns": "evolve",
    "type_changes": "discard_row",
    "new_tables": "evolve",
}


class StreamContract(models.Model):
    """What a connector's stream may change without a person deciding (dlt's schema contracts). The row with
    an empty `stream` is the connector's default, for every stream without its own row and for new streams
    (`new_tables`). No row at all means evolve everywhere."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    connector = models.ForeignKey("connectors.Connector", on_delete=models.CASCADE, related_name="+")
    stream = models.CharField(max_length=255, blank=True, help_text="Empty: the connector's default.")
    new_columns = models.CharField(
        max_length=16, choices=ContractPolicy.choices, default=ContractPolicy.EVOLVE
    )
    type_changes = models.CharField(
        max_length=16, choices=ContractPolicy.choices, default=DEFAULT_CONTRACT["type_changes"]
    )
    new_tables = models.CharField(
        max_length=16, choices=ContractPolicy.choices, default=ContractPolicy.EVOLVE
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connector_id", "stream"]
        constraints = [
            models.UniqueConstraint(fields=["connector", "stream"], name="schemas_contract_unique"),
        ]

    def __str__(self) -> str:
        return f"contract {self.stream or '*'}"


class SchemaChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    # A newer version of the stream arrived before anyone decided; the newer change (if any) is the one
    # to decide, so this one can no longer be approved.
    SUPERSEDED = "superseded", "Superseded"


class SchemaChange(models.Model):
    """A drift a frozen contract refused: runs reading the stream fail until an editor approves it (the new
    version becomes the accepted one) or the source returns to the accepted schema."""

    workspace = models.ForeignKey("users.Workspace", on_delete=models.CASCADE, related_name="+")
    connector = models.ForeignKey("connectors.Connector", on_delete=models.CASCADE, related_name="+")
    stream = models.CharField(max_length=255)
    from_version = models.PositiveIntegerField(null=True, blank=True, help_text="The accepted version.")
    to_version = models.PositiveIntegerField(help_text="The version discovered.")
    changes = models.JSONField(default=dict, help_text="The diff from the accepted to the new version.")
    frozen = models.JSONField(default=list, help_text="The contract settings that refused it.")
    status = models.CharField(
        max_length=16, choices=SchemaChangeStatus.choices, default=SchemaChangeStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Newest first: the change an editor is looking for is the one that just stopped a run.
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "stream", "to_version"], name="schemas_change_version_unique"
            ),
        ]
        indexes = [models.Index(fields=["workspace", "status"])]

    def __str__(self) -> str:
        return f"change #{self.pk} {self.stream} v{self.to_version} ({self.status})"
