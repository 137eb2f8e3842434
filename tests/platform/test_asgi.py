"""The ASGI application serves HTTP, and the Channels layer round-trips messages through the real Redis."""

from __future__ import annotations

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer


async def test_channel_layer_delivers_group_messages_through_redis():
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    channel = await layer.new_channel()
    await layer.group_add("workspace.1", channel)
    try:
        await layer.group_send("workspace.1", {"type": "run.status", "run_id": 7, "status": "running"})
        message = await layer.receive(channel)
        assert message == {"type": "run.status", "run_id": 7, "status": "running"}
    finally:
        await layer.group_discard("workspace.1", channel)


@pytest.mark.django_db
async def test_asgi_application_answers_http():
    from aggregator.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 5000),
        "server": ("localhost", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(5)
    body = await communicator.receive_output(5)
    assert start["status"] == 200
    assert body["body"] == b'{"status": "ok"}'
