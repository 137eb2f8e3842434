"""Password reset in a real browser: from the sign-in page's "Forgot your password?" link to a new password.
The server and the worker (which sends the email) write mail as files into a temporary directory, where
the test reads the link. axe-core checks both new screens."""

from __future__ import annotations

import email
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

NEW_PASSWORD = "a-much-longer-Passphrase-42"


@pytest.fixture(scope="module")
def mail_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("e2e-mail")


@pytest.fixture(scope="module")
def live_server_extra_env(mail_dir: Path) -> dict[str, str]:
    # Read by aggregator/settings/test.py: the file backend instead of the in-memory one.
    return {"AGGREGATOR_TEST_EMAIL_DIR": str(mail_dir)}


def _wait_for_mail(mail_dir: Path, count: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(mail_dir.glob("*.log"))
        if len(files) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    messages = []
    for file in files:
        # The file backend writes each message followed by a line of dashes.
        text = file.read_text().split("\n" + "-" * 79)[0]
        messages.append(email.message_from_string(text))
    assert len(messages) >= count, f"{len(messages)} emails in {mail_dir}, expected {count}"
    return messages


def _sign_in(page: Any, address: str, password: str) -> int:
    page.goto("/login")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill(password)
    with page.expect_response("**/api/v1/auth/login/") as response:
        page.get_by_role("button", name="Sign in").click()
    return int(response.value.status)


def test_a_signed_out_user_resets_their_password_by_email(
    personas: Any, new_page: Any, mail_dir: Path, live_server_url: str
) -> None:
    address = personas.editor.email
    page = new_page()
    page.goto("/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url("**/forgot-password")
    page.get_by_role("heading", name="Forgot your password?").wait_for()
    check_screen(page, "password-reset-01-ask")

    # A mistyped address is caught in the page.
    page.get_by_label("Email").fill("not-an-address")
    page.get_by_role("button", name="Send the link").click()
    page.get_by_text("Enter an email address.").wait_for()

    page.get_by_label("Email").fill(address)
    with page.expect_response("**/api/v1/auth/password-reset/") as response:
        page.get_by_role("button", name="Send the link").click()
    assert response.value.status == 202
    sent = page.get_by_test_id("forgot-sent")
    sent.get_by_text("If an account uses this address, an email with a link").wait_for()
    check_screen(page, "password-reset-02-sent")

    # An address nobody has gets the very same page, and no email.
    other = new_page()
    other.goto("/forgot-password")
    other.get_by_label("Email").fill("nobody@acme.test")
    with other.expect_response("**/api/v1/auth/password-reset/") as response:
        other.get_by_role("button", name="Send the link").click()
    assert response.value.status == 202
    other.get_by_test_id("forgot-sent").get_by_text("If an account uses this address").wait_for()
    assert other.get_by_test_id("forgot-sent").inner_text() == sent.inner_text()

    [message] = _wait_for_mail(mail_dir, 1)
    assert message["To"] == address
    assert message["Subject"] == "Reset your Aggregator password"
    body = message.get_payload(decode=True).decode()
    link = re.search(r"http://\S+/reset-password\?\S+", body)
    assert link is not None, body
    parts = urlsplit(link.group(0))
    assert f"{parts.scheme}://{parts.netloc}" == "http://127.0.0.1:8000"  # AGGREGATOR_BASE_URL's default
    reset_path = f"{parts.path}?{parts.query}"

    page.goto(reset_path)
    page.get_by_role("heading", name="Choose a new password").wait_for()
    check_screen(page, "password-reset-03-form")

    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill("something-else-entirely")
    page.get_by_role("button", name="Set the new password").click()
    page.get_by_text("The two passwords differ.").wait_for()

    page.get_by_label("New password", exact=True).fill("password123")
    page.get_by_label("Repeat the new password").fill("password123")
    with page.expect_response("**/api/v1/auth/password-reset/confirm/") as response:
        page.get_by_role("button", name="Set the new password").click()
    assert response.value.status == 400
    page.get_by_text("This password is too common.").wait_for()
    field = page.get_by_label("New password", exact=True)
    assert field.get_attribute("aria-invalid") == "true"
    error_id = field.get_attribute("aria-describedby").split()[-1]
    assert "too common" in page.locator(f"#{error_id}").inner_text()
    check_screen(page, "password-reset-04-weak")

    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    with page.expect_response("**/api/v1/auth/password-reset/confirm/") as response:
        page.get_by_role("button", name="Set the new password").click()
    assert response.value.status == 204
    page.get_by_test_id("reset-done").get_by_text("Your password is changed").wait_for()
    check_screen(page, "password-reset-05-done")

    # The link is spent.
    again = new_page()
    again.goto(reset_path)
    again.get_by_label("New password", exact=True).fill("another-long-Passphrase-77")
    again.get_by_label("Repeat the new password").fill("another-long-Passphrase-77")
    again.get_by_role("button", name="Set the new password").click()
    spent = "This link is invalid, has expired or was already used."
    again.get_by_test_id("reset-error").get_by_text(spent).wait_for()
    check_screen(again, "password-reset-06-spent")

    # Sign in from the success message's link: the old password fails, the new one works.
    page.get_by_test_id("reset-done").get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/login**")
    assert _sign_in(page, address, DEFAULT_PASSWORD) == 401
    assert _sign_in(page, address, NEW_PASSWORD) == 200
    page.wait_for_url(lambda url: "/login" not in url)
    page.goto("/account")
    page.get_by_text(f"Signed in as {address}").wait_for()
