from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.users.selectors import workspace_ids_for_user

from .models import StreamSchemaVersion


def schema_versions_for_user(
    *, user: Any, connector_id: int, stream: str | None = None
) -> QuerySet[StreamSchemaVersion]:
    queryset = StreamSchemaVersion.objects.filter(
        connector_id=connector_id, workspace_id__in=workspace_ids_for_user(user=user)
    )
    if stream is not None:
        queryset = queryset.filter(stream=stream)
    return queryset.order_by("stream", "-version")


def latest_stream_schemas(*, connector_id: int) -> dict[str, dict[str, Any]]:
    """The latest known schema of each stream still present, for validation (internal: no user scoping)."""
    out: dict[str, dict[str, Any]] = {}
    for row in StreamSchemaVersion.objects.filter(connector_id=connector_id).order_by("stream", "-version"):
        if row.stream not in out:
            out[row.stream] = row.schema if not row.is_removed else {}
    return {name: schema for name, schema in out.items() if schema}
