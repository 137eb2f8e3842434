"""Fixtures for every test: the three personas of STYLE.md and API clients signed in as each.

- `owner`: admin of `workspace`;  `editor` and `viewer`: members of `workspace` with those roles;
- `outsider`: admin of `other_workspace` only — every object of `workspace` must be a 404 for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from apps.users.models import Role, User, Workspace
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory


@dataclass
class Personas:
    workspace: Workspace
    other_workspace: Workspace
    owner: User
    editor: User
    viewer: User
    outsider: User


@pytest.fixture
def personas(db: None) -> Personas:
    workspace = WorkspaceFactory(name="Acme")
    other = WorkspaceFactory(name="Other Corp")
    owner = MembershipFactory(workspace=workspace, role=Role.ADMIN, user__email="owner@acme.test").user
    editor = MembershipFactory(workspace=workspace, role=Role.EDITOR, user__email="editor@acme.test").user
    viewer = MembershipFactory(workspace=workspace, role=Role.VIEWER, user__email="viewer@acme.test").user
    outsider = MembershipFactory(workspace=other, role=Role.ADMIN, user__email="outsider@other.test").user
    return Personas(workspace, other, owner, editor, viewer, outsider)


@pytest.fixture
def client_for() -> Callable[[User | None], APIClient]:
    """An API client authenticated as the given user (force_authenticate: no password round trip)."""

    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)
        return client

    return make


@pytest.fixture
def user_factory() -> type[UserFactory]:
    return UserFactory


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Throttle counters live in the (real, Redis) cache: every test starts with none."""
    from django.core.cache import cache

    cache.clear()
