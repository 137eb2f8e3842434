"""The account page in a real browser: a signed-in user changes their password on /account (a wrong
current password and a weak new one are shown at their fields first), stays signed in, and signs in again
with the new password in another browser while the old one is refused. axe-core checks every state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

NEW_PASSWORD = "a-much-longer-Passphrase-42"


def _submit(page: Any, current: str, new: str, repeat: str | None = None) -> None:
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("Repeat the new password").fill(new if repeat is None else repeat)
    page.get_by_role("button", name="Change password").click()


def test_a_user_changes_their_password_and_signs_in_with_it(personas: Any, new_page: Any) -> None:
    page = new_page()
    sign_in(page, personas.editor.email, DEFAULT_PASSWORD, next_path="/")
    # From any screen, the header's account link (an icon with its name for screen readers at this width).
    page.get_by_role("link", name="Account").click()
    page.wait_for_url("**/account")
    page.get_by_role("heading", name="Your account").wait_for()
    assert page.get_by_role("link", name="Account").get_attribute("aria-current") == "page"
    page.get_by_text(f"Signed in as {personas.editor.email}").wait_for()
    check_screen(page, "account-01-form")

    # Mismatched repeat: caught in the page, nothing sent.
    _submit(page, DEFAULT_PASSWORD, NEW_PASSWORD, repeat="something-else-entirely")
    page.get_by_text("The two new passwords differ.").wait_for()

    with page.expect_response("**/api/v1/auth/password/") as response:
        _submit(page, "not-my-password", NEW_PASSWORD)
    assert response.value.status == 400
    current = page.get_by_label("Current password")
    page.get_by_text("Your current password is not this one.").wait_for()
    assert current.get_attribute("aria-invalid") == "true"
    assert (
        "Your current password is not this one."
        in page.locator(f"#{current.get_attribute('aria-describedby')}").inner_text()
    )

    with page.expect_response("**/api/v1/auth/password/") as response:
        _submit(page, DEFAULT_PASSWORD, "password123")
    assert response.value.status == 400
    page.get_by_text("This password is too common.").wait_for()
    check_screen(page, "account-02-errors")

    with page.expect_response("**/api/v1/auth/password/") as response:
        _submit(page, DEFAULT_PASSWORD, NEW_PASSWORD)
    assert response.value.status == 204
    page.get_by_test_id("password-changed").wait_for()
    assert page.get_by_label("Current password").input_value() == ""
    check_screen(page, "account-03-changed")

    # This browser stays signed in.
    page.reload()
    page.get_by_role("heading", name="Your account").wait_for()
    assert "/login" not in page.url

    # Another browser: the old password is refused, the new one signs in.
    other = new_page()
    other.goto("/login")
    other.get_by_label("Email").fill(personas.editor.email)
    other.get_by_label("Password").fill(DEFAULT_PASSWORD)
    with other.expect_response("**/api/v1/auth/login/") as response:
        other.get_by_role("button", name="Sign in").click()
    assert response.value.status == 401
    other.get_by_label("Password").fill(NEW_PASSWORD)
    other.get_by_role("button", name="Sign in").click()
    other.wait_for_url(lambda url: "/login" not in url)
    other.goto("/account")
    other.get_by_text(f"Signed in as {personas.editor.email}").wait_for()
