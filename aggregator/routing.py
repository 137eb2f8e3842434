"""WebSocket routes: `/ws/`, the monitoring app's live-status consumer (apps/monitoring/consumers.py)."""

from django.urls import URLPattern, path

from apps.monitoring.consumers import LiveStatusConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/", LiveStatusConsumer.as_asgi()),  # type: ignore[arg-type]
]
