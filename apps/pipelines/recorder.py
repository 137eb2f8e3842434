"""The run recorder: everything one run keeps in the database while the engine (`engine.py`) runs its
graph, and the run's own state changes.

It owns the rows of a run: its node runs (created when it starts, their counters saved by the heartbeat
and at the end), its log lines (each also sent live to the run's WebSocket subscribers), its quarantined
rows, the incremental states it commits (only after every destination has committed), its quality results
and profiles, and the run's status changes (claim, finish, requeue for a retry) with their events.
"""

from __future__ import annotations

import random
import socket
import threading
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from aggregator.dataplane import RejectedRows
from aggregator.logging import get_logger
from apps.monitoring import events
from apps.transformations.profiling import StreamProfiler
from apps.transformations.quality import NodeRules
from apps.transformations.steps import StepError

from .definition import Plan
from .engine import EngineResult, NodeStats
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

REJECTED_BULK = 1000


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


class RunRecorder:
    """The engine's recorder for one attempt of a run (see `engine.Recorder`), and the run's other records."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.node_runs: dict[str, NodeRun] = {}

    # --- engine.Recorder ----------------------------------------------------------------------------------

    def working_on(self, node_id: str) -> None:
        pass

    def output(self, node_id: str, batch: Any) -> None:
        pass

    def quarantine(self, node_id: str, rejected: RejectedRows, rules: list[str] | None) -> None:
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
        first = rejected.rows[0] if rejected.rows else None
        if first is not None:
            where = f" (line {first.line})" if first.line else ""
            self.log(
                f"{len(records)} row(s) rejected{where}: {first.reason}", level=LogLevel.WARNING, node=node_id
            )

    def node_failed(self, node_id: str, exc: StepError) -> None:
        NodeRun.objects.filter(pk=self.node_runs[node_id].pk).update(
            status=RunStatus.FAILED, error=exc.message[:5000], finished_at=timezone.now()
        )

    # --- the run's records --------------------------------------------------------------------------------

    def log(self, message: str, *, level: str = LogLevel.INFO, node: str = "", **context: Any) -> None:
        line = RunLog.objects.create(
            run_id=self.run.id, level=level, node_id=node, message=message, context=context
        )
        publish_log_line(self.run, line)

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        events.emit(kind, self.run.workspace_id, ("run", self.run.id), payload)

    def start_nodes(self, plan: Plan, active: set[str]) -> None:
        """A node run for each node this attempt runs (a retry's start them anew)."""
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

    def clear_rejected(self) -> None:
        """A retry's start: the earlier attempt's quarantine would count its rows twice."""
        RejectedRecord.objects.filter(run=self.run).delete()

    def saved_state(self, node_id: str) -> dict[str, Any] | None:
        saved = StreamState.objects.filter(pipeline_id=self.run.pipeline_id, node_id=node_id).first()
        return saved.state if saved is not None else None

    def save_progress(self, stats: dict[str, NodeStats]) -> None:
        for node_id, s in stats.items():
            NodeRun.objects.filter(pk=self.node_runs[node_id].pk).update(
                rows_in=s.rows_in,
                rows_out=s.rows_out,
                rows_rejected=s.rows_rejected,
                bytes=s.bytes,
                status=s.status,
            )

    def heartbeat(self) -> None:
        Run.objects.filter(pk=self.run.pk).update(heartbeat_at=timezone.now())

    def cancel_requested(self) -> bool:
        return Run.objects.filter(pk=self.run.pk, cancel_requested=True).exists()

    def publish_progress(self, stats: dict[str, NodeStats]) -> None:
        progress = {
            "run": self.run.id,
            "status": RunStatus.RUNNING,
            "nodes": {
                node_id: {
                    "rows_in": s.rows_in,
                    "rows_out": s.rows_out,
                    "rows_rejected": s.rows_rejected,
                    "status": s.status,
                }
                for node_id, s in stats.items()
            },
        }
        events.publish("run.progress", self.run.workspace_id, ("run", self.run.id), progress)

    def close_connection(self) -> None:
        """A thread of the run (the heartbeat) is done with its own database connection."""
        connection.close()

    def commit(self, plan: Plan, outcome: EngineResult, stats: dict[str, NodeStats]) -> None:
        """Every destination has committed: record what each wrote, and only now move the sources'
        incremental states forward, with the node runs and the run's counts, in one transaction."""
        for node_id, result in outcome.results.items():
            s = stats[node_id]
            s.rows_out = result.rows_written if result is not None else s.rows_in
            s.bytes = getattr(result, "bytes_sent", 0) or 0
            table = getattr(result, "table", plan.nodes[node_id]["table"])
            self.log(f"Wrote {s.rows_out} rows to {table}.", node=node_id)
        with transaction.atomic():
            for source_id, (stream_name, state) in outcome.states.items():
                StreamState.objects.update_or_create(
                    pipeline_id=self.run.pipeline_id,
                    node_id=source_id,
                    defaults={"stream": stream_name, "state": state, "run": self.run},
                )
            now = timezone.now()
            for node_id, s in stats.items():
                nr = self.node_runs[node_id]
                nr.rows_in, nr.rows_out, nr.rows_rejected, nr.bytes = (
                    s.rows_in,
                    s.rows_out,
                    s.rows_rejected,
                    s.bytes,
                )
                nr.status = s.status = RunStatus.SUCCEEDED
                nr.finished_at = now
                nr.duration_s = round(s.seconds, 4)
                nr.save()
            read = sum(s.rows_out for s in stats.values() if s.kind == "source")
            written = sum(stats[n].rows_out for n in outcome.results)
            rejected = sum(s.rows_rejected for s in stats.values())
            Run.objects.filter(pk=self.run.pk).update(
                rows_read=read, rows_written=written, rows_rejected=rejected
            )
            self.run.rows_read, self.run.rows_written, self.run.rows_rejected = read, written, rejected

    def store_quality(self, rules: dict[str, NodeRules], profilers: dict[str, StreamProfiler]) -> None:
        """Store each node's rule results and profile (also for a failed run: they say why it failed),
        and announce every rule that failed, rejected or warned as `quality.failed`."""
        if not rules and not profilers:
            return
        try:
            with transaction.atomic():
                QualityResult.objects.filter(run=self.run).delete()
                NodeProfile.objects.filter(run=self.run).delete()
                results = [
                    (node_id, result)
                    for node_id, node_rules in rules.items()
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
                    for node_id, profiler in profilers.items()
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
                    self.event("quality.failed", {**payload, **counts})
        except Exception:
            # The report must never turn a run's outcome into an internal error; the run's log says it.
            logger.exception("quality_report_not_stored", run_id=self.run.id)


# --- the run's status ------------------------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}"


def claim_run(*, run_id: int, attempt: int) -> bool:
    """Queued → running for this attempt, a conditional UPDATE: two workers can never execute it at once."""
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


def run_for_attempt(run_id: int) -> Run:
    return Run.objects.select_related("pipeline", "pipeline_version").get(pk=run_id)


def finish_run(run: Run, status: str, *, error: str = "", error_kind: str = "") -> bool:
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


def requeue_run(run: Run, error: str) -> bool:
    """Put the run back in the queue for its next attempt, after a backoff with jitter."""
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
