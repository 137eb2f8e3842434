"""Runs one attempt of a pipeline run, in a Celery worker: the wiring of the engine and the recorder.

Flow: claim the run (queued → running for this attempt, a conditional UPDATE, so two workers can never
execute it at once), re-validate the version's document into a plan, then run the plan's graph through the
engine (`engine.py`: the sources' batches through the steps into the destinations' writes, each committing
once at the end) with a `RunRecorder` (`recorder.py`: node runs, logs, quarantine, states, quality results)
that keeps what the run did. Only when every destination has committed are the sources' incremental states
committed. A crash at any point therefore leaves either the old state (and, at most, rows of this run that
its retry removes first) or the new one — never skipped or doubled rows.

Here: the heartbeat (a thread proving the worker alive, saving the counters and noticing a cancel), what a
source reads (its saved state, a backfill's bounds, its stream's contract), a retry's clean-up of the rows
an earlier attempt wrote, and what the run's outcome is: succeeded, failed (config, quality, internal,
time limit), cancelled, or requeued after a transient failure (`apps.connectors.services.is_transient`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from django.core.exceptions import ValidationError

from aggregator.dataplane import Batch, RejectedRows, SyncMode, WriteMode
from aggregator.logging import get_logger
from apps.connectors.base import ConnectorError
from apps.connectors.selectors import connector_runtime
from apps.connectors.services import is_transient
from apps.monitoring import events
from apps.schemas.services import schema_contract_check, schema_refresh
from apps.transformations.quality import RuleFailed
from apps.transformations.steps import StepError

from .definition import Plan
from .engine import (
    ConfigurationError,
    DestinationSink,
    Engine,
    NodeStats,
    RunCancelled,
    SourceRead,
    below,
    run_quality,
)
from .models import LogLevel, Run, RunStatus
from .recorder import RunRecorder, claim_run, finish_run, requeue_run, run_for_attempt

logger = get_logger(__name__)

HEARTBEAT_EVERY_S = 1.0
CANCEL_POLL_S = 0.5

CONFIG_ERRORS = (ValidationError, ConnectorError, StepError, ConfigurationError, RuleFailed)

# The run's status changes, under the names the services use.
claim = claim_run
_finish = finish_run
_requeue = requeue_run


class RunExecutor:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.pipeline = run.pipeline
        self.options = run.options or {}
        self.recorder = RunRecorder(run)
        self.engine: Engine | None = None
        self.cancelled = threading.Event()
        self._stop_heartbeat = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-{run.id}", daemon=True)
        self._cancel_checked_at = time.monotonic()
        # Set once refresh_schemas has discovered the sources for this attempt: the reads skip discovery.
        self.schemas_refreshed = False

    def log(self, message: str, *, level: str = LogLevel.INFO, node: str = "", **context: Any) -> None:
        self.recorder.log(message, level=level, node=node, **context)

    # --- heartbeat and cancellation ----------------------------------------------------------------------

    def _stats(self) -> dict[str, NodeStats]:
        return self.engine.snapshot() if self.engine is not None else {}

    def _beat(self) -> None:
        """Every second: prove the worker is alive, save the counters, publish progress, notice a cancel."""
        try:
            while not self._stop_heartbeat.wait(HEARTBEAT_EVERY_S):
                self.recorder.heartbeat()
                stats = self._stats()
                self.recorder.save_progress(stats)
                if self.recorder.cancel_requested():
                    self.cancelled.set()
                self.recorder.publish_progress(stats)
        finally:
            self.recorder.close_connection()

    def check_cancel(self) -> None:
        # The heartbeat thread notices a cancel every second; the run's own thread also looks, at most twice a
        # second, so a stalled heartbeat cannot make a run uncancellable.
        now = time.monotonic()
        if not self.cancelled.is_set() and now - self._cancel_checked_at > CANCEL_POLL_S:
            self._cancel_checked_at = now
            if self.recorder.cancel_requested():
                self.cancelled.set()
        if self.cancelled.is_set():
            raise RunCancelled()

    # --- the run -----------------------------------------------------------------------------------------

    def execute(self, plan: Plan) -> None:
        """Run every selected source through the graph; commit the destinations, then the states."""
        import networkx as nx

        selected = [
            s for s in plan.order if s in plan.sources and s in (self.options.get("streams") or plan.sources)
        ]
        active = set(selected)
        for source_id in selected:
            active |= nx.descendants(plan.graph, source_id)
        self.recorder.start_nodes(plan, active)
        rules, profilers = run_quality(plan, active)
        engine = self.engine = Engine(
            plan,
            active=active,
            open_source=lambda source_id: self._open_source(plan, source_id),
            open_sink=lambda node_id, stats: self._open_sink(plan, node_id, stats),
            recorder=self.recorder,
            rules=rules,
            profilers=profilers,
            check_cancel=self.check_cancel,
        )
        self._heartbeat.start()
        try:
            if self.run.attempt > 1:
                self._remove_partial_rows(plan)
                self.recorder.clear_rejected()
            outcome = engine.run()
            self.recorder.commit(plan, outcome, engine.stats)
        finally:
            self._stop_heartbeat.set()
            self._heartbeat.join()
            self.recorder.save_progress(engine.snapshot())
            self.recorder.store_quality(rules, profilers)

    def _open_sink(self, plan: Plan, node_id: str, stats: NodeStats) -> DestinationSink:
        return DestinationSink(
            connector=connector_runtime(plan.destinations[node_id].connector),
            node=plan.nodes[node_id],
            schema=plan.schemas[node_id],
            run_id=str(self.run.id),
            stats=stats,
            name=node_id,
        )

    def _open_source(self, plan: Plan, source_id: str) -> SourceRead | None:
        """Open one source for the engine: its chunk size, its saved state or a backfill's start, its
        stream's contract (None: the contract skips the stream)."""
        source = plan.sources[source_id]
        node = plan.nodes[source_id]
        connector_type, config = connector_runtime(source.connector.connector)
        if "chunk_size" in type(config).model_fields:
            current = int(config.model_dump(include={"chunk_size"})["chunk_size"])
            config = config.model_copy(update={"chunk_size": min(current, self.pipeline.chunk_size)})
        stream = source.stream
        incremental = node.get("sync_mode") == SyncMode.INCREMENTAL
        if incremental and node.get("cursor_field"):
            stream = dataclasses.replace(stream, cursor_field=node["cursor_field"])
        saved = self.recorder.saved_state(source_id)
        backfill_option = self.options.get("backfill") or {}
        backfill = backfill_option if backfill_option.get("node") == source_id else None
        if backfill:
            state: dict[str, Any] | None = {"cursor": backfill["from"]}
        elif incremental and not self.options.get("full_refresh") and saved is not None:
            state = saved
        else:
            state = None
        # The stream's contract: discovers it now (a schema version per run) and fails on a frozen change.
        contract = schema_contract_check(
            connector=source.connector.connector, stream=stream, discover=not self.schemas_refreshed
        )
        if contract.message:
            self.log(contract.message, level=LogLevel.WARNING, node=source_id)
        if contract.skip:
            return None
        stream = contract.read_schema
        self.log(f"Reading stream '{stream.name}'.", node=source_id, state=state or {})
        self.recorder.event("node.started", {"node": source_id})
        upper = backfill.get("to") if backfill else None
        cursor = stream.cursor_field

        def prepare(item: Batch) -> tuple[Batch, RejectedRows | None]:
            batch, refused = contract.conform(item)
            if upper is not None and cursor:
                batch = below(batch, cursor, upper)
            return batch, refused

        return SourceRead(
            stream=stream,
            items=connector_type.read(config, stream, state),
            prepare=prepare,
            keep_state=incremental and not backfill,
        )

    def _remove_partial_rows(self, plan: Plan) -> None:
        """A retry first removes what an earlier attempt of this run may have committed to append targets."""
        for node_id, ref in plan.destinations.items():
            node = plan.nodes[node_id]
            if node.get("write_mode", WriteMode.APPEND) != WriteMode.APPEND:
                continue  # overwrite rewrites everything and merge is idempotent
            connector_type, config = connector_runtime(ref.connector)
            remove = getattr(connector_type, "remove_run_rows", None)
            removed = remove(config, node["table"], str(self.run.id)) if remove is not None else None
            if removed is None:
                self.log(
                    "This destination cannot remove an earlier attempt's rows.",
                    level=LogLevel.WARNING,
                    node=node_id,
                )
                continue
            if removed:
                self.log(f"Removed {removed} rows written by an earlier attempt.", node=node_id, rows=removed)

    def refresh_schemas(self, plan: Plan) -> bool:
        """Discover each source connector of the plan once, before anything is read, so that a change the
        stream's contract accepts (a new column under `evolve`) is read by this run rather than the next.
        True when a stream this plan reads changed: the caller plans again with the accepted versions."""
        used: dict[int, tuple[Any, set[str]]] = {}
        for source in plan.sources.values():
            connector = source.connector.connector
            used.setdefault(connector.id, (connector, set()))[1].add(source.stream.name)
        changed = False
        for connector, streams in used.values():
            for change in schema_refresh(connector=connector):
                if change.stream in streams and change.kind != "unchanged":
                    changed = True
                    parts = [f"new column(s) {', '.join(change.added_fields)}"] if change.added_fields else []
                    if change.removed_fields:
                        parts.append(f"column(s) gone: {', '.join(change.removed_fields)}")
                    if change.type_changes:
                        parts.append(f"type changed: {', '.join(change.type_changes)}")
                    self.log(
                        f"Stream '{change.stream}' of connector '{connector.name}' changed since it was last "
                        f"read ({'; '.join(parts) or change.kind}), recorded as version {change.version}; "
                        "this run reads it with the schema its contract accepts.",
                        level=LogLevel.WARNING,
                    )
        self.schemas_refreshed = True
        return changed


def run_execute(*, run_id: int, attempt: int) -> str:
    """Execute one attempt of a run. Returns the resulting status (or "skipped" if it was not ours)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from .services import pipeline_plan, trigger_dependents

    if not claim(run_id=run_id, attempt=attempt):
        logger.info("pipeline_run_not_claimed", run_id=run_id, attempt=attempt)
        return "skipped"
    run = run_for_attempt(run_id)
    events.emit("run.started", run.workspace_id, run, {"pipeline": run.pipeline_id, "attempt": attempt})
    logger.info("pipeline_run_started", run_id=run.id, pipeline_id=run.pipeline_id, attempt=attempt)
    executor = RunExecutor(run)
    try:

        def plan_run() -> Plan:
            try:
                return pipeline_plan(
                    workspace_id=run.workspace_id, definition=run.pipeline_version.definition
                )
            except ValidationError as exc:
                raise ConfigurationError(
                    "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())
                ) from None

        plan = plan_run()
        if executor.refresh_schemas(plan):
            plan = plan_run()
        executor.log(f"Run started (attempt {attempt} of {run.max_attempts}).")
        executor.execute(plan)
    except RunCancelled:
        executor.log("Run cancelled; nothing was committed by the unfinished writes.", level=LogLevel.WARNING)
        _finish(run, RunStatus.CANCELLED)
        return RunStatus.CANCELLED
    except SoftTimeLimitExceeded:
        message = f"The run exceeded its time limit of {run.pipeline.time_limit_s} s."
        executor.log(message, level=LogLevel.ERROR)
        _finish(run, RunStatus.FAILED, error=message, error_kind="time_limit")
        return RunStatus.FAILED
    except CONFIG_ERRORS as exc:
        if not is_transient(exc):
            message = _message(exc)
            executor.log(message, level=LogLevel.ERROR)
            # A failed fail-action rule is not retried either: the same data fails the same way.
            kind = "quality" if isinstance(exc, RuleFailed) else "config"
            _finish(run, RunStatus.FAILED, error=message, error_kind=kind)
            return RunStatus.FAILED
        return _transient_failure(run, executor, exc)
    except Exception as exc:
        if is_transient(exc):
            return _transient_failure(run, executor, exc)
        logger.exception("pipeline_run_crashed", run_id=run.id)
        executor.log(f"Internal error: {type(exc).__name__}.", level=LogLevel.ERROR)
        _finish(run, RunStatus.FAILED, error=f"Internal error ({type(exc).__name__}).", error_kind="internal")
        return RunStatus.FAILED
    executor.log(f"Run succeeded: {run.rows_written} rows written.")
    if _finish(run, RunStatus.SUCCEEDED):
        trigger_dependents(pipeline=run.pipeline)
    return RunStatus.SUCCEEDED


def _transient_failure(run: Run, executor: RunExecutor, exc: BaseException) -> str:
    message = _message(exc)
    executor.log(f"Transient failure: {message}", level=LogLevel.ERROR)
    if run.attempt < run.max_attempts and _requeue(run, message):
        return RunStatus.QUEUED
    _finish(run, RunStatus.FAILED, error=message, error_kind="transient")
    return RunStatus.FAILED


def _message(exc: BaseException) -> str:
    if isinstance(exc, ConnectorError):
        return exc.message
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    if isinstance(exc, StepError | RuleFailed):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # Driver errors can echo connection strings; keep only their first line and never the exception args.
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__
