from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.viewsets import WorkspaceScopedModelViewSet
from apps.connectors import selectors, services
from apps.connectors.models import Connector
from apps.schemas.selectors import latest_stream_schemas
from apps.schemas.services import schema_discover
from apps.users.selectors import Role, User

from .serializers import (
    CheckOutputSerializer,
    ConnectorCreateInputSerializer,
    ConnectorSerializer,
    ConnectorTypeSerializer,
    ConnectorUpdateInputSerializer,
    DiscoverOutputSerializer,
    PreviewOutputSerializer,
    PreviewQuerySerializer,
    StreamProfileInputSerializer,
    StreamProfileOutputSerializer,
    connector_type_data,
)


def _person(request: Request) -> User:
    # IsAuthenticated has run: the user is a real account, never AnonymousUser.
    return cast("User", request.user)


@extend_schema(tags=["connectors"])
class ConnectorTypeViewSet(viewsets.GenericViewSet):
    """The connector types this installation offers, each with the JSON Schema of its config."""

    permission_classes = [IsAuthenticated]
    serializer_class = ConnectorTypeSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[A-Za-z0-9_.\-]+"
    filter_backends: list[Any] = []

    def get_queryset(self) -> list[Any]:  # type: ignore[override]
        # Types live in the registry, not the database; this only satisfies schema generation.
        return []

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=["source", "destination"], required=False)],
        responses={200: ConnectorTypeSerializer(many=True)},
    )
    def list(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        if kind is not None and kind not in ("source", "destination"):
            raise exceptions.ValidationError({"kind": ["source or destination."]})
        types = selectors.connector_type_list(kind=kind)  # type: ignore[arg-type]
        page = self.paginate_queryset([connector_type_data(t) for t in types])
        return self.get_paginated_response(page)

    @extend_schema(
        parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH)],
        responses={200: ConnectorTypeSerializer},
    )
    def retrieve(self, request: Request, slug: str) -> Response:
        return Response(connector_type_data(selectors.connector_type_get(slug=slug)))


@extend_schema(tags=["connectors"])
class ConnectorViewSet(WorkspaceScopedModelViewSet):
    """Configured connectors. Secrets are write-only: responses show `{"is_set": true}` in their place.
    Viewers list, read and preview; editors create, change, check and discover."""

    queryset = Connector.objects.none()  # the model, for schema generation; rows come from scoped_queryset()
    serializer_class = ConnectorSerializer
    filterset_fields = ["connector_type"]
    action_roles = {
        "check": Role.EDITOR,
        "discover": Role.EDITOR,
        "preview": Role.VIEWER,
        "profile": Role.VIEWER,
    }

    def scoped_queryset(self) -> QuerySet[Connector]:
        return selectors.connector_list_for_user(user=self.request.user)

    def get_object(self) -> Connector:
        connector = selectors.connector_get_for_user(user=self.request.user, connector_id=self.kwargs["pk"])
        self.check_object_permissions(self.request, connector)
        return connector

    @extend_schema(request=ConnectorCreateInputSerializer, responses={201: ConnectorSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = self.workspace_for_create(request)
        data = ConnectorCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        connector = services.connector_create(
            workspace=workspace,
            user=_person(request),
            name=data.validated_data["name"],
            connector_type=data.validated_data["connector_type"],
            config=data.validated_data["config"],
        )
        return Response(ConnectorSerializer(connector).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ConnectorUpdateInputSerializer, responses={200: ConnectorSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        partial = kwargs.pop("partial", False)
        connector = self.get_object()
        data = ConnectorUpdateInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        connector = services.connector_update(
            connector=connector,
            user=_person(request),
            name=data.validated_data.get("name"),
            connector_type=data.validated_data.get("connector_type"),
            config=data.validated_data.get("config"),
            replace=not partial,
        )
        return Response(ConnectorSerializer(connector).data)

    @extend_schema(request=ConnectorUpdateInputSerializer, responses={200: ConnectorSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Connector) -> None:
        services.connector_delete(connector=instance, user=_person(self.request))

    @extend_schema(request=None, responses={200: CheckOutputSerializer})
    @action(detail=True, methods=["post"])
    def check(self, request: Request, pk: str) -> Response:
        """Contact the configured system (bounded by the type's timeout) and record the result."""
        connector = services.connector_check(connector=self.get_object())
        return Response(
            CheckOutputSerializer(
                {
                    "ok": connector.last_check_status == "succeeded",
                    "status": connector.last_check_status,
                    "message": connector.last_check_message,
                    "at": connector.last_check_at,
                }
            ).data
        )

    @extend_schema(request=None, responses={200: DiscoverOutputSerializer})
    @action(detail=True, methods=["post"])
    def discover(self, request: Request, pk: str) -> Response:
        """The streams the source offers now, with their fields, stored as versioned stream schemas; `changes`
        says per stream what changed since the previous discovery (added, removed, changed, unchanged)."""
        connector = self.get_object()
        changes = schema_discover(connector=connector)
        # The versions just recorded hold each stream's schema as discovered: reading them back avoids a
        # second discovery (which for a database or an API would be a second round of remote calls).
        latest = latest_stream_schemas(connector_id=connector.id)
        streams = [latest[c.stream] for c in changes if c.kind != "removed" and c.stream in latest]
        return Response({"streams": streams, "changes": [c.to_dict() for c in changes]})

    @extend_schema(parameters=[PreviewQuerySerializer], responses={200: PreviewOutputSerializer})
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str) -> Response:
        """The first rows of a stream as JSON (`limit` at most 1000), and rows rejected on the way."""
        connector = self.get_object()
        # A plain dict: DRF reads an empty form value (`?limit=`) as "not given" rather than refusing it.
        query = PreviewQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        body = services.connector_preview(
            connector=connector, stream=query.validated_data["stream"], limit=query.validated_data["limit"]
        )
        return Response(body)

    @extend_schema(parameters=[StreamProfileInputSerializer], responses={200: StreamProfileOutputSerializer})
    @action(detail=True, methods=["get"])
    def profile(self, request: Request, pk: str) -> Response:
        """Profile a stream's first rows (`limit`, default 10,000, at most 100,000) without a run: per column
        nulls, distinct count, min/max/mean/stddev, top values and a histogram of numbers. Nothing is
        stored."""
        connector = self.get_object()
        data = StreamProfileInputSerializer(data=request.query_params.dict())
        data.is_valid(raise_exception=True)
        body = services.connector_profile(
            connector=connector, stream=data.validated_data["stream"], limit=data.validated_data["limit"]
        )
        return Response(body)
