from __future__ import annotations

from django.contrib import admin

from .models import Connector


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    """Read-mostly: secrets are never shown (`secrets_encrypted` is excluded, even as ciphertext), and
    configs are changed through the API, which validates them against the type's schema."""

    list_display = ["name", "workspace", "connector_type", "last_check_status", "last_check_at", "updated_at"]
    list_filter = ["connector_type", "last_check_status"]
    search_fields = ["name", "workspace__name"]
    exclude = ["secrets_encrypted"]
    readonly_fields = [
        "workspace",
        "connector_type",
        "config",
        "last_check_status",
        "last_check_message",
        "last_check_at",
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
    ]
    list_select_related = ["workspace"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
