from django.contrib import admin

from .models import StreamSchemaVersion


@admin.register(StreamSchemaVersion)
class StreamSchemaVersionAdmin(admin.ModelAdmin):
    list_display = ["stream", "version", "connector", "workspace", "is_removed", "discovered_at"]
    list_filter = ["is_removed"]
    search_fields = ["stream", "connector__name"]
    list_select_related = ["connector", "workspace"]
    readonly_fields = ["schema", "changes", "fingerprint", "discovered_at"]
