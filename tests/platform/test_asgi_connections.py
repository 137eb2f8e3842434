"""Each HTTP request served through the ASGI application closes the database connection it opened.

Django runs each ASGI request's view in a thread of its own, so a connection kept for reuse (CONN_MAX_AGE,
60 s here as in production) would never be reused; before aggregator/asgi.py closed it, every request left
one open until the garbage collector freed it, and `up` under about 40 requests a second ran PostgreSQL out
of connections (tests/benchmarks/test_load.py)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.db.backends.signals import connection_created

REQUESTS = 5


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/api/v1/me/",
        "raw_path": b"/api/v1/me/",
        "query_string": b"",
        # An unknown key: authentication looks its prefix up in the database, then answers 401.
        "headers": [(b"host", b"localhost"), (b"authorization", b"Api-Key agk_unknown.secret")],
        "client": ("127.0.0.1", 5000),
        "server": ("localhost", 80),
    }


@pytest.mark.django_db(transaction=True)
async def test_each_asgi_request_closes_the_connection_it_opened():
    from aggregator.asgi import application

    opened: list[Any] = []

    def record(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    connection_created.connect(record)
    # Nothing may be freed behind the test's back: an unclosed connection stays open for it to see.
    gc.disable()
    try:
        for _ in range(REQUESTS):
            communicator = ApplicationCommunicator(application, _scope())
            await communicator.send_input({"type": "http.request", "body": b""})
            start = await communicator.receive_output(5)
            await communicator.receive_output(5)
            assert start["status"] == 401
            await communicator.wait(5)
    finally:
        gc.enable()
        connection_created.disconnect(record)
    assert len(opened) == REQUESTS  # one thread, so one connection, per request
    assert [wrapper.connection for wrapper in opened] == [None] * REQUESTS
