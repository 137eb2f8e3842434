"""Writes for pipelines and runs. Each top-level service is one transaction; Celery enqueues and events go
out after it commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import networkx as nx
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from aggregator.dataplane import StreamSchema
from aggregator.logging import get_logger
from apps.connectors.registry import UnknownConnectorType, get_connector_type
from apps.connectors.selectors import connector_get_by_ref
from apps.monitoring import events
from apps.schemas.selectors import latest_stream_schemas
from apps.schemas.services import schema_discover

from .definition import ConnectorRef, PipelineInvalid, Plan, problems_blocking, validate_definition
from .models import FINISHED_STATUSES, Pipeline, PipelineVersion, Run, RunStatus, RunTrigger

logger = get_logger(__name__)

RUN_OPTION_KEYS = {"full_refresh", "streams", "backfill"}


def _connector_lookup(workspace_id: int) -> Any:
    def lookup(ref: str | int) -> ConnectorRef:
        try:
            connector = connector_get_by_ref(workspace_id=workspace_id, ref=ref)
        except Http404 as exc:
            raise LookupError(str(exc)) from None
        try:
            connector_type = get_connector_type(connector.connector_type)
        except UnknownConnectorType:
            raise LookupError(f"Connector '{connector.name}' has an unknown type.") from None
        return ConnectorRef(connector=connector, connector_type=connector_type)

    return lookup


def _stream_lookup(ref: ConnectorRef, stream: str) -> StreamSchema | None:
    """The stream's latest recorded schema; discovered (and recorded) first when it is not known yet."""
    known = latest_stream_schemas(connector_id=ref.id)
    if stream not in known:
        try:
            schema_discover(connector=ref.connector)
        except ValidationError as exc:
            messages = "; ".join(exc.messages)
            raise LookupError(f"Discovering connector '{ref.name}' failed: {messages}") from None
        known = latest_stream_schemas(connector_id=ref.id)
    schema = known.get(stream)
    return StreamSchema.from_dict(schema) if schema else None


@dataclass(frozen=True)
class PipelineCheck:
    """A document's validation as editors see it: every error by path (`nodes.<id>.<field>`, `edges.<n>`,
    `definition`), and the fields at each node that could be planned, even when another node is broken."""

    errors: dict[str, list[str]]
    schemas: dict[str, StreamSchema]

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": self.errors,
            "schemas": {node_id: schema.to_dict()["fields"] for node_id, schema in self.schemas.items()},
        }


def pipeline_check(*, workspace_id: int, definition: Any) -> PipelineCheck:
    """Validate a document in a workspace without raising: its errors and the schemas known despite them."""
    try:
        plan = validate_definition(
            definition, connector_lookup=_connector_lookup(workspace_id), stream_lookup=_stream_lookup
        )
    except PipelineInvalid as exc:
        return PipelineCheck(errors=exc.as_fields(), schemas=exc.schemas)
    return PipelineCheck(errors={}, schemas=plan.schemas)


def pipeline_plan(*, workspace_id: int, definition: Any) -> Plan:
    """Validate a document in a workspace; raises ValidationError whose fields name nodes and edges."""
    try:
        return validate_definition(
            definition, connector_lookup=_connector_lookup(workspace_id), stream_lookup=_stream_lookup
        )
    except PipelineInvalid as exc:
        raise ValidationError({path: msgs for path, msgs in exc.as_fields().items()}) from None


def pipeline_plan_upstream(*, workspace_id: int, definition: Any, node_id: str) -> Plan:
    """The plan to preview `node_id`: the document need only be sound at that node and above it, so a
    node can be previewed while the rest of the pipeline is still being built (no destination yet, a
    step below it half-configured). Raises ValidationError naming what blocks it."""
    try:
        return validate_definition(
            definition, connector_lookup=_connector_lookup(workspace_id), stream_lookup=_stream_lookup
        )
    except PipelineInvalid as exc:
        plan = exc.plan
        if plan is None:
            raise ValidationError(exc.as_fields()) from None
        if node_id not in plan.nodes:
            raise ValidationError({"node": [f"No node {node_id!r} in this pipeline."]}) from None
        needed = nx.ancestors(plan.graph, node_id) | {node_id}
        blocking = problems_blocking(exc.problems, needed)
        if blocking:
            raise ValidationError(PipelineInvalid(blocking).as_fields()) from None
        return plan


def _check_name_free(*, workspace_id: int, name: str, exclude_id: int | None = None) -> None:
    queryset = Pipeline.objects.filter(workspace_id=workspace_id, name=name)
    if exclude_id is not None:
        queryset = queryset.exclude(id=exclude_id)
    if queryset.exists():
        raise ValidationError({"name": ["A pipeline with this name already exists in the workspace."]})


def _new_version(
    *, pipeline: Pipeline, definition: dict[str, Any], user: Any, message: str
) -> PipelineVersion:
    # Locks the pipeline row so two concurrent saves get consecutive version numbers.
    Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
    pipeline.version = (
        PipelineVersion.objects.filter(pipeline=pipeline)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
        or 0
    ) + 1
    pipeline.definition = definition
    pipeline.save(update_fields=["version", "definition", "updated_at"])
    return PipelineVersion.objects.create(
        pipeline=pipeline, version=pipeline.version, definition=definition, message=message, created_by=user
    )


SETTING_FIELDS = (
    "description",
    "max_attempts",
    "retry_backoff_s",
    "time_limit_s",
    "chunk_size",
    "schedule_cron",
    "schedule_timezone",
    "schedule_interval_s",
    "is_paused",
    "concurrency_policy",
)


@transaction.atomic
def pipeline_create(
    *, workspace: Any, name: str, definition: dict[str, Any], user: Any, message: str = "", **settings: Any
) -> Pipeline:
    name = name.strip()
    _check_name_free(workspace_id=workspace.id, name=name)
    pipeline_plan(workspace_id=workspace.id, definition=definition)
    unknown = set(settings) - set(SETTING_FIELDS)
    if unknown:
        raise ValidationError({k: ["Unknown setting."] for k in unknown})
    pipeline = Pipeline.objects.create(
        workspace=workspace, name=name, definition=definition, created_by=user, **settings
    )
    _new_version(pipeline=pipeline, definition=definition, user=user, message=message or "Created")
    _sync_schedule(pipeline)
    events.emit("pipeline.created", workspace, pipeline, {"name": pipeline.name, "version": pipeline.version})
    logger.info("pipeline_created", pipeline_id=pipeline.id, workspace_id=workspace.id)
    return pipeline


@transaction.atomic
def pipeline_update(
    *,
    pipeline: Pipeline,
    user: Any,
    name: str | None = None,
    definition: dict[str, Any] | None = None,
    message: str = "",
    depends_on: list[Pipeline] | None = None,
    **settings: Any,
) -> Pipeline:
    changed: list[str] = []
    if name is not None and name.strip() != pipeline.name:
        _check_name_free(workspace_id=pipeline.workspace_id, name=name.strip(), exclude_id=pipeline.id)
        pipeline.name = name.strip()
        changed.append("name")
    unknown = set(settings) - set(SETTING_FIELDS)
    if unknown:
        raise ValidationError({k: ["Unknown setting."] for k in unknown})
    for key, value in settings.items():
        if getattr(pipeline, key) != value:
            setattr(pipeline, key, value)
            changed.append(key)
    if changed:
        pipeline.save(update_fields=[*changed, "updated_at"])
    if depends_on is not None:
        pipeline_set_dependencies(pipeline=pipeline, upstream=depends_on)
        changed.append("depends_on")
    if definition is not None and definition != pipeline.definition:
        pipeline_plan(workspace_id=pipeline.workspace_id, definition=definition)
        _new_version(pipeline=pipeline, definition=definition, user=user, message=message)
        changed.append("definition")
    _sync_schedule(pipeline)
    if changed:
        events.emit(
            "pipeline.updated",
            pipeline.workspace_id,
            pipeline,
            {"changed": changed, "version": pipeline.version},
        )
    return pipeline


def pipeline_set_dependencies(*, pipeline: Pipeline, upstream: list[Pipeline]) -> None:
    import networkx as nx

    for other in upstream:
        if other.workspace_id != pipeline.workspace_id:
            raise ValidationError(
                {"depends_on": ["Pipelines can depend only on pipelines of their workspace."]}
            )
    graph = nx.DiGraph()
    for src, dst in (
        Pipeline.depends_on.through.objects.filter(from_pipeline__workspace_id=pipeline.workspace_id)
        .exclude(from_pipeline=pipeline)
        .values_list("to_pipeline_id", "from_pipeline_id")
    ):
        graph.add_edge(src, dst)
    for other in upstream:
        graph.add_edge(other.id, pipeline.id)
    if not nx.is_directed_acyclic_graph(graph):
        raise ValidationError({"depends_on": ["These dependencies would make a cycle between pipelines."]})
    pipeline.depends_on.set(upstream)


@transaction.atomic
def pipeline_delete(*, pipeline: Pipeline) -> None:
    """Delete the pipeline with its versions and its run history. Refused while a run is queued or running:
    its worker would lose the rows it writes its progress to."""
    from .schedules import schedule_remove

    Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()
    active = (
        Run.objects.filter(pipeline=pipeline, status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )
    if active is not None:
        raise ValidationError(
            {
                "non_field_errors": [
                    f"Run #{active} of this pipeline is queued or running: cancel it or let it finish, then "
                    "delete the pipeline."
                ]
            }
        )
    schedule_remove(pipeline)
    events.emit("pipeline.deleted", pipeline.workspace_id, pipeline, {"name": pipeline.name})
    pipeline.delete()


def _sync_schedule(pipeline: Pipeline) -> None:
    from .schedules import schedule_sync

    schedule_sync(pipeline)


def _clean_options(options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = set(options) - RUN_OPTION_KEYS
    if unknown:
        raise ValidationError({f"options.{k}": ["Unknown run option."] for k in sorted(unknown)})
    out: dict[str, Any] = {}
    if options.get("full_refresh"):
        out["full_refresh"] = True
    streams = options.get("streams")
    if streams:
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            raise ValidationError({"options.streams": ["A list of source node ids."]})
        out["streams"] = streams
    backfill = options.get("backfill")
    if backfill is not None:
        if (
            not isinstance(backfill, dict)
            or not set(backfill) <= {"from", "to", "node"}
            or "from" not in backfill
        ):
            raise ValidationError(
                {"options.backfill": ['An object {"from": …, "to": …, "node": <source id>}.']}
            )
        out["backfill"] = backfill
    return out


@transaction.atomic
def run_start(
    *,
    pipeline: Pipeline,
    user: Any = None,
    trigger: str = RunTrigger.MANUAL,
    options: dict[str, Any] | None = None,
    scheduled_for: dt.datetime | None = None,
) -> Run:
    """A queued run of the pipeline's latest version; the worker gets it after commit."""
    options = _clean_options(options)
    plan_nodes = {n["id"]: n for n in pipeline.definition.get("nodes", [])}
    for node_id in options.get("streams", []):
        if plan_nodes.get(node_id, {}).get("kind") != "source":
            raise ValidationError(
                {"options.streams": [f"'{node_id}' is not a source node of this pipeline."]}
            )
    backfill = options.get("backfill")
    if backfill:
        sources = [
            n for n in plan_nodes.values() if n["kind"] == "source" and n.get("sync_mode") == "incremental"
        ]
        node_id = backfill.get("node") or (sources[0]["id"] if len(sources) == 1 else None)
        if node_id is None or node_id not in {n["id"] for n in sources}:
            raise ValidationError(
                {"options.backfill.node": ["Name the incremental source node to backfill."]}
            )
        backfill["node"] = node_id
    version = PipelineVersion.objects.get(pipeline=pipeline, version=pipeline.version)
    try:
        with transaction.atomic():
            run = Run.objects.create(
                workspace_id=pipeline.workspace_id,
                pipeline=pipeline,
                pipeline_version=version,
                trigger=trigger,
                options=options,
                scheduled_for=scheduled_for,
                max_attempts=pipeline.max_attempts,
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:
        raise ValidationError({"scheduled_for": ["A run for this schedule tick exists already."]}) from None
    events.emit("run.queued", pipeline.workspace_id, run, {"pipeline": pipeline.id, "trigger": trigger})
    transaction.on_commit(lambda: enqueue_run(run))
    logger.info("pipeline_run_queued", run_id=run.id, pipeline_id=pipeline.id, trigger=trigger)
    return run


def enqueue_run(run: Run, countdown: float = 0) -> None:
    from .tasks import run_execute_task

    run_execute_task.apply_async(
        args=[run.id, run.attempt],
        countdown=countdown,
        soft_time_limit=run.pipeline.time_limit_s,
        time_limit=run.pipeline.time_limit_s + 60,
    )


@transaction.atomic
def run_cancel(*, run: Run) -> Run:
    """Queued runs are cancelled at once; running ones stop at their next batch (the worker cleans up)."""
    now = timezone.now()
    if Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, finished_at=now, cancel_requested=True
    ):
        events.emit("run.cancelled", run.workspace_id, run, {"pipeline": run.pipeline_id})
    elif run.status not in FINISHED_STATUSES:
        Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def trigger_dependents(*, pipeline: Pipeline) -> list[Run]:
    """Start each pipeline that depends on this one once all its upstreams have succeeded since its own
    last run."""
    started = []
    for dependent in pipeline.dependents.filter(is_paused=False).prefetch_related("depends_on"):
        last = (
            Run.objects.filter(pipeline=dependent).order_by("-id").values_list("queued_at", flat=True).first()
        )
        ready = all(
            Run.objects.filter(
                pipeline=upstream, status=RunStatus.SUCCEEDED, **({"finished_at__gt": last} if last else {})
            ).exists()
            for upstream in dependent.depends_on.all()
        )
        active = Run.objects.filter(
            pipeline=dependent, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
        ).exists()
        if ready and not active:
            started.append(run_start(pipeline=dependent, trigger=RunTrigger.DEPENDENCY, options={}))
    return started


def runs_recover_stale(*, now: dt.datetime | None = None) -> int:
    """The watchdog: a running run whose worker stopped beating is retried (or failed once its attempts are
    spent); a queued run whose message was lost is enqueued again. Returns how many runs it touched."""
    from django.conf import settings

    from .executor import _finish, _requeue

    now = now or timezone.now()
    stale_after = dt.timedelta(seconds=settings.AGGREGATOR_RUN_HEARTBEAT_TIMEOUT_S)
    touched = 0
    for run in Run.objects.select_related("pipeline").filter(
        status=RunStatus.RUNNING, heartbeat_at__lt=now - stale_after
    ):
        with transaction.atomic():
            message = "The worker running this attempt stopped answering."
            if run.attempt < run.max_attempts:
                touched += _requeue(run, message)
            else:
                touched += _finish(run, RunStatus.FAILED, error=message, error_kind="worker_lost")
    lost_after = dt.timedelta(seconds=settings.AGGREGATOR_RUN_QUEUED_RESEND_S)
    for run in Run.objects.select_related("pipeline").filter(
        status=RunStatus.QUEUED, started_at__isnull=True, queued_at__lt=now - lost_after
    ):
        enqueue_run(run)
        touched += 1
    if touched:
        logger.info("pipeline_watchdog_recovered", runs=touched)
    return touched


def definition_diff(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Nodes added, removed and changed (with the keys that changed), and edges added and removed."""
    base_nodes = {n.get("id"): n for n in base.get("nodes", [])}
    other_nodes = {n.get("id"): n for n in other.get("nodes", [])}
    changed: dict[str, Any] = {}
    for node_id in base_nodes.keys() & other_nodes.keys():
        before, after = base_nodes[node_id], other_nodes[node_id]
        keys = sorted(
            k for k in before.keys() | after.keys() if k != "position" and before.get(k) != after.get(k)
        )
        if keys:
            changed[node_id] = {k: {"from": before.get(k), "to": after.get(k)} for k in keys}
    base_edges = {(e.get("from"), e.get("to")) for e in base.get("edges", [])}
    other_edges = {(e.get("from"), e.get("to")) for e in other.get("edges", [])}
    return {
        "added_nodes": sorted(other_nodes.keys() - base_nodes.keys()),
        "removed_nodes": sorted(base_nodes.keys() - other_nodes.keys()),
        "changed_nodes": changed,
        "added_edges": sorted([list(e) for e in other_edges - base_edges]),
        "removed_edges": sorted([list(e) for e in base_edges - other_edges]),
    }
