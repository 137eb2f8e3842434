"""POST /api/v1/auth/password/: a signed-in user changes their password (session or JWT); wrong current
passwords count towards the lockout; weak ones are refused by the validators; refresh tokens are revoked;
the audit log records the change without the password."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.monitoring.models import AuditEntry
from tests.factories import DEFAULT_PASSWORD, api_key_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/auth/password/"
NEW_PASSWORD = "a-much-longer-Passphrase-42"
EMAIL = "owner@acme.test"


def _session_client(address: str = "203.0.113.7", password: str = DEFAULT_PASSWORD) -> tuple[APIClient, str]:
    client = APIClient(enforce_csrf_checks=True, REMOTE_ADDR=address)
    token = client.get("/api/v1/auth/csrf/").json()["csrf_token"]
    signed_in = client.post(
        "/api/v1/auth/login/", {"email": EMAIL, "password": password}, HTTP_X_CSRFTOKEN=token
    )
    assert signed_in.status_code == 200
    return client, client.cookies["csrftoken"].value


def _token_pair(password: str = DEFAULT_PASSWORD) -> Any:
    return APIClient().post("/api/v1/auth/token/", {"email": EMAIL, "password": password})


def test_session_user_changes_the_password_and_stays_signed_in(
    personas: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, csrf = _session_client()
    other_browser, _ = _session_client(address="198.51.100.9")

    body = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post(URL, body).status_code == 403  # a session write needs the CSRF token
    response = client.post(URL, body, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 204

    assert client.get("/api/v1/me/").status_code == 200  # this session goes on
    assert other_browser.get("/api/v1/me/").status_code in (401, 403)  # the other one ended
    assert _token_pair(NEW_PASSWORD).status_code == 200
    old = _token_pair(DEFAULT_PASSWORD)
    assert old.status_code == 401
    assert old.json()["error"]["code"] == "invalid_credentials"

    personas.owner.refresh_from_db()
    assert personas.owner.check_password(NEW_PASSWORD)
    entry = (
        AuditEntry.objects.filter(
            content_type__model="user", object_pk=str(personas.owner.pk), changes__has_key="password"
        )
        .order_by("-id")
        .first()
    )
    assert entry is not None
    assert entry.changes["password"] == ["***", "***"]
    assert entry.actor_id == personas.owner.pk
    assert NEW_PASSWORD not in str(entry.changes) and NEW_PASSWORD not in caplog.text
    assert DEFAULT_PASSWORD not in caplog.text
    assert "password_changed" in caplog.text


def test_jwt_user_changes_the_password_and_refresh_tokens_are_revoked(personas: Any) -> None:
    first, second = _token_pair().json(), _token_pair().json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first['access']}")
    response = client.post(URL, {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 204
    assert not response.cookies.get("sessionid")  # no session is made for a token client

    for pair in (first, second):
        refreshed = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]})
        assert refreshed.status_code == 401
        assert refreshed.json()["error"]["code"] == "token_not_valid"
    # A pair obtained with the new password works as before.
    fresh = _token_pair(NEW_PASSWORD).json()
    assert APIClient().post("/api/v1/auth/token/refresh/", {"refresh": fresh["refresh"]}).status_code == 200


def test_wrong_current_password_is_400_and_counts_towards_the_lockout(personas: Any, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    client, csrf = _session_client()
    body = {"current_password": "not-my-password", "new_password": NEW_PASSWORD}
    for _ in range(2):
        response = client.post(URL, body, HTTP_X_CSRFTOKEN=csrf)
        assert response.status_code == 400
        assert response.json() == {
            "error": {
                "code": "validation_error",
                "message": "current_password: Your current password is not this one.",
                "fields": {"current_password": ["Your current password is not this one."]},
            }
        }
    third = client.post(URL, body, HTTP_X_CSRFTOKEN=csrf)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "locked_out"
    # Locked out: even the right current password, and a sign-in from the same address, wait.
    right = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post(URL, right, HTTP_X_CSRFTOKEN=csrf).status_code == 429
    personas.owner.refresh_from_db()
    assert personas.owner.check_password(DEFAULT_PASSWORD)


@pytest.mark.parametrize(
    ("new_password", "message"),
    [
        ("short", "This password is too short. It must contain at least 10 characters."),
        ("password123", "This password is too common."),
        ("owner@acme.test1", "The password is too similar to the email."),
        (DEFAULT_PASSWORD, "Choose a password different from the current one."),
    ],
)
def test_weak_new_passwords_are_refused_on_new_password(
    personas: Any, client_for: Any, new_password: str, message: str
) -> None:
    response = client_for(personas.owner).post(
        URL, {"current_password": DEFAULT_PASSWORD, "new_password": new_password}
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["new_password"]
    assert message in fields["new_password"]
    personas.owner.refresh_from_db()
    assert personas.owner.check_password(DEFAULT_PASSWORD)


def test_missing_fields_are_named_and_anonymous_and_api_keys_are_refused(
    personas: Any, client_for: Any
) -> None:
    missing = client_for(personas.owner).post(URL, {})
    assert missing.status_code == 400
    assert set(missing.json()["error"]["fields"]) == {"current_password", "new_password"}

    body = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    assert client_for(None).post(URL, body).status_code == 401
    _, raw = api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["read", "write", "admin"])
    with_key = APIClient().post(URL, body, HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert with_key.status_code == 403
    personas.owner.refresh_from_db()
    assert personas.owner.check_password(DEFAULT_PASSWORD)
