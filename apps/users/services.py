"""Writes for users, workspaces, memberships, invitations and API keys. One transaction each; side effects
(email) after commit."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from datetime import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from aggregator.logging import get_logger
from apps.monitoring import events

from .models import ApiKey, ApiKeyScope, Invitation, Membership, Role, User, Workspace
from .selectors import forget_roles

logger = get_logger(__name__)

API_KEY_PREFIX = "agk_"


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@transaction.atomic
def user_create(*, email: str, password: str | None, full_name: str = "", is_staff: bool = False) -> User:
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "A user with this email already exists."})
    if is_staff:
        return User.objects.create_superuser(email=email, password=password, full_name=full_name)
    return User.objects.create_user(email=email, password=password, full_name=full_name)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:80] or "workspace"
    slug, n = base, 1
    while Workspace.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def workspace_create(*, name: str, created_by: User) -> Workspace:
    """A new workspace; its creator becomes its admin."""
    workspace = Workspace.objects.create(name=name.strip(), slug=_unique_slug(name), created_by=created_by)
    Membership.objects.create(user=created_by, workspace=workspace, role=Role.ADMIN)
    forget_roles(created_by)
    # Listeners (the connectors app gives a new workspace its Local warehouse) hear of it after commit.
    events.emit("workspace.created", workspace, workspace, {"name": workspace.name, "slug": workspace.slug})
    logger.info("workspace_created", workspace_id=workspace.id, user_id=created_by.id)
    return workspace


@transaction.atomic
def workspace_update(*, workspace: Workspace, name: str) -> Workspace:
    workspace.name = name.strip()
    workspace.save(update_fields=["name"])
    return workspace


@transaction.atomic
def workspace_delete(*, workspace: Workspace) -> None:
    logger.info("workspace_deleted", workspace_id=workspace.id)
    workspace.delete()


def _ensure_an_admin_remains(*, membership: Membership) -> None:
    # Locks the workspace's admin rows so two concurrent demotions cannot both pass the check.
    admins = list(
        Membership.objects.select_for_update()
        .filter(workspace_id=membership.workspace_id, role=Role.ADMIN)
        .values_list("id", flat=True)
    )
    if admins == [membership.id]:
        raise ValidationError(
            {"role": "A workspace needs at least one admin; make someone else admin first."}
        )


@transaction.atomic
def membership_set_role(*, membership: Membership, role: Role) -> Membership:
    if membership.role == Role.ADMIN and role != Role.ADMIN:
        _ensure_an_admin_remains(membership=membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    if membership.role == Role.ADMIN:
        _ensure_an_admin_remains(membership=membership)
    # Keys act as their user: a member who leaves takes their keys for that workspace along.
    ApiKey.objects.filter(workspace_id=membership.workspace_id, user_id=membership.user_id).update(
        revoked_at=timezone.now()
    )
    membership.delete()


@transaction.atomic
def invitation_create(
    *, workspace: Workspace, email: str, role: Role, invited_by: User
) -> tuple[Invitation, str]:
    """An invitation and its token (returned once; only its hash is kept). The email goes after commit."""
    email = email.strip().lower()
    if Membership.objects.filter(workspace=workspace, user__email__iexact=email).exists():
        raise ValidationError({"email": "This person is already a member of the workspace."})
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        workspace=workspace,
        email=email,
        role=role,
        token_hash=_hash(token),
        invited_by=invited_by,
        expires_at=timezone.now() + settings.AGGREGATOR_INVITATION_TTL,
    )
    link = f"{settings.AGGREGATOR_BASE_URL}/accept-invitation?token={token}"
    transaction.on_commit(
        lambda: send_mail(
            subject=f"You are invited to {workspace.name} on Aggregator",
            message=(
                f"{invited_by.email} invited you to the workspace {workspace.name} as {role}.\n\n"
                f"Accept the invitation: {link}\n\n"
                f"The link expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[email],
        )
    )
    logger.info("invitation_created", workspace_id=workspace.id, invitation_id=invitation.id)
    return invitation, token


@transaction.atomic
def invitation_accept(
    *, token: str, user: User | None = None, password: str | None = None, full_name: str = ""
) -> Membership:
    """Joins the invited workspace: as the signed-in user (whose email must match), or as a new account."""
    invitation = Invitation.objects.select_for_update().filter(token_hash=_hash(token)).first()
    if invitation is None or not invitation.is_pending:
        raise ValidationError({"token": "This invitation is unknown, expired or already used."})
    if user is None:
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise ValidationError({"token": "An account with this email exists: sign in, then accept."})
        if not password:
            raise ValidationError({"password": "Choose a password for the new account."})
        from django.contrib.auth.password_validation import validate_password

        candidate = User(email=invitation.email, full_name=full_name)
        try:
            validate_password(password, user=candidate)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from exc
        user = user_create(email=invitation.email, password=password, full_name=full_name)
    elif user.email.lower() != invitation.email:
        raise ValidationError({"token": "This invitation was sent to another email address."})
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                user=user, workspace=invitation.workspace, role=invitation.role
            )
    except IntegrityError:
        raise ValidationError({"token": "You are already a member of this workspace."}) from None
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    forget_roles(user)
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: Invitation) -> None:
    invitation.delete()


def _password_set(*, user: User, new_password: str) -> int:
    """Sets a new password (checked by AUTH_PASSWORD_VALIDATORS; errors on `new_password`) and blacklists
    every refresh token of the user still outstanding, so a stolen one stops working. Returns how many were
    revoked. Access tokens live on until they expire (JWT_ACCESS_MINUTES): they are not looked up. Browser
    sessions end by themselves: each stores a hash of the password, which no longer matches. API keys are
    separate credentials and stay.

    The audit log records the change (users.User is tracked, the password field masked)."""
    from django.contrib.auth.password_validation import validate_password
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from exc
    user.set_password(new_password)
    user.save(update_fields=["password"])
    outstanding = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in outstanding], ignore_conflicts=True
    )
    return len(revoked)


@transaction.atomic
def user_password_change(*, user: User, new_password: str) -> int:
    """The signed-in user's new password (see _password_set for what ends with the old one). The caller keeps
    its own session with update_session_auth_hash. Returns how many refresh tokens were revoked."""
    if user.check_password(new_password):
        raise ValidationError({"new_password": "Choose a password different from the current one."})
    revoked = _password_set(user=user, new_password=new_password)
    logger.info("password_changed", user_id=user.id, refreshes_revoked=revoked)
    return revoked


INVALID_RESET_LINK = "This link is invalid, has expired or was already used. Ask for a new one."


@transaction.atomic
def password_reset_request(*, email: str) -> None:
    """Queues the reset email for this address. Whether an account has it is decided by the task, not here,
    so the answer to the request takes the same time and says the same thing either way."""
    from .tasks import password_reset_send_task

    address = email.strip().lower()
    transaction.on_commit(lambda: password_reset_send_task.delay(address))


def password_reset_send(*, email: str) -> bool:
    """Emails a one-time link to set a new password, when an active account has this address. The link
    carries the user's id and a default_token_generator token: it expires after PASSWORD_RESET_TIMEOUT and is
    spent by the password change (and by a sign-in before it), because the token hashes both."""
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
    if user is None:
        logger.info("password_reset_no_account")
        return False
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    link = f"{settings.AGGREGATOR_BASE_URL}/reset-password?uid={uid}&token={token}"
    minutes = settings.PASSWORD_RESET_TIMEOUT // 60
    send_mail(
        subject="Reset your Aggregator password",
        message=(
            f"Someone asked to reset the password of the Aggregator account {user.email}.\n\n"
            f"Choose a new password: {link}\n\n"
            f"The link works once, for {minutes} minutes. If you did not ask for it, ignore this email: "
            "your password stays as it is."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )
    logger.info("password_reset_sent", user_id=user.id)
    return True


def _user_for_reset(uid: str) -> User | None:
    from django.utils.http import urlsafe_base64_decode

    try:
        user_id = int(urlsafe_base64_decode(uid).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    # Locked, so two requests with one token cannot both pass the check below: the second reads the new
    # password hash once the first commits, and its token no longer matches.
    return User.objects.select_for_update().filter(pk=user_id, is_active=True).first()


@transaction.atomic
def user_password_reset(*, uid: str, token: str, new_password: str) -> User:
    """Sets the password of the user a reset link names, when its token is still good (errors on `token`,
    or on `new_password` from the validators; the link stays usable after the latter). Ends the user's
    sessions and refresh tokens like a change (_password_set) and clears their django-axes lockouts: they
    proved they read the account's mail. Audited with the user as actor, never the password or token."""
    from auditlog.context import set_extra_data
    from axes.utils import reset as axes_reset
    from django.contrib.auth.tokens import default_token_generator

    user = _user_for_reset(uid)
    if user is None or not default_token_generator.check_token(user, token):
        raise ValidationError({"token": INVALID_RESET_LINK})
    # The request is anonymous: name the account as the actor of the audit entry, and say how.
    with set_extra_data({"actor": user, "additional_data": {"via": "password_reset"}}):
        revoked = _password_set(user=user, new_password=new_password)
    cleared = axes_reset(username=user.email)
    logger.info("password_reset", user_id=user.id, refreshes_revoked=revoked, lockouts_cleared=cleared)
    return user


@transaction.atomic
def api_key_create(
    *, workspace: Workspace, user: User, name: str, scopes: list[str], expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key and its full text, which is never stored and can't be shown again."""
    scopes = sorted({ApiKeyScope(s).value for s in scopes}) or ["read"]
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        workspace=workspace,
        user=user,
        name=name.strip(),
        prefix=prefix,
        key_hash=_hash(secret),
        scopes=scopes,
        expires_at=expires_at,
    )
    logger.info("api_key_created", api_key_id=key.id, workspace_id=workspace.id, scopes=scopes)
    return key, f"{API_KEY_PREFIX}{prefix}.{secret}"


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key for this text, or None. Marks the key used at most once a minute."""
    if not raw_key.startswith(API_KEY_PREFIX) or "." not in raw_key:
        return None
    prefix, _, secret = raw_key[len(API_KEY_PREFIX) :].partition(".")
    key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(secret)) or not key.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        logger.info("api_key_revoked", api_key_id=api_key.id)
    return api_key


DEFAULT_WORKSPACE_NAME = "Default"


@transaction.atomic
def platform_bootstrap(*, admin_email: str, admin_password: str | None) -> tuple[User, Workspace, str | None]:
    """First start: an admin user and a default workspace they administer. Idempotent.

    Returns the user, the workspace and the generated password when one was made (None otherwise)."""
    generated = None
    user = User.objects.filter(email__iexact=admin_email).first()
    if user is None:
        if not admin_password:
            generated = admin_password = secrets.token_urlsafe(12)
        user = user_create(
            email=admin_email, password=admin_password, full_name="Administrator", is_staff=True
        )
    workspace = Workspace.objects.filter(memberships__user=user).order_by("id").first()
    if workspace is None:
        workspace = workspace_create(name=DEFAULT_WORKSPACE_NAME, created_by=user)
    return user, workspace, generated


# --- Two-factor authentication (django-otp) -----------------------------------------------------------
# A user has at most one TOTP device (their authenticator app) and one static device holding their
# recovery codes. Two-factor authentication is on when the TOTP device is confirmed. django-otp keeps the
# TOTP key in its own table as it is (it has no encrypted storage); the key leaves the server once, in the
# enrolment answer, and is never logged nor audited (the audit log does not track the device tables).

TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"
RECOVERY_CODE_COUNT = 10
_TOTP_CODE = re.compile(r"\d{6}")


class MfaCheck(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    # django-otp's back-off after wrong codes (1, 2, 4, 8 … seconds per device, whoever sends them).
    THROTTLED = "throttled"


def _normalize_code(otp: str) -> str:
    # People paste codes as "123 456" or "abcd-efgh"; recovery codes are lower-case base32.
    return re.sub(r"[\s-]", "", otp).lower()


def _verify_on(device: Device, otp: str) -> MfaCheck:
    """Verifies on the locked row in a transaction of its own, so the failure count django-otp keeps on
    the device is committed even when the caller then answers with an error."""
    with transaction.atomic():
        locked = type(device).objects.select_for_update().get(pk=device.pk)
        allowed, _ = locked.verify_is_allowed()
        if not allowed:
            return MfaCheck.THROTTLED
        return MfaCheck.OK if locked.verify_token(otp) else MfaCheck.INVALID


def mfa_verify(*, user: User, otp: str) -> tuple[MfaCheck, Device | None]:
    """Checks a second factor of a user with two-factor authentication on: six digits are a TOTP code
    (each accepted once: a code already used, or an older one, is refused), anything else a recovery
    code, which is spent. Only the device the code's form names is tried, so a mistyped TOTP code does
    not count against the recovery codes. Returns the result and the device that accepted the code."""
    code = _normalize_code(otp)
    model: type[Device] = TOTPDevice if _TOTP_CODE.fullmatch(code) else StaticDevice
    device = model.objects.filter(user_id=user.pk, confirmed=True).order_by("-id").first()
    if device is None or not code or len(code) > 16:
        return MfaCheck.INVALID, None
    result = _verify_on(device, code)
    if result is MfaCheck.OK:
        logger.info("mfa_verified", user_id=user.id, device=model.__name__)
    else:
        logger.info("mfa_verify_failed", user_id=user.id, device=model.__name__, reason=result.value)
    return result, (device if result is MfaCheck.OK else None)


@transaction.atomic
def mfa_totp_start(*, user: User) -> TOTPDevice:
    """A new, unconfirmed TOTP device with a fresh random key (replacing an unconfirmed one left from an
    earlier attempt). Refused while two-factor authentication is on: a stolen session must not be able to
    swap the authenticator without a code."""
    if TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists():
        raise ValidationError(
            "Two-factor authentication is already on. Turn it off first to set up another authenticator."
        )
    TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    logger.info("mfa_enrolment_started", user_id=user.id)
    return device


def _recovery_codes_replace(*, user: User) -> list[str]:
    """New recovery codes on the user's one static device (kept, so a session verified by a recovery code
    stays verified); the old codes stop working."""
    device = StaticDevice.objects.filter(user_id=user.pk).order_by("id").first()
    if device is None:
        device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    if not device.confirmed:
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return codes


def mfa_totp_confirm(*, user: User, otp: str) -> tuple[TOTPDevice, list[str]]:
    """Turns two-factor authentication on with a first code from the new authenticator, and makes the
    recovery codes (returned once). Errors on `otp`."""
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("-id").first()
    if device is None:
        raise ValidationError(
            {"otp": "Start the set-up first: there is no authenticator waiting for a code."}
        )
    code = _normalize_code(otp)
    result = _verify_on(device, code) if _TOTP_CODE.fullmatch(code) else MfaCheck.INVALID
    if result is not MfaCheck.OK:
        raise ValidationError({"otp": MFA_CODE_MESSAGES[result]})
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        TOTPDevice.objects.filter(user_id=user.pk).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _recovery_codes_replace(user=user)
    logger.info("mfa_enabled", user_id=user.id)
    return device, codes


@transaction.atomic
def mfa_recovery_codes_regenerate(*, user: User) -> list[str]:
    """New recovery codes (the caller has checked a fresh code or the password); the old ones stop
    working."""
    if not TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists():
        raise ValidationError("Two-factor authentication is off: there are no recovery codes to replace.")
    codes = _recovery_codes_replace(user=user)
    logger.info("mfa_recovery_codes_regenerated", user_id=user.id)
    return codes


@transaction.atomic
def mfa_disable(*, user: User) -> None:
    """Removes the authenticator and the recovery codes (the caller has checked a code). Refused while
    AGGREGATOR_MFA_REQUIRED_FOR covers the user."""
    from .selectors import mfa_required

    if mfa_required(user=user):
        raise PermissionDenied(
            "Your role requires two-factor authentication: it cannot be turned off. "
            "To move to another phone, an operator removes your devices in the admin."
        )
    TOTPDevice.objects.filter(user_id=user.pk).delete()
    StaticDevice.objects.filter(user_id=user.pk).delete()
    logger.info("mfa_disabled", user_id=user.id)


MFA_CODE_MESSAGES = {
    MfaCheck.INVALID: "This code is not right, or was already used. Codes change every 30 seconds.",
    MfaCheck.THROTTLED: "Too many wrong codes: wait a few seconds, then try a new code.",
}
