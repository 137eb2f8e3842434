"""Time filters take every UTC offset ISO 8601 allows (PostgreSQL takes ±15:59 at most): once answered
with a 500 (DataError), now compared in UTC; a moment outside the calendar is a 400 at its parameter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.monitoring import events
from apps.monitoring.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_events(personas):
    old = events.emit("run.queued", personas.workspace, ("run", 1), {})
    new = events.emit("run.failed", personas.workspace, ("run", 1), {})
    Event.objects.filter(id=old.id).update(created_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    Event.objects.filter(id=new.id).update(created_at=datetime(2026, 1, 2, 12, 0, tzinfo=UTC))
    return old, new


def test_offsets_beyond_postgresqls_range_are_compared_in_utc(personas, client_for, two_events):
    old, new = two_events
    client = client_for(personas.owner)
    # The requests of the finding, which answered 500.
    far = client.get("/api/v1/events/", {"until": "2669-01-27T10:57:18.812059-23:57"})
    assert far.status_code == 200, far.json()
    assert [e["id"] for e in far.json()["results"]] == [new.id, old.id]
    audit = client.get("/api/v1/audit-log/", {"since": "0085-10-27T14:57:44.3-17:49"})
    assert audit.status_code == 200, audit.json()
    # 13:00 at -23:30 on 1 January is 12:30 UTC on 2 January: after both events; 12:00 at -23:30 is
    # 11:30 UTC on 2 January: after the first one only.
    cut = client.get("/api/v1/events/", {"since": "2026-01-01T13:00:00-23:30"})
    assert [e["id"] for e in cut.json()["results"]] == []
    cut = client.get("/api/v1/events/", {"since": "2026-01-01T12:00:00-23:30"})
    assert [e["id"] for e in cut.json()["results"]] == [new.id]


def test_a_moment_outside_the_calendar_is_a_400_at_its_parameter(personas, client_for):
    client = client_for(personas.owner)
    for path, name in (
        ("/api/v1/events/", "until"),
        ("/api/v1/audit-log/", "since"),
        ("/api/v1/runs/", "queued_after"),
    ):
        response = client.get(path, {name: "0001-01-01T00:00:00+23:59"})
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"]["fields"] == {name: ["Out of the supported date range."]}
