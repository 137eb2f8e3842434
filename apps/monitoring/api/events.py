"""`/api/v1/events/` (what happened, for every member) and `/api/v1/audit-log/` (who changed what, for
workspace admins)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, mixins, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.filters import UtcDateTimeFilter
from aggregator.api.viewsets import WorkspaceScopedViewSet
from apps.monitoring.audit import audit_entry_list_for_user
from apps.monitoring.models import AuditCredential, AuditEntry, Event
from apps.monitoring.selectors import event_list_for_user
from apps.users.selectors import Role, has_role, workspace_ids_for_user

# --- events -----------------------------------------------------------------------------------------------


class EventSubjectSerializer(serializers.Serializer):
    type = serializers.CharField(source="subject_type")
    id = serializers.CharField(source="subject_id")


class EventSerializer(serializers.ModelSerializer):
    """The same shape as the `event` of a WebSocket message, so a client can use one parser for both."""

    workspace = serializers.IntegerField(source="workspace_id")
    subject = EventSubjectSerializer(source="*")

    class Meta:
        model = Event
        fields = ["id", "type", "workspace", "subject", "payload", "created_at"]
        read_only_fields = fields


class EventFilter(django_filters.FilterSet):
    type = django_filters.CharFilter(
        method="filter_type",
        help_text='An exact type ("run.failed"), or a prefix ending in "." or ".*" ("run.", "run.*").',
    )
    subject_type = django_filters.CharFilter(field_name="subject_type")
    subject_id = django_filters.CharFilter(field_name="subject_id")
    since = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields: list[str] = []

    def filter_type(self, queryset: QuerySet[Event], name: str, value: str) -> QuerySet[Event]:
        if value.endswith(".*"):
            value = value[:-1]
        if value.endswith("."):
            return queryset.filter(type__startswith=value)
        return queryset.filter(type=value)


class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WorkspaceScopedViewSet):
    """Events of the caller's workspaces, newest first."""

    queryset = Event.objects.none()
    serializer_class = EventSerializer
    filterset_class = EventFilter

    def scoped_queryset(self) -> QuerySet[Event]:
        return event_list_for_user(user=self.request.user)


# --- audit log --------------------------------------------------------------------------------------------

ACTION_NAMES = {
    AuditEntry.Action.CREATE: "create",
    AuditEntry.Action.UPDATE: "update",
    AuditEntry.Action.DELETE: "delete",
    AuditEntry.Action.ACCESS: "access",
}
ACTIONS_BY_NAME = {name: value for value, name in ACTION_NAMES.items()}


class AuditObjectSerializer(serializers.Serializer):
    type = serializers.SerializerMethodField(help_text='"app_label.model", e.g. "connectors.connector".')
    id = serializers.CharField(source="object_pk")
    repr = serializers.CharField(source="object_repr")

    @extend_schema_field(OpenApiTypes.STR)
    def get_type(self, entry: AuditEntry) -> str:
        return f"{entry.content_type.app_label}.{entry.content_type.model}"


class AuditActorSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="actor_id", allow_null=True)
    email = serializers.CharField(source="actor_email", allow_null=True)


class AuditEntrySerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id")
    action = serializers.SerializerMethodField()
    object = AuditObjectSerializer(source="*")
    actor = AuditActorSerializer(source="*")
    changes = serializers.JSONField(
        help_text='Changed fields: {field: [before, after]}. Secret fields show only whether set: "***".'
    )
    credential = serializers.ChoiceField(choices=AuditCredential.choices)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "workspace",
            "timestamp",
            "action",
            "object",
            "changes",
            "actor",
            "remote_addr",
            "credential",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=list(ACTIONS_BY_NAME)))
    def get_action(self, entry: AuditEntry) -> str:
        return ACTION_NAMES.get(entry.action, str(entry.action))


class AuditEntryFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=[(n, n) for n in ACTIONS_BY_NAME], method="filter_action")
    object_type = django_filters.CharFilter(
        method="filter_object_type", help_text='e.g. "connectors.connector"'
    )
    object_id = django_filters.CharFilter(field_name="object_pk")
    actor = django_filters.NumberFilter(field_name="actor_id")
    credential = django_filters.ChoiceFilter(choices=AuditCredential.choices)
    since = UtcDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields: list[str] = []

    def filter_action(self, queryset: QuerySet[AuditEntry], name: str, value: str) -> QuerySet[AuditEntry]:
        return queryset.filter(action=ACTIONS_BY_NAME[value])

    def filter_object_type(
        self, queryset: QuerySet[AuditEntry], name: str, value: str
    ) -> QuerySet[AuditEntry]:
        app_label, _, model = value.lower().partition(".")
        return queryset.filter(content_type__app_label=app_label, content_type__model=model)


class AuditLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WorkspaceScopedViewSet):
    """The audit log of the workspaces you administer, newest first. Other members get 403; another
    workspace's entries are never shown (404 / an empty list)."""

    queryset = AuditEntry.objects.none()
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilter
    read_role = Role.ADMIN

    def scoped_queryset(self) -> QuerySet[AuditEntry]:
        # Detail routes see every workspace the caller is in, so a member who is not an admin gets the
        # 403 of the role check (not a 404 that would pretend the entry does not exist); lists show only
        # the workspaces the caller administers.
        min_role = Role.ADMIN if self.action == "list" else Role.VIEWER
        return audit_entry_list_for_user(user=self.request.user, min_role=min_role)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        member_of = workspace_ids_for_user(user=request.user)
        narrowed = request.query_params.get("workspace")
        if narrowed and narrowed.isdigit() and int(narrowed) in member_of:
            denied = not has_role(user=request.user, workspace_id=int(narrowed), role=Role.ADMIN)
        else:
            denied = bool(member_of) and not workspace_ids_for_user(user=request.user, min_role=Role.ADMIN)
        if denied:
            raise exceptions.PermissionDenied("Only workspace admins may read the audit log.")
        return super().list(request, *args, **kwargs)
