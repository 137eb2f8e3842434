from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.transformations import selectors


class StepTypeSerializer(serializers.Serializer):
    slug = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    category = serializers.CharField()
    min_inputs = serializers.IntegerField()
    max_inputs = serializers.IntegerField(allow_null=True)
    buffers = serializers.BooleanField(help_text="Whether the step holds more than one batch in memory.")
    config_schema = serializers.JSONField(
        help_text="JSON Schema of the step's config (drives the builder's forms)."
    )


@extend_schema(tags=["transformations"])
class StepTypeViewSet(viewsets.GenericViewSet):
    """The transform steps a pipeline's transform nodes can use, with the JSON Schema of their configs."""

    permission_classes = [IsAuthenticated]
    serializer_class = StepTypeSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[A-Za-z0-9_.\-]+"
    # Step types live in a registry, not the database: no queryset, no database filters.
    filter_backends: list[Any] = []

    def get_queryset(self) -> list[Any]:  # type: ignore[override]
        return []

    @extend_schema(responses={200: StepTypeSerializer(many=True)})
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.step_type_list())
        return self.get_paginated_response(page)

    @extend_schema(
        parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH)], responses={200: StepTypeSerializer}
    )
    def retrieve(self, request: Request, slug: str) -> Response:
        return Response(selectors.step_type_get(slug=slug))
