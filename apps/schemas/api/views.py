from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.viewsets import WorkspaceScopedModelViewSet, WorkspaceScopedViewSet
from apps.connectors.selectors import Connector, connector_get_for_user, connector_list_for_user
from apps.schemas import selectors, services
from apps.schemas.models import SchemaChange, SchemaChangeStatus, StreamContract
from apps.users.selectors import Role, has_role

from .serializers import (
    ConnectorStreamsSerializer,
    SchemaChangeSerializer,
    SchemaDiffSerializer,
    StreamContractSerializer,
    StreamContractUpdateSerializer,
)


@extend_schema(tags=["schemas"])
class ConnectorSchemaViewSet(WorkspaceScopedViewSet):
    """A connector's streams as discovery recorded them: versions, the accepted one, the contract in force,
    and the difference between any two versions. Viewers may read."""

    queryset = Connector.objects.none()
    action_roles = {"streams": Role.VIEWER, "diff": Role.VIEWER}

    def scoped_queryset(self) -> QuerySet[Connector]:
        return connector_list_for_user(user=self.request.user)

    @extend_schema(responses={200: ConnectorStreamsSerializer})
    @action(detail=True, methods=["get"])
    def streams(self, request: Request, pk: str | None = None) -> Response:
        """Every stream with its versions, newest first, the contract in force and where it comes from; and
        the connector's default contract."""
        connector = self.get_object()
        data = {"connector": connector.id, **selectors.stream_summaries(connector_id=connector.id)}
        return Response(ConnectorStreamsSerializer(data).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("stream", str, required=True),
            OpenApiParameter("base", int, required=True, description="The older version."),
            OpenApiParameter("other", int, required=True, description="The newer version."),
        ],
        responses={200: SchemaDiffSerializer},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, pk: str | None = None) -> Response:
        """What changed from `base` to `other`: fields added, removed, type-changed, nullability-changed."""
        connector = self.get_object()
        stream = request.query_params.get("stream", "")
        if not stream:
            raise exceptions.ValidationError({"stream": ["Name the stream."]})
        numbers: dict[str, int] = {}
        for name in ("base", "other"):
            try:
                numbers[name] = int(request.query_params[name])
            except (KeyError, ValueError):
                raise exceptions.ValidationError({name: ["Must be a version number."]}) from None
        rows = {}
        for name, number in numbers.items():
            try:
                rows[name] = selectors.schema_version_get_for_user(
                    user=request.user, connector_id=connector.id, stream=stream, version=number
                )
            except Http404:
                raise exceptions.ValidationError(
                    {name: [f"No version {number} of stream {stream!r}."]}
                ) from None
        base, other = rows["base"], rows["other"]
        change = services.schema_diff(
            stream=stream,
            old=None if base.is_removed else base.schema,
            new=None if other.is_removed else other.schema,
        ).to_dict()
        change.pop("version")
        return Response({"connector": connector.id, **numbers, **change})


# The base viewset narrows every list to `?workspace=` already; declaring it here as well puts it in the
# OpenAPI schema, so the generated client knows the parameter (filtering twice on it costs nothing).
WORKSPACE_HELP = "Only this workspace's rows (a workspace you are not in gives an empty list)."


class ContractFilter(django_filters.FilterSet):
    # `workspace__id` (the same column, no join) so the schema types it as an integer.
    workspace = django_filters.NumberFilter(field_name="workspace__id", help_text=WORKSPACE_HELP)
    connector = django_filters.NumberFilter(field_name="connector_id")
    stream = django_filters.CharFilter()

    class Meta:
        model = StreamContract
        fields = ["workspace", "connector", "stream"]


@extend_schema(tags=["schemas"])
class StreamContractViewSet(WorkspaceScopedModelViewSet):
    """Schema contracts, per connector and stream (an empty `stream` is the connector's default): what
    happens to new columns, type changes and new streams — evolve, freeze, discard_value or discard_row.
    Viewers read; editors change."""

    queryset = StreamContract.objects.none()
    serializer_class = StreamContractSerializer
    filterset_class = ContractFilter

    def scoped_queryset(self) -> QuerySet[StreamContract]:
        return selectors.stream_contract_list_for_user(user=self.request.user)

    @staticmethod
    def _settings(data: dict[str, Any], current: dict[str, str]) -> dict[str, Any]:
        """The settings given, and for those left out the ones in force now: a request changes only what
        it names."""
        return {key: data.get(key, current[key]) for key in ("new_columns", "type_changes", "new_tables")}

    @extend_schema(request=StreamContractSerializer, responses={201: StreamContractSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Set the contract of a stream (creating or replacing it)."""
        data = StreamContractSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            connector = connector_get_for_user(user=request.user, connector_id=values["connector_id"])
        except Http404:
            raise exceptions.ValidationError({"connector": ["No such connector."]}) from None
        if not has_role(user=request.user, workspace_id=connector.workspace_id, role=Role.EDITOR):
            raise exceptions.PermissionDenied("Your role in this workspace does not allow this.")
        contract = services.stream_contract_set(
            connector=connector,
            stream=values.get("stream", ""),
            user=request.user,
            **self._settings(
                values,
                selectors.stream_contract_effective(
                    connector_id=connector.id, stream=values.get("stream", "")
                ),
            ),
        )
        contract = self.scoped_queryset().get(pk=contract.pk)
        return Response(StreamContractSerializer(contract).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=StreamContractUpdateSerializer, responses={200: StreamContractSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        current = self.get_object()
        data = StreamContractUpdateSerializer(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        services.stream_contract_set(
            connector=current.connector,
            stream=current.stream,
            user=request.user,
            **self._settings(
                data.validated_data,
                {key: getattr(current, key) for key in ("new_columns", "type_changes", "new_tables")},
            ),
        )
        return Response(StreamContractSerializer(self.scoped_queryset().get(pk=current.pk)).data)

    @extend_schema(request=StreamContractUpdateSerializer, responses={200: StreamContractSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: StreamContract) -> None:
        services.stream_contract_delete(contract=instance)


class ChangeFilter(django_filters.FilterSet):
    # `workspace__id` (the same column, no join) so the schema types it as an integer.
    workspace = django_filters.NumberFilter(field_name="workspace__id", help_text=WORKSPACE_HELP)
    connector = django_filters.NumberFilter(field_name="connector_id")
    stream = django_filters.CharFilter()
    status = django_filters.MultipleChoiceFilter(choices=SchemaChangeStatus.choices)

    class Meta:
        model = SchemaChange
        fields = ["workspace", "connector", "stream", "status"]


@extend_schema(tags=["schemas"])
class SchemaChangeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, WorkspaceScopedViewSet):
    """Drift a frozen contract refused. While one is pending (or was rejected and the source still
    differs), runs reading the stream fail; an editor approves (the new version is accepted) or rejects."""

    queryset = SchemaChange.objects.none()
    serializer_class = SchemaChangeSerializer
    filterset_class = ChangeFilter
    action_roles = {"approve": Role.EDITOR, "reject": Role.EDITOR}

    def scoped_queryset(self) -> QuerySet[SchemaChange]:
        return selectors.schema_change_list_for_user(user=self.request.user)

    @extend_schema(request=None, responses={200: SchemaChangeSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        change = services.schema_change_approve(change=self.get_object(), user=request.user)
        return Response(SchemaChangeSerializer(self.scoped_queryset().get(pk=change.pk)).data)

    @extend_schema(request=None, responses={200: SchemaChangeSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        change = services.schema_change_reject(change=self.get_object(), user=request.user)
        return Response(SchemaChangeSerializer(self.scoped_queryset().get(pk=change.pk)).data)
