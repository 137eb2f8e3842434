"""Thin Celery tasks: they take ids and call a service."""

from __future__ import annotations

from celery import shared_task

from .models import Delivery


# No autoretry here: the retry schedule of a delivery is data (its attempts and next_attempt_at), kept by
# the service, so a crashed or duplicated task never makes an extra attempt; the sweeper below re-enqueues
# what a lost message left behind.
@shared_task(name="webhooks.delivery_send", acks_late=True, ignore_result=True)
def delivery_send_task(delivery_id: int) -> str:
    from .services import delivery_send

    if not Delivery.objects.filter(pk=delivery_id).exists():
        return "gone"
    return delivery_send(delivery_id=delivery_id)


@shared_task(name="webhooks.deliveries_resend_lost", ignore_result=True)
def deliveries_resend_lost_task() -> int:
    from .services import deliveries_resend_lost

    return deliveries_resend_lost()


@shared_task(name="webhooks.deliveries_prune", ignore_result=True)
def deliveries_prune_task() -> int:
    from .services import deliveries_prune

    return deliveries_prune()
