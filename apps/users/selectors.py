"""Reads of users, workspaces, memberships and keys — always limited to what the caller may see.

An API key acts as its user inside the key's one workspace and no further than its scopes: the key is
attached to the request's user object by ApiKeyAuthentication, and every function here honours it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Count, QuerySet
from django.http import Http404
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from aggregator.middleware import request_cache

from .models import ROLE_RANK, ApiKey, ApiKeyScope, Invitation, Membership, Role, User, Workspace

# Other apps may not import users.models: these are the users app's public types, re-exported here for
# their signatures (User, Workspace), role checks (Role) and telling an API-key request apart (ApiKey).

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

_SCOPE_ROLE = {ApiKeyScope.READ: Role.VIEWER, ApiKeyScope.WRITE: Role.EDITOR, ApiKeyScope.ADMIN: Role.ADMIN}


def api_key_of(user: Any) -> ApiKey | None:
    return getattr(user, "api_key", None)


def _roles(user: Any) -> dict[int, str]:
    """workspace id → the caller's effective role. Looked up once per HTTP request: a list endpoint checks
    many rows of few workspaces."""
    key = api_key_of(user)
    memo = request_cache()
    memo_key = ("roles", user.pk, key.pk if key else None)
    if memo is not None and memo_key in memo:
        return memo[memo_key]
    roles = dict(Membership.objects.filter(user_id=user.pk).values_list("workspace_id", "role"))
    if key is not None:
        # A key acts inside its own workspace only, and never above the role its scopes allow.
        key_rank = max((ROLE_RANK[_SCOPE_ROLE[ApiKeyScope(s)]] for s in key.scopes), default=0)
        roles = {
            ws: (role if ROLE_RANK[Role(role)] <= key_rank else _rank_role(key_rank))
            for ws, role in roles.items()
            if ws == key.workspace_id and key_rank > 0
        }
    if memo is not None:
        memo[memo_key] = roles
    return roles


def forget_roles(user: Any) -> None:
    """Drop the memo after a membership change made in this request."""
    memo = request_cache()
    if memo is not None:
        for memo_key in [k for k in memo if isinstance(k, tuple) and k[:2] == ("roles", user.pk)]:
            del memo[memo_key]


def _rank_role(rank: int) -> str:
    return next(role for role, r in ROLE_RANK.items() if r == rank)


def workspace_ids_for_user(*, user: User | AnonymousUser, min_role: Role = Role.VIEWER) -> list[int]:
    if not user.is_authenticated:
        return []
    floor = ROLE_RANK[min_role]
    return [ws for ws, role in _roles(user).items() if ROLE_RANK[Role(role)] >= floor]


def role_for(*, user: User | AnonymousUser, workspace_id: int) -> Role | None:
    if not user.is_authenticated:
        return None
    role = _roles(user).get(workspace_id)
    return Role(role) if role else None


def has_role(*, user: User | AnonymousUser, workspace_id: int, role: Role) -> bool:
    current = role_for(user=user, workspace_id=workspace_id)
    return current is not None and ROLE_RANK[current] >= ROLE_RANK[role]


def workspace_list_for_user(*, user: User | AnonymousUser) -> QuerySet[Workspace]:
    return (
        Workspace.objects.filter(id__in=workspace_ids_for_user(user=user))
        .annotate(member_count=Count("memberships"))
        .order_by("name", "id")
    )


def workspace_get_for_user(*, user: User | AnonymousUser, workspace_id: int | str) -> Workspace:
    """The workspace if the caller is a member; otherwise 404, whether or not it exists."""
    try:
        return workspace_list_for_user(user=user).get(id=int(workspace_id))
    except (Workspace.DoesNotExist, ValueError, TypeError):
        raise Http404("No such workspace.") from None


def member_list(*, user: User | AnonymousUser, workspace_id: int) -> QuerySet[Membership]:
    workspace_get_for_user(user=user, workspace_id=workspace_id)
    return Membership.objects.filter(workspace_id=workspace_id).select_related("user").order_by("user__email")


def invitation_list(*, user: User | AnonymousUser, workspace_id: int) -> QuerySet[Invitation]:
    workspace_get_for_user(user=user, workspace_id=workspace_id)
    return Invitation.objects.filter(workspace_id=workspace_id).select_related("invited_by")


def api_key_list_for_user(*, user: User | AnonymousUser) -> QuerySet[ApiKey]:
    """Keys of the workspaces the caller administers (admins manage keys)."""
    return (
        ApiKey.objects.filter(workspace_id__in=workspace_ids_for_user(user=user, min_role=Role.ADMIN))
        .select_related("user", "workspace")
        .order_by("-created_at", "-id")
    )


def user_workspace_summaries(*, user: User) -> list[dict[str, Any]]:
    roles = _roles(user)
    workspaces = Workspace.objects.filter(id__in=roles).order_by("name", "id")
    return [{"id": ws.id, "name": ws.name, "slug": ws.slug, "role": roles[ws.id]} for ws in workspaces]


# --- Two-factor authentication ----------------------------------------------------------------------


def mfa_totp_device(*, user: User) -> TOTPDevice | None:
    """The user's confirmed authenticator app, if two-factor authentication is on."""
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("-id").first()


def mfa_enabled(*, user: User) -> bool:
    """Two-factor authentication is on: a confirmed TOTP device (recovery codes only back it up). Looked up
    once per HTTP request: the API's MFA gate asks on every call."""
    memo = request_cache()
    memo_key = ("mfa_enabled", user.pk)
    if memo is not None and memo_key in memo:
        return bool(memo[memo_key])
    enabled = TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()
    if memo is not None:
        memo[memo_key] = enabled
    return enabled


def mfa_required(*, user: User) -> bool:
    """Whether AGGREGATOR_MFA_REQUIRED_FOR covers this user: `staff` (Django staff), `admins` (admin of any
    workspace, whatever an API key on the request allows), `all` or `none`."""
    policy = set(settings.AGGREGATOR_MFA_REQUIRED_FOR)
    if "all" in policy:
        return True
    if "staff" in policy and user.is_staff:
        return True
    if "admins" in policy:
        return Membership.objects.filter(user_id=user.pk, role=Role.ADMIN).exists()
    return False


def mfa_status(*, user: User) -> dict[str, Any]:
    device = mfa_totp_device(user=user)
    recovery = StaticToken.objects.filter(device__user_id=user.pk, device__confirmed=True).count()
    required = mfa_required(user=user)
    return {
        "enabled": device is not None,
        "required": required,
        "enrolment_required": required and device is None,
        "enabled_at": device.created_at if device else None,
        "last_used_at": device.last_used_at if device else None,
        "recovery_codes_left": recovery if device else 0,
    }


def workspace_get(*, workspace_id: int) -> Workspace | None:
    """A workspace by id, unauthorised: for callers that have checked access already (or need none, such
    as an event listener)."""
    return Workspace.objects.filter(id=workspace_id).first()


def workspace_for_command(*, ref: str | None) -> Workspace:
    """The workspace a management command names by slug or id, or the only one there is. LookupError
    with a message for the operator otherwise."""
    if ref:
        found = Workspace.objects.filter(slug=ref).first()
        if found is None and ref.isdigit():
            found = Workspace.objects.filter(id=int(ref)).first()
        if found is None:
            raise LookupError(f"No workspace {ref!r}.")
        return found
    workspaces = list(Workspace.objects.all()[:2])
    if len(workspaces) != 1:
        raise LookupError("Several workspaces exist: name one with --workspace.")
    return workspaces[0]


def workspace_admin_emails(*, workspace_id: int) -> list[str]:
    """The e-mail addresses of the workspace's admins, sorted (who is told when no one else is named)."""
    return list(
        Membership.objects.filter(workspace_id=workspace_id, role=Role.ADMIN)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
        .order_by("user__email")
    )
