from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.webhooks.models import Delivery, DeliveryAttempt, PipelineTrigger, PushStream, Webhook
from apps.webhooks.services import DEFAULT_OVERLAP_S, MAX_OVERLAP_S


class SecretStatusSerializer(serializers.Serializer):
    """What the API shows of a secret after it was created: whether it is set, never its value."""

    is_set = serializers.SerializerMethodField()

    def get_is_set(self, webhook: Webhook) -> bool:
        return bool(webhook.secret_encrypted)


class WebhookSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    secret = SecretStatusSerializer(source="*", read_only=True)

    class Meta:
        model = Webhook
        fields = [
            "id",
            "workspace",
            "url",
            "description",
            "event_types",
            "is_active",
            "secret",
            "previous_secret_expires_at",
            "consecutive_failures",
            "disabled_reason",
            "disabled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WebhookWriteSerializer(serializers.Serializer):
    workspace = serializers.IntegerField(required=False, write_only=True)
    url = serializers.URLField(max_length=2000)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    event_types = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    is_active = serializers.BooleanField(required=False)


class WebhookWithSecretSerializer(WebhookSerializer):
    signing_secret = serializers.SerializerMethodField()

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "signing_secret"]
        read_only_fields = fields

    def get_signing_secret(self, webhook: Webhook) -> str:
        return str(self.context["signing_secret"])


class RotateSecretSerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0, max_value=MAX_OVERLAP_S, default=DEFAULT_OVERLAP_S
    )


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "outcome",
            "response_status",
            "response_body",
            "error",
            "latency_ms",
            "started_at",
            "next_retry_at",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    webhook = serializers.IntegerField(source="webhook_id", read_only=True)
    payload = serializers.SerializerMethodField()
    attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhook",
            "event_type",
            "event_id",
            "message_id",
            "is_test",
            "status",
            "attempt_count",
            "next_attempt_at",
            "created_at",
            "finished_at",
            "payload",
            "attempts",
        ]
        read_only_fields = fields

    def get_payload(self, delivery: Delivery) -> dict[str, Any]:
        return dict(json.loads(delivery.body))


class PipelineTriggerSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    pipeline = serializers.IntegerField(source="pipeline_id", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = PipelineTrigger
        fields = ["id", "workspace", "pipeline", "url", "is_active", "last_triggered_at", "created_at"]
        read_only_fields = fields

    def get_url(self, trigger: PipelineTrigger) -> str:
        return f"{settings.AGGREGATOR_BASE_URL.rstrip('/')}/hooks/pipelines/{trigger.token}/trigger"


class PipelineTriggerCreateSerializer(serializers.Serializer):
    pipeline = serializers.IntegerField()


class PipelineTriggerWithSecretSerializer(PipelineTriggerSerializer):
    signing_secret = serializers.SerializerMethodField()

    class Meta(PipelineTriggerSerializer.Meta):
        fields = [*PipelineTriggerSerializer.Meta.fields, "signing_secret"]
        read_only_fields = fields

    def get_signing_secret(self, trigger: PipelineTrigger) -> str:
        return str(self.context["signing_secret"])


class PushStreamSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = PushStream
        fields = ["id", "workspace", "name", "url", "last_seq", "is_active", "created_at"]
        read_only_fields = fields

    def get_url(self, stream: PushStream) -> str:
        return f"{settings.AGGREGATOR_BASE_URL.rstrip('/')}/hooks/ingest/{stream.token}"


class PushStreamCreateSerializer(serializers.Serializer):
    workspace = serializers.IntegerField(required=False, write_only=True)
    name = serializers.CharField(max_length=100)


class PushStreamWithSecretsSerializer(PushStreamSerializer):
    signing_secret = serializers.SerializerMethodField()
    read_key = serializers.SerializerMethodField()

    class Meta(PushStreamSerializer.Meta):
        fields = [*PushStreamSerializer.Meta.fields, "signing_secret", "read_key"]
        read_only_fields = fields

    def get_signing_secret(self, stream: PushStream) -> str:
        return str(self.context["signing_secret"])

    def get_read_key(self, stream: PushStream) -> str:
        return str(self.context["read_key"])
