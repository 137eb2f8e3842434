"""The workspace a write request names: the one check behind every create of a workspace-owned object
(`WorkspaceScopedViewSet.workspace_for_create`) and behind uploads (`apps/connectors/api/uploads.py`)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions

from apps.users.selectors import Role, Workspace, has_role, workspace_get, workspace_ids_for_user


def workspace_for_write(*, user: Any, raw: Any, role: Role) -> Workspace:
    """The workspace `raw` names (an id, from the body or the query), or the caller's only workspace when
    it names none. 400 at `workspace` when it is missing and ambiguous, not a number or not one the caller
    can see; 403 when the caller's role there is below `role`."""
    visible = workspace_ids_for_user(user=user)
    if raw in (None, ""):
        if len(visible) != 1:
            raise exceptions.ValidationError(
                {"workspace": "Required: you belong to several workspaces (or none)."}
            )
        workspace_id = visible[0]
    else:
        try:
            workspace_id = int(raw)
        except (TypeError, ValueError):
            raise exceptions.ValidationError({"workspace": "Must be a workspace id."}) from None
        if workspace_id not in visible:
            raise exceptions.ValidationError({"workspace": "No such workspace."})
    if not has_role(user=user, workspace_id=workspace_id, role=role):
        raise exceptions.PermissionDenied("Your role in this workspace does not allow this.")
    workspace = workspace_get(workspace_id=workspace_id)
    if workspace is None:  # deleted between the two reads
        raise exceptions.ValidationError({"workspace": "No such workspace."})
    return workspace
