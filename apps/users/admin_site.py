"""The operator admin at /admin/, asking for a second factor (django-otp's OTPAdminSite and its login form).

A staff user with two-factor authentication on signs in with their password, then picks a device (the
authenticator app or the recovery codes) and types a code; a session that already passed a second factor
in the web app is let in as it is. A staff user without it is let in on the password alone unless
AGGREGATOR_MFA_REQUIRED_FOR covers them: then they are asked to set it up in the web app first."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin import AdminSite
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from .selectors import mfa_enabled, mfa_required

ENROL_FIRST = (
    "Your account must use two-factor authentication, which is not set up yet: sign in to the web app, "
    "set it up on your Account page, then come back here."
)


def _admin_mfa_satisfied(user: Any) -> bool:
    is_verified = getattr(user, "is_verified", None)
    if is_verified is not None and is_verified():
        return True
    return not mfa_enabled(user=user) and not mfa_required(user=user)


class OtpAdminLoginForm(OTPAdminAuthenticationForm):
    def clean(self) -> dict[str, Any]:
        # The password (through django-axes) and is_staff, as Django's admin form checks them.
        self.cleaned_data = super(OTPAdminAuthenticationForm, self).clean()
        user = self.get_user()
        if user is None:
            return self.cleaned_data
        if mfa_enabled(user=user):
            try:
                self.clean_otp(user)
            except forms.ValidationError as error:
                if error.code in ("invalid_token", None):
                    # A wrong code counts towards the lockout of (email, address), as a wrong password.
                    user_login_failed.send(
                        sender=type(self), credentials={"email": user.email}, request=self.request
                    )
                raise
        elif mfa_required(user=user):
            raise forms.ValidationError(ENROL_FIRST, code="mfa_enrolment_required")
        return self.cleaned_data


class OtpAdminSite(OTPAdminSite):
    login_form = OtpAdminLoginForm

    def __init__(self, name: str = "admin") -> None:
        # Named "admin" (not django-otp's "otpadmin"), so `admin:` URL names keep working.
        super().__init__(name)

    def has_permission(self, request: HttpRequest) -> bool:
        return AdminSite.has_permission(self, request) and _admin_mfa_satisfied(request.user)
