"""WebSocket routes. The monitoring app adds the `/ws/` live-status consumer."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
