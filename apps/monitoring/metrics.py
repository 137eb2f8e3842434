"""Run and system metrics: recording points into the partitioned tables, and the dashboard's queries.

Recording is an event handler (settings.AGGREGATOR_EVENT_HANDLERS): when a run finishes, it reads the Run
and its NodeRuns through the app registry (monitoring never imports the pipelines app) and writes one point
for the run and one per node, then bumps the Prometheus run counters in Redis.

Every query bounds `ts` by literal values in its WHERE clause (Django's psycopg backend binds parameters on
the client), so the planner prunes the partitions outside [since, until) at plan time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from aggregator.logging import get_logger

from . import partitions, prometheus
from .models import Event

logger = get_logger(__name__)

FINISHED_RUN_EVENTS = {"run.succeeded", "run.failed", "run.cancelled"}
RUN_COLUMNS = [
    "ts",
    "workspace_id",
    "pipeline_id",
    "run_id",
    "node_id",
    "kind",
    "status",
    "rows_in",
    "rows_out",
    "rows_rejected",
    "bytes",
    "duration_s",
]
BUCKETS = ("minute", "hour", "day")
# A series longer than this is refused rather than computed and shipped: ask for a coarser bucket.
MAX_BUCKETS = 5_000
DEFAULT_RANGE = timedelta(hours=24)
# percentile_cont sorts its input: a month of one workspace's runs (~75,000 rows at 50,000 runs a day over
# 20 workspaces) spills to disk with PostgreSQL's default 4 MB, and sorts in memory with this. It is a
# per-sort allowance of these few dashboard queries only, set for their own transaction.
QUERY_WORK_MEM = "64MB"


# --- Recording --------------------------------------------------------------------------------------------


def handle_event(event: Event) -> None:
    """Event handler: a finished run becomes metric points."""
    if event.type not in FINISHED_RUN_EVENTS or event.subject_type != "run" or not event.subject_id.isdigit():
        return
    run_metrics_record(run_id=int(event.subject_id))


def run_metrics_record(*, run_id: int) -> int:
    """Write the points of a finished run (once: a second call for the same run writes nothing)."""
    Run = apps.get_model("pipelines", "Run")
    NodeRun = apps.get_model("pipelines", "NodeRun")
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status not in ("succeeded", "failed", "cancelled"):
        return 0
    ts = run.finished_at or timezone.now()
    with connection.cursor() as cursor:
        # `ts =` keeps this to one partition; the run_id index finds the row within it.
        cursor.execute(
            f"SELECT 1 FROM {partitions.RUN_METRIC_TABLE} WHERE ts = %s AND run_id = %s LIMIT 1",  # noqa: S608
            [ts, run.pk],
        )
        if cursor.fetchone():
            return 0
    nodes = list(NodeRun.objects.filter(run_id=run.pk).order_by("id"))
    common = (ts, run.workspace_id, run.pipeline_id, run.pk)
    rows = [
        (
            *common,
            "",
            "run",
            run.status,
            run.rows_read,
            run.rows_written,
            run.rows_rejected,
            sum(n.bytes for n in nodes),
            run.duration_s,
        )
    ]
    rows += [
        (
            *common,
            n.node_id,
            n.kind,
            n.status,
            n.rows_in,
            n.rows_out,
            n.rows_rejected,
            n.bytes,
            n.duration_s,
        )
        for n in nodes
    ]
    written = partitions.insert_points(table=partitions.RUN_METRIC_TABLE, columns=RUN_COLUMNS, rows=rows)
    prometheus.count_run(status=run.status, duration_s=run.duration_s)
    logger.info("run_metrics_recorded", run_id=run.pk, points=written)
    return written


def system_metrics_record(
    *, samples: list[tuple[str, float, dict[str, Any]]], ts: datetime | None = None
) -> int:
    import json

    ts = ts or timezone.now()
    rows = [(ts, name, float(value), json.dumps(labels)) for name, value, labels in samples]
    return partitions.insert_points(
        table=partitions.SYSTEM_METRIC_TABLE, columns=["ts", "name", "value", "labels"], rows=rows
    )


# --- Querying ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime


def window_from(*, since: datetime | None, until: datetime | None, bucket: str | None = None) -> Window:
    """[since, until), defaulting to the last 24 hours; refused if reversed or too many buckets."""
    until = until or timezone.now()
    since = since or until - DEFAULT_RANGE
    if since >= until:
        raise ValidationError({"since": ["`since` must be before `until`."]})
    if bucket is not None:
        if bucket not in BUCKETS:
            raise ValidationError({"bucket": [f"One of: {', '.join(BUCKETS)}."]})
        seconds = {"minute": 60, "hour": 3600, "day": 86400}[bucket]
        if (until - since).total_seconds() / seconds > MAX_BUCKETS:
            raise ValidationError({"bucket": [f"More than {MAX_BUCKETS} buckets: choose a coarser bucket."]})
    return Window(since, until)


def _run_filter(
    *, workspace_ids: list[int], pipeline_id: int | None, window: Window
) -> tuple[str, list[Any]]:
    where = "kind = 'run' AND ts >= %s AND ts < %s AND workspace_id = ANY(%s)"
    params: list[Any] = [window.since, window.until, workspace_ids]
    if pipeline_id is not None:
        where += " AND pipeline_id = %s"
        params.append(pipeline_id)
    return where, params


_AGGREGATES = """
    count(*) AS runs,
    count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    coalesce(sum(rows_out), 0) AS rows,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95
"""


def run_series_sql(
    *, workspace_ids: list[int], pipeline_id: int | None, window: Window, bucket: str
) -> tuple[str, list[Any]]:
    where, params = _run_filter(workspace_ids=workspace_ids, pipeline_id=pipeline_id, window=window)
    # `bucket` is one of BUCKETS (checked by window_from), so it is safe to put in the SQL text.
    sql = (
        f"SELECT date_trunc('{bucket}', ts) AS bucket, {_AGGREGATES} "  # noqa: S608
        f"FROM {partitions.RUN_METRIC_TABLE} WHERE {where} GROUP BY 1 ORDER BY 1"
    )
    return sql, params


def run_summary_sql(
    *, workspace_ids: list[int], pipeline_id: int | None, window: Window, group_by: str
) -> tuple[str, list[Any]]:
    where, params = _run_filter(workspace_ids=workspace_ids, pipeline_id=pipeline_id, window=window)
    key = {"pipeline": "workspace_id, pipeline_id", "workspace": "workspace_id, NULL::bigint"}[group_by]
    sql = (
        f"SELECT {key}, {_AGGREGATES} FROM {partitions.RUN_METRIC_TABLE} "  # noqa: S608
        f"WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return sql, params


def _counts(row: tuple[Any, ...]) -> dict[str, Any]:
    runs, succeeded, failed, cancelled, rows, p50, p95 = row
    finished = succeeded + failed
    return {
        "runs": runs,
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": cancelled,
        # Cancelled runs say nothing about health: the rate is over runs that succeeded or failed.
        "success_rate": round(succeeded / finished, 4) if finished else None,
        "rows": int(rows),
        "duration_p50_s": None if p50 is None else round(p50, 3),
        "duration_p95_s": None if p95 is None else round(p95, 3),
    }


def fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run a dashboard query with its own settings: enough work_mem to sort in memory, and no JIT — these
    queries take milliseconds to tens of milliseconds, and compiling them (which the planner's cost
    estimate for a month of points triggers) costs about 100 ms more than it saves."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{QUERY_WORK_MEM}'")
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return cursor.fetchall()


def run_series(
    *, workspace_ids: list[int], pipeline_id: int | None = None, window: Window, bucket: str = "hour"
) -> list[dict[str, Any]]:
    if not workspace_ids:
        return []
    sql, params = run_series_sql(
        workspace_ids=workspace_ids, pipeline_id=pipeline_id, window=window, bucket=bucket
    )
    return [{"bucket": row[0], **_counts(row[1:])} for row in fetch(sql, params)]


def run_summary(
    *, workspace_ids: list[int], pipeline_id: int | None = None, window: Window, group_by: str = "pipeline"
) -> list[dict[str, Any]]:
    if not workspace_ids:
        return []
    sql, params = run_summary_sql(
        workspace_ids=workspace_ids, pipeline_id=pipeline_id, window=window, group_by=group_by
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [{"workspace": row[0], "pipeline": row[1], **_counts(row[2:])} for row in cursor.fetchall()]


def system_series(*, name: str, window: Window, bucket: str = "minute") -> list[dict[str, Any]]:
    """avg/max of a system metric per bucket, per label set (e.g. queue depth per queue)."""
    sql = (
        f"SELECT date_trunc('{bucket}', ts) AS bucket, labels, avg(value), max(value) "  # noqa: S608
        f"FROM {partitions.SYSTEM_METRIC_TABLE} WHERE name = %s AND ts >= %s AND ts < %s "
        "GROUP BY 1, 2 ORDER BY 1, 2::text"
    )
    rows = fetch(sql, [name, window.since, window.until])
    import json

    return [
        {
            "bucket": bucket_at,
            "labels": labels if isinstance(labels, dict) else json.loads(labels),
            "avg": round(avg, 4),
            "max": peak,
        }
        for bucket_at, labels, avg, peak in rows
    ]


def explain(sql: str, params: list[Any]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())
