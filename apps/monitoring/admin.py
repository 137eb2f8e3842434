from django.contrib import admin

from .models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["type", "subject_type", "subject_id", "workspace", "created_at"]
    list_filter = ["type"]
    search_fields = ["type", "subject_id"]
    list_select_related = ["workspace"]
    readonly_fields = ["workspace", "type", "subject_type", "subject_id", "payload", "created_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
