"""The base for every workspace-owned resource. A subclass provides the caller's scoped queryset (from
its app's selector); this base adds the workspace filter as a second guard, so a subclass cannot return
another workspace's rows by mistake."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from rest_framework import exceptions, mixins, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request

from apps.users.selectors import Role, Workspace, workspace_ids_for_user

from .permissions import WorkspaceRolePermission
from .workspaces import workspace_for_write


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
        raw = request.data.get("workspace") if hasattr(request.data, "get") else None
        return workspace_for_write(user=request.user, raw=raw, role=role or self.write_role)


class WorkspaceScopedModelViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    WorkspaceScopedViewSet,
):
    """Full CRUD on a workspace-owned resource."""
