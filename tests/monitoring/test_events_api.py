"""`/api/v1/events/` and `/api/v1/audit-log/` for owner (admin), editor, viewer and outsider."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.monitoring import events
from apps.monitoring.models import AuditEntry, Event

pytestmark = pytest.mark.django_db


def body(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "workspace": event.workspace_id,
        "subject": {"type": event.subject_type, "id": event.subject_id},
        "payload": event.payload,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }


@pytest.fixture
def history(personas: Any) -> dict[str, Event]:
    ws = personas.workspace
    made = {
        "queued": events.emit("run.queued", ws, ("run", 1), {"pipeline": 9}),
        "started": events.emit("run.started", ws, ("run", 1), {"attempt": 1}),
        "created": events.emit("pipeline.created", ws, ("pipeline", 9), {"name": "p"}),
        "failed": events.emit("run.failed", ws, ("run", 2), {"error": "boom"}),
        "theirs": events.emit("run.failed", personas.other_workspace, ("run", 3), {"error": "x"}),
    }
    # Spread over time so since/until have something to cut.
    base = timezone.now() - timedelta(hours=4)
    for hours, key in enumerate(["queued", "started", "created", "failed", "theirs"]):
        Event.objects.filter(id=made[key].id).update(created_at=base + timedelta(hours=hours))
        made[key].refresh_from_db()
    return made


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def test_a_viewer_lists_the_workspace_events_newest_first_with_whole_bodies(personas, client_for, history):
    response = client_for(personas.viewer).get("/api/v1/events/")
    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": None,
        "previous": None,
        "results": [body(history[k]) for k in ["failed", "created", "started", "queued"]],
    }


def test_the_outsider_sees_none_of_another_workspace(personas, client_for, history):
    client = client_for(personas.outsider)
    assert ids(client.get("/api/v1/events/")) == [history["theirs"].id]
    assert ids(client.get(f"/api/v1/events/?workspace={personas.workspace.id}")) == []
    assert client.get(f"/api/v1/events/{history['failed'].id}/").status_code == 404


def test_filters_by_exact_type_prefix_subject_and_time(personas, client_for, history):
    client = client_for(personas.viewer)
    h = history
    assert ids(client.get("/api/v1/events/?type=run.failed")) == [h["failed"].id]
    assert ids(client.get("/api/v1/events/?type=run.")) == [h["failed"].id, h["started"].id, h["queued"].id]
    assert ids(client.get("/api/v1/events/?type=run.*")) == [h["failed"].id, h["started"].id, h["queued"].id]
    assert ids(client.get("/api/v1/events/?type=run")) == []  # not a prefix without the dot
    assert ids(client.get("/api/v1/events/?subject_type=run&subject_id=1")) == [
        h["started"].id,
        h["queued"].id,
    ]
    since = h["started"].created_at.isoformat().replace("+00:00", "Z")
    until = h["failed"].created_at.isoformat().replace("+00:00", "Z")
    assert ids(client.get("/api/v1/events/", {"since": since, "until": until})) == [
        h["created"].id,
        h["started"].id,
    ]
    assert ids(client.get("/api/v1/events/?limit=2&offset=1")) == [h["created"].id, h["started"].id]


def test_retrieve_one_event(personas, client_for, history):
    response = client_for(personas.viewer).get(f"/api/v1/events/{history['created'].id}/")
    assert response.status_code == 200
    assert response.json() == body(history["created"])


def test_the_event_list_takes_a_fixed_number_of_queries(personas, client_for, history):
    client = client_for(personas.viewer)
    client.get("/api/v1/events/")  # warm: content types, sessions
    for n in range(20):
        events.emit("run.progress", personas.workspace, ("run", 100 + n), {"n": n})
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/events/?limit=50")
    assert response.status_code == 200 and response.json()["count"] == 24
    # roles, count, page
    assert len(queries) == 3, [q["sql"] for q in queries]


def test_anonymous_gets_401(client_for, db):
    assert client_for(None).get("/api/v1/events/").status_code == 401
    assert client_for(None).get("/api/v1/audit-log/").status_code == 401


# --- audit log --------------------------------------------------------------------------------------------


@pytest.fixture
def audited(personas: Any, client_for: Any, settings: Any) -> dict[str, Any]:
    """A connector made and renamed by the editor in `workspace`, one by the outsider in theirs."""
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    AuditEntry.objects.all().delete()  # the personas' own creation entries
    config = {"host": "127.0.0.1", "port": 5432, "database": "dw", "user": "u", "password": "pw-secret-1"}
    editor = client_for(personas.editor)
    created = editor.post(
        "/api/v1/connectors/", {"name": "dw", "connector_type": "postgres", "config": config}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert editor.patch(f"/api/v1/connectors/{created.json()['id']}/", {"name": "dw2"}).status_code == 200
    theirs = client_for(personas.outsider).post(
        "/api/v1/connectors/", {"name": "x", "connector_type": "postgres", "config": config}, format="json"
    )
    assert theirs.status_code == 201, theirs.json()
    return {"connector": created.json()["id"], "theirs": theirs.json()["id"]}


def test_an_admin_reads_the_audit_log_with_whole_bodies(personas, client_for, audited):
    response = client_for(personas.owner).get("/api/v1/audit-log/")
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 2
    update, create = data["results"]
    entry = AuditEntry.objects.get(id=update["id"])
    assert update == {
        "id": entry.id,
        "workspace": personas.workspace.id,
        "timestamp": entry.timestamp.isoformat().replace("+00:00", "Z"),
        "action": "update",
        "object": {"type": "connectors.connector", "id": str(audited["connector"]), "repr": "dw2 (postgres)"},
        "changes": {"name": ["dw", "dw2"]},
        "actor": {"id": personas.editor.id, "email": "editor@acme.test"},
        "remote_addr": "127.0.0.1",
        "credential": "session",  # force_authenticate: no token, as with a session
    }
    assert create["action"] == "create" and create["changes"]["secrets_encrypted"] == ["", "***"]
    assert "pw-secret-1" not in str(data)


@pytest.mark.parametrize("persona", ["editor", "viewer"])
def test_members_who_are_not_admins_get_403(personas, client_for, audited, persona):
    client = client_for(getattr(personas, persona))
    entry = AuditEntry.objects.filter(workspace_id=personas.workspace.id).first()
    for response in (
        client.get("/api/v1/audit-log/"),
        client.get(f"/api/v1/audit-log/?workspace={personas.workspace.id}"),
        client.get(f"/api/v1/audit-log/{entry.id}/"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"


def test_the_outsider_sees_none_of_another_workspaces_entries(personas, client_for, audited):
    client = client_for(personas.outsider)
    mine = client.get("/api/v1/audit-log/").json()
    assert [row["object"]["id"] for row in mine["results"]] == [str(audited["theirs"])]
    assert client.get(f"/api/v1/audit-log/?workspace={personas.workspace.id}").json()["count"] == 0
    theirs = AuditEntry.objects.filter(workspace_id=personas.workspace.id).first()
    assert client.get(f"/api/v1/audit-log/{theirs.id}/").status_code == 404


def test_audit_log_filters(personas, client_for, audited):
    client = client_for(personas.owner)
    connector = str(audited["connector"])

    def actions(query: str) -> list[str]:
        response = client.get(f"/api/v1/audit-log/?{query}")
        assert response.status_code == 200, response.json()
        return [row["action"] for row in response.json()["results"]]

    assert actions("action=create") == ["create"]
    assert actions(f"object_type=connectors.connector&object_id={connector}") == ["update", "create"]
    assert actions("object_type=pipelines.pipeline") == []
    assert actions(f"actor={personas.editor.id}") == ["update", "create"]
    assert actions(f"actor={personas.owner.id}") == []
    assert actions("credential=jwt") == []


def test_the_audit_log_takes_a_fixed_number_of_queries(personas, client_for, audited):
    client = client_for(personas.owner)
    client.get("/api/v1/audit-log/")
    for n in range(10):
        assert (
            client.patch(f"/api/v1/connectors/{audited['connector']}/", {"name": f"n{n}"}).status_code == 200
        )
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/audit-log/")
    assert response.json()["count"] == 12
    # roles, count, page (content types joined)
    assert len(queries) == 3, [q["sql"] for q in queries]
