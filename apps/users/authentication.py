from __future__ import annotations

from typing import Any

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, status
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication

from .selectors import mfa_enabled, mfa_required
from .services import api_key_authenticate

# The claim a JWT carries when its sign-in passed a second factor; refreshing copies it to the new tokens.
MFA_CLAIM = "mfa"


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


class MfaRequired(exceptions.AuthenticationFailed):
    default_code = "mfa_required"
    default_detail = (
        "This account uses two-factor authentication and this sign-in did not pass it: "
        "sign in again with your code."
    )


class MfaEnrolmentRequired(exceptions.PermissionDenied):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "mfa_enrolment_required"
    default_detail = (
        "Your role requires two-factor authentication: set it up first "
        "(POST /api/v1/auth/mfa/totp/, or Account in the web app)."
    )


class MfaGate:
    """What a person's credential may reach, by two-factor state. Views say how far they are open with
    `mfa_gate`:

    - a user with two-factor authentication on is refused (401 `mfa_required`) with a session or a JWT
      that did not pass it — those started before it was turned on; sign-out stays open (`"signed_in"`);
    - a user AGGREGATOR_MFA_REQUIRED_FOR covers who has not set it up gets 403 `mfa_enrolment_required`
      from everything but the views that let them set it up (`"enrolment"`: /me/, the MFA endpoints,
      the password change, sign-out).

    API keys are not gated: they are machine credentials, scoped and revocable, made by a person who
    signed in (and passed the gate) to make them."""

    OPEN_TO = ("signed_in", "enrolment")

    @staticmethod
    def check(request: Request, user: Any, *, verified: bool) -> None:
        view = (request.parser_context or {}).get("view")
        opening = getattr(view, "mfa_gate", None)
        if verified or opening == "signed_in":
            return
        if mfa_enabled(user=user):
            raise MfaRequired()
        if opening != "enrolment" and mfa_required(user=user):
            raise MfaEnrolmentRequired()


class MfaSessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication; a session counts as verified when it passed a second factor
    (django-otp's OTPMiddleware reads the device it stored)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result = super().authenticate(request)
        if result is not None:
            user = getattr(request._request, "user", None)
            is_verified = getattr(user, "is_verified", None)
            MfaGate.check(request, result[0], verified=bool(is_verified and is_verified()))
        return result


class MfaJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication; a token counts as verified when it carries the `mfa` claim."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:  # type: ignore[override]
        result = super().authenticate(request)
        if result is not None:
            MfaGate.check(request, result[0], verified=result[1].get(MFA_CLAIM) is True)
        return result


# The schema names these as it names the classes they extend.
class MfaSessionScheme(SessionScheme):
    target_class = "apps.users.authentication.MfaSessionAuthentication"


class MfaJWTScheme(SimpleJWTScheme):
    target_class = "apps.users.authentication.MfaJWTAuthentication"
