"""`GET /api/v1/rule-types/`: the validation rule types a node's `rules` may use, with their config
schemas (for the builder's forms), as `step-types` does for steps."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.transformations.quality import rule_types


class RuleTypeSerializer(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()
    stream_level = serializers.BooleanField(
        help_text="Judged once the node's stream ends (no row to reject)."
    )
    actions = serializers.ListField(child=serializers.CharField())
    config_schema = serializers.JSONField(help_text="JSON Schema of the rule's config.")


@extend_schema(tags=["transformations"])
class RuleTypeViewSet(viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated]
    serializer_class = RuleTypeSerializer
    # A fixed list from code, not the database: no queryset, no filters, no pagination.
    filter_backends: list[Any] = []
    pagination_class = None

    def get_queryset(self) -> list[Any]:  # type: ignore[override]
        return []

    @extend_schema(responses={200: RuleTypeSerializer(many=True)})
    def list(self, request: Request) -> Response:
        return Response(rule_types())
