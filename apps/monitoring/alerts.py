"""Alerts: rules, their evaluation, the incident lifecycle and notifications.

Evaluation is an event handler (settings.AGGREGATOR_EVENT_HANDLERS) for finished runs, schema drift and
quality failures, plus a beat task for freshness (a missing run emits no event). Runs are read through the
app registry: monitoring never imports the pipelines app.

One incident is one Alert row: a partial unique index allows one unresolved alert per (rule, subject).
A re-trigger while it is open only bumps `count`/`last_seen`; notifications (email, the `alert.triggered`
event that webhooks deliver) go out at most once per `rule.notify_interval_s` while it stays open, and not
at all once a person has acknowledged it. Run conditions clear by themselves (the next good run resolves
the alert, with an `alert.resolved` event); drift and quality alerts are about a change someone must look
at, so a person resolves them.
"""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from aggregator.logging import get_logger
from apps.users.selectors import workspace_admin_emails, workspace_ids_for_user

from . import events
from .models import Alert, AlertKind, AlertRule, AlertStatus, Event

logger = get_logger(__name__)

RUN_KINDS = {
    AlertKind.RUN_FAILED,
    AlertKind.CONSECUTIVE_FAILURES,
    AlertKind.DURATION_OVER,
    AlertKind.ROWS_BELOW,
    AlertKind.ROWS_ABOVE,
    AlertKind.ROWS_ANOMALY,
    AlertKind.FRESHNESS,  # a successful run clears a freshness alert
}
EVENT_KINDS = {"schema.drift_detected": AlertKind.SCHEMA_DRIFT, "quality.failed": AlertKind.QUALITY_FAILED}
NEEDS_THRESHOLD = {
    AlertKind.CONSECUTIVE_FAILURES,
    AlertKind.DURATION_OVER,
    AlertKind.ROWS_BELOW,
    AlertKind.ROWS_ABOVE,
}
DEFAULT_Z = 3.5  # Iglewicz & Hoaglin's cut-off for the modified z-score
DEFAULT_HISTORY = 20
MIN_HISTORY = 5  # fewer past runs than this say nothing about what is normal
OPEN = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


# --- Reads ------------------------------------------------------------------------------------------------


def alert_rule_list_for_user(*, user: Any) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(workspace_id__in=workspace_ids_for_user(user=user)).order_by("name", "id")


def alert_list_for_user(*, user: Any) -> QuerySet[Alert]:
    return (
        Alert.objects.filter(workspace_id__in=workspace_ids_for_user(user=user))
        .select_related("rule")
        .order_by("-last_seen", "-id")
    )


# --- Rule writes ------------------------------------------------------------------------------------------


def _validate_rule(*, workspace_id: int, pipeline_id: int | None, kind: str, threshold: float | None) -> None:
    if kind in NEEDS_THRESHOLD and threshold is None:
        raise ValidationError({"threshold": [f"Required for {kind}."]})
    if kind == AlertKind.CONSECUTIVE_FAILURES and threshold is not None and threshold < 1:
        raise ValidationError({"threshold": ["At least 1."]})
    if pipeline_id is not None:
        Pipeline = apps.get_model("pipelines", "Pipeline")
        if not Pipeline.objects.filter(pk=pipeline_id, workspace_id=workspace_id).exists():
            raise ValidationError({"pipeline": ["No such pipeline in this workspace."]})


@transaction.atomic
def alert_rule_create(*, workspace: Any, user: Any, **values: Any) -> AlertRule:
    pipeline_id = values.pop("pipeline", None)
    pipeline_id = getattr(pipeline_id, "pk", pipeline_id)
    _validate_rule(
        workspace_id=workspace.pk,
        pipeline_id=pipeline_id,
        kind=values["kind"],
        threshold=values.get("threshold"),
    )
    return AlertRule.objects.create(workspace=workspace, pipeline_id=pipeline_id, created_by=user, **values)


@transaction.atomic
def alert_rule_update(*, rule: AlertRule, **values: Any) -> AlertRule:
    if "pipeline" in values:
        pipeline = values.pop("pipeline")
        rule.pipeline_id = getattr(pipeline, "pk", pipeline)
    for field, value in values.items():
        setattr(rule, field, value)
    _validate_rule(
        workspace_id=rule.workspace_id, pipeline_id=rule.pipeline_id, kind=rule.kind, threshold=rule.threshold
    )
    rule.save()
    return rule


# --- Incident lifecycle -----------------------------------------------------------------------------------


def _payload(alert: Alert) -> dict[str, Any]:
    return {
        "alert": alert.pk,
        "rule": alert.rule_id,
        "rule_name": alert.rule.name,
        "kind": alert.rule.kind,
        "subject": {"type": alert.subject_type, "id": alert.subject_id},
        "title": alert.title,
        "status": alert.status,
        "count": alert.count,
        "context": alert.context,
    }


def _recipients(rule: AlertRule) -> list[str]:
    if rule.email_recipients:
        return [str(a) for a in rule.email_recipients]
    return workspace_admin_emails(workspace_id=rule.workspace_id)


def _notify(alert: Alert, *, resolved: bool) -> None:
    """The event (and so webhooks) always; email if the rule wants it. Both after commit."""
    events.emit(
        "alert.resolved" if resolved else "alert.triggered", alert.workspace_id, alert, _payload(alert)
    )
    rule = alert.rule
    if not rule.notify_email:
        return
    recipients = _recipients(rule)
    if not recipients:
        return
    verb = "Resolved" if resolved else "Alert"
    subject = f"[Aggregator] {verb}: {alert.title}"
    link = f"{settings.AGGREGATOR_BASE_URL}/alerts/{alert.pk}"
    body = (
        f"{alert.title}\n\nRule: {rule.name} ({rule.get_kind_display()})\n"
        f"Seen {alert.count} time(s), first {alert.first_seen:%Y-%m-%d %H:%M} UTC, "
        f"last {alert.last_seen:%Y-%m-%d %H:%M} UTC.\n"
        + (f"Resolved: {alert.resolved_reason}\n" if resolved else "")
        + f"\n{link}\n"
    )

    def send() -> None:
        try:
            send_mail(subject, body, None, recipients)
        except Exception:  # the alert is recorded; a mail server hiccup must not undo it
            logger.exception("alert_email_failed", alert_id=alert.pk)

    transaction.on_commit(send)


def alert_trigger(
    *, rule: AlertRule, subject_type: str, subject_id: Any, title: str, context: dict[str, Any]
) -> Alert:
    """Open an alert for (rule, subject), or count one more occurrence of the open one."""
    now = timezone.now()
    for _attempt in (1, 2):
        try:
            with transaction.atomic():
                alert = (
                    Alert.objects.select_for_update()
                    .select_related("rule")
                    .filter(rule=rule, subject_type=subject_type, subject_id=str(subject_id), status__in=OPEN)
                    .first()
                )
                if alert is None:
                    alert = Alert.objects.create(
                        workspace_id=rule.workspace_id,
                        rule=rule,
                        subject_type=subject_type,
                        subject_id=str(subject_id),
                        title=title[:255],
                        context=context,
                        first_seen=now,
                        last_seen=now,
                        last_notified_at=now,
                    )
                    logger.info("alert_triggered", alert_id=alert.pk, rule_id=rule.pk, kind=rule.kind)
                    _notify(alert, resolved=False)
                    return alert
                alert.count += 1
                alert.last_seen = now
                alert.title = title[:255]
                alert.context = context
                due = alert.last_notified_at is None or now - alert.last_notified_at >= timedelta(
                    seconds=rule.notify_interval_s
                )
                notify = alert.status == AlertStatus.OPEN and due
                if notify:
                    alert.last_notified_at = now
                alert.save(update_fields=["count", "last_seen", "title", "context", "last_notified_at"])
                if notify:
                    _notify(alert, resolved=False)
                return alert
        except IntegrityError:
            # Another process opened it between our read and insert: the second pass counts on it.
            continue
    raise RuntimeError("alert_trigger: could not open or update the alert")  # pragma: no cover


def alert_clear(*, rule: AlertRule, subject_type: str, subject_id: Any, reason: str) -> Alert | None:
    """The condition no longer holds: resolve the open alert, if any."""
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update()
            .select_related("rule")
            .filter(rule=rule, subject_type=subject_type, subject_id=str(subject_id), status__in=OPEN)
            .first()
        )
        if alert is None:
            return None
        alert.status = AlertStatus.RESOLVED
        alert.resolved_at = timezone.now()
        alert.resolved_reason = reason[:255]
        alert.save(update_fields=["status", "resolved_at", "resolved_reason"])
        logger.info("alert_resolved", alert_id=alert.pk, rule_id=rule.pk, reason="condition_cleared")
        _notify(alert, resolved=True)
        return alert


@transaction.atomic
def alert_acknowledge(*, alert: Alert, user: Any) -> Alert:
    """Someone is on it: no more notifications while it stays open."""
    if alert.status == AlertStatus.RESOLVED:
        raise ValidationError({"status": ["A resolved alert cannot be acknowledged."]})
    if alert.status == AlertStatus.OPEN:
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = user
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, user: Any) -> Alert:
    if alert.status != AlertStatus.RESOLVED:
        alert.status = AlertStatus.RESOLVED
        alert.resolved_at = timezone.now()
        alert.resolved_by = user
        alert.resolved_reason = f"resolved by {user.email}"
        alert.save(update_fields=["status", "resolved_at", "resolved_by", "resolved_reason"])
        events.emit("alert.resolved", alert.workspace_id, alert, _payload(alert))
    return alert


# --- Evaluation -------------------------------------------------------------------------------------------


def robust_z(value: float, history: list[float]) -> float | None:
    """The modified z-score 0.6745 (x - median) / MAD. With MAD 0 (over half the history identical) the
    mean absolute deviation stands in (x 1.2533, so both estimate sigma alike); if that is 0 too, any
    different value is infinitely unusual. None when the history is too short to judge."""
    if len(history) < MIN_HISTORY:
        return None
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    if mad > 0:
        return 0.6745 * (value - median) / mad
    mean_ad = statistics.fmean(abs(x - median) for x in history)
    if mean_ad > 0:
        return (value - median) / (1.2533 * mean_ad)
    return 0.0 if value == median else float("inf") if value > median else float("-inf")


def _rules(*, workspace_id: int, pipeline_id: int | None, kinds: set[Any]) -> list[AlertRule]:
    query = Q(pipeline__isnull=True)
    if pipeline_id is not None:
        query |= Q(pipeline_id=pipeline_id)
    return list(
        AlertRule.objects.filter(query, workspace_id=workspace_id, is_enabled=True, kind__in=kinds).order_by(
            "id"
        )
    )


def _finished_runs(pipeline_id: int, before_id: int | None = None) -> QuerySet[Any]:
    Run = apps.get_model("pipelines", "Run")
    runs = Run.objects.filter(pipeline_id=pipeline_id, status__in=["succeeded", "failed"])
    if before_id is not None:
        runs = runs.filter(pk__lt=before_id)
    return runs.order_by("-id")


def _evaluate_run_rule(rule: AlertRule, run: Any) -> tuple[bool | None, str, dict[str, Any]]:
    """(holds, title, context): True triggers, False clears, None says nothing (e.g. a cancelled run)."""
    name = run.pipeline.name
    context: dict[str, Any] = {"pipeline": run.pipeline_id, "run": run.pk, "status": run.status}
    succeeded = run.status == "succeeded"
    if run.status not in ("succeeded", "failed"):
        return None, "", context
    kind = rule.kind
    if kind == AlertKind.FRESHNESS:
        return (False, "", context) if succeeded else (None, "", context)
    if kind == AlertKind.RUN_FAILED:
        context["error"] = run.error[:500]
        return not succeeded, f"Pipeline {name}: run {run.pk} failed", context
    if kind == AlertKind.CONSECUTIVE_FAILURES:
        n = int(rule.threshold or 1)
        last = list(_finished_runs(run.pipeline_id).values_list("status", flat=True)[:n])
        context["consecutive"] = n
        holds = len(last) == n and all(s == "failed" for s in last)
        return (holds if holds or succeeded else None), f"Pipeline {name}: {n} runs failed in a row", context
    if kind == AlertKind.DURATION_OVER:
        duration = run.duration_s
        if duration is None:
            return None, "", context
        context.update(duration_s=round(duration, 3), bound_s=rule.threshold)
        return (
            duration > (rule.threshold or 0),
            f"Pipeline {name}: run {run.pk} took {duration:.0f} s (bound {rule.threshold:.0f} s)",
            context,
        )
    # Row rules judge what a successful run moved; a failed run moved an unfinished amount.
    if not succeeded:
        return None, "", context
    rows = run.rows_written
    context["rows"] = rows
    if kind == AlertKind.ROWS_BELOW:
        context["bound"] = rule.threshold
        return (
            rows < (rule.threshold or 0),
            f"Pipeline {name}: {rows} rows moved (below {rule.threshold:g})",
            context,
        )
    if kind == AlertKind.ROWS_ABOVE:
        context["bound"] = rule.threshold
        return (
            rows > (rule.threshold or 0),
            f"Pipeline {name}: {rows} rows moved (above {rule.threshold:g})",
            context,
        )
    if kind == AlertKind.ROWS_ANOMALY:
        window = rule.window or DEFAULT_HISTORY
        history = [
            float(v)
            for v in _finished_runs(run.pipeline_id, before_id=run.pk)
            .filter(status="succeeded")
            .values_list("rows_written", flat=True)[:window]
        ]
        z = robust_z(float(rows), history)
        if z is None:
            return None, "", context
        bound = rule.threshold or DEFAULT_Z
        context.update(
            z=None if abs(z) == float("inf") else round(z, 2),
            median=statistics.median(history),
            history=len(history),
            bound=bound,
        )
        return (
            abs(z) > bound,
            f"Pipeline {name}: {rows} rows moved, unusual against the last {len(history)} runs",
            context,
        )
    return None, "", context


def evaluate_run(*, run_id: int) -> None:
    Run = apps.get_model("pipelines", "Run")
    run = Run.objects.select_related("pipeline").filter(pk=run_id).first()
    if run is None:
        return
    for rule in _rules(workspace_id=run.workspace_id, pipeline_id=run.pipeline_id, kinds=RUN_KINDS):
        holds, title, context = _evaluate_run_rule(rule, run)
        if holds is True:
            alert_trigger(
                rule=rule, subject_type="pipeline", subject_id=run.pipeline_id, title=title, context=context
            )
        elif holds is False:
            alert_clear(
                rule=rule,
                subject_type="pipeline",
                subject_id=run.pipeline_id,
                reason=f"run {run.pk} {run.status}",
            )


def evaluate_event(event: Event) -> None:
    """schema.drift_detected / quality.failed: the event's subject is what the alert is about."""
    kind = EVENT_KINDS[event.type]
    raw_pipeline = event.payload.get("pipeline") if isinstance(event.payload, dict) else None
    pipeline_id = (
        int(raw_pipeline) if isinstance(raw_pipeline, int | str) and str(raw_pipeline).isdigit() else None
    )
    for rule in _rules(workspace_id=event.workspace_id, pipeline_id=pipeline_id, kinds={kind}):
        if rule.pipeline_id is not None and rule.pipeline_id != pipeline_id:
            continue
        what = "Schema drift" if kind == AlertKind.SCHEMA_DRIFT else "Quality check failed"
        subject = f"{event.subject_type}:{event.subject_id}" if event.subject_type else "workspace"
        alert_trigger(
            rule=rule,
            subject_type=event.subject_type or "workspace",
            subject_id=event.subject_id or event.workspace_id,
            title=f"{what} on {subject}",
            context={"event": event.pk, "payload": event.payload},
        )


def handle_event(event: Event) -> None:
    """Event handler (settings.AGGREGATOR_EVENT_HANDLERS)."""
    if (
        event.type in ("run.succeeded", "run.failed")
        and event.subject_type == "run"
        and event.subject_id.isdigit()
    ):
        evaluate_run(run_id=int(event.subject_id))
    elif event.type in EVENT_KINDS:
        evaluate_event(event)


def check_freshness() -> int:
    """Beat task body: every freshness rule against each pipeline it covers. Returns alerts open after."""
    Pipeline = apps.get_model("pipelines", "Pipeline")
    Run = apps.get_model("pipelines", "Run")
    now = timezone.now()
    open_count = 0
    rules = AlertRule.objects.filter(kind=AlertKind.FRESHNESS, is_enabled=True).order_by("id")
    for rule in rules:
        window = timedelta(seconds=rule.window or 86400)
        pipelines = Pipeline.objects.filter(workspace_id=rule.workspace_id)
        if rule.pipeline_id is not None:
            pipelines = pipelines.filter(pk=rule.pipeline_id)
        for pipeline in pipelines.only("id", "name", "created_at"):
            if now - pipeline.created_at < window:
                continue  # a new pipeline has not had its first window yet
            last = (
                Run.objects.filter(pipeline_id=pipeline.pk, status="succeeded")
                .order_by("-finished_at")
                .values_list("finished_at", flat=True)
                .first()
            )
            if last is not None and now - last <= window:
                alert_clear(rule=rule, subject_type="pipeline", subject_id=pipeline.pk, reason="fresh again")
                continue
            since = f"since {last:%Y-%m-%d %H:%M} UTC" if last else "ever"
            alert_trigger(
                rule=rule,
                subject_type="pipeline",
                subject_id=pipeline.pk,
                title=f"Pipeline {pipeline.name}: no successful run {since}",
                context={"pipeline": pipeline.pk, "last_success": last.isoformat() if last else None},
            )
            open_count += 1
    return open_count
