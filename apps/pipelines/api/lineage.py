"""`GET /api/v1/lineage/`: the destination tables of the caller's workspaces, and
`GET /api/v1/lineage/table/`: where each column of one of them comes from, as a graph to draw
(apps/pipelines/lineage.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.schema import ERROR_RESPONSE
from apps.pipelines.lineage import lineage_tables_for_user, table_lineage_for_user


class LineageConnectorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    connector_type = serializers.CharField()


class LineageWriterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    node = serializers.CharField(help_text="The destination node that writes the table.")


class LineageTableSerializer(serializers.Serializer):
    workspace = serializers.IntegerField()
    connector = LineageConnectorSerializer()
    table = serializers.CharField()
    pipelines = LineageWriterSerializer(many=True)


class LineageTableListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = LineageTableSerializer(many=True)


class LineageSourceRefSerializer(serializers.Serializer):
    connector = serializers.DictField(help_text="`id` and `name` of the source connector.")
    stream = serializers.CharField()
    column = serializers.CharField()


class LineageColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    sources = LineageSourceRefSerializer(many=True, help_text="The source columns its values come from.")
    pipelines = serializers.ListField(child=serializers.IntegerField(), help_text="Pipelines writing it.")


class LineagePipelineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    nodes = serializers.ListField(
        child=serializers.CharField(), help_text="Its destination nodes writing it."
    )
    error = serializers.CharField(
        allow_null=True, help_text="Why its saved document could not be traced (it is left out of the graph)."
    )


class LineageNodeSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=["source", "step", "column"])
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    columns = serializers.ListField(
        child=serializers.CharField(), help_text="The destination columns whose path passes here."
    )
    connector = serializers.DictField(required=False, help_text="source: `id` and `name`.")
    stream = serializers.CharField(required=False, help_text="source: the stream.")
    column = serializers.CharField(required=False, help_text="source and column: the column's name.")
    type = serializers.CharField(required=False, help_text="source and column: the column's type.")
    pipeline = serializers.DictField(required=False, help_text="step: `id` and `name` of its pipeline.")
    node = serializers.CharField(required=False, help_text="step: the node id in its pipeline.")
    step = serializers.CharField(required=False, help_text="step: the step type (blank for a source node).")


class LineageEdgeSerializer(serializers.Serializer):
    id = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.source
    target = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())
    pipelines = serializers.ListField(child=serializers.IntegerField())


class TableLineageSerializer(serializers.Serializer):
    workspace = serializers.IntegerField()
    connector = LineageConnectorSerializer()
    table = serializers.CharField()
    pipelines = LineagePipelineSerializer(many=True)
    columns = LineageColumnSerializer(many=True)
    nodes = LineageNodeSerializer(many=True)
    edges = LineageEdgeSerializer(many=True)


class TableLineageQuerySerializer(serializers.Serializer):
    """The query of `lineage/table/`, as the schema documents it (the view reads it with `_int_param`)."""

    connector = serializers.IntegerField(help_text="The destination connector.")
    table = serializers.CharField()
    workspace = serializers.IntegerField(
        required=False, help_text="Must be the connector's workspace if given."
    )


def _int_param(request: Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        if required:
            raise exceptions.ValidationError({name: ["This parameter is required."]})
        return None
    try:
        return int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: ["Must be an id."]}) from None


@extend_schema(tags=["pipelines"])
class LineageViewSet(viewsets.GenericViewSet):
    """Column lineage of destination tables across the pipelines that write them. Readable by viewers.
    Not paginated: the list is derived from the saved pipeline documents (a few entries per pipeline)."""

    permission_classes = [IsAuthenticated]
    serializer_class = LineageTableSerializer
    filter_backends: list[Any] = []
    pagination_class = None
    list_is_object = True

    def get_queryset(self) -> list[Any]:  # type: ignore[override]
        # Tables are derived from pipeline documents, not rows of their own; only for schema generation.
        return []

    @extend_schema(
        parameters=[OpenApiParameter("workspace", int, description="Only this workspace's tables.")],
        responses={200: LineageTableListSerializer},
        operation_id="lineage_list",
    )
    def list(self, request: Request) -> Response:
        """The destination tables written by the caller's pipelines, with the pipelines writing each."""
        tables = lineage_tables_for_user(user=request.user, workspace_id=_int_param(request, "workspace"))
        return Response({"count": len(tables), "results": tables})

    @extend_schema(
        parameters=[TableLineageQuerySerializer],
        # The connector is looked up like any object: another workspace's is a 404.
        responses={200: TableLineageSerializer, 404: ERROR_RESPONSE},
    )
    @action(detail=False, methods=["get"])
    def table(self, request: Request) -> Response:
        """Where each column of a destination table comes from: source columns, the steps of every pipeline
        writing the table, the table's columns, and the edges between them (each node and edge lists the
        destination columns whose path it is on)."""
        connector_id = _int_param(request, "connector", required=True)
        table = request.query_params.get("table") or ""
        if not table:
            raise exceptions.ValidationError({"table": ["This parameter is required."]})
        assert connector_id is not None
        body = table_lineage_for_user(
            user=request.user,
            connector_id=connector_id,
            table=table,
            workspace_id=_int_param(request, "workspace"),
        )
        return Response(body)
