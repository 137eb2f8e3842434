"""HTTP and WebSocket in one ASGI application (Channels)."""

import os
from typing import Any

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aggregator.settings.local")

# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()


def close_request_connections(**kwargs: Any) -> None:
    """Django runs each ASGI request's view in a thread of its own (asgiref's per-request
    ThreadSensitiveContext), so a connection kept open for reuse (CONN_MAX_AGE) is never used again: it
    stayed open until the garbage collector happened to free it, and at about 40 requests a second the
    embedded PostgreSQL refused new clients ("too many clients already"). Close it when the request ends.
    The worker, beat and WebSocket consumers keep their threads, and their persistent connections."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


request_finished.connect(
    close_request_connections, sender=ASGIHandler, dispatch_uid="aggregator.asgi.close_request_connections"
)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from aggregator.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
