"""Password reset for someone signed out: POST /api/v1/auth/password-reset/ answers the same 202 for any
address and emails a one-time link (through a Celery task, after commit) only to an active account;
POST /api/v1/auth/password-reset/confirm/ sets the password with the link's uid and token, ends the
user's sessions and refresh tokens, clears their lockouts and is audited without secrets."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from axes.models import AccessAttempt
from django.core import mail
from rest_framework.test import APIClient

from apps.monitoring.models import AuditEntry
from apps.users import tasks
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db

REQUEST_URL = "/api/v1/auth/password-reset/"
CONFIRM_URL = "/api/v1/auth/password-reset/confirm/"
NEW_PASSWORD = "a-much-longer-Passphrase-42"
ADDRESS = "203.0.113.7"
ACCEPTED = {
    "detail": "If an account uses this address, an email with a link to choose a new password is on its way."
}
INVALID_LINK = "This link is invalid, has expired or was already used. Ask for a new one."


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The task runs in this process (no worker): each queued address is recorded, then the task's body runs
    as a worker would run it."""
    queued: list[str] = []

    def delay(email: str) -> None:
        queued.append(email)
        tasks.password_reset_send_task.apply(args=[email])

    monkeypatch.setattr(tasks.password_reset_send_task, "delay", delay)
    return queued


def _ask(email: str, address: str = ADDRESS, capture: Any = None) -> Any:
    client = APIClient(REMOTE_ADDR=address)
    if capture is None:
        return client.post(REQUEST_URL, {"email": email})
    with capture(execute=True):
        return client.post(REQUEST_URL, {"email": email})


def _link_of(message: Any) -> tuple[str, str, str]:
    link = re.search(r"https?://\S+", message.body)
    assert link is not None, message.body
    parts = urlsplit(link.group(0))
    query = parse_qs(parts.query)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", query["uid"][0], query["token"][0]


def _confirm(uid: str, token: str, password: str = NEW_PASSWORD) -> Any:
    body = {"uid": uid, "token": token, "new_password": password}
    return APIClient(REMOTE_ADDR=ADDRESS).post(CONFIRM_URL, body)


def _token_pair(email: str, password: str) -> Any:
    return APIClient().post("/api/v1/auth/token/", {"email": email, "password": password})


def test_a_known_address_gets_an_email_with_a_one_time_link(
    personas: Any, settings: Any, sent_tasks: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    settings.AGGREGATOR_BASE_URL = "https://agg.example.com"
    response = _ask("  Owner@Acme.TEST ", capture=django_capture_on_commit_callbacks)
    assert response.status_code == 202
    assert response.json() == ACCEPTED
    assert sent_tasks == ["owner@acme.test"]

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["owner@acme.test"]
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert message.subject == "Reset your Aggregator password"
    assert "works once, for 60 minutes" in message.body
    page, uid, token = _link_of(message)
    assert page == "https://agg.example.com/reset-password"

    assert _confirm(uid, token).status_code == 204
    personas.owner.refresh_from_db()
    assert personas.owner.check_password(NEW_PASSWORD)
    assert _token_pair("owner@acme.test", NEW_PASSWORD).status_code == 200
    assert _token_pair("owner@acme.test", DEFAULT_PASSWORD).status_code == 401

    # Spent: the token hashed the old password.
    again = _confirm(uid, token, "another-long-Passphrase-77")
    assert again.status_code == 400
    assert again.json() == {
        "error": {
            "code": "validation_error",
            "message": f"token: {INVALID_LINK}",
            "fields": {"token": [INVALID_LINK]},
        }
    }
    personas.owner.refresh_from_db()
    assert personas.owner.check_password(NEW_PASSWORD)


def test_an_unknown_address_gets_the_same_answer_and_no_email(
    personas: Any, sent_tasks: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    known = _ask("owner@acme.test", capture=django_capture_on_commit_callbacks)
    unknown = _ask("nobody@acme.test", capture=django_capture_on_commit_callbacks)
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json()) == (202, ACCEPTED)
    assert dict(unknown.headers).keys() == dict(known.headers).keys()
    # Both queued the same task: the lookup happens there, not in the request.
    assert sent_tasks == ["owner@acme.test", "nobody@acme.test"]
    assert [m.to for m in mail.outbox] == [["owner@acme.test"]]


def test_the_email_is_queued_after_commit_on_the_default_queue(
    personas: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from django.conf import settings

    queued: list[str] = []
    monkeypatch.setattr(tasks.password_reset_send_task, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert APIClient().post(REQUEST_URL, {"email": "owner@acme.test"}).status_code == 202
    assert queued == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert queued == ["owner@acme.test"]
    assert tasks.password_reset_send_task.name not in settings.CELERY_TASK_ROUTES  # default queue


def test_an_inactive_account_gets_no_email_and_its_links_do_not_work(
    personas: Any, sent_tasks: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    token = default_token_generator.make_token(personas.viewer)
    personas.viewer.is_active = False
    personas.viewer.save(update_fields=["is_active"])
    response = _ask("viewer@acme.test", capture=django_capture_on_commit_callbacks)
    assert (response.status_code, response.json()) == (202, ACCEPTED)
    assert mail.outbox == []
    refused = _confirm(urlsafe_base64_encode(force_bytes(personas.viewer.pk)), token)
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["token"]


def test_an_expired_link_is_refused(
    personas: Any, settings: Any, sent_tasks: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    _ask("editor@acme.test", capture=django_capture_on_commit_callbacks)
    _, uid, token = _link_of(mail.outbox[0])
    settings.PASSWORD_RESET_TIMEOUT = 60
    later = datetime.now() + timedelta(seconds=61)
    with pytest.MonkeyPatch.context() as patch:
        # The token generator reads the clock through its `_now`.
        from django.contrib.auth.tokens import default_token_generator

        patch.setattr(default_token_generator, "_now", lambda: later)
        response = _confirm(uid, token)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"token": [INVALID_LINK]}
    personas.editor.refresh_from_db()
    assert personas.editor.check_password(DEFAULT_PASSWORD)
    # Within its lifetime the same link works.
    assert _confirm(uid, token).status_code == 204


@pytest.mark.parametrize(
    ("uid", "token"),
    [("MQ", "bad-token"), ("not base64!", "x"), ("OTk5OTk5", "cb2-0123456789abcdef"), ("", "")],
)
def test_made_up_links_are_refused_on_token(personas: Any, uid: str, token: str) -> None:
    response = _confirm(uid, token)
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) <= {"uid", "token"} and fields


@pytest.mark.parametrize(
    ("new_password", "message"),
    [
        ("short", "This password is too short. It must contain at least 10 characters."),
        ("password123", "This password is too common."),
        ("editor@acme.test1", "The password is too similar to the email."),
        ("1234567890123", "This password is entirely numeric."),
    ],
)
def test_weak_passwords_are_refused_on_new_password_and_the_link_still_works(
    personas: Any,
    sent_tasks: list[str],
    django_capture_on_commit_callbacks: Any,
    new_password: str,
    message: str,
) -> None:
    _ask("editor@acme.test", capture=django_capture_on_commit_callbacks)
    _, uid, token = _link_of(mail.outbox[0])
    response = _confirm(uid, token, new_password)
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["new_password"]
    assert message in fields["new_password"]
    personas.editor.refresh_from_db()
    assert personas.editor.check_password(DEFAULT_PASSWORD)
    assert _confirm(uid, token).status_code == 204


def test_a_reset_ends_sessions_and_refresh_tokens_and_clears_lockouts(
    personas: Any, settings: Any, sent_tasks: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    browser = APIClient(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.9")
    csrf = browser.get("/api/v1/auth/csrf/").json()["csrf_token"]
    credentials = {"email": "owner@acme.test", "password": DEFAULT_PASSWORD}
    signed_in = browser.post("/api/v1/auth/login/", credentials, HTTP_X_CSRFTOKEN=csrf)
    assert signed_in.status_code == 200
    pair = _token_pair("owner@acme.test", DEFAULT_PASSWORD).json()

    # Someone else locks the account out from their address.
    for _ in range(2):
        APIClient(REMOTE_ADDR="192.0.2.66").post(
            "/api/v1/auth/token/", {"email": "owner@acme.test", "password": "guess-guess"}
        )
    locked = APIClient(REMOTE_ADDR="192.0.2.66").post(
        "/api/v1/auth/token/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD}
    )
    assert locked.status_code == 429

    _ask("owner@acme.test", capture=django_capture_on_commit_callbacks)
    _, uid, token = _link_of(mail.outbox[0])
    assert _confirm(uid, token).status_code == 204

    assert browser.get("/api/v1/me/").status_code in (401, 403)
    refreshed = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]})
    assert refreshed.status_code == 401
    assert refreshed.json()["error"]["code"] == "token_not_valid"
    assert not AccessAttempt.objects.filter(username="owner@acme.test").exists()
    unlocked = APIClient(REMOTE_ADDR="192.0.2.66").post(
        "/api/v1/auth/token/", {"email": "owner@acme.test", "password": NEW_PASSWORD}
    )
    assert unlocked.status_code == 200


def test_the_reset_is_audited_and_logged_without_the_password_or_token(
    personas: Any,
    sent_tasks: list[str],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _ask("owner@acme.test", capture=django_capture_on_commit_callbacks)
    _, uid, token = _link_of(mail.outbox[0])
    assert _confirm(uid, token).status_code == 204

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
    assert entry.actor_email == "owner@acme.test"
    assert entry.credential == "anonymous"
    assert entry.remote_addr == ADDRESS
    assert entry.additional_data == {"via": "password_reset"}
    recorded = str(entry.changes) + str(entry.additional_data)
    for secret in (NEW_PASSWORD, token):
        assert secret not in recorded
        assert secret not in caplog.text
    assert "password_reset_sent" in caplog.text
    assert re.search(r"password_reset(?!_)\b", caplog.text)


def test_requests_are_throttled_per_address_asked_about_and_per_client(
    personas: Any, settings: Any, sent_tasks: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert rates["password_reset_email"] == "5/hour" and rates["password_reset_ip"] == "20/hour"

    # Per email address, whoever asks (five clients, one address): the sixth is refused.
    answers = [_ask("owner@acme.test", address=f"198.51.100.{n}").status_code for n in range(6)]
    assert answers == [202] * 5 + [429]
    throttled = _ask("OWNER@acme.test ", address="198.51.100.99")
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "throttled"
    # An unknown address is counted the same way: a 429 tells nothing about accounts.
    unknown = [_ask("nobody@acme.test", address=f"198.51.100.{n}").status_code for n in range(6)]
    assert unknown == [202] * 5 + [429]

    # Per client, whatever the address asked about; X-Forwarded-For does not make a new client.
    client = APIClient(REMOTE_ADDR="192.0.2.10")
    codes = [
        client.post(REQUEST_URL, {"email": f"p{n}@acme.test"}, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code
        for n in range(21)
    ]
    assert codes == [202] * 20 + [429]
    assert _ask("editor@acme.test", address="192.0.2.11").status_code == 202


def test_behind_a_proxy_the_client_is_the_address_the_proxy_appended(personas: Any, settings: Any) -> None:
    settings.AXES_IPWARE_PROXY_COUNT = 1
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")
    # One client writing a new left-most address each time is still one client.
    codes = [
        proxy.post(
            REQUEST_URL, {"email": f"q{n}@acme.test"}, HTTP_X_FORWARDED_FOR=f"172.16.0.{n}, 192.0.2.20"
        ).status_code
        for n in range(21)
    ]
    assert codes == [202] * 20 + [429]
    other = proxy.post(REQUEST_URL, {"email": "r@acme.test"}, HTTP_X_FORWARDED_FOR="192.0.2.21")
    assert other.status_code == 202


def test_bad_request_bodies_are_named_by_field(personas: Any) -> None:
    missing = APIClient().post(REQUEST_URL, {})
    assert missing.status_code == 400
    assert list(missing.json()["error"]["fields"]) == ["email"]
    not_email = APIClient().post(REQUEST_URL, {"email": "not-an-address"})
    assert list(not_email.json()["error"]["fields"]) == ["email"]
    empty = APIClient().post(CONFIRM_URL, {})
    assert set(empty.json()["error"]["fields"]) == {"uid", "token", "new_password"}


def test_a_signed_in_session_is_not_needed_nor_used(
    personas: Any, client_for: Any, sent_tasks: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    # Signed in as someone else: the reset is about the address in the body, and needs no CSRF token.
    client = client_for(personas.viewer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(REQUEST_URL, {"email": "editor@acme.test"})
    assert response.status_code == 202
    assert [m.to for m in mail.outbox] == [["editor@acme.test"]]
