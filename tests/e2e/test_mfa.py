"""Two-factor authentication in a real browser, with the policy on (workspace admins must use it): a
workspace admin signs in with the password alone and is sent to /account, sets up an authenticator from
the key shown beside the QR code (a wrong code refused at the field first), keeps the recovery codes,
then signs out and in again with the password and a code (a wrong one refused at the field), and with a
recovery code, which is then spent. axe-core checks every state."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from django_otp.oath import TOTP

from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def live_server_extra_env() -> dict[str, str]:
    return {"AGGREGATOR_MFA_REQUIRED_FOR": "staff,admins"}


def _code(secret: str, steps_ahead: int = 0) -> str:
    """What the authenticator app shows for this key now (or `steps_ahead` periods later)."""
    totp = TOTP(base64.b32decode(secret), step=30, t0=0, digits=6, drift=0)
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"


def _wrong(secret: str) -> str:
    near = {_code(secret, s) for s in (-1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in near)


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")


def _password_step(page: Any, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    with page.expect_response("**/api/v1/auth/login/") as response:
        page.get_by_role("button", name="Sign in").click()
    assert response.value.status == 401
    page.get_by_role("heading", name="Two-factor authentication").wait_for()


def test_an_admin_sets_up_two_factor_and_signs_in_with_a_code_and_a_recovery_code(
    personas: Any, new_page: Any
) -> None:
    email = personas.owner.email
    page = new_page()
    # The password alone signs in, straight to the account page: the rest is closed until set up.
    sign_in(page, email, DEFAULT_PASSWORD, next_path="/pipelines")
    page.wait_for_url("**/account")
    page.get_by_test_id("mfa-required").wait_for()
    page.goto("/pipelines")
    page.wait_for_url("**/account")
    check_screen(page, "mfa-01-required")

    page.get_by_role("button", name="Set up two-factor authentication").click()
    qr = page.get_by_role("img", name="QR code of your new authenticator key")
    qr.wait_for()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    secret = page.get_by_test_id("mfa-secret").inner_text().replace(" ", "")
    assert len(secret) == 32
    code_field = page.get_by_label("Code from the app")
    assert code_field.get_attribute("autocomplete") == "one-time-code"
    assert code_field.get_attribute("inputmode") == "numeric"
    check_screen(page, "mfa-02-set-up")

    code_field.fill(_wrong(secret))
    with page.expect_response("**/api/v1/auth/mfa/totp/confirm/") as response:
        page.get_by_role("button", name="Turn on").click()
    assert response.value.status == 400
    page.get_by_text("This code is not right").wait_for()
    assert code_field.get_attribute("aria-invalid") == "true"
    described = page.locator(f"#{code_field.get_attribute('aria-describedby')}")
    assert "This code is not right" in described.inner_text()
    check_screen(page, "mfa-03-wrong-code")

    time.sleep(1.2)  # django-otp's back-off after a wrong code
    code_field.fill(_code(secret))
    page.get_by_role("button", name="Turn on").click()
    page.get_by_test_id("recovery-codes").wait_for()
    codes = page.get_by_role("list", name="Recovery codes").get_by_role("listitem").all_inner_texts()
    assert len(codes) == 10
    check_screen(page, "mfa-04-recovery-codes")
    page.get_by_role("button", name="I have saved them").click()
    page.get_by_text("10 of 10 recovery codes left").wait_for()
    # Admins must keep it: no way to turn it off here.
    assert page.get_by_role("button", name="Turn off two-factor authentication").count() == 0
    check_screen(page, "mfa-05-on")

    # This browser passed the code: the rest of the app opens.
    page.goto("/pipelines")
    page.get_by_role("heading", name="Pipelines").wait_for()
    assert "/account" not in page.url

    # Password, then a code: a wrong one is said at the field.
    _sign_out(page)
    _password_step(page, email)
    field = page.get_by_label("Authentication code")
    assert field.get_attribute("autocomplete") == "one-time-code"
    assert field.get_attribute("inputmode") == "numeric"
    check_screen(page, "mfa-06-code-step")
    field.fill(_wrong(secret))
    with page.expect_response("**/api/v1/auth/login/") as response:
        page.get_by_role("button", name="Verify").click()
    assert response.value.status == 401
    page.get_by_text("This code is not right").wait_for()
    assert field.get_attribute("aria-invalid") == "true"
    check_screen(page, "mfa-07-code-wrong")
    time.sleep(1.2)
    # The next period's code: the one that turned it on may still be current, and each works once.
    field.fill(_code(secret, steps_ahead=1))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(lambda url: "/login" not in url)
    page.goto("/account")
    page.get_by_text(f"Signed in as {email}").wait_for()

    # A recovery code instead, in another browser; it is spent.
    _sign_out(page)
    other = new_page()
    _password_step(other, email)
    other.get_by_role("button", name="Use a recovery code instead").click()
    recovery = other.get_by_label("Recovery code")
    assert recovery.get_attribute("autocomplete") == "off"
    recovery.fill(codes[0])
    check_screen(other, "mfa-08-recovery-code")
    other.get_by_role("button", name="Verify").click()
    other.wait_for_url(lambda url: "/login" not in url)
    other.goto("/account")
    other.get_by_text("9 of 10 recovery codes left").wait_for()

    _sign_out(other)
    _password_step(other, email)
    other.get_by_role("button", name="Use a recovery code instead").click()
    other.get_by_label("Recovery code").fill(codes[0])
    with other.expect_response("**/api/v1/auth/login/") as response:
        other.get_by_role("button", name="Verify").click()
    assert response.value.status == 401
    other.get_by_text("This code is not right, or was already used").wait_for()
