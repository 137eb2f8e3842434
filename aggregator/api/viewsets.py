"""The base for every workspace-owned resource. A subclass provides the caller's scoped queryset (from
its app's selector); this base adds the workspace filter as a second guard, so a subclass cannot return
another workspace's rows by mistake."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from rest_framework import exceptions, mixins, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request

from apps.users.models import Role, Workspace
from apps.users.selectors import has_role, workspace_ids_for_user

from .permissions import WorkspaceRolePermission


class WorkspaceScopedViewSet(viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated, WorkspaceRolePermission]
    # The path from the model to its workspace id (e.g. "workspace_id", "pipeline__workspace_id").
    workspace_lookup = "workspace_id"
    read_role = Role.VIEWER
    write_role = Role.EDITOR
    action_roles: dict[str, Role] = {}

    def scoped_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError(f"{type(self).__name__} must return the caller's queryset from a selector.")

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):
            # Schema generation has no user; only the model matters (`queryset = Model.objects.none()`).
            return self.queryset  # type: ignore[arg-type,return-value]
        visible = workspace_ids_for_user(user=self.request.user)
        queryset = self.scoped_queryset().filter(**{f"{self.workspace_lookup}__in": visible})
        narrowed = self.request.query_params.get("workspace")
        if narrowed:
            try:
                queryset = queryset.filter(**{self.workspace_lookup: int(narrowed)})
            except ValueError:
                raise exceptions.ValidationError({"workspace": "Must be a workspace id."}) from None
        return queryset

    def workspace_id_of(self, obj: Model) -> int:
        value: Any = obj
        for part in self.workspace_lookup.split("__"):
            value = getattr(value, part)
        return int(value)

    def workspace_for_create(self, request: Request, role: Role | None = None) -> Workspace:
        """The workspace named by the body's `workspace`, or the caller's only workspace."""
        role = role or self.write_role
        raw = request.data.get("workspace") if hasattr(request.data, "get") else None
        visible = workspace_ids_for_user(user=request.user)
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
        if not has_role(user=request.user, workspace_id=workspace_id, role=role):
            raise exceptions.PermissionDenied("Your role in this workspace does not allow this.")
        return Workspace.objects.get(id=workspace_id)


class WorkspaceScopedModelViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    WorkspaceScopedViewSet,
):
    """Full CRUD on a workspace-owned resource."""
