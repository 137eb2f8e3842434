from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .services import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <key>`. The key's user is returned with the key attached, so every selector
    limits the request to the key's workspace and scopes."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        keyword, _, raw_key = header.partition(" ")
        if keyword != self.keyword:
            return None
        raw_key = raw_key.strip()
        key = api_key_authenticate(raw_key=raw_key) if raw_key else None
        if key is None or not key.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        user = key.user
        # Selectors read this to keep the request inside the key's workspace and scopes.
        setattr(user, "api_key", key)  # noqa: B010
        return user, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`",
        }
