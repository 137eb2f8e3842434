from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from apps.users.models import Membership, Role, User, Workspace

pytestmark = pytest.mark.django_db


def test_bootstrap_creates_the_admin_and_default_workspace_once(monkeypatch):
    monkeypatch.delenv("AGGREGATOR_ADMIN_EMAIL", raising=False)
    monkeypatch.delenv("AGGREGATOR_ADMIN_PASSWORD", raising=False)
    out = StringIO()
    call_command("bootstrap", stdout=out)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines() if ": " in line)
    user = User.objects.get(email=lines["Admin email"])
    assert user.check_password(lines["Admin password"])
    assert user.is_staff and user.is_superuser
    membership = Membership.objects.get(user=user)
    assert (membership.workspace.name, membership.role) == ("Default", Role.ADMIN)

    again = StringIO()
    call_command("bootstrap", stdout=again)
    assert "Admin password" not in again.getvalue()
    assert User.objects.count() == 1
    assert Workspace.objects.count() == 1


def test_bootstrap_uses_the_configured_credentials(monkeypatch):
    monkeypatch.setenv("AGGREGATOR_ADMIN_EMAIL", "Ops@Example.com")
    monkeypatch.setenv("AGGREGATOR_ADMIN_PASSWORD", "a-configured-passphrase")
    out = StringIO()
    call_command("bootstrap", stdout=out)
    assert "Admin password" not in out.getvalue()
    assert User.objects.get(email="ops@example.com").check_password("a-configured-passphrase")


def test_admin_pages_list_and_search_every_model(personas):
    from tests.factories import api_key_for

    api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["read"])
    staff = User.objects.create_superuser(email="root@example.com", password="a-long-admin-passphrase")
    client = Client()
    client.force_login(staff)
    for model in ("user", "workspace", "membership", "invitation", "apikey"):
        response = client.get(f"/admin/users/{model}/?q=acme")
        assert response.status_code == 200, model
    page = client.get("/admin/users/apikey/").content.decode()
    assert "test key" in page
    assert "key_hash" not in page
