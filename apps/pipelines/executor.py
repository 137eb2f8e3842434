"""Runs one attempt of a pipeline run, in a Celery worker.

Flow: claim the run (queued → running for this attempt, a conditional UPDATE, so two workers can never
execute it at once), re-validate the version's document into a plan, then for each source node: read
batches, push each one through the transforms below it and into a bounded queue per destination it reaches
(fan-out); each destination consumes its queue in its own thread through the connector's `write`, which
commits once at the end (staging, swap or upsert). Only when every destination fed by a source has
committed is that source's incremental state committed. A crash at any point therefore leaves either the
old state (and, at most, rows of this run that its retry removes first) or the new one — never skipped or
doubled rows.

Memory: a batch is at most the source's chunk size; each destination queue holds at most QUEUE_DEPTH
batches, so a run holds a handful of batches whatever the stream's size.
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from aggregator.dataplane import Batch, RejectedRows, StateCheckpoint, StreamSchema, SyncMode, WriteMode
from aggregator.logging import get_logger
from apps.connectors.base import ConnectorError
from apps.connectors.selectors import connector_runtime
from apps.connectors.services import is_transient
from apps.monitoring import events
from apps.schemas.services import schema_contract_check, schema_refresh
from apps.transformations.profiling import SOURCE_PROFILE_ROWS, StreamProfiler
from apps.transformations.quality import NodeRules, RuleFailed
from apps.transformations.steps import BudgetedRunner, StepError, get_step_type

from .definition import Plan
from .models import (
    LogLevel,
    NodeProfile,
    NodeRun,
    QualityResult,
    QualityStatus,
    RejectedRecord,
    Run,
    RunLog,
    RunStatus,
    StreamState,
)

logger = get_logger(__name__)

QUEUE_DEPTH = 2
HEARTBEAT_EVERY_S = 1.0
CANCEL_POLL_S = 0.5
REJECTED_BULK = 1000


class RunCancelled(Exception):
    """The run was cancelled while it ran."""


class ConfigurationError(Exception):
    """The pipeline or a connector is misconfigured: retrying cannot help."""


_END = object()
_ABORT = object()


class DestinationSink:
    """Feeds one destination's `write` from a bounded queue in its own thread."""

    def __init__(
        self,
        *,
        node_id: str,
        ref: Any,
        node: dict[str, Any],
        schema: StreamSchema,
        run_id: str,
        stats: NodeRun,
    ):
        self.node_id = node_id
        self.node = node
        self.schema = schema
        self.run_id = run_id
        self.stats = stats
        self.connector_type, self.config = connector_runtime(ref.connector)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiting_s = 0.0
        self.busy_s = 0.0
        self.thread = threading.Thread(target=self._run, name=f"sink-{node_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _batches(self) -> Iterator[Batch]:
        while True:
            waited = time.monotonic()
            item = self.queue.get()
            self.waiting_s += time.monotonic() - waited
            if item is _END:
                return
            if item is _ABORT:
                # Raised inside the connector's write: it drops its staging and re-raises.
                raise RunCancelled()
            yield item

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self.connector_type.write(
                self.config,
                self.schema,
                self._batches(),
                WriteMode(self.node.get("write_mode", WriteMode.APPEND)),
                list(self.node.get("primary_key") or []),
                self.run_id,
                table=self.node["table"],
            )
        except BaseException as exc:  # handed to the run's thread, which decides what it means
            self.error = exc
            # Drain so a producer blocked on put() is released.
            while not self.queue.empty():
                self.queue.get_nowait()
        finally:
            # The destination's own time: its write, less the time it sat waiting for the next batch.
            self.busy_s = max(0.0, time.monotonic() - started - self.waiting_s)

    def put(self, batch: Batch) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(batch, timeout=0.5)
                self.stats.rows_in += batch.num_rows
                return
            except queue.Full:
                continue

    def finish(self, *, abort: bool = False) -> Any:
        if self.thread.is_alive():
            marker = _ABORT if abort else _END
            while self.thread.is_alive():
                try:
                    self.queue.put(marker, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self.thread.join()
        if self.error is not None and not abort:
            raise self.error
        return self.result


class RunExecutor:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.pipeline = run.pipeline
        self.options = run.options or {}
        self.node_runs: dict[str, NodeRun] = {}
        # Seconds each node spent on its own work (reading, transforming, writing), not waiting for others.
        self.node_seconds: dict[str, float] = {}
        self.cancelled = threading.Event()
        self._stop_heartbeat = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-{run.id}", daemon=True)
        self._progress_lock = threading.Lock()
        self._cancel_checked_at = time.monotonic()
        # Data quality (apps/transformations/quality.py, profiling.py): each node's rules and profiler.
        self.rules: dict[str, NodeRules] = {}
        self.profilers: dict[str, StreamProfiler] = {}
        # Set once refresh_schemas has discovered the sources for this attempt: the reads skip discovery.
        self.schemas_refreshed = False

    # --- logging and progress ---------------------------------------------------------------------------

    def log(self, message: str, *, level: str = LogLevel.INFO, node: str = "", **context: Any) -> None:
        line = RunLog.objects.create(
            run_id=self.run.id, level=level, node_id=node, message=message, context=context
        )
        publish_log_line(self.run, line)

    def _flush_progress(self) -> None:
        with self._progress_lock:
            rows = [
                (nr.pk, nr.rows_in, nr.rows_out, nr.rows_rejected, nr.bytes, nr.status)
                for nr in self.node_runs.values()
            ]
        for pk, rows_in, rows_out, rejected, nbytes, status in rows:
            NodeRun.objects.filter(pk=pk).update(
                rows_in=rows_in, rows_out=rows_out, rows_rejected=rejected, bytes=nbytes, status=status
            )

    def _beat(self) -> None:
        """Every second: prove the worker is alive, save the counters, publish progress, notice a cancel."""
        try:
            while not self._stop_heartbeat.wait(HEARTBEAT_EVERY_S):
                Run.objects.filter(pk=self.run.pk).update(heartbeat_at=timezone.now())
                self._flush_progress()
                if Run.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
                    self.cancelled.set()
                events.publish("run.progress", self.run.workspace_id, ("run", self.run.id), self.progress())
        finally:
            connection.close()

    def progress(self) -> dict[str, Any]:
        return {
            "run": self.run.id,
            "status": RunStatus.RUNNING,
            "nodes": {
                node_id: {
                    "rows_in": nr.rows_in,
                    "rows_out": nr.rows_out,
                    "rows_rejected": nr.rows_rejected,
                    "status": nr.status,
                }
                for node_id, nr in self.node_runs.items()
            },
        }

    def check_cancel(self) -> None:
        # The heartbeat thread notices a cancel every second; the run's own thread also looks, at most twice a
        # second, so a stalled heartbeat cannot make a run uncancellable.
        now = time.monotonic()
        if not self.cancelled.is_set() and now - self._cancel_checked_at > CANCEL_POLL_S:
            self._cancel_checked_at = now
            if Run.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
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
        for node_id in plan.order:
            if node_id not in active:
                continue
            node_run, _ = NodeRun.objects.update_or_create(
                run=self.run,
                node_id=node_id,
                defaults={
                    "kind": plan.nodes[node_id]["kind"],
                    "status": RunStatus.RUNNING,
                    "rows_in": 0,
                    "rows_out": 0,
                    "rows_rejected": 0,
                    "bytes": 0,
                    "error": "",
                    "started_at": timezone.now(),
                    "finished_at": None,
                },
            )
            self.node_runs[node_id] = node_run
        self._prepare_quality(plan, active)
        self._heartbeat.start()
        try:
            if self.run.attempt > 1:
                self._remove_partial_rows(plan)
                # The earlier attempt's quarantine would count its rows twice.
                RejectedRecord.objects.filter(run=self.run).delete()
            runners: dict[str, Any] = {}
            for node_id in plan.order:
                if node_id in active and plan.nodes[node_id]["kind"] == "transform":
                    node = plan.nodes[node_id]
                    step_type = get_step_type(node["step"])
                    inputs = {up: plan.schemas[up] for up in plan.upstream(node_id) if up in active}
                    runners[node_id] = BudgetedRunner(step_type.runner(node.get("config", {}), inputs))
            sinks = {
                node_id: DestinationSink(
                    node_id=node_id,
                    ref=plan.destinations[node_id],
                    node=plan.nodes[node_id],
                    schema=plan.schemas[node_id],
                    run_id=str(self.run.id),
                    stats=self.node_runs[node_id],
                )
                for node_id in plan.order
                if node_id in active and plan.nodes[node_id]["kind"] == "destination"
            }
            open_inputs = {
                node_id: {up for up in plan.upstream(node_id) if up in active} for node_id in runners
            }
            for sink in sinks.values():
                sink.start()
            states: dict[str, tuple[str, dict[str, Any]]] = {}
            try:
                for source_id in self._source_order(plan, selected, active):
                    state = self._read_source(plan, source_id, runners, sinks)
                    if state is not None:
                        states[source_id] = state
                    self._close(plan, source_id, runners, sinks, open_inputs)
                # Stream rules (row_count, freshness) judge now: a failure must stop the writes' commits.
                for node_rules in self.rules.values():
                    node_rules.finish()
                results = {node_id: sink.finish() for node_id, sink in sinks.items()}
                for node_id, sink in sinks.items():
                    self.node_seconds[node_id] = sink.busy_s
            except BaseException:
                for sink in sinks.values():
                    sink.finish(abort=True)
                raise
            self._commit(plan, results, states, active)
        finally:
            self._stop_heartbeat.set()
            self._heartbeat.join()
            self._flush_progress()
            self._store_quality()

    # --- data quality ------------------------------------------------------------------------------------

    def _prepare_quality(self, plan: Plan, active: set[str]) -> None:
        """Rules for every active node that declares them; a profiler for every node with `profile: true`
        (its whole output) and for every source unless `profile: false` (its first rows)."""
        for node_id in plan.order:
            if node_id not in active or node_id not in plan.schemas:
                continue
            node = plan.nodes[node_id]
            if node.get("rules"):
                self.rules[node_id] = NodeRules.from_node(node_id, node["rules"], plan.schemas[node_id])
            wanted = node.get("profile")
            if wanted is True:
                self.profilers[node_id] = StreamProfiler(plan.schemas[node_id])
            elif wanted is None and node["kind"] == "source":
                self.profilers[node_id] = StreamProfiler(plan.schemas[node_id], row_cap=SOURCE_PROFILE_ROWS)

    def _check(self, node_id: str, batch: Batch) -> Batch:
        """A node's output batch through its rules (rejected rows to quarantine) and its profiler."""
        node_rules = self.rules.get(node_id)
        if node_rules is not None:
            result = node_rules.check(batch)
            if result.rejected:
                self._quarantine(
                    node_id,
                    RejectedRows(stream=batch.stream, rows=tuple(row for _, row in result.rejected)),
                    rules=[rule for rule, _ in result.rejected],
                )
            batch = result.batch
        profiler = self.profilers.get(node_id)
        if profiler is not None and not profiler.full:
            profiler.add(batch.table)
        return batch

    def _store_quality(self) -> None:
        """Store each node's rule results and profile (also for a failed run: they say why it failed),
        and announce every rule that failed, rejected or warned as `quality.failed`."""
        if not self.rules and not self.profilers:
            return
        try:
            with transaction.atomic():
                QualityResult.objects.filter(run=self.run).delete()
                NodeProfile.objects.filter(run=self.run).delete()
                results = [
                    (node_id, result)
                    for node_id, node_rules in self.rules.items()
                    for result in node_rules.results()
                ]
                QualityResult.objects.bulk_create(
                    QualityResult(
                        run_id=self.run.id,
                        node_id=node_id,
                        rule_id=r["rule"],
                        rule_type=r["type"],
                        action=r["action"],
                        columns=r["columns"],
                        status=r["status"],
                        checked=r["checked"],
                        passed=r["passed"],
                        failed=r["failed"],
                        rejected=r["rejected"],
                        warned=r["warned"],
                        observed=r["observed"],
                        sample=r["sample"],
                    )
                    for node_id, r in results
                )
                NodeProfile.objects.bulk_create(
                    NodeProfile(
                        run_id=self.run.id,
                        node_id=node_id,
                        rows=profile["rows"],
                        complete=profile["complete"],
                        row_cap=profile["row_cap"],
                        columns=profile["columns"],
                    )
                    for node_id, profiler in self.profilers.items()
                    for profile in [profiler.to_dict()]
                )
                for node_id, r in results:
                    if r["status"] == QualityStatus.PASSED:
                        continue
                    counts = {k: r[k] for k in ("checked", "passed", "failed", "rejected", "warned")}
                    # `pipeline` lets a pipeline's own alert rules match (monitoring scopes them by it).
                    payload = {
                        "run": self.run.id,
                        "pipeline": self.run.pipeline_id,
                        "node": node_id,
                        "rule": r["rule"],
                        "status": r["status"],
                    }
                    events.emit(
                        "quality.failed", self.run.workspace_id, ("run", self.run.id), {**payload, **counts}
                    )
        except Exception:
            # The report must never turn a run's outcome into an internal error; the run's log says it.
            logger.exception("quality_report_not_stored", run_id=self.run.id)

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

    def _source_order(self, plan: Plan, selected: list[str], active: set[str]) -> list[str]:
        """Sources in graph order, except that a step needing some inputs complete first (a join's lookup
        side) has the sources behind those inputs read before the sources behind its other inputs."""
        import networkx as nx

        order = nx.DiGraph()
        order.add_nodes_from(selected)
        for node_id in plan.order:
            if node_id not in active or plan.nodes[node_id]["kind"] != "transform":
                continue
            node = plan.nodes[node_id]
            upstream = [up for up in plan.upstream(node_id) if up in active]
            first = get_step_type(node["step"]).input_order(node.get("config", {}), upstream)
            if not first:
                continue
            before = {s for up in first for s in ({up} | nx.ancestors(plan.graph, up)) if s in selected}
            after = {
                s
                for up in upstream
                if up not in first
                for s in ({up} | nx.ancestors(plan.graph, up))
                if s in selected
            }
            if before & after:
                raise ConfigurationError(
                    f"Node '{node_id}': one source feeds both the inputs it needs first and the others."
                )
            order.add_edges_from((b, a) for b in before for a in after)
        if not nx.is_directed_acyclic_graph(order):
            raise ConfigurationError("The steps' input orders contradict each other.")
        rank = {node_id: i for i, node_id in enumerate(plan.order)}
        return list(nx.lexicographical_topological_sort(order, key=lambda n: rank[n]))

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

    def _read_source(
        self, plan: Plan, source_id: str, runners: dict[str, Any], sinks: dict[str, DestinationSink]
    ) -> tuple[str, dict[str, Any]] | None:
        """Read one source through the graph. Returns (stream, state) to commit once the writes have."""
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
        saved = StreamState.objects.filter(pipeline=self.pipeline, node_id=source_id).first()
        backfill_option = self.options.get("backfill") or {}
        backfill = backfill_option if backfill_option.get("node") == source_id else None
        if backfill:
            state: dict[str, Any] | None = {"cursor": backfill["from"]}
        elif incremental and not self.options.get("full_refresh") and saved is not None:
            state = saved.state
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
        events.emit("node.started", self.run.workspace_id, ("run", self.run.id), {"node": source_id})

        pending_state: dict[str, Any] | None = None
        upper = backfill.get("to") if backfill else None
        reader = connector_type.read(config, stream, state)
        try:
            for item in self._timed(source_id, reader):
                self.check_cancel()
                if isinstance(item, Batch):
                    batch, refused = contract.conform(item)
                    if refused:
                        self._quarantine(source_id, refused)
                    if upper is not None and stream.cursor_field:
                        batch = _below(batch, stream.cursor_field, upper)
                    batch = self._check(source_id, batch)
                    self.node_runs[source_id].rows_in += item.num_rows
                    self.node_runs[source_id].rows_out += batch.num_rows
                    self._push(plan, source_id, batch, runners, sinks)
                elif isinstance(item, RejectedRows):
                    # Read but refused: counted in, so rows in = rows out + rejected at the source too.
                    self.node_runs[source_id].rows_in += len(item)
                    self._quarantine(source_id, item)
                elif isinstance(item, StateCheckpoint):
                    pending_state = item.state
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        if incremental and pending_state is not None and not backfill:
            return stream.name, pending_state
        return None

    def _close(
        self,
        plan: Plan,
        node_id: str,
        runners: dict[str, Any],
        sinks: dict[str, DestinationSink],
        open_inputs: dict[str, set[str]],
    ) -> None:
        """`node_id` will send nothing more: tell the steps below it, and close them in turn once all their
        inputs are done (a buffering step emits then)."""
        for child in plan.downstream(node_id):
            if child not in runners:
                continue
            for output in self._timed(child, runners[child].end(node_id)):
                self._emit(plan, child, output, runners, sinks)
            open_inputs[child].discard(node_id)
            if not open_inputs[child]:
                self._close(plan, child, runners, sinks, open_inputs)

    def _push(
        self,
        plan: Plan,
        node_id: str,
        batch: Batch,
        runners: dict[str, Any],
        sinks: dict[str, DestinationSink],
    ) -> None:
        for child in plan.downstream(node_id):
            if child in sinks:
                checked = self._check(child, batch)
                # put() counts what it queues; the rows the destination's rules rejected came in too.
                self.node_runs[child].rows_in += batch.num_rows - checked.num_rows
                sinks[child].put(checked)
            elif child in runners:
                self.node_runs[child].rows_in += batch.num_rows
                for output in self._timed(child, runners[child].feed(node_id, batch)):
                    self._emit(plan, child, output, runners, sinks)

    def _timed(self, node_id: str, items: Iterable[Any]) -> Iterator[Any]:
        """Iterate, adding the time spent producing each item (not consuming it) to the node's duration. A
        step's error is the node's: it is recorded on the node before the run fails with it."""
        iterator = iter(items)
        while True:
            started = time.monotonic()
            try:
                item = next(iterator)
            except StopIteration:
                self.node_seconds[node_id] = self.node_seconds.get(node_id, 0.0) + time.monotonic() - started
                return
            except StepError as exc:
                self._node_failed(node_id, exc)
                raise StepError(f"Node '{node_id}': {exc.message}", field=exc.field) from exc
            self.node_seconds[node_id] = self.node_seconds.get(node_id, 0.0) + time.monotonic() - started
            yield item

    def _node_failed(self, node_id: str, exc: StepError) -> None:
        node_run = self.node_runs[node_id]
        with self._progress_lock:
            node_run.status = RunStatus.FAILED
        NodeRun.objects.filter(pk=node_run.pk).update(
            status=RunStatus.FAILED, error=exc.message[:5000], finished_at=timezone.now()
        )

    def _emit(
        self,
        plan: Plan,
        node_id: str,
        output: Any,
        runners: dict[str, Any],
        sinks: dict[str, DestinationSink],
    ) -> None:
        if output.rejected:
            self._quarantine(node_id, RejectedRows(stream=output.batch.stream, rows=tuple(output.rejected)))
        batch = self._check(node_id, output.batch)
        self.node_runs[node_id].rows_out += batch.num_rows
        if batch.num_rows:
            self._push(plan, node_id, batch, runners, sinks)

    def _commit(
        self,
        plan: Plan,
        results: dict[str, Any],
        states: dict[str, tuple[str, dict[str, Any]]],
        active: set[str],
    ) -> None:
        for node_id, result in results.items():
            nr = self.node_runs[node_id]
            nr.rows_out = result.rows_written if result is not None else nr.rows_in
            nr.bytes = getattr(result, "bytes_sent", 0) or 0
            table = getattr(result, "table", plan.nodes[node_id]["table"])
            self.log(f"Wrote {nr.rows_out} rows to {table}.", node=node_id)
        with transaction.atomic():
            # Every destination has committed: only now may the sources' positions move forward.
            for source_id, (stream_name, state) in states.items():
                StreamState.objects.update_or_create(
                    pipeline=self.pipeline,
                    node_id=source_id,
                    defaults={"stream": stream_name, "state": state, "run": self.run},
                )
            now = timezone.now()
            for node_id in active:
                nr = self.node_runs[node_id]
                nr.status = RunStatus.SUCCEEDED
                nr.finished_at = now
                nr.duration_s = round(self.node_seconds.get(node_id, 0.0), 4)
                nr.save()
            read = sum(self.node_runs[n].rows_out for n in active if plan.nodes[n]["kind"] == "source")
            written = sum(self.node_runs[n].rows_out for n in results)
            rejected = sum(nr.rows_rejected for nr in self.node_runs.values())
            Run.objects.filter(pk=self.run.pk).update(
                rows_read=read, rows_written=written, rows_rejected=rejected
            )
            self.run.rows_read, self.run.rows_written, self.run.rows_rejected = read, written, rejected

    def _quarantine(self, node_id: str, rejected: RejectedRows, *, rules: list[str] | None = None) -> None:
        """Store rejected rows; `rules` gives, row by row, the id of the validation rule that rejected it."""
        records = [
            RejectedRecord(
                run_id=self.run.id,
                node_id=node_id,
                line=r.line,
                row=r.row,
                reason=r.reason[:2000],
                raw=r.raw if isinstance(r.raw, (dict, list)) else {"text": r.raw},
                source=r.source[:500],
                rule=rules[i][:100] if rules else "",
            )
            for i, r in enumerate(rejected.rows)
        ]
        RejectedRecord.objects.bulk_create(records, batch_size=REJECTED_BULK)
        self.node_runs[node_id].rows_rejected += len(records)
        first = rejected.rows[0] if rejected.rows else None
        if first is not None:
            where = f" (line {first.line})" if first.line else ""
            self.log(
                f"{len(records)} row(s) rejected{where}: {first.reason}", level=LogLevel.WARNING, node=node_id
            )


def publish_log_line(run: Run, line: RunLog) -> None:
    """Send a stored log line live to the run's WebSocket subscribers (they get earlier ones on subscribe)."""
    events.publish(
        "run.log",
        run.workspace_id,
        ("run", run.id),
        {
            "id": line.id,
            "at": line.at.isoformat(),
            "level": line.level,
            "node": line.node_id,
            "message": line.message,
            "context": line.context,
        },
    )


def _below(batch: Batch, cursor: str, upper: Any) -> Batch:
    import pyarrow.compute as pc

    column = batch.table.column(cursor)
    bound = pc.cast(pc.scalar(upper), column.type) if not isinstance(upper, (int, float)) else upper
    mask = pc.less_equal(column, bound)
    return Batch(batch.table.filter(pc.fill_null(mask, False)), stream=batch.stream)


CONFIG_ERRORS = (ValidationError, ConnectorError, StepError, ConfigurationError, RuleFailed)


def worker_name() -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}"


def claim(*, run_id: int, attempt: int) -> bool:
    now = timezone.now()
    return bool(
        Run.objects.filter(
            pk=run_id, status=RunStatus.QUEUED, attempt=attempt, cancel_requested=False
        ).update(
            status=RunStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker=worker_name(),
            error="",
            error_kind="",
        )
    )


def close_db() -> None:
    close_old_connections()


def _finish(run: Run, status: str, *, error: str = "", error_kind: str = "") -> bool:
    updated = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, attempt=run.attempt).update(
        status=status, finished_at=timezone.now(), error=error[:5000], error_kind=error_kind
    )
    if updated:
        NodeRun.objects.filter(run=run, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
            status=RunStatus.CANCELLED if status == RunStatus.CANCELLED else RunStatus.FAILED,
            finished_at=timezone.now(),
        )
        run.refresh_from_db()
        payload = {"pipeline": run.pipeline_id, "status": status, "rows_written": run.rows_written}
        if error:
            payload["error"] = error[:500]
        events.emit(f"run.{status}", run.workspace_id, run, payload)
    return bool(updated)


def _requeue(run: Run, error: str) -> bool:
    """Put the run back in the queue for its next attempt, after a backoff with jitter."""
    import random

    from .services import enqueue_run

    next_attempt = run.attempt + 1
    updated = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, attempt=run.attempt).update(
        status=RunStatus.QUEUED,
        attempt=next_attempt,
        error=error[:5000],
        error_kind="transient",
        heartbeat_at=None,
    )
    if not updated:
        return False
    run.refresh_from_db()
    delay = run.pipeline.retry_backoff_s * (2 ** (run.attempt - 2))
    delay = delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
    line = RunLog.objects.create(
        run=run,
        level=LogLevel.WARNING,
        message=f"Attempt {run.attempt - 1} failed ({error}); retrying in {delay:.0f} s.",
    )
    publish_log_line(run, line)
    events.emit("run.retrying", run.workspace_id, run, {"attempt": run.attempt, "delay_s": round(delay, 1)})
    transaction.on_commit(lambda: enqueue_run(run, countdown=delay))
    return True


def run_execute(*, run_id: int, attempt: int) -> str:
    """Execute one attempt of a run. Returns the resulting status (or "skipped" if it was not ours)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from .services import pipeline_plan, trigger_dependents

    if not claim(run_id=run_id, attempt=attempt):
        logger.info("pipeline_run_not_claimed", run_id=run_id, attempt=attempt)
        return "skipped"
    run = Run.objects.select_related("pipeline", "pipeline_version").get(pk=run_id)
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
