from django.contrib import admin

from .models import SchemaChange, StreamContract, StreamSchemaVersion


@admin.register(StreamSchemaVersion)
class StreamSchemaVersionAdmin(admin.ModelAdmin):
    list_display = [
        "stream",
        "version",
        "connector",
        "workspace",
        "is_accepted",
        "is_removed",
        "discovered_at",
    ]
    list_filter = ["is_removed", "is_accepted"]
    search_fields = ["stream", "connector__name"]
    list_select_related = ["connector", "workspace"]
    readonly_fields = ["schema", "changes", "fingerprint", "discovered_at"]


@admin.register(StreamContract)
class StreamContractAdmin(admin.ModelAdmin):
    list_display = ["connector", "stream", "new_columns", "type_changes", "new_tables", "updated_at"]
    search_fields = ["stream", "connector__name"]
    list_select_related = ["connector"]


@admin.register(SchemaChange)
class SchemaChangeAdmin(admin.ModelAdmin):
    list_display = ["id", "connector", "stream", "from_version", "to_version", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["stream", "connector__name"]
    list_select_related = ["connector"]
    # Decisions go through the API's services (they move the accepted version and emit events).
    readonly_fields = ["changes", "frozen", "status", "decided_by", "decided_at"]
