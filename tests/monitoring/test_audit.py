"""The audit log: who changed what, before/after without secrets, from where and with which credential; read
by workspace admins only; pruned after the retention period."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from rest_framework.test import APIClient

from apps.connectors.models import Connector
from apps.monitoring.audit import audit_prune
from apps.monitoring.models import AuditEntry
from apps.users.services import api_key_create
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db

CANARY = "canary-Pa55word-7f3e9b"


def postgres_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "warehouse",
        "connector_type": "postgres",
        "config": {
            "host": "127.0.0.1",
            "port": 5432,
            "database": "dw",
            "user": "loader",
            "password": CANARY,
            "schema": "public",
            "sslmode": "disable",
        },
    }
    body.update(overrides)
    return body


def jwt_client(email: str, address: str = "203.0.113.7") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    pair = client.post("/api/v1/auth/token/", {"email": email, "password": DEFAULT_PASSWORD}).json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    return client


def connector_entries(connector_id: int) -> list[AuditEntry]:
    content_type = ContentType.objects.get_for_model(Connector)
    return list(
        AuditEntry.objects.filter(content_type=content_type, object_pk=str(connector_id)).order_by("id")
    )


def assert_no_canary_anywhere() -> None:
    rows = list(AuditEntry.objects.values())
    assert rows
    assert CANARY not in json.dumps(rows, default=str)


def test_connector_create_update_delete_are_recorded_with_actor_address_credential_and_no_secret(
    personas, settings
):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    client = jwt_client("editor@acme.test")

    created = client.post("/api/v1/connectors/", postgres_body(), format="json")
    assert created.status_code == 201, created.json()
    connector_id = created.json()["id"]
    url = f"/api/v1/connectors/{connector_id}/"
    changed = client.patch(
        url, {"config": {"database": "warehouse", "password": CANARY + "-rotated"}}, format="json"
    )
    assert changed.status_code == 200, changed.json()
    assert client.delete(url).status_code == 204

    create, update, delete = connector_entries(connector_id)
    for entry in (create, update, delete):
        assert (entry.actor_id, entry.actor_email) == (personas.editor.id, "editor@acme.test")
        assert (entry.remote_addr, entry.credential) == ("203.0.113.7", "jwt")
        assert entry.workspace_id == personas.workspace.id
    assert [e.action for e in (create, update, delete)] == [
        AuditEntry.Action.CREATE,
        AuditEntry.Action.UPDATE,
        AuditEntry.Action.DELETE,
    ]
    assert create.changes["name"] == [None, "warehouse"]
    assert create.changes["secrets_encrypted"] == ["", "***"]
    # The update shows what changed in the plain config and that the secret changed, never its value.
    before, after = update.changes["config"]
    assert (before["database"], after["database"]) == ("dw", "warehouse")
    assert "password" not in before and "password" not in after
    assert update.changes["secrets_encrypted"] == ["***", "***"]
    assert delete.changes["name"] == ["warehouse", None]
    assert_no_canary_anywhere()


def test_session_and_api_key_credentials_are_told_apart(personas, settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    session = APIClient(REMOTE_ADDR="198.51.100.4")
    session.force_login(personas.owner)  # a real session cookie, authenticated by SessionAuthentication
    session_id = session.post("/api/v1/connectors/", postgres_body(name="by-session"), format="json").json()[
        "id"
    ]

    _key, raw = api_key_create(
        workspace=personas.workspace, user=personas.editor, name="ci", scopes=["write"]
    )
    keyed = APIClient(REMOTE_ADDR="198.51.100.5")
    keyed.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    response = keyed.post("/api/v1/connectors/", postgres_body(name="by-key"), format="json")
    assert response.status_code == 201, response.json()

    (by_session,) = connector_entries(session_id)
    (by_key,) = connector_entries(response.json()["id"])
    assert (by_session.credential, by_session.actor_id, by_session.remote_addr) == (
        "session",
        personas.owner.id,
        "198.51.100.4",
    )
    assert (by_key.credential, by_key.actor_id, by_key.remote_addr) == (
        "api_key",
        personas.editor.id,
        "198.51.100.5",
    )
    assert_no_canary_anywhere()


def test_a_change_outside_a_request_is_recorded_as_system(personas, settings):
    from apps.connectors.services import connector_create

    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]  # the body's host

    connector = connector_create(
        workspace=personas.workspace,
        name="from-a-command",
        connector_type="postgres",
        config=postgres_body()["config"],
        user=None,
    )
    (entry,) = connector_entries(connector.id)
    assert (entry.credential, entry.actor_id, entry.remote_addr) == ("system", None, None)
    assert entry.workspace_id == personas.workspace.id


def test_api_key_hashes_are_masked(personas):
    key, _raw = api_key_create(workspace=personas.workspace, user=personas.owner, name="ci", scopes=["read"])
    entry = AuditEntry.objects.get(object_pk=str(key.id), content_type=ContentType.objects.get_for_model(key))
    assert entry.changes["key_hash"] == ["", "***"]
    assert key.key_hash not in json.dumps(entry.changes)


def test_retention_prunes_old_entries_only(personas, settings):
    settings.AGGREGATOR_AUDIT_RETENTION_DAYS = 30
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]  # the body's host
    from apps.connectors.services import connector_create

    AuditEntry.objects.all().delete()  # the personas' own creation entries

    connector_create(
        workspace=personas.workspace,
        name="a",
        connector_type="postgres",
        config=postgres_body()["config"],
        user=None,
    )
    old = AuditEntry.objects.get()
    AuditEntry.objects.filter(id=old.id).update(timestamp=timezone.now() - timedelta(days=31))
    recent = AuditEntry.objects.create(
        content_type=old.content_type, object_pk="1", object_repr="x", action=0, workspace_id=old.workspace_id
    )
    assert audit_prune() == 1
    assert list(AuditEntry.objects.values_list("id", flat=True)) == [recent.id]


def test_the_prune_task_is_scheduled_daily(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["monitoring-audit-prune"]
    assert (entry["task"], entry["schedule"]) == ("monitoring.audit_prune", 86400.0)
