"""What a locked-out sign-in gets (django-axes' AXES_LOCKOUT_CALLABLE): the API's error body on /api/,
a plain page in the admin."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from aggregator.api.exceptions import error_body

LOCKOUT_MESSAGE = (
    "Too many failed sign-ins for this account from your address. Try again in {minutes} minutes."
)


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return LOCKOUT_MESSAGE.format(minutes=minutes)


def lockout_response(
    request: HttpRequest, response: Any = None, credentials: Any = None, **_: Any
) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(code="locked_out", message=lockout_message()), status=429)
    return HttpResponse(f"<h1>Locked out</h1><p>{lockout_message()}</p>", status=429)
