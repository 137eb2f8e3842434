import contextlib

from auditlog.admin import LogEntryAdmin
from auditlog.filters import ResourceTypeFilter
from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered

from .models import Alert, AlertRule, AuditEntry, Event


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


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "workspace", "pipeline", "is_enabled", "notify_email"]
    list_filter = ["kind", "is_enabled"]
    search_fields = ["name"]
    list_select_related = ["workspace", "pipeline"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["title", "status", "rule", "workspace", "count", "first_seen", "last_seen"]
    list_filter = ["status"]
    search_fields = ["title", "subject_id"]
    list_select_related = ["rule", "workspace"]
    readonly_fields = ["first_seen", "last_seen", "count", "context"]


# RunMetric and SystemMetric are partitioned tables read through the metrics API and maintained with
# `manage.py metrics_partitions`; their (ts, id) key is not one the admin can address a row by.


class AuditEntryAdmin(LogEntryAdmin):
    # django-auditlog searches first_name/last_name, which this project's users do not have.
    search_fields = ["object_repr", "changes", "actor__email", "actor__full_name"]
    list_filter = ["action", "credential", ResourceTypeFilter]
    list_select_related = ["content_type", "actor"]


with contextlib.suppress(NotRegistered):
    admin.site.unregister(AuditEntry)
admin.site.register(AuditEntry, AuditEntryAdmin)
