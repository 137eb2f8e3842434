from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from apps.users.selectors import Workspace, workspace_for_command


def add_workspace_argument(parser: Any) -> None:
    parser.add_argument("--workspace", help="Workspace slug or id (optional when there is only one).")


def resolve_workspace(value: str | None) -> Workspace:
    try:
        return workspace_for_command(ref=value)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
