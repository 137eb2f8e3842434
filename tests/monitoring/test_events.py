from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.monitoring import events
from apps.monitoring.models import Event

pytestmark = pytest.mark.django_db

received: list[Event] = []


def remember(event: Event) -> None:
    received.append(event)


@pytest.fixture
def handler(settings):
    received.clear()
    settings.AGGREGATOR_EVENT_HANDLERS = ["tests.monitoring.test_events.remember"]
    events._handlers.cache_clear()
    yield
    events._handlers.cache_clear()


def test_emit_stores_then_publishes_and_dispatches_after_commit(
    personas, handler, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.group_name("run", 42), channel)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            event = events.emit("run.started", personas.workspace, ("run", 42), {"pipeline": 7})
        assert Event.objects.filter(id=event.id, type="run.started", subject_id="42").exists()
        assert received == []  # nothing is announced before the commit
        for callback in callbacks:
            callback()
        assert received == [event]
        message = async_to_sync(layer.receive)(channel)
        assert message["type"] == "event.message"
        body = message["message"]["event"]
        assert (body["type"], body["payload"], body["workspace"]) == (
            "run.started",
            {"pipeline": 7},
            personas.workspace.id,
        )
        assert body["subject"] == {"type": "run", "id": "42"}
    finally:
        async_to_sync(layer.group_discard)(events.group_name("run", 42), channel)


def test_a_rolled_back_event_is_never_announced(personas, handler, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                events.emit("run.started", personas.workspace, ("run", 1))
                raise RuntimeError("boom")
        except RuntimeError:
            pass
    assert received == []
    assert Event.objects.count() == 0


def test_group_names_are_safe():
    assert events.group_name("workspace", "a b/c") == "workspace.a-b-c"
    assert len(events.group_name("run", "x" * 300)) < 100
