"""The whole outgoing path on real processes: emit in a committed transaction → the handler queues a
delivery → a real Celery worker sends it → the receiver verifies it with the reference library."""

from __future__ import annotations

import pytest
from django.db import transaction

from aggregator.celery import app as celery_app
from apps.monitoring import events
from apps.webhooks.models import Delivery, DeliveryAttempt
from apps.webhooks.services import webhook_create
from tests.pipelines.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_real_worker_delivers_a_committed_event_and_nothing_for_a_rolled_back_one(personas, receiver):
    webhook, secret = webhook_create(workspace=personas.workspace, user=None, url=receiver.url)
    receiver.secrets.append(secret)
    celery_app.control.purge()  # messages other tests left in this test Redis db
    with Worker():
        try:
            with transaction.atomic():
                events.emit("run.failed", personas.workspace, ("run", 1), {"note": "rolled back"})
                raise RuntimeError
        except RuntimeError:
            pass
        with transaction.atomic():
            event = events.emit("run.succeeded", personas.workspace, ("run", 2), {"rows": 10})

        assert wait_for(lambda: Delivery.objects.filter(status="succeeded").exists(), timeout=60)
    (delivery,) = Delivery.objects.all()
    assert (delivery.webhook_id, delivery.event_id) == (webhook.id, event.id)
    assert DeliveryAttempt.objects.get(delivery=delivery).response_status == 200
    (request,) = receiver.requests
    assert request.verified_with == [0]
    assert request.json["type"] == "run.succeeded" and request.json["data"]["payload"] == {"rows": 10}
