from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.transformations import expressions, selectors


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


# Above the language's own limit (expressions.MAX_LENGTH), so a long expression gets the language's message
# at the field like any other mistake; far beyond it the request is refused before parsing.
CHECK_MAX_CHARS = 10 * expressions.MAX_LENGTH
CHECK_MAX_COLUMNS = 5000


class ExpressionColumnSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=1000, trim_whitespace=False)
    type = serializers.ChoiceField(choices=[t.value for t in FieldType])


class ExpressionCheckInputSerializer(serializers.Serializer):
    expression = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        max_length=CHECK_MAX_CHARS,
        help_text="The text typed so far.",
    )
    columns = serializers.ListField(
        child=ExpressionColumnSerializer(),
        required=False,
        allow_null=True,
        max_length=CHECK_MAX_COLUMNS,
        help_text="The columns arriving where the expression is used. Absent: only the syntax is checked.",
    )


class ExpressionPositionSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="1-based.")
    column = serializers.IntegerField(help_text="1-based, in characters.")


class ExpressionErrorSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="The whole message: reason, position and hint.")
    reason = serializers.CharField()
    hint = serializers.CharField(allow_null=True)
    position = ExpressionPositionSerializer(allow_null=True)


class ExpressionCheckSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    error = ExpressionErrorSerializer(allow_null=True)
    type = serializers.ChoiceField(
        choices=[t.value for t in FieldType],
        allow_null=True,
        help_text="What it gives per row; null when invalid or when that depends on untyped columns.",
    )
    columns_used = serializers.ListField(child=serializers.CharField(), help_text="Columns read, in order.")
    unknown_columns = serializers.ListField(
        child=serializers.CharField(), help_text="Columns read that are not among `columns` (when given)."
    )


def expression_check(*, text: str, fields: list[dict[str, str]] | None) -> dict[str, Any]:
    """The check of one expression against the columns given, as the API answers it."""
    schema = None
    if fields is not None:
        unique = {f["name"]: Field(name=f["name"], type=FieldType(f["type"])) for f in fields}
        schema = StreamSchema(name="input", fields=tuple(unique.values()))
    used: list[str] = []
    try:
        node = expressions.parse(text)
        used = expressions.columns_used(node)
        checked = expressions.check(node, schema)
    except expressions.ExpressionError as exc:
        position = exc.position
        return {
            "valid": False,
            "error": {
                "message": exc.message,
                "reason": exc.reason,
                "hint": exc.hint,
                "position": {"line": position.line, "column": position.col} if position else None,
            },
            "type": None,
            "columns_used": used,
            "unknown_columns": [c for c in used if schema is not None and c not in schema.field_names],
        }
    return {
        "valid": True,
        "error": None,
        "type": checked.type.value if checked.type else None,
        "columns_used": checked.columns,
        "unknown_columns": [],
    }


@extend_schema(tags=["transformations"])
class ExpressionViewSet(viewsets.GenericViewSet):
    """The expression language (filter conditions, derived columns, rules) for editors: `check` parses and
    type-checks text with the one parser steps use, so the builder never re-implements the grammar."""

    permission_classes = [IsAuthenticated]
    serializer_class = ExpressionCheckSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> list[Any]:  # type: ignore[override]
        return []

    @extend_schema(request=ExpressionCheckInputSerializer, responses={200: ExpressionCheckSerializer})
    @action(detail=False, methods=["post"])
    def check(self, request: Request) -> Response:
        """Check an expression as it is typed: its first mistake with the reason, position (line and
        column) and a hint (`did you mean 'dep_delay'?`), every column it reads that is not among `columns`,
        and the type it gives. Nothing is evaluated; no data is read."""
        data = ExpressionCheckInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        return Response(expression_check(text=values["expression"], fields=values.get("columns")))
