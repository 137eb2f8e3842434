"""`GET /api/v1/connectors/{id}/profile/?stream=…`: the profile of a source stream's first rows.

It is served here rather than by the connectors app's viewset: profiling is this app's, and the connector
is read only through the connectors app's selectors and its preview service (which reads at most
PREVIEW_MAX_ROWS rows, then closes the source). The route sits under `connectors/` so clients find it
beside `preview`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from aggregator.api.viewsets import WorkspaceScopedViewSet
from aggregator.dataplane import StreamSchema
from apps.connectors import selectors as connector_selectors
from apps.connectors import services as connector_services
from apps.connectors.models import Connector
from apps.transformations.profiling import StreamProfiler
from apps.users.models import Role


class StreamProfileSerializer(serializers.Serializer):
    connector = serializers.IntegerField()
    stream = serializers.CharField()
    rows = serializers.IntegerField(help_text="Rows profiled (the first rows of the stream).")
    limit = serializers.IntegerField()
    rejected = serializers.IntegerField(help_text="Rows the source could not read among those.")
    columns = serializers.JSONField(help_text="Per column: null share, distinct, min/max/mean/stddev, …")


@extend_schema(tags=["connectors"])
class ConnectorProfileViewSet(WorkspaceScopedViewSet):
    queryset = Connector.objects.none()
    action_roles = {"profile": Role.VIEWER}
    serializer_class = StreamProfileSerializer

    def scoped_queryset(self) -> QuerySet[Connector]:
        return connector_selectors.connector_list_for_user(user=self.request.user)

    @extend_schema(
        parameters=[
            OpenApiParameter("stream", str, required=True),
            OpenApiParameter(
                "limit",
                int,
                description=f"Rows to profile (default and maximum {connector_services.PREVIEW_MAX_ROWS}).",
            ),
        ],
        responses={200: StreamProfileSerializer},
    )
    @action(detail=True, methods=["get"])
    def profile(self, request: Request, pk: str | None = None) -> Response:
        """The profile of a stream's first rows: per column null share, distinct count, min/max/mean/stddev,
        top values and a histogram of numbers."""
        connector = self.get_object()
        stream = request.query_params.get("stream")
        if not stream:
            raise exceptions.ValidationError({"stream": ["Name the stream to profile."]})
        try:
            limit = int(request.query_params.get("limit") or connector_services.PREVIEW_MAX_ROWS)
        except ValueError:
            raise exceptions.ValidationError({"limit": ["Must be a number of rows."]}) from None
        preview: dict[str, Any] = connector_services.connector_preview(
            connector=connector, stream=stream, limit=limit
        )
        schema = StreamSchema.from_dict(preview["stream"])
        # Nullable throughout: a preview row may hold a null where discovery saw none.
        arrow_schema = pa.schema([f.with_nullable(True) for f in schema.arrow_schema()])
        table = pa.Table.from_pylist(preview["rows"], schema=arrow_schema)
        profiler = StreamProfiler(schema)
        profiler.add(table)
        profile = profiler.to_dict()
        return Response(
            {
                "connector": connector.id,
                "stream": stream,
                "rows": profile["rows"],
                "limit": preview["limit"],
                "rejected": len(preview["rejected"]),
                "columns": profile["columns"],
            }
        )
