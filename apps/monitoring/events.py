"""`emit(type, workspace, subject, payload)`: the one way anything is announced.

The event is stored in the caller's transaction. After that transaction commits, it is published to the
Channels groups of its workspace (and of its run, for run events) and handed to the handlers named in
settings.AGGREGATOR_EVENT_HANDLERS (dotted paths of callables taking the Event) — so monitoring imports
none of the apps that listen to it, and nobody hears of an event whose transaction rolled back."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from aggregator.logging import get_logger

from .models import Event

logger = get_logger(__name__)

_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def group_name(kind: str, ident: Any) -> str:
    """Channels group names: `[A-Za-z0-9._-]`, under 100 characters."""
    return _GROUP_UNSAFE.sub("-", f"{kind}.{ident}")[:99]


def _subject_of(subject: Any) -> tuple[str, str]:
    if subject is None:
        return "", ""
    if isinstance(subject, tuple):
        return str(subject[0]), str(subject[1])
    meta = getattr(subject, "_meta", None)
    if meta is not None:
        return meta.model_name, str(subject.pk)
    raise TypeError("subject must be a model instance, a (type, id) tuple or None")


def emit(type: str, workspace: Any, subject: Any = None, payload: dict[str, Any] | None = None) -> Event:
    """Record an event; publish and dispatch it once the surrounding transaction commits."""
    subject_type, subject_id = _subject_of(subject)
    event = Event.objects.create(
        workspace_id=getattr(workspace, "pk", workspace),
        type=type,
        subject_type=subject_type,
        subject_id=subject_id,
        payload=payload or {},
    )
    transaction.on_commit(lambda: _after_commit(event))
    return event


def publish(type: str, workspace: Any, subject: Any = None, payload: dict[str, Any] | None = None) -> None:
    """Announce something ephemeral (e.g. a run's progress every second) live, without storing it."""
    subject_type, subject_id = _subject_of(subject)
    workspace_id = getattr(workspace, "pk", workspace)
    message = {
        "type": "event.message",
        "message": {
            "type": "event",
            "event": {
                "id": None,
                "type": type,
                "workspace": workspace_id,
                "subject": {"type": subject_type, "id": subject_id},
                "payload": payload or {},
                "created_at": None,
            },
        },
    }
    groups = [group_name("workspace", workspace_id)]
    if subject_type == "run":
        groups.append(group_name("run", subject_id))
    _send(groups, message, type)


def event_message(event: Event) -> dict[str, Any]:
    return {
        "type": "event",
        "event": {
            "id": event.id,
            "type": event.type,
            "workspace": event.workspace_id,
            "subject": {"type": event.subject_type, "id": event.subject_id},
            "payload": event.payload,
            "created_at": event.created_at.isoformat(),
        },
    }


def _after_commit(event: Event) -> None:
    _publish(event)
    for handler in _handlers():
        try:
            handler(event)
        except Exception:  # one failing listener must not stop the others, nor the emitter
            logger.exception("event_handler_failed", event_type=event.type, handler=repr(handler))


def _publish(event: Event) -> None:
    # "type" routes the message to the consumer's handler; "message" is what the client receives.
    message = {"type": "event.message", "message": event_message(event)}
    groups = [group_name("workspace", event.workspace_id)]
    if event.subject_type == "run":
        groups.append(group_name("run", event.subject_id))
    _send(groups, message, event.type)


def _send(groups: list[str], message: dict[str, Any], event_type: str) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for group in groups:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # the event is stored; a Redis hiccup must not fail the caller
        logger.warning("event_publish_failed", event_type=event_type)


@cache
def _handlers() -> list[Callable[[Event], None]]:
    return [import_string(path) for path in getattr(settings, "AGGREGATOR_EVENT_HANDLERS", [])]
