"""Echo the request id (set by django-structlog, or taken from an incoming X-Request-ID) on every response,
so a user's bug report can be matched to its log lines and to the Celery tasks it started."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse


class RequestIdHeaderMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response["X-Request-ID"] = request_id
        return response


_request_cache: ContextVar[dict[Any, Any] | None] = ContextVar("aggregator_request_cache", default=None)


def request_cache() -> dict[Any, Any] | None:
    """A dict that lives for the current HTTP request only (None outside one, e.g. in a Celery task)."""
    return _request_cache.get()


class RequestCacheMiddleware:
    """Gives each request a fresh memo (e.g. the caller's roles, looked up once for a whole list page)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request_cache.set({})
        try:
            return self.get_response(request)
        finally:
            _request_cache.reset(token)
