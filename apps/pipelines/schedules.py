"""Pipeline schedules as django-celery-beat entries that the pipeline owns.

Each scheduled pipeline has one PeriodicTask (`pipeline:<id>`) calling `pipelines.scheduled_tick`. A tick
is identified by its scheduled time (the minute for cron schedules, the interval slot for intervals), and a
run carries it in `scheduled_for`, unique per pipeline: two beat processes firing the same tick make one
run between them."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

from celery.schedules import crontab
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from aggregator.logging import get_logger

from .models import ConcurrencyPolicy, Pipeline, Run, RunStatus, RunTrigger

logger = get_logger(__name__)

TASK_NAME = "pipelines.scheduled_tick"
MIN_INTERVAL_S = 10


def parse_cron(expression: str) -> dict[str, str]:
    """The five fields of a cron expression, checked; raises ValidationError naming `schedule_cron`."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValidationError(
            {"schedule_cron": ["A cron expression has five fields: minute hour day month weekday."]}
        )
    fields = dict(zip(("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), parts, strict=True))
    try:
        crontab(**fields)
    except (ValueError, TypeError) as exc:
        raise ValidationError({"schedule_cron": [f"Not a valid cron expression: {exc}"]}) from None
    return fields


def describe(pipeline: Pipeline) -> str:
    """The schedule in words, e.g. "At 06:00 AM, Monday through Friday (Europe/Paris)"."""
    if pipeline.schedule_cron:
        from cron_descriptor import get_description

        return f"{get_description(pipeline.schedule_cron)} ({pipeline.schedule_timezone})"
    if pipeline.schedule_interval_s:
        return f"Every {pipeline.schedule_interval_s} seconds"
    return ""


def validate_schedule(*, cron: str, interval_s: int | None, tz: str) -> None:
    if cron and interval_s:
        raise ValidationError({"schedule_cron": ["Choose a cron expression or an interval, not both."]})
    if cron:
        parse_cron(cron)
    if interval_s is not None and interval_s < MIN_INTERVAL_S:
        raise ValidationError({"schedule_interval_s": [f"At least {MIN_INTERVAL_S} seconds."]})
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError({"schedule_timezone": [f"Unknown time zone {tz!r}."]}) from None


def schedule_sync(pipeline: Pipeline) -> None:
    """Create, change or remove the pipeline's beat entry to match its schedule fields."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    if not pipeline.has_schedule:
        schedule_remove(pipeline)
        return
    validate_schedule(
        cron=pipeline.schedule_cron, interval_s=pipeline.schedule_interval_s, tz=pipeline.schedule_timezone
    )
    schedule_kwargs: dict[str, Any] = {"crontab": None, "interval": None}
    if pipeline.schedule_cron:
        schedule_kwargs["crontab"], _ = CrontabSchedule.objects.get_or_create(
            **parse_cron(pipeline.schedule_cron), timezone=zoneinfo.ZoneInfo(pipeline.schedule_timezone)
        )
    else:
        schedule_kwargs["interval"], _ = IntervalSchedule.objects.get_or_create(
            every=pipeline.schedule_interval_s, period=IntervalSchedule.SECONDS
        )
    values = {
        "task": TASK_NAME,
        "args": json.dumps([pipeline.id]),
        "enabled": not pipeline.is_paused,
        "description": f"Runs pipeline '{pipeline.name}' (workspace {pipeline.workspace_id}).",
        **schedule_kwargs,
    }
    task = pipeline.periodic_task
    if task is None:
        task = PeriodicTask.objects.create(name=f"pipeline:{pipeline.id}", **values)
        Pipeline.objects.filter(pk=pipeline.pk).update(periodic_task=task)
        pipeline.periodic_task = task
    else:
        for key, value in values.items():
            setattr(task, key, value)
        task.save()


def schedule_remove(pipeline: Pipeline) -> None:
    if pipeline.periodic_task_id:
        task_id = pipeline.periodic_task_id
        Pipeline.objects.filter(pk=pipeline.pk).update(periodic_task=None)
        pipeline.periodic_task = None
        from django_celery_beat.models import PeriodicTask

        PeriodicTask.objects.filter(pk=task_id).delete()


def tick_time(pipeline: Pipeline, now: dt.datetime) -> dt.datetime:
    """The scheduled time of the tick that fires now: the minute for cron, the interval slot otherwise."""
    if pipeline.schedule_interval_s:
        slot = int(now.timestamp()) // pipeline.schedule_interval_s * pipeline.schedule_interval_s
        return dt.datetime.fromtimestamp(slot, tz=dt.UTC)
    return now.replace(second=0, microsecond=0)


def schedule_fire(*, pipeline_id: int, now: dt.datetime | None = None) -> str:
    """What beat calls at each tick: at most one run per tick, per the concurrency policy."""
    from .services import run_start

    pipeline = Pipeline.objects.filter(pk=pipeline_id).first()
    if pipeline is None or pipeline.is_paused or not pipeline.has_schedule:
        return "skipped"
    now = now or timezone.now()
    scheduled_for = tick_time(pipeline, now)
    with transaction.atomic():
        active = Run.objects.filter(
            pipeline=pipeline, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
        ).exists()
        if active and pipeline.concurrency_policy == ConcurrencyPolicy.SKIP:
            logger.info("scheduled_tick_skipped", pipeline_id=pipeline.id, reason="run_in_progress")
            return "skipped"
        if Run.objects.filter(pipeline=pipeline, scheduled_for=scheduled_for).exists():
            return "duplicate"
        try:
            run_start(pipeline=pipeline, trigger=RunTrigger.SCHEDULE, scheduled_for=scheduled_for)
        except ValidationError:
            return "duplicate"  # another beat made this tick's run between our check and our insert
    return "started"
