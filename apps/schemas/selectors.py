from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from apps.users.selectors import workspace_ids_for_user

from .models import DEFAULT_CONTRACT, SchemaChange, StreamContract, StreamSchemaVersion


def schema_versions_for_user(
    *, user: Any, connector_id: int, stream: str | None = None
) -> QuerySet[StreamSchemaVersion]:
    queryset = StreamSchemaVersion.objects.filter(
        connector_id=connector_id, workspace_id__in=workspace_ids_for_user(user=user)
    )
    if stream is not None:
        queryset = queryset.filter(stream=stream)
    return queryset.order_by("stream", "-version")


def schema_version_get_for_user(
    *, user: Any, connector_id: int, stream: str, version: int
) -> StreamSchemaVersion:
    try:
        return schema_versions_for_user(user=user, connector_id=connector_id, stream=stream).get(
            version=version
        )
    except StreamSchemaVersion.DoesNotExist:
        raise Http404(f"No version {version} of stream {stream!r}.") from None


def latest_stream_schemas(*, connector_id: int) -> dict[str, dict[str, Any]]:
    """The schema each stream is planned with (internal: no user scoping): its latest accepted version, or,
    for a stream no version of which was ever accepted (a new stream held by its contract), the latest one,
    so the pipeline validates and the run's contract check explains what stops it."""
    out: dict[str, StreamSchemaVersion] = {}
    fallback: dict[str, StreamSchemaVersion] = {}
    for row in StreamSchemaVersion.objects.filter(connector_id=connector_id).order_by("stream", "-version"):
        fallback.setdefault(row.stream, row)
        if row.is_accepted:
            out.setdefault(row.stream, row)
    chosen = {name: out.get(name, row) for name, row in fallback.items()}
    return {name: row.schema for name, row in chosen.items() if not row.is_removed and row.schema}


def stream_contract_effective(*, connector_id: int, stream: str) -> dict[str, str]:
    """The settings that hold for a stream: its own contract, else the connector's default (stream ""),
    else the platform's (DEFAULT_CONTRACT: evolve new columns and streams, discard_row on type changes)."""
    rows = {
        c.stream: c for c in StreamContract.objects.filter(connector_id=connector_id, stream__in=[stream, ""])
    }
    contract = rows.get(stream) or rows.get("")
    if contract is None:
        return dict(DEFAULT_CONTRACT)
    return {
        "new_columns": contract.new_columns,
        "type_changes": contract.type_changes,
        "new_tables": contract.new_tables,
    }


def stream_contract_list_for_user(*, user: Any) -> QuerySet[StreamContract]:
    return (
        StreamContract.objects.filter(workspace_id__in=workspace_ids_for_user(user=user))
        .select_related("connector", "updated_by")
        .order_by("connector_id", "stream", "id")
    )


def schema_change_list_for_user(*, user: Any) -> QuerySet[SchemaChange]:
    return (
        SchemaChange.objects.filter(workspace_id__in=workspace_ids_for_user(user=user))
        .select_related("connector", "decided_by")
        .order_by("-created_at", "-id")
    )


_SETTINGS = ("new_columns", "type_changes", "new_tables")


def _settings(contract: StreamContract | None) -> dict[str, str]:
    return {key: getattr(contract, key) if contract else DEFAULT_CONTRACT[key] for key in _SETTINGS}


def stream_summaries(*, connector_id: int) -> dict[str, Any]:
    """Each stream of a connector with its versions, newest first, and the contract in force with where it
    comes from (`stream`: its own; `connector`: the connector's default; `platform`: DEFAULT_CONTRACT);
    plus the connector's default (the caller has authorised the connector). Two queries whatever the
    number of streams and versions."""
    versions = list(
        StreamSchemaVersion.objects.filter(connector_id=connector_id).order_by("stream", "-version")
    )
    contracts = {c.stream: c for c in StreamContract.objects.filter(connector_id=connector_id)}
    default = contracts.get("")
    streams: dict[str, list[StreamSchemaVersion]] = {}
    for row in versions:
        streams.setdefault(row.stream, []).append(row)
    out = []
    for name, rows in streams.items():
        accepted = next((r for r in rows if r.is_accepted), None)
        own = contracts.get(name)
        out.append(
            {
                "stream": name,
                "latest_version": rows[0].version,
                "accepted_version": accepted.version if accepted else None,
                "is_removed": rows[0].is_removed,
                "contract": _settings(own or default),
                "contract_source": "stream" if own else "connector" if default else "platform",
                "contract_id": own.id if own else None,
                "versions": rows,
            }
        )
    return {
        "streams": out,
        "default_contract": _settings(default),
        "default_contract_id": default.id if default else None,
    }
