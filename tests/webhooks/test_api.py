"""The webhooks API for the owner, an editor, a viewer and an outsider (another workspace: 404)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.webhooks.models import Delivery, DeliveryAttempt, Webhook
from apps.webhooks.services import delivery_send, webhook_create, webhook_send_test

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook(personas, receiver):
    webhook, secret = webhook_create(
        workspace=personas.workspace,
        user=personas.owner,
        url=receiver.url,
        event_types=["run.*"],
        description="ops",
    )
    receiver.secrets.append(secret)
    return webhook


def body_of(webhook, **overrides):
    webhook.refresh_from_db()
    body = {
        "id": webhook.id,
        "workspace": webhook.workspace_id,
        "url": webhook.url,
        "description": webhook.description,
        "event_types": webhook.event_types,
        "is_active": webhook.is_active,
        "secret": {"is_set": True},
        "previous_secret_expires_at": None,
        "consecutive_failures": 0,
        "disabled_reason": "",
        "disabled_at": None,
        "created_at": webhook.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": webhook.updated_at.isoformat().replace("+00:00", "Z"),
    }
    body.update(overrides)
    return body


def test_editor_creates_a_webhook_and_sees_its_secret_once(personas, client_for, receiver):
    response = client_for(personas.editor).post(
        "/api/v1/webhooks/",
        {"url": receiver.url, "event_types": ["run.failed", "schema.*"], "description": "pager"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body.pop("signing_secret")
    assert secret.startswith("whsec_") and len(secret) >= 6 + 32
    webhook = Webhook.objects.get()
    assert body == body_of(webhook)
    assert webhook.event_types == ["run.failed", "schema.*"]
    assert secret not in webhook.secret_encrypted  # stored encrypted

    detail = client_for(personas.viewer).get(f"/api/v1/webhooks/{webhook.id}/").json()
    assert detail == body_of(webhook)
    assert "signing_secret" not in detail


def test_invalid_input_is_refused_with_field_errors(personas, client_for, settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = []
    client = client_for(personas.editor)
    metadata = client.post("/api/v1/webhooks/", {"url": "http://169.254.169.254/latest/"}, format="json")
    assert metadata.status_code == 400
    assert metadata.json() == {
        "error": {
            "code": "validation_error",
            "message": "url: Address 169.254.169.254 of host 169.254.169.254 is not allowed (link-local)",
            "fields": {
                "url": ["Address 169.254.169.254 of host 169.254.169.254 is not allowed (link-local)"]
            },
        }
    }
    bad_filter = client.post(
        "/api/v1/webhooks/", {"url": "https://example.com/h", "event_types": ["run failed"]}, format="json"
    )
    assert bad_filter.status_code == 400
    assert list(bad_filter.json()["error"]["fields"]) == ["event_types"]
    assert not Webhook.objects.exists()


def test_viewer_reads_but_cannot_change(personas, client_for, webhook, django_assert_max_num_queries):
    for _ in range(5):
        webhook_create(workspace=personas.workspace, user=None, url=webhook.url)
    client = client_for(personas.viewer)
    with django_assert_max_num_queries(5):  # membership, count, page: not one per webhook
        listed = client.get("/api/v1/webhooks/").json()
    assert listed["count"] == 6
    assert listed["results"][0] == body_of(webhook)
    Webhook.objects.exclude(pk=webhook.pk).delete()
    assert client.post("/api/v1/webhooks/", {"url": webhook.url}, format="json").status_code == 403
    assert (
        client.patch(f"/api/v1/webhooks/{webhook.id}/", {"description": "x"}, format="json").status_code
        == 403
    )
    assert client.delete(f"/api/v1/webhooks/{webhook.id}/").status_code == 403
    assert client.post(f"/api/v1/webhooks/{webhook.id}/rotate-secret/", {}, format="json").status_code == 403
    assert client.post(f"/api/v1/webhooks/{webhook.id}/test/").status_code == 403
    assert client.get(f"/api/v1/webhooks/{webhook.id}/deliveries/").status_code == 200
    assert Webhook.objects.get().description == "ops" and not Delivery.objects.exists()


def test_outsider_gets_404_for_everything(personas, client_for, webhook):
    delivery = webhook_send_test(webhook=webhook)
    client = client_for(personas.outsider)
    assert client.get("/api/v1/webhooks/").json()["results"] == []
    for method, path in [
        ("get", f"/api/v1/webhooks/{webhook.id}/"),
        ("patch", f"/api/v1/webhooks/{webhook.id}/"),
        ("delete", f"/api/v1/webhooks/{webhook.id}/"),
        ("post", f"/api/v1/webhooks/{webhook.id}/rotate-secret/"),
        ("post", f"/api/v1/webhooks/{webhook.id}/test/"),
        ("get", f"/api/v1/webhooks/{webhook.id}/deliveries/"),
        ("get", f"/api/v1/webhook-deliveries/{delivery.id}/"),
        ("post", f"/api/v1/webhook-deliveries/{delivery.id}/redeliver/"),
    ]:
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}
    assert Webhook.objects.filter(id=webhook.id).exists()
    assert Delivery.objects.count() == 1


def test_editor_updates_and_switches_a_disabled_webhook_back_on(personas, client_for, webhook):
    Webhook.objects.filter(pk=webhook.pk).update(
        is_active=False,
        consecutive_failures=5,
        disabled_reason="5 deliveries in a row failed.",
        disabled_at=timezone.now(),
    )
    response = client_for(personas.editor).patch(
        f"/api/v1/webhooks/{webhook.id}/", {"is_active": True, "event_types": ["*"]}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == body_of(webhook, event_types=["*"])
    assert (webhook.is_active, webhook.consecutive_failures, webhook.disabled_reason) == (True, 0, "")


def test_owner_deletes_a_webhook(personas, client_for, webhook):
    assert client_for(personas.owner).delete(f"/api/v1/webhooks/{webhook.id}/").status_code == 204
    assert not Webhook.objects.exists()


def test_rotate_secret_returns_the_new_secret_once(personas, client_for, webhook):
    response = client_for(personas.editor).post(
        f"/api/v1/webhooks/{webhook.id}/rotate-secret/", {"overlap_seconds": 600}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    secret = body.pop("signing_secret")
    assert secret.startswith("whsec_")
    webhook.refresh_from_db()
    assert body == body_of(
        webhook,
        previous_secret_expires_at=webhook.previous_secret_expires_at.isoformat().replace("+00:00", "Z"),
    )
    assert 590 < (webhook.previous_secret_expires_at - timezone.now()).total_seconds() <= 600
    too_long = client_for(personas.editor).post(
        f"/api/v1/webhooks/{webhook.id}/rotate-secret/", {"overlap_seconds": 10**9}, format="json"
    )
    assert too_long.status_code == 400


def test_test_send_and_the_delivery_list_with_attempts(
    personas, client_for, webhook, receiver, django_assert_max_num_queries
):
    receiver.answer(500, body="down for maintenance")
    response = client_for(personas.editor).post(f"/api/v1/webhooks/{webhook.id}/test/")
    assert response.status_code == 202
    delivery = Delivery.objects.get()
    assert response.json()["id"] == delivery.id and response.json()["status"] == "pending"
    assert delivery_send(delivery_id=delivery.id) == "retrying"
    for _ in range(3):
        delivery_send(delivery_id=webhook_send_test(webhook=webhook).id)

    client = client_for(personas.viewer)
    with django_assert_max_num_queries(8):
        listed = client.get(f"/api/v1/webhooks/{webhook.id}/deliveries/").json()
    assert listed["count"] == 4
    oldest = listed["results"][-1]
    delivery.refresh_from_db()
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    iso = lambda value: value.isoformat().replace("+00:00", "Z")  # noqa: E731
    assert oldest == {
        "id": delivery.id,
        "webhook": webhook.id,
        "event_type": "webhook.test",
        "event_id": None,
        "message_id": delivery.message_id,
        "is_test": True,
        "status": "pending",
        "attempt_count": 1,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "created_at": iso(delivery.created_at),
        "finished_at": None,
        "payload": {
            "type": "webhook.test",
            "timestamp": oldest["payload"]["timestamp"],
            "data": {
                "webhook": webhook.id,
                "workspace": personas.workspace.id,
                "message": "A test delivery.",
            },
        },
        "attempts": [
            {
                "number": 1,
                "outcome": "failed",
                "response_status": 500,
                "response_body": "down for maintenance",
                "error": "HTTP 500.",
                "latency_ms": attempt.latency_ms,
                "started_at": iso(attempt.started_at),
                "next_retry_at": iso(attempt.next_retry_at),
            }
        ],
    }
    assert [d["attempts"][0]["outcome"] for d in listed["results"][:3]] == ["succeeded"] * 3
    pending = client.get(f"/api/v1/webhooks/{webhook.id}/deliveries/?status=pending").json()
    assert [d["id"] for d in pending["results"]] == [delivery.id]
    assert client.get(f"/api/v1/webhooks/{webhook.id}/deliveries/?status=nope").status_code == 400


def test_redeliver_through_the_api(personas, client_for, webhook, receiver, settings):
    settings.AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S = []
    receiver.answer(500)
    delivery = webhook_send_test(webhook=webhook)
    assert delivery_send(delivery_id=delivery.id) == "failed"
    assert (
        client_for(personas.viewer).post(f"/api/v1/webhook-deliveries/{delivery.id}/redeliver/").status_code
        == 403
    )
    response = client_for(personas.editor).post(f"/api/v1/webhook-deliveries/{delivery.id}/redeliver/")
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["attempt_count"]) == ("pending", 1)
    assert delivery_send(delivery_id=delivery.id) == "succeeded"
    detail = client_for(personas.viewer).get(f"/api/v1/webhook-deliveries/{delivery.id}/").json()
    assert [(a["number"], a["response_status"]) for a in detail["attempts"]] == [(1, 500), (2, 200)]
    assert detail["status"] == "succeeded"
