from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from apps.users.models import Workspace


def add_workspace_argument(parser: Any) -> None:
    parser.add_argument("--workspace", help="Workspace slug or id (optional when there is only one).")


def resolve_workspace(value: str | None) -> Workspace:
    if value:
        found = Workspace.objects.filter(slug=value).first()
        if found is None and value.isdigit():
            found = Workspace.objects.filter(id=int(value)).first()
        if found is None:
            raise CommandError(f"No workspace {value!r}.")
        return found
    workspaces = list(Workspace.objects.all()[:2])
    if len(workspaces) != 1:
        raise CommandError("Several workspaces exist: name one with --workspace.")
    return workspaces[0]
