"""Non-API paths of incoming webhooks, mounted under /hooks/ by aggregator/urls.py."""

from django.urls import path

from . import incoming

urlpatterns = [
    path("pipelines/<str:token>/trigger", incoming.pipeline_trigger, name="hooks-pipeline-trigger"),
    path("ingest/<str:token>", incoming.push_ingest, name="hooks-push-ingest"),
]
