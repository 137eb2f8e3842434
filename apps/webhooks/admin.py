from __future__ import annotations

from django.contrib import admin

from .models import Delivery, DeliveryAttempt, PipelineTrigger, PushRecord, PushStream, Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "url", "is_active", "consecutive_failures", "created_at"]
    list_filter = ["is_active"]
    # Secrets are never shown, not even encrypted.
    exclude = ["secret_encrypted", "previous_secret_encrypted"]
    readonly_fields = ["consecutive_failures", "disabled_reason", "disabled_at", "previous_secret_expires_at"]


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = [
        "number",
        "outcome",
        "response_status",
        "response_body",
        "error",
        "latency_ms",
        "started_at",
        "next_retry_at",
    ]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "webhook", "event_type", "status", "attempt_count", "next_attempt_at", "created_at"]
    list_filter = ["status", "event_type"]
    readonly_fields = ["message_id", "body", "event_id"]
    inlines = [DeliveryAttemptInline]


@admin.register(PipelineTrigger)
class PipelineTriggerAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "pipeline", "is_active", "last_triggered_at"]
    exclude = ["secret_encrypted"]


@admin.register(PushStream)
class PushStreamAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "name", "last_seq", "is_active"]
    exclude = ["secret_encrypted", "read_key_hash"]


@admin.register(PushRecord)
class PushRecordAdmin(admin.ModelAdmin):
    list_display = ["stream", "seq", "received_at"]
    list_select_related = ["stream"]
    readonly_fields = ["stream", "seq", "data", "received_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
