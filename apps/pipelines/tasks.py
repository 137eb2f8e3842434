"""Thin Celery tasks: they take ids and call the executor or a service."""

from __future__ import annotations

from celery import shared_task

from .models import Run


@shared_task(name="pipelines.run_execute", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_execute_task(run_id: int, attempt: int = 1) -> str:
    from .executor import run_execute

    if not Run.objects.filter(pk=run_id).exists():
        return "gone"
    return run_execute(run_id=run_id, attempt=attempt)


@shared_task(name="pipelines.watchdog", ignore_result=True)
def watchdog_task() -> int:
    from .services import runs_recover_stale

    return runs_recover_stale()


@shared_task(name="pipelines.scheduled_tick", ignore_result=True)
def scheduled_tick_task(pipeline_id: int) -> str:
    from .schedules import schedule_fire

    return schedule_fire(pipeline_id=pipeline_id)
