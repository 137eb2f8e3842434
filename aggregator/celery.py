"""The Celery app. Settings come from Django's (CELERY_* names); tasks are found in each app's tasks.py."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready
from django_structlog.celery.steps import DjangoStructLogInitStep
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aggregator.settings.local")

app = Celery("aggregator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("runs"))
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**_kwargs: object) -> None:
    # Celery keeps Django's LOGGING (structlog) instead of installing its own handlers.
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


# django-structlog's step copies the request id bound in the web process into each task's log context.
app.steps["worker"].add(DjangoStructLogInitStep)


@worker_ready.connect
@worker_process_init.connect
def _load_connector_plugins(**_kwargs: object) -> None:
    # Importing every connector plugin (openpyxl, duckdb, …) takes a second or two; doing it when the worker
    # starts keeps that cost out of the first run it executes.
    from apps.connectors.registry import registry

    registry.all()
