"""Reads of pipelines and runs, limited to what the caller may see."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404

from apps.connectors.selectors import connector_get_by_ref
from apps.users.selectors import workspace_ids_for_user

from .models import (
    NodeProfile,
    Pipeline,
    PipelineVersion,
    QualityResult,
    RejectedRecord,
    Run,
    RunLog,
)


def pipeline_list_for_user(*, user: Any) -> QuerySet[Pipeline]:
    last_run = Run.objects.filter(pipeline=OuterRef("pk")).order_by("-id")
    return (
        Pipeline.objects.filter(workspace_id__in=workspace_ids_for_user(user=user))
        .annotate(
            last_run_id=Subquery(last_run.values("id")[:1]),
            last_run_status=Subquery(last_run.values("status")[:1]),
            last_run_at=Subquery(last_run.values("queued_at")[:1]),
        )
        .prefetch_related("depends_on")
        .order_by("name", "id")
    )


def pipeline_get_for_user(*, user: Any, pipeline_id: int | str) -> Pipeline:
    try:
        return pipeline_list_for_user(user=user).get(id=int(pipeline_id))
    except (Pipeline.DoesNotExist, ValueError, TypeError):
        raise Http404("No such pipeline.") from None


def pipeline_versions(*, pipeline: Pipeline) -> QuerySet[PipelineVersion]:
    return PipelineVersion.objects.filter(pipeline=pipeline).select_related("created_by").order_by("-version")


def run_list_for_user(*, user: Any) -> QuerySet[Run]:
    return (
        Run.objects.filter(workspace_id__in=workspace_ids_for_user(user=user))
        .select_related("pipeline", "pipeline_version")
        .order_by("-id")
    )


def run_get_for_user(*, user: Any, run_id: int | str) -> Run:
    try:
        return run_list_for_user(user=user).get(id=int(run_id))
    except (Run.DoesNotExist, ValueError, TypeError):
        raise Http404("No such run.") from None


def run_destinations(*, run: Run) -> list[dict[str, Any]]:
    """Where the run's version loads: each destination node's connector (if it still exists) and table, and
    for a destination that can be read back as a source (the Local warehouse) the stream that is the table,
    so the run page can show the loaded rows through the connector preview."""
    nodes = (run.pipeline_version.definition or {}).get("nodes", [])
    out = []
    for node in nodes:
        if not isinstance(node, dict) or node.get("kind") != "destination":
            continue
        try:
            connector = connector_get_by_ref(workspace_id=run.workspace_id, ref=node.get("connector", ""))
        except Http404:
            connector = None
        table = str(node.get("table") or "")
        readable = connector is not None and connector.connector_type == "local_warehouse" and bool(table)
        out.append(
            {
                "node_id": str(node.get("id", "")),
                "connector": connector.id if connector else None,
                "connector_name": connector.name if connector else str(node.get("connector", "")),
                "connector_type": connector.connector_type if connector else "",
                "table": table,
                "write_mode": str(node.get("write_mode") or "append"),
                "stream": f"{connector.config.get('schema', 'public')}.{table}"
                if readable and connector
                else None,
            }
        )
    return out


def run_logs(*, run: Run, after: int | None = None, level: str | None = None) -> QuerySet[RunLog]:
    queryset = RunLog.objects.filter(run=run).order_by("id")
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    if level:
        queryset = queryset.filter(level=level)
    return queryset


def run_rejected(
    *, run: Run, node_id: str | None = None, rule: str | None = None
) -> QuerySet[RejectedRecord]:
    queryset = RejectedRecord.objects.filter(run=run).order_by("id")
    if node_id:
        queryset = queryset.filter(node_id=node_id)
    if rule:
        queryset = queryset.filter(rule=rule)
    return queryset


def run_rejected_columns(*, run: Run, node_id: str | None = None, rule: str | None = None) -> list[str]:
    """The keys of the quarantined rows' raw values (the CSV's value columns), in the order they first
    appear. One query in PostgreSQL: the rows themselves are never loaded to find them."""
    from django.db import connection

    where = ["run_id = %s", "jsonb_typeof(raw) = 'object'"]
    params: list[Any] = [run.id]
    if node_id:
        where.append("node_id = %s")
        params.append(node_id)
    if rule:
        where.append("rule = %s")
        params.append(rule)
    table = RejectedRecord._meta.db_table
    sql = (
        f"SELECT key FROM (SELECT id, jsonb_object_keys(raw) AS key FROM {table} "  # noqa: S608 - names are ours
        f"WHERE {' AND '.join(where)}) AS keys GROUP BY key ORDER BY MIN(id), key"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [str(row[0]) for row in cursor.fetchall()]


def run_quality_results(*, run: Run, node_id: str | None = None) -> QuerySet[QualityResult]:
    queryset = QualityResult.objects.filter(run=run).order_by("id")
    if node_id:
        queryset = queryset.filter(node_id=node_id)
    return queryset


def run_profiles(*, run: Run, node_id: str | None = None) -> QuerySet[NodeProfile]:
    queryset = NodeProfile.objects.filter(run=run).order_by("id")
    if node_id:
        queryset = queryset.filter(node_id=node_id)
    return queryset


# Worst last: a node's (and the run's) status is the worst of its rules'.
_QUALITY_SEVERITY = ["passed", "warned", "rejected", "failed"]


def run_quality_report(*, run: Run, node_id: str | None = None) -> dict[str, Any]:
    """The run's quality report: each node's rules with their counts, grouped by node in run order."""
    nodes: dict[str, list[QualityResult]] = {}
    for result in run_quality_results(run=run, node_id=node_id):
        nodes.setdefault(result.node_id, []).append(result)

    def worst(statuses: list[str]) -> str:
        return max(statuses, key=_QUALITY_SEVERITY.index, default="passed")

    statuses = {node: worst([r.status for r in results]) for node, results in nodes.items()}
    body = [{"node": node, "status": statuses[node], "rules": results} for node, results in nodes.items()]
    return {"run": run.id, "status": worst(list(statuses.values())), "nodes": body}
