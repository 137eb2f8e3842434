"""Two-factor authentication (django-otp): enrolment on /api/v1/auth/mfa/, sign-in with a TOTP code or a
recovery code (session and JWT), wrong codes and the lockout, the AGGREGATOR_MFA_REQUIRED_FOR policy and
its gate, the admin site, and the key never leaving the server twice."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from aggregator.settings.base import mfa_policy
from apps.monitoring.models import AuditEntry
from apps.users import services
from apps.users.models import User
from tests.factories import DEFAULT_PASSWORD, api_key_for

pytestmark = pytest.mark.django_db

MFA = "/api/v1/auth/mfa/"
ADDRESS = "203.0.113.7"


def code_for(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code the authenticator app shows now (or `steps_ahead` periods later), by django-otp's TOTP."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def signed_in(user: User, address: str = ADDRESS, **body: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    response = client.post("/api/v1/auth/login/", {"email": user.email, "password": DEFAULT_PASSWORD, **body})
    assert response.status_code == 200, response.json()
    return client


def enrolled(user: User) -> tuple[TOTPDevice, list[str]]:
    """Two-factor authentication turned on for the user, as the endpoints do it."""
    device = services.mfa_totp_start(user=user)
    return services.mfa_totp_confirm(user=user, otp=code_for(device))


def error(response: Any) -> dict[str, Any]:
    return dict(response.json()["error"])


# --- Enrolment ------------------------------------------------------------------------------------------


def test_a_user_enrols_an_authenticator_and_gets_recovery_codes_once(personas: Any) -> None:
    client = signed_in(personas.editor)
    assert client.get(MFA).json() == {
        "enabled": False,
        "required": False,
        "enrolment_required": False,
        "enabled_at": None,
        "last_used_at": None,
        "recovery_codes_left": 0,
    }

    started = client.post(f"{MFA}totp/")
    assert started.status_code == 201
    body = started.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg", "digits", "period"}
    device = TOTPDevice.objects.get(user=personas.editor)
    assert not device.confirmed
    assert base64.b32decode(body["secret"]) == device.bin_key
    assert body["otpauth_uri"].startswith("otpauth://totp/Aggregator%3Aeditor%40acme.test?")
    assert f"secret={body['secret']}" in body["otpauth_uri"] and "issuer=Aggregator" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in body["qr_svg"]
    assert (body["digits"], body["period"]) == (6, 30)
    # Not on until confirmed: signing in still needs no code.
    assert client.get(MFA).json()["enabled"] is False
    signed_in(personas.editor)

    wrong = client.post(
        f"{MFA}totp/confirm/", {"otp": "000000" if code_for(device) != "000000" else "111111"}
    )
    assert wrong.status_code == 400
    assert error(wrong)["fields"] == {
        "otp": ["This code is not right, or was already used. Codes change every 30 seconds."]
    }

    # django-otp's back-off after the wrong code: the next attempt waits its second out.
    time.sleep(1.1)
    confirmed = client.post(f"{MFA}totp/confirm/", {"otp": code_for(device)})
    assert confirmed.status_code == 200, confirmed.json()
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 8 for c in codes)
    status = confirmed.json()["status"]
    assert (status["enabled"], status["recovery_codes_left"]) == (True, 10)
    device.refresh_from_db()
    assert device.confirmed

    # This session passed the code: it goes on. The key and codes are never shown again.
    again = client.get(MFA)
    assert again.status_code == 200
    me = client.get("/api/v1/me/").json()
    assert me["mfa"] == {"enabled": True, "required": False, "enrolment_required": False}
    for text in (again.content.decode(), str(me)):
        assert body["secret"] not in text and codes[0] not in text
    refused = client.post(f"{MFA}totp/")
    assert refused.status_code == 400
    assert "already on" in error(refused)["message"]


def test_a_new_enrolment_replaces_an_unconfirmed_one(personas: Any) -> None:
    client = signed_in(personas.editor)
    first = client.post(f"{MFA}totp/").json()["secret"]
    second = client.post(f"{MFA}totp/").json()["secret"]
    assert first != second
    assert TOTPDevice.objects.filter(user=personas.editor).count() == 1


# --- Sign-in --------------------------------------------------------------------------------------------


def test_session_sign_in_asks_for_the_code_then_takes_it(personas: Any) -> None:
    device, _ = enrolled(personas.editor)
    client = APIClient(REMOTE_ADDR=ADDRESS)
    creds = {"email": personas.editor.email, "password": DEFAULT_PASSWORD}

    asked = client.post("/api/v1/auth/login/", creds)
    assert asked.status_code == 401
    assert error(asked)["code"] == "mfa_required"
    assert client.get("/api/v1/me/").status_code in (401, 403)  # no session yet

    wrong = client.post("/api/v1/auth/login/", {**creds, "otp": "12345x"})
    assert wrong.status_code == 401
    assert error(wrong) == {
        "code": "mfa_invalid",
        "message": "This code is not right, or was already used. Codes change every 30 seconds.",
    }

    ok = client.post("/api/v1/auth/login/", {**creds, "otp": code_for(device, steps_ahead=1)})
    assert ok.status_code == 200, ok.json()
    assert ok.json()["mfa"]["enabled"] is True
    assert client.get("/api/v1/workspaces/").status_code == 200


def test_a_wrong_password_is_refused_before_any_code(personas: Any) -> None:
    device, _ = enrolled(personas.editor)
    response = APIClient().post(
        "/api/v1/auth/login/", {"email": personas.editor.email, "password": "nope", "otp": code_for(device)}
    )
    assert response.status_code == 401
    assert error(response)["code"] == "invalid_credentials"


def test_jwt_sign_in_with_the_code_carries_the_claim_through_refresh(personas: Any) -> None:
    device, _ = enrolled(personas.editor)
    client = APIClient()
    creds = {"email": personas.editor.email, "password": DEFAULT_PASSWORD}

    asked = client.post("/api/v1/auth/token/", creds)
    assert asked.status_code == 401
    assert error(asked)["code"] == "mfa_required"

    pair = client.post("/api/v1/auth/token/", {**creds, "otp": code_for(device, steps_ahead=1)})
    assert pair.status_code == 200, pair.json()
    assert AccessToken(pair.json()["access"])["mfa"] is True
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.json()['access']}")
    assert client.get("/api/v1/workspaces/").status_code == 200

    refreshed = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": pair.json()["refresh"]})
    assert refreshed.status_code == 200
    assert AccessToken(refreshed.json()["access"])["mfa"] is True
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    assert client.get("/api/v1/workspaces/").status_code == 200


def test_a_totp_code_works_once(personas: Any) -> None:
    device, _ = enrolled(personas.editor)
    code = code_for(device, steps_ahead=1)
    creds = {"email": personas.editor.email, "password": DEFAULT_PASSWORD, "otp": code}
    assert APIClient().post("/api/v1/auth/token/", creds).status_code == 200
    replayed = APIClient().post("/api/v1/auth/token/", creds)
    assert replayed.status_code == 401
    assert error(replayed)["code"] == "mfa_invalid"


def test_a_recovery_code_signs_in_once(personas: Any) -> None:
    _, codes = enrolled(personas.editor)
    creds = {"email": personas.editor.email, "password": DEFAULT_PASSWORD}
    # Typed with a dash and in capitals: it is the same code.
    client = signed_in(personas.editor, otp=f"{codes[0][:4].upper()}-{codes[0][4:]}")
    assert client.get(MFA).json()["recovery_codes_left"] == 9

    spent = APIClient(REMOTE_ADDR="198.51.100.9").post("/api/v1/auth/login/", {**creds, "otp": codes[0]})
    assert spent.status_code == 401
    assert error(spent)["code"] == "mfa_invalid"
    assert not StaticToken.objects.filter(token=codes[0]).exists()
    assert StaticToken.objects.filter(device__user=personas.editor).count() == 9


def test_wrong_codes_lock_the_account_out_like_wrong_passwords(personas: Any, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    device, codes = enrolled(personas.editor)
    client = APIClient(REMOTE_ADDR=ADDRESS)
    creds = {"email": personas.editor.email, "password": DEFAULT_PASSWORD}
    right = code_for(device, steps_ahead=1)
    wrong = "000000" if right != "000000" else "111111"
    answers = []
    for _ in range(3):
        answers.append(client.post("/api/v1/auth/token/", {**creds, "otp": wrong}))
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert error(answers[2])["code"] == "locked_out"

    # Locked out: neither the right code nor a recovery code gets through, by token or by session.
    assert client.post("/api/v1/auth/token/", {**creds, "otp": right}).status_code == 429
    assert client.post("/api/v1/auth/login/", {**creds, "otp": codes[1]}).status_code == 429
    assert StaticToken.objects.filter(token=codes[1]).exists()  # not spent by a refused attempt
    # django-otp's own back-off on the device holds too, from any address: the codes sent within a
    # second of the first wrong one were not even compared.
    device.refresh_from_db()
    assert device.throttling_failure_count == 1


# --- The policy and its gate ----------------------------------------------------------------------------


def test_policy_parsing_refuses_what_it_does_not_know() -> None:
    assert mfa_policy("staff,admins") == ["staff", "admins"]
    assert mfa_policy(" All ") == ["all"]
    for bad in ("stuff", "", "all,staff", "none,admins"):
        with pytest.raises(ImproperlyConfigured):
            mfa_policy(bad)


def test_an_admin_covered_by_the_policy_signs_in_and_must_enrol_first(personas: Any, settings: Any) -> None:
    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["staff", "admins"]
    client = APIClient()
    pair = client.post("/api/v1/auth/token/", {"email": personas.owner.email, "password": DEFAULT_PASSWORD})
    assert pair.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.json()['access']}")

    me = client.get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["mfa"] == {"enabled": False, "required": True, "enrolment_required": True}
    blocked = client.get("/api/v1/workspaces/")
    assert blocked.status_code == 403
    assert error(blocked)["code"] == "mfa_enrolment_required"
    assert client.get(f"/api/v1/workspaces/{personas.workspace.id}/pipelines/").status_code in (403, 404)
    assert error(client.get("/api/v1/pipelines/"))["code"] == "mfa_enrolment_required"
    assert client.get(MFA).json()["enrolment_required"] is True

    client.post(f"{MFA}totp/")
    device = TOTPDevice.objects.get(user=personas.owner)
    assert client.post(f"{MFA}totp/confirm/", {"otp": code_for(device)}).status_code == 200
    # That token did not pass a second factor: sign in again, with a code.
    stale = client.get("/api/v1/workspaces/")
    assert stale.status_code == 401
    assert error(stale)["code"] == "mfa_required"
    pair = APIClient().post(
        "/api/v1/auth/token/",
        {"email": personas.owner.email, "password": DEFAULT_PASSWORD, "otp": code_for(device, steps_ahead=1)},
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.json()['access']}")
    assert client.get("/api/v1/workspaces/").status_code == 200

    # A viewer is no admin: not covered.
    assert signed_in(personas.viewer).get("/api/v1/workspaces/").status_code == 200


def test_policy_all_covers_everyone_and_none_nobody(personas: Any, settings: Any) -> None:
    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["all"]
    viewer = signed_in(personas.viewer)
    assert error(viewer.get("/api/v1/workspaces/"))["code"] == "mfa_enrolment_required"
    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["none"]
    assert viewer.get("/api/v1/workspaces/").status_code == 200


def test_the_bootstrap_admin_first_signs_in_then_is_sent_to_enrolment(db: None, settings: Any) -> None:
    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["staff", "admins"]
    admin, _, password = services.platform_bootstrap(admin_email="admin@example.com", admin_password=None)
    assert password
    client = APIClient()
    first = client.post("/api/v1/auth/login/", {"email": admin.email, "password": password})
    assert first.status_code == 200
    assert first.json()["mfa"]["enrolment_required"] is True
    assert error(client.get("/api/v1/connectors/"))["code"] == "mfa_enrolment_required"
    client.post(f"{MFA}totp/")
    device = TOTPDevice.objects.get(user=admin)
    assert client.post(f"{MFA}totp/confirm/", {"otp": code_for(device)}).status_code == 200
    # The session that enrolled passed the code: straight on.
    assert client.get("/api/v1/connectors/").status_code == 200


def test_sessions_from_before_mfa_was_turned_on_must_sign_in_again(personas: Any) -> None:
    earlier = signed_in(personas.editor, address="198.51.100.9")
    now = signed_in(personas.editor)
    now.post(f"{MFA}totp/")
    device = TOTPDevice.objects.get(user=personas.editor)
    assert now.post(f"{MFA}totp/confirm/", {"otp": code_for(device)}).status_code == 200
    assert now.get("/api/v1/workspaces/").status_code == 200

    stale = earlier.get("/api/v1/me/")
    assert stale.status_code == 401
    assert error(stale)["code"] == "mfa_required"
    assert earlier.post("/api/v1/auth/logout/").status_code == 204


def test_api_keys_are_not_gated_and_cannot_change_mfa(personas: Any, settings: Any) -> None:
    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["all"]
    _, raw = api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get("/api/v1/workspaces/").status_code == 200
    refused = client.post(f"{MFA}totp/")
    assert refused.status_code == 403
    assert not TOTPDevice.objects.exists()


# --- Managing it ----------------------------------------------------------------------------------------


def test_regenerating_recovery_codes_needs_a_code_or_the_password(personas: Any) -> None:
    device, old = enrolled(personas.editor)
    client = signed_in(personas.editor, otp=code_for(device, steps_ahead=1))

    missing = client.post(f"{MFA}recovery-codes/", {})
    assert missing.status_code == 400
    assert list(error(missing)["fields"]) == ["otp"]
    wrong = client.post(f"{MFA}recovery-codes/", {"password": "not-my-password"})
    assert wrong.status_code == 400
    assert error(wrong)["fields"] == {"password": ["Your current password is not this one."]}

    fresh = client.post(f"{MFA}recovery-codes/", {"password": DEFAULT_PASSWORD})
    assert fresh.status_code == 200
    codes = fresh.json()["recovery_codes"]
    assert len(codes) == 10 and not set(codes) & set(old)
    assert fresh.json()["status"]["recovery_codes_left"] == 10
    # The session verified by the old device record stays verified: the device is kept.
    assert StaticDevice.objects.filter(user=personas.editor).count() == 1
    creds = {"email": personas.editor.email, "password": DEFAULT_PASSWORD}
    assert APIClient().post("/api/v1/auth/token/", {**creds, "otp": old[0]}).status_code == 401
    time.sleep(1.1)  # django-otp's back-off after that wrong recovery code
    assert APIClient().post("/api/v1/auth/token/", {**creds, "otp": codes[0]}).status_code == 200

    by_code = client.post(f"{MFA}recovery-codes/", {"otp": code_for(device, steps_ahead=1)})
    assert by_code.status_code == 200, by_code.json()


def test_turning_mfa_off_needs_a_code_and_is_refused_when_the_policy_requires_it(
    personas: Any, settings: Any
) -> None:
    device, codes = enrolled(personas.owner)
    client = signed_in(personas.owner, otp=codes[0])

    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["admins"]
    refused = client.post(f"{MFA}disable/", {"otp": codes[1]})
    assert refused.status_code == 403
    assert error(refused)["code"] == "mfa_required_by_policy"
    assert TOTPDevice.objects.filter(user=personas.owner, confirmed=True).exists()

    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["none"]
    wrong = client.post(f"{MFA}disable/", {"otp": "zzzzzzzz"})
    assert wrong.status_code == 400
    assert list(error(wrong)["fields"]) == ["otp"]
    time.sleep(1.1)
    off = client.post(f"{MFA}disable/", {"otp": code_for(device, steps_ahead=1)})
    assert off.status_code == 200, off.json()
    assert off.json()["enabled"] is False
    assert not TOTPDevice.objects.filter(user=personas.owner).exists()
    assert not StaticDevice.objects.filter(user=personas.owner).exists()
    # Signing in needs no code any more.
    signed_in(personas.owner)


def test_nobody_can_touch_another_users_devices(personas: Any) -> None:
    mine = signed_in(personas.editor)
    mine.post(f"{MFA}totp/")
    device = TOTPDevice.objects.get(user=personas.editor)

    theirs = signed_in(personas.outsider)
    assert theirs.get(MFA).json()["enabled"] is False
    # My pending device's code confirms nothing for them, and my device stays pending.
    attempt = theirs.post(f"{MFA}totp/confirm/", {"otp": code_for(device)})
    assert attempt.status_code == 400
    device.refresh_from_db()
    assert not device.confirmed
    assert mine.post(f"{MFA}totp/confirm/", {"otp": code_for(device)}).status_code == 200
    # With my MFA on, their codes cannot turn it off or mint my recovery codes: every endpoint is theirs.
    assert theirs.post(f"{MFA}disable/", {"otp": code_for(device, steps_ahead=1)}).status_code == 200
    assert TOTPDevice.objects.filter(user=personas.editor, confirmed=True).exists()
    assert theirs.post(f"{MFA}recovery-codes/", {"password": DEFAULT_PASSWORD}).status_code == 400
    assert StaticToken.objects.filter(device__user=personas.editor).count() == 10


def test_the_key_is_never_returned_again_logged_or_audited(personas: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    client = signed_in(personas.editor)
    body = client.post(f"{MFA}totp/").json()
    device = TOTPDevice.objects.get(user=personas.editor)
    confirmed = client.post(f"{MFA}totp/confirm/", {"otp": code_for(device)}).json()
    signed_in(personas.editor, otp=code_for(device, steps_ahead=1))
    signed_in(personas.editor, otp=confirmed["recovery_codes"][0])

    secrets = [body["secret"], device.key, *confirmed["recovery_codes"]]
    later = [client.get(MFA).content.decode(), client.get("/api/v1/me/").content.decode()]
    audited = [str(e.changes) for e in AuditEntry.objects.all()]
    for secret in secrets:
        assert secret not in caplog.text
        assert not any(secret in text for text in later + audited)
    assert "mfa_enabled" in caplog.text and "mfa_verified" in caplog.text


# --- The admin ------------------------------------------------------------------------------------------


def test_the_admin_asks_a_staff_user_with_mfa_for_a_code(db: None, settings: Any) -> None:
    staff = User.objects.create_superuser(email="root@example.com", password=DEFAULT_PASSWORD)
    device, _ = enrolled(staff)

    unverified = Client()
    unverified.force_login(staff)
    assert unverified.get("/admin/").status_code == 302

    client = Client(REMOTE_ADDR=ADDRESS)
    first = client.post("/admin/login/", {"username": staff.email, "password": DEFAULT_PASSWORD})
    assert first.status_code == 200
    assert b"otp_device" in first.content  # now asks which device, and its code
    assert client.get("/admin/").status_code == 302
    done = client.post(
        "/admin/login/?next=/admin/",
        {
            "username": staff.email,
            "password": DEFAULT_PASSWORD,
            "otp_device": device.persistent_id,
            "otp_token": code_for(device, steps_ahead=1),
            "next": "/admin/",
        },
    )
    assert done.status_code == 302, done.content.decode()[:2000]
    assert client.get("/admin/").status_code == 200

    # A session verified in the web app is let in as it is.
    web = signed_in(staff, otp=services.mfa_recovery_codes_regenerate(user=staff)[0])
    assert web.get("/admin/").status_code == 200


def test_the_admin_sends_a_covered_staff_user_without_mfa_to_enrol(db: None, settings: Any) -> None:
    staff = User.objects.create_superuser(email="root@example.com", password=DEFAULT_PASSWORD)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200  # the test settings' policy: none

    settings.AGGREGATOR_MFA_REQUIRED_FOR = ["staff"]
    assert client.get("/admin/").status_code == 302
    page = Client().post("/admin/login/", {"username": staff.email, "password": DEFAULT_PASSWORD})
    assert "set it up on your Account page" in page.content.decode()
