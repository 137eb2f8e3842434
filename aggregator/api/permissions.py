"""Role checks for workspace-owned objects.

A member's role decides: viewers read, editors change content, admins manage the workspace. A
django-guardian grant on one object adds to that (e.g. a viewer allowed to change one pipeline). Objects of
workspaces the caller is not in never get this far: the scoped queryset answers 404 first."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from apps.users.selectors import Role, has_role

SAFE_ACTIONS = {"list", "retrieve", "metadata"}


def required_role(view: Any, request: Request) -> Role:
    action = getattr(view, "action", None)
    roles = getattr(view, "action_roles", {})
    if action in roles:
        return roles[action]
    if request.method in permissions.SAFE_METHODS:
        return getattr(view, "read_role", Role.VIEWER)
    return getattr(view, "write_role", Role.EDITOR)


class WorkspaceRolePermission(permissions.BasePermission):
    message = "Your role in this workspace does not allow this."

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        workspace_id = view.workspace_id_of(obj)
        role = required_role(view, request)
        if has_role(user=request.user, workspace_id=workspace_id, role=role):
            return True
        return self._granted_by_guardian(request, obj)

    @staticmethod
    def _granted_by_guardian(request: Request, obj: Any) -> bool:
        # API keys never widen beyond their scopes, so object grants apply to people only.
        if getattr(request.user, "api_key", None) is not None:
            return False
        meta = obj._meta
        codename = _METHOD_PERMISSION.get(request.method or "", "change")
        return bool(request.user.has_perm(f"{meta.app_label}.{codename}_{meta.model_name}", obj))


_METHOD_PERMISSION = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "DELETE": "delete"}
