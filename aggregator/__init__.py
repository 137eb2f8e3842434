"""Aggregator: connect sources and destinations, build pipelines, run and watch them."""

from .celery import app as celery_app

__all__ = ["celery_app"]
