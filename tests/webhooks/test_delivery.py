"""Outgoing deliveries end to end: events.emit → (after commit) handler → Delivery → the task → a real
receiver on 127.0.0.1 that verifies every request with the standardwebhooks reference library."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from apps.monitoring import events
from apps.monitoring.models import Event
from apps.webhooks.models import AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, Webhook
from apps.webhooks.services import (
    deliveries_resend_lost,
    delivery_redeliver,
    delivery_send,
    webhook_create,
    webhook_rotate_secret,
    webhook_send_test,
    webhook_update,
)
from apps.webhooks.tasks import delivery_send_task

pytestmark = pytest.mark.django_db


def make_webhook(personas, receiver, **kwargs):
    webhook, secret = webhook_create(
        workspace=personas.workspace, user=personas.owner, url=receiver.url, **kwargs
    )
    receiver.secrets.append(secret)
    return webhook


def emit_committed(django_capture_on_commit_callbacks, type_="run.failed", payload=None, workspace=None):
    with django_capture_on_commit_callbacks(execute=True):
        return events.emit(type_, workspace, ("run", 7), payload or {"pipeline": 3, "error": "boom"})


def make_due(delivery_id):
    Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))


def test_an_event_is_delivered_signed_after_commit(personas, receiver, django_capture_on_commit_callbacks):
    webhook = make_webhook(personas, receiver, event_types=["run.*"])
    event = emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)

    (delivery,) = Delivery.objects.filter(webhook=webhook)
    assert (delivery.status, delivery.event_type, delivery.event_id) == ("pending", "run.failed", event.id)
    assert delivery_send_task(delivery.id) == "succeeded"

    (request,) = receiver.requests
    assert request.verified_with == [0]  # the reference library accepts the signature
    assert request.headers["webhook-id"] == delivery.message_id
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "type": "run.failed",
        "timestamp": event.created_at.isoformat(),
        "data": {
            "event_id": event.id,
            "workspace": personas.workspace.id,
            "subject": {"type": "run", "id": "7"},
            "payload": {"pipeline": 3, "error": "boom"},
        },
    }
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.SUCCEEDED, 1)
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.number, attempt.outcome, attempt.response_status, attempt.response_body) == (
        1,
        AttemptOutcome.SUCCEEDED,
        200,
        "ok",
    )
    assert attempt.next_retry_at is None and attempt.latency_ms >= 0


def test_filters_pick_the_subscriptions_an_event_goes_to(
    personas, receiver, django_capture_on_commit_callbacks
):
    exact = make_webhook(personas, receiver, event_types=["run.failed"])
    wildcard = make_webhook(personas, receiver, event_types=["run.*"])
    everything = make_webhook(personas, receiver)
    other = make_webhook(personas, receiver, event_types=["pipeline.created", "schema.*"])
    off = make_webhook(personas, receiver)
    webhook_update(webhook=off, is_active=False)
    elsewhere, _ = webhook_create(workspace=personas.other_workspace, user=None, url=receiver.url)

    emit_committed(django_capture_on_commit_callbacks, "run.succeeded", workspace=personas.workspace)
    assert set(Delivery.objects.values_list("webhook_id", flat=True)) == {wildcard.id, everything.id}
    emit_committed(django_capture_on_commit_callbacks, "run.failed", workspace=personas.workspace)
    assert Delivery.objects.filter(webhook=exact).count() == 1
    assert not Delivery.objects.filter(webhook__in=[other, off, elsewhere]).exists()


def test_a_rolled_back_transaction_sends_nothing(personas, receiver, django_capture_on_commit_callbacks):
    make_webhook(personas, receiver)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                events.emit("run.failed", personas.workspace, ("run", 1), {})
                raise RuntimeError("the emitter fails after emitting")
        except RuntimeError:
            pass
    assert callbacks == []
    assert not Event.objects.exists()
    assert not Delivery.objects.exists()
    assert receiver.requests == []


def test_500_500_200_is_retried_on_the_schedule(
    personas, receiver, fast_retries, django_capture_on_commit_callbacks
):
    webhook = make_webhook(personas, receiver)
    receiver.answer(500, 500, body="upstream broke")
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get(webhook=webhook)

    assert delivery_send(delivery_id=delivery.id) == "retrying"
    delivery.refresh_from_db()
    first = DeliveryAttempt.objects.get(delivery=delivery, number=1)
    assert (delivery.status, first.response_status, first.error) == ("pending", 500, "HTTP 500.")
    assert first.response_body == "upstream broke"
    # The next attempt is 60 s (the schedule's first step) after this one ended.
    assert dt.timedelta(seconds=60) <= first.next_retry_at - first.started_at < dt.timedelta(seconds=65)
    assert delivery.next_attempt_at == first.next_retry_at
    # Not due yet: a task arriving early (a duplicate, a resend) does nothing.
    assert delivery_send(delivery_id=delivery.id) == "not_due"
    assert len(receiver.requests) == 1

    make_due(delivery.id)
    assert delivery_send(delivery_id=delivery.id) == "retrying"
    second = DeliveryAttempt.objects.get(delivery=delivery, number=2)
    assert dt.timedelta(seconds=600) <= second.next_retry_at - second.started_at < dt.timedelta(seconds=605)

    make_due(delivery.id)
    assert delivery_send(delivery_id=delivery.id) == "succeeded"
    attempts = list(
        DeliveryAttempt.objects.filter(delivery=delivery).values_list("number", "outcome", "response_status")
    )
    assert attempts == [(1, "failed", 500), (2, "failed", 500), (3, "succeeded", 200)]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == ("succeeded", 3, None)
    # Same webhook-id on every attempt (receivers deduplicate on it), each one verifiable.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}
    assert all(r.verified_with == [0] for r in receiver.requests)


def test_a_delivery_fails_after_the_last_scheduled_attempt(
    personas, receiver, fast_retries, django_capture_on_commit_callbacks
):
    webhook = make_webhook(personas, receiver)
    receiver.answer(503, 503, 503)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get(webhook=webhook)
    outcomes = []
    for _ in range(3):
        make_due(delivery.id)
        outcomes.append(delivery_send(delivery_id=delivery.id))
    assert outcomes == ["retrying", "retrying", "failed"]
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.finished_at is not None
    assert DeliveryAttempt.objects.get(delivery=delivery, number=3).next_retry_at is None
    webhook.refresh_from_db()
    assert (webhook.is_active, webhook.consecutive_failures) == (True, 1)


def test_410_gone_disables_the_endpoint_at_once(personas, receiver, django_capture_on_commit_callbacks):
    webhook = make_webhook(personas, receiver, event_types=["run.*"])
    watcher = make_webhook(personas, receiver, event_types=["webhook.disabled"])
    receiver.answer(410)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get(webhook=webhook)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery_send(delivery_id=delivery.id) == "failed"

    webhook.refresh_from_db()
    assert webhook.is_active is False
    assert webhook.disabled_reason == "The endpoint answered 410 Gone."
    event = Event.objects.get(type="webhook.disabled")
    assert (event.subject_type, event.subject_id) == ("webhook", str(webhook.id))
    assert event.payload == {"webhook": webhook.id, "reason": "The endpoint answered 410 Gone."}
    # The disabled event itself goes to whoever subscribed to it.
    assert Delivery.objects.get(webhook=watcher).event_type == "webhook.disabled"
    # And the disabled endpoint gets nothing more.
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    assert Delivery.objects.filter(webhook=webhook).count() == 1


def test_persistent_failure_disables_after_n_failed_deliveries(
    personas, receiver, settings, django_capture_on_commit_callbacks
):
    settings.AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S = []
    settings.AGGREGATOR_WEBHOOK_DISABLE_AFTER = 2
    webhook = make_webhook(personas, receiver)
    receiver.answer(500, 500)
    for _ in range(2):
        emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    for delivery in Delivery.objects.filter(webhook=webhook).order_by("id"):
        with django_capture_on_commit_callbacks(execute=True):
            assert delivery_send(delivery_id=delivery.id) == "failed"
    webhook.refresh_from_db()
    assert (webhook.is_active, webhook.consecutive_failures) == (False, 2)
    assert webhook.disabled_reason == "2 deliveries in a row failed."
    assert Event.objects.filter(type="webhook.disabled").count() == 1


def test_a_success_resets_the_failure_streak(
    personas, receiver, settings, django_capture_on_commit_callbacks
):
    settings.AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S = []
    webhook = make_webhook(personas, receiver)
    receiver.answer(500)
    for _ in range(2):
        emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    results = [delivery_send(delivery_id=d.id) for d in Delivery.objects.order_by("id")]
    assert results == ["failed", "succeeded"]
    webhook.refresh_from_db()
    assert webhook.consecutive_failures == 0


def test_a_4xx_fails_without_retry(personas, receiver, fast_retries, django_capture_on_commit_callbacks):
    webhook = make_webhook(personas, receiver)
    receiver.answer(400, body="bad request")
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get(webhook=webhook)
    assert delivery_send(delivery_id=delivery.id) == "failed"
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.response_status, attempt.error, attempt.next_retry_at) == (
        400,
        "HTTP 400: not retried.",
        None,
    )


def test_429_is_retried(personas, receiver, fast_retries, django_capture_on_commit_callbacks):
    make_webhook(personas, receiver)
    receiver.answer(429)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "retrying"


def test_a_redirect_is_a_failure_and_is_not_followed(
    personas, receiver, fast_retries, django_capture_on_commit_callbacks
):
    webhook = make_webhook(personas, receiver)
    receiver.answer(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get(webhook=webhook)
    assert delivery_send(delivery_id=delivery.id) == "retrying"
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.response_status, attempt.error) == (302, "Redirects are not followed.")
    assert len(receiver.requests) == 1


def test_the_response_body_is_kept_to_1_kb(personas, receiver, django_capture_on_commit_callbacks):
    make_webhook(personas, receiver)
    receiver.answer(200, body="x" * 5000)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery_send(delivery_id=Delivery.objects.get().id)
    assert DeliveryAttempt.objects.get().response_body == "x" * 1024


def test_a_slow_endpoint_times_out_and_is_retried(
    personas, receiver, fast_retries, settings, django_capture_on_commit_callbacks
):
    settings.AGGREGATOR_WEBHOOK_TIMEOUT_S = 0.3
    receiver.delay = 1.0
    receiver.answer(None)
    make_webhook(personas, receiver)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "retrying"
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.response_status, attempt.error) == (None, "No answer within 0.3 seconds.")


def test_a_refused_connection_is_retried(
    personas, receiver, fast_retries, django_capture_on_commit_callbacks
):
    webhook = make_webhook(personas, receiver)
    Webhook.objects.filter(pk=webhook.pk).update(
        url="http://127.0.0.1:9/hook"
    )  # discard port: nobody listens
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "retrying"
    assert DeliveryAttempt.objects.get().error == "Connection failed (ConnectError)."


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:8080/hook"])
def test_ssrf_targets_are_refused_at_save(personas, settings, url):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    with pytest.raises(ValidationError) as caught:
        webhook_create(workspace=personas.workspace, user=personas.owner, url=url)
    assert "is not allowed" in caught.value.message_dict["url"][0]
    webhook, _ = webhook_create(workspace=personas.workspace, user=None, url="http://127.0.0.1:8080/hook")
    with pytest.raises(ValidationError):
        webhook_update(webhook=webhook, url=url)
    assert Webhook.objects.get().url == "http://127.0.0.1:8080/hook"


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:8080/hook"])
def test_ssrf_targets_are_refused_at_delivery(
    personas, receiver, fast_retries, url, django_capture_on_commit_callbacks
):
    # A row that got past the save-time check (an allow-list since narrowed, a DNS answer since changed).
    webhook = make_webhook(personas, receiver)
    Webhook.objects.filter(pk=webhook.pk).update(url=url)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get()
    assert delivery_send(delivery_id=delivery.id) == "failed"
    attempt = DeliveryAttempt.objects.get()
    assert attempt.error.startswith("Refused: Address ") and "is not allowed" in attempt.error
    assert attempt.response_status is None and attempt.next_retry_at is None
    assert receiver.requests == []


def test_a_narrowed_allow_list_stops_delivery_to_a_saved_url(
    personas, receiver, settings, django_capture_on_commit_callbacks
):
    make_webhook(personas, receiver)
    settings.AGGREGATOR_ALLOWED_HOSTS = []
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "failed"
    assert "loopback" in DeliveryAttempt.objects.get().error
    assert receiver.requests == []


def test_secret_rotation_overlap_signs_with_both_secrets(
    personas, receiver, django_capture_on_commit_callbacks
):
    webhook = make_webhook(personas, receiver)
    webhook, new_secret = webhook_rotate_secret(webhook=webhook, overlap_s=3600)
    receiver.secrets.append(new_secret)
    assert new_secret != receiver.secrets[0] and new_secret.startswith("whsec_")
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery_send(delivery_id=Delivery.objects.get().id)
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert request.verified_with == [0, 1]  # the old and the new secret both verify

    # Once the overlap is over, only the new secret signs.
    Webhook.objects.filter(pk=webhook.pk).update(
        previous_secret_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery_send(delivery_id=Delivery.objects.order_by("-id").first().id)
    assert receiver.requests[1].verified_with == [1]


def test_rotation_without_overlap_drops_the_old_secret_at_once(
    personas, receiver, django_capture_on_commit_callbacks
):
    webhook = make_webhook(personas, receiver)
    _, new_secret = webhook_rotate_secret(webhook=webhook, overlap_s=0)
    receiver.secrets.append(new_secret)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery_send(delivery_id=Delivery.objects.get().id)
    assert receiver.requests[0].verified_with == [1]


def test_redeliver_makes_new_attempts_on_the_same_delivery(
    personas, receiver, settings, django_capture_on_commit_callbacks
):
    settings.AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S = []
    make_webhook(personas, receiver)
    receiver.answer(500)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get()
    assert delivery_send(delivery_id=delivery.id) == "failed"

    with django_capture_on_commit_callbacks() as callbacks:
        delivery_redeliver(delivery=delivery)
    assert len(callbacks) == 1  # the task is enqueued after commit
    assert delivery_send(delivery_id=delivery.id) == "succeeded"
    assert list(DeliveryAttempt.objects.values_list("number", "response_status")) == [(1, 500), (2, 200)]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.message_id] * 2


def test_a_test_send_goes_to_that_endpoint_only(personas, receiver, django_capture_on_commit_callbacks):
    webhook = make_webhook(personas, receiver, event_types=["run.failed"])
    make_webhook(personas, receiver)
    delivery = webhook_send_test(webhook=webhook)
    assert delivery_send(delivery_id=delivery.id) == "succeeded"
    (request,) = receiver.requests
    assert request.json["type"] == "webhook.test"
    assert request.json["data"] == {
        "webhook": webhook.id,
        "workspace": personas.workspace.id,
        "message": "A test delivery.",
    }
    assert request.verified_with == [0]
    assert Delivery.objects.count() == 1


def test_deliveries_of_a_disabled_endpoint_are_dropped_unsent(
    personas, receiver, django_capture_on_commit_callbacks
):
    webhook = make_webhook(personas, receiver)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    webhook_update(webhook=webhook, is_active=False)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "webhook_disabled"
    assert Delivery.objects.get().status == "failed"
    assert receiver.requests == [] and not DeliveryAttempt.objects.exists()


def test_the_sweeper_frees_deliveries_a_dead_worker_left_sending(
    personas, receiver, django_capture_on_commit_callbacks
):
    make_webhook(personas, receiver)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get()
    long_ago = timezone.now() - dt.timedelta(hours=1)
    Delivery.objects.filter(pk=delivery.pk).update(
        status="sending", claimed_at=long_ago, next_attempt_at=long_ago
    )
    assert deliveries_resend_lost(grace_s=0) == 1
    assert Delivery.objects.get().status == "pending"
    assert delivery_send(delivery_id=delivery.id) == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_duplicated_task_never_sends_twice_concurrently(
    personas, receiver, django_capture_on_commit_callbacks
):
    receiver.delay = 0.5
    receiver.answer(None)  # the first request hangs half a second while the duplicate arrives
    make_webhook(personas, receiver)
    events.emit("run.failed", personas.workspace, ("run", 1), {})  # autocommit: handlers ran at once
    delivery = Delivery.objects.get()
    results: list[str] = []

    def worker() -> None:
        try:
            results.append(delivery_send(delivery_id=delivery.id))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["not_due", "not_due", "not_due", "succeeded"]
    assert len(receiver.requests) == 1


def test_a_delivery_claimed_by_another_worker_is_not_sent_again(
    personas, receiver, django_capture_on_commit_callbacks
):
    make_webhook(personas, receiver)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", claimed_at=timezone.now())
    assert delivery_send_task(delivery.id) == "not_due"
    assert receiver.requests == [] and not DeliveryAttempt.objects.exists()
    assert delivery_send_task(999_999) == "gone"


def test_secrets_are_resealed_with_a_new_first_key(
    personas, receiver, settings, django_capture_on_commit_callbacks
):
    from cryptography.fernet import Fernet

    from apps.webhooks.services import secrets_reencrypt

    webhook = make_webhook(personas, receiver)
    old_token = Webhook.objects.get().secret_encrypted
    settings.AGGREGATOR_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.AGGREGATOR_ENCRYPTION_KEYS,
    ]
    assert secrets_reencrypt() == {"rotated": 1, "current": 0, "failed": 0}
    assert secrets_reencrypt() == {"rotated": 0, "current": 1, "failed": 0}
    settings.AGGREGATOR_ENCRYPTION_KEYS = settings.AGGREGATOR_ENCRYPTION_KEYS[:1]
    webhook.refresh_from_db()
    assert webhook.secret_encrypted != old_token
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "succeeded"
    assert receiver.requests[0].verified_with == [0]  # the same secret, sealed with the new key


def test_a_crash_while_sending_is_recorded_and_retried(
    personas, receiver, fast_retries, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.webhooks import delivery

    make_webhook(personas, receiver)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)

    def broken(*args, **kwargs):
        raise KeyError("bug")

    monkeypatch.setattr(delivery, "_post", broken)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "retrying"
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.error) == ("failed", "Internal error (KeyError).")
    assert Delivery.objects.get().status == "pending"


def test_a_nul_in_the_response_body_is_stored_harmlessly(
    personas, receiver, django_capture_on_commit_callbacks
):
    make_webhook(personas, receiver)
    receiver.answer(200, body="ok\x00then")
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    assert delivery_send(delivery_id=Delivery.objects.get().id) == "succeeded"
    assert DeliveryAttempt.objects.get().response_body == "ok\ufffdthen"


def test_old_finished_deliveries_are_pruned(personas, receiver, django_capture_on_commit_callbacks):
    from apps.webhooks.services import deliveries_prune

    make_webhook(personas, receiver)
    for _ in range(3):
        emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)
    old_done, old_pending, recent = Delivery.objects.order_by("id")
    delivery_send(delivery_id=old_done.id)
    delivery_send(delivery_id=recent.id)
    long_ago = timezone.now() - dt.timedelta(days=31)
    Delivery.objects.filter(id__in=[old_done.id, old_pending.id]).update(created_at=long_ago)
    assert deliveries_prune(batch=1) == 1
    assert set(Delivery.objects.values_list("id", flat=True)) == {old_pending.id, recent.id}
    assert list(DeliveryAttempt.objects.values_list("delivery_id", flat=True)) == [recent.id]


def test_a_broker_outage_leaves_the_delivery_for_the_sweeper(
    personas, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.webhooks import tasks

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    make_webhook(personas, receiver)
    monkeypatch.setattr(tasks.delivery_send_task, "apply_async", down)
    emit_committed(django_capture_on_commit_callbacks, workspace=personas.workspace)  # does not raise
    delivery = Delivery.objects.get()
    assert delivery.status == "pending"
    monkeypatch.undo()
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - dt.timedelta(minutes=5))
    assert deliveries_resend_lost() == 1
    assert delivery_send(delivery_id=delivery.id) == "succeeded"
