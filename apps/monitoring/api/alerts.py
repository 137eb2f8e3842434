"""`/api/v1/alert-rules/` (CRUD, editors and admins) and `/api/v1/alerts/` (list, acknowledge, resolve)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.filters import TrueOrFalseFilter
from aggregator.api.viewsets import WorkspaceScopedModelViewSet, WorkspaceScopedViewSet
from apps.monitoring import alerts
from apps.monitoring.models import Alert, AlertKind, AlertRule, AlertStatus


class AlertRuleSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    pipeline = serializers.IntegerField(source="pipeline_id", allow_null=True, required=False)
    email_recipients = serializers.ListField(child=serializers.EmailField(), required=False, max_length=50)

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "workspace",
            "pipeline",
            "name",
            "kind",
            "threshold",
            "window",
            "is_enabled",
            "notify_email",
            "email_recipients",
            "notify_interval_s",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "workspace", "created_at", "updated_at"]


class AlertRuleWriteSerializer(AlertRuleSerializer):
    workspace = serializers.IntegerField(required=False, help_text="Default: your only workspace.")
    kind = serializers.ChoiceField(choices=AlertKind.choices)

    class Meta(AlertRuleSerializer.Meta):
        read_only_fields = ["id", "created_at", "updated_at"]


class AlertSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    rule = serializers.IntegerField(source="rule_id", read_only=True)
    kind = serializers.CharField(source="rule.kind", read_only=True)
    acknowledged_by = serializers.IntegerField(source="acknowledged_by_id", read_only=True, allow_null=True)
    resolved_by = serializers.IntegerField(source="resolved_by_id", read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "workspace",
            "rule",
            "kind",
            "subject_type",
            "subject_id",
            "status",
            "title",
            "context",
            "count",
            "first_seen",
            "last_seen",
            "last_notified_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "resolved_reason",
        ]
        read_only_fields = fields


def _rule_values(data: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in data.items() if k != "workspace"}
    if "pipeline_id" in values:
        values["pipeline"] = values.pop("pipeline_id")
    return values


class AlertRuleFilter(django_filters.FilterSet):
    is_enabled = TrueOrFalseFilter()

    class Meta:
        model = AlertRule
        fields = ["kind", "pipeline", "is_enabled"]


@extend_schema(tags=["alerts"])
class AlertRuleViewSet(WorkspaceScopedModelViewSet):
    """What raises alerts, per workspace or per pipeline. Viewers read; editors and admins change."""

    queryset = AlertRule.objects.none()
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilter

    def scoped_queryset(self) -> QuerySet[AlertRule]:
        return alerts.alert_rule_list_for_user(user=self.request.user)

    @extend_schema(request=AlertRuleWriteSerializer, responses={201: AlertRuleSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = self.workspace_for_create(request)
        data = AlertRuleWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule = alerts.alert_rule_create(
            workspace=workspace, user=request.user, **_rule_values(data.validated_data)
        )
        return Response(AlertRuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AlertRuleWriteSerializer, responses={200: AlertRuleSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rule = self.get_object()
        data = AlertRuleWriteSerializer(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        rule = alerts.alert_rule_update(rule=rule, **_rule_values(data.validated_data))
        return Response(AlertRuleSerializer(rule).data)

    @extend_schema(request=AlertRuleWriteSerializer, responses={200: AlertRuleSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)


class AlertFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=AlertStatus.choices)
    kind = django_filters.ChoiceFilter(field_name="rule__kind", choices=AlertKind.choices)

    class Meta:
        model = Alert
        fields = ["status", "rule", "kind", "subject_type", "subject_id"]


@extend_schema(tags=["alerts"])
class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WorkspaceScopedViewSet):
    """Incidents, newest activity first. Editors and admins acknowledge (stops notifications) and resolve."""

    queryset = Alert.objects.none()
    serializer_class = AlertSerializer
    filterset_class = AlertFilter

    def scoped_queryset(self) -> QuerySet[Alert]:
        return alerts.alert_list_for_user(user=self.request.user)

    @extend_schema(request=None, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        alert = alerts.alert_acknowledge(alert=self.get_object(), user=request.user)
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=None, responses={200: AlertSerializer})
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        alert = alerts.alert_resolve(alert=self.get_object(), user=request.user)
        return Response(AlertSerializer(alert).data)
