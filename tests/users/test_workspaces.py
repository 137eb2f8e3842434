"""Workspaces, members, invitations and API keys through the API, for the owner, members and an outsider."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from apps.users.models import ApiKey, Invitation, Membership, Role, Workspace
from apps.users.services import invitation_create
from tests.factories import MembershipFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def ws_url(ws, suffix=""):
    return f"/api/v1/workspaces/{ws.id}/{suffix}"


class TestWorkspaces:
    def test_list_shows_only_the_callers_workspaces(self, personas, client_for):
        body = client_for(personas.viewer).get("/api/v1/workspaces/").json()
        assert body == {
            "count": 1,
            "next": None,
            "previous": None,
            "results": [
                {
                    "id": personas.workspace.id,
                    "name": "Acme",
                    "slug": personas.workspace.slug,
                    "created_at": body["results"][0]["created_at"],
                    "role": "viewer",
                    "member_count": 3,
                }
            ],
        }
        outsider = client_for(personas.outsider).get("/api/v1/workspaces/").json()
        assert [w["name"] for w in outsider["results"]] == ["Other Corp"]

    def test_outsider_gets_404_for_every_route_of_another_workspace(self, personas, client_for):
        client = client_for(personas.outsider)
        member = Membership.objects.get(user=personas.viewer)
        invitation, _ = invitation_create(
            workspace=personas.workspace, email="x@y.test", role=Role.VIEWER, invited_by=personas.owner
        )
        for method, url in [
            ("get", ws_url(personas.workspace)),
            ("patch", ws_url(personas.workspace)),
            ("delete", ws_url(personas.workspace)),
            ("get", ws_url(personas.workspace, "members/")),
            ("get", ws_url(personas.workspace, f"members/{member.id}/")),
            ("patch", ws_url(personas.workspace, f"members/{member.id}/")),
            ("delete", ws_url(personas.workspace, f"members/{member.id}/")),
            ("get", ws_url(personas.workspace, "invitations/")),
            ("post", ws_url(personas.workspace, "invitations/")),
            ("delete", ws_url(personas.workspace, f"invitations/{invitation.id}/")),
        ]:
            response = getattr(client, method)(url, {"name": "x", "role": "admin", "email": "a@b.test"})
            assert response.status_code == 404, (method, url, response.status_code)
            assert response.json() == {
                "error": {"code": "not_found", "message": response.json()["error"]["message"]}
            }
        assert Workspace.objects.get(id=personas.workspace.id).name == "Acme"
        assert Membership.objects.filter(workspace=personas.workspace).count() == 3
        assert Invitation.objects.filter(id=invitation.id).exists()

    def test_any_user_creates_a_workspace_and_becomes_its_admin(self, personas, client_for):
        response = client_for(personas.viewer).post("/api/v1/workspaces/", {"name": "Side project"})
        assert response.status_code == 201
        body = response.json()
        assert body["name"] == "Side project"
        assert body["slug"] == "side-project"
        assert body["role"] == "admin"
        assert body["member_count"] == 1
        assert Membership.objects.get(workspace_id=body["id"]).user == personas.viewer

    def test_only_admins_rename_or_delete(self, personas, client_for):
        for user in (personas.viewer, personas.editor):
            assert client_for(user).patch(ws_url(personas.workspace), {"name": "X"}).status_code == 403
            assert client_for(user).delete(ws_url(personas.workspace)).status_code == 403
        response = client_for(personas.owner).patch(ws_url(personas.workspace), {"name": "Acme Inc"})
        assert response.status_code == 200
        assert response.json()["name"] == "Acme Inc"
        assert Workspace.objects.get(id=personas.workspace.id).name == "Acme Inc"
        assert client_for(personas.owner).delete(ws_url(personas.workspace)).status_code == 204
        assert not Workspace.objects.filter(id=personas.workspace.id).exists()

    def test_guardian_grant_lets_a_viewer_change_one_workspace(self, personas, client_for):
        assign_perm("users.change_workspace", personas.viewer, personas.workspace)
        response = client_for(personas.viewer).patch(ws_url(personas.workspace), {"name": "Granted"})
        assert response.status_code == 200
        assert Workspace.objects.get(id=personas.workspace.id).name == "Granted"
        # The grant is for that object only and does not include deleting it.
        assert client_for(personas.viewer).delete(ws_url(personas.workspace)).status_code == 403

    def test_guardian_grant_never_reveals_a_workspace_the_user_is_not_in(self, personas, client_for):
        assign_perm("users.change_workspace", personas.outsider, personas.workspace)
        assert (
            client_for(personas.outsider).patch(ws_url(personas.workspace), {"name": "X"}).status_code == 404
        )

    def test_list_query_count_does_not_grow_with_workspaces(self, personas, client_for):
        client = client_for(personas.owner)

        def count_queries():
            with CaptureQueriesContext(connection) as ctx:
                assert client.get("/api/v1/workspaces/").status_code == 200
            return len(ctx.captured_queries)

        before = count_queries()
        for _ in range(5):
            MembershipFactory(user=personas.owner, workspace=WorkspaceFactory(), role=Role.EDITOR)
        assert count_queries() == before
        assert before <= 4

    def test_workspace_query_param_narrows_the_list(self, personas, client_for):
        Membership.objects.create(user=personas.owner, workspace=personas.other_workspace, role=Role.VIEWER)
        client = client_for(personas.owner)
        assert client.get("/api/v1/workspaces/").json()["count"] == 2
        narrowed = client.get(f"/api/v1/workspaces/?workspace={personas.other_workspace.id}").json()
        assert [w["id"] for w in narrowed["results"]] == [personas.other_workspace.id]
        bad = client.get("/api/v1/workspaces/?workspace=abc")
        assert bad.status_code == 400
        assert bad.json()["error"]["fields"] == {"workspace": ["Must be a workspace id."]}


class TestMembers:
    def test_members_list_is_visible_to_every_member(self, personas, client_for):
        body = client_for(personas.viewer).get(ws_url(personas.workspace, "members/")).json()
        assert [(m["user"]["email"], m["role"]) for m in body["results"]] == [
            ("editor@acme.test", "editor"),
            ("owner@acme.test", "admin"),
            ("viewer@acme.test", "viewer"),
        ]

    def test_admin_changes_a_role_and_others_cannot(self, personas, client_for):
        member = Membership.objects.get(user=personas.viewer)
        url = ws_url(personas.workspace, f"members/{member.id}/")
        assert client_for(personas.editor).patch(url, {"role": "admin"}).status_code == 403
        assert client_for(personas.viewer).patch(url, {"role": "admin"}).status_code == 403
        response = client_for(personas.owner).patch(url, {"role": "editor"})
        assert response.status_code == 200
        assert response.json()["role"] == "editor"
        member.refresh_from_db()
        assert member.role == Role.EDITOR

    def test_bad_role_names_the_field(self, personas, client_for):
        member = Membership.objects.get(user=personas.viewer)
        response = client_for(personas.owner).patch(
            ws_url(personas.workspace, f"members/{member.id}/"), {"role": "god"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"role": ['"god" is not a valid choice.']}

    def test_the_last_admin_can_be_neither_demoted_nor_removed(self, personas, client_for):
        admin = Membership.objects.get(user=personas.owner)
        client = client_for(personas.owner)
        demote = client.patch(ws_url(personas.workspace, f"members/{admin.id}/"), {"role": "viewer"})
        assert demote.status_code == 400
        assert "at least one admin" in demote.json()["error"]["fields"]["role"][0]
        remove = client.delete(ws_url(personas.workspace, f"members/{admin.id}/"))
        assert remove.status_code == 400
        admin.refresh_from_db()
        assert admin.role == Role.ADMIN

        # With a second admin, the first may step down.
        editor = Membership.objects.get(user=personas.editor)
        assert (
            client.patch(ws_url(personas.workspace, f"members/{editor.id}/"), {"role": "admin"}).status_code
            == 200
        )
        assert client.delete(ws_url(personas.workspace, f"members/{admin.id}/")).status_code == 204
        assert not Membership.objects.filter(id=admin.id).exists()

    def test_removing_a_member_revokes_their_keys_there(self, personas, client_for):
        from tests.factories import api_key_for

        key, raw = api_key_for(user=personas.editor, workspace=personas.workspace, scopes=["write"])
        editor = Membership.objects.get(user=personas.editor)
        assert (
            client_for(personas.owner).delete(ws_url(personas.workspace, f"members/{editor.id}/")).status_code
            == 204
        )
        key.refresh_from_db()
        assert key.revoked_at is not None
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        assert client.get("/api/v1/workspaces/").status_code == 401

    def test_members_list_query_count_is_constant(self, personas, client_for):
        client = client_for(personas.viewer)
        with CaptureQueriesContext(connection) as first:
            client.get(ws_url(personas.workspace, "members/"))
        for _ in range(5):
            MembershipFactory(workspace=personas.workspace)
        with CaptureQueriesContext(connection) as second:
            body = client.get(ws_url(personas.workspace, "members/")).json()
        assert body["count"] == 8
        assert len(second.captured_queries) == len(first.captured_queries)


class TestInvitations:
    def test_invite_then_accept_as_a_new_account(
        self, personas, client_for, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(personas.owner).post(
                ws_url(personas.workspace, "invitations/"), {"email": "newbie@example.com", "role": "editor"}
            )
        assert response.status_code == 201
        body = response.json()
        assert body["email"] == "newbie@example.com"
        assert body["role"] == "editor"
        assert body["status"] == "pending"
        assert body["invited_by"] == "owner@acme.test"
        assert "token" not in body and "token_hash" not in body

        from django.core import mail

        token = mail.outbox[-1].body.split("token=")[1].split()[0]
        weak = APIClient().post("/api/v1/auth/accept-invitation/", {"token": token, "password": "123"})
        assert weak.status_code == 400
        assert "password" in weak.json()["error"]["fields"]

        accepted = APIClient().post(
            "/api/v1/auth/accept-invitation/", {"token": token, "password": "a-long-fresh-passphrase"}
        )
        assert accepted.status_code == 201
        assert accepted.json()["role"] == "editor"
        assert Membership.objects.get(user__email="newbie@example.com").workspace == personas.workspace

        again = APIClient().post("/api/v1/auth/accept-invitation/", {"token": token, "password": "x"})
        assert again.status_code == 400
        assert again.json()["error"]["fields"]["token"] == [
            "This invitation is unknown, expired or already used."
        ]

        login = APIClient().post(
            "/api/v1/auth/token/", {"email": "newbie@example.com", "password": "a-long-fresh-passphrase"}
        )
        assert login.status_code == 200

    def test_existing_user_accepts_while_signed_in(self, personas, client_for):
        _invitation, token = invitation_create(
            workspace=personas.other_workspace,
            email="viewer@acme.test",
            role=Role.VIEWER,
            invited_by=personas.outsider,
        )
        # Someone else signed in cannot take it.
        taken = client_for(personas.editor).post("/api/v1/auth/accept-invitation/", {"token": token})
        assert taken.status_code == 400
        response = client_for(personas.viewer).post("/api/v1/auth/accept-invitation/", {"token": token})
        assert response.status_code == 201
        assert Membership.objects.filter(user=personas.viewer, workspace=personas.other_workspace).exists()

    def test_only_admins_see_and_send_invitations(self, personas, client_for):
        for user in (personas.viewer, personas.editor):
            client = client_for(user)
            assert client.get(ws_url(personas.workspace, "invitations/")).status_code == 403
            sent = client.post(
                ws_url(personas.workspace, "invitations/"), {"email": "a@b.test", "role": "admin"}
            )
            assert sent.status_code == 403
        assert Invitation.objects.count() == 0

    def test_inviting_a_member_is_refused(self, personas, client_for):
        response = client_for(personas.owner).post(
            ws_url(personas.workspace, "invitations/"), {"email": "Editor@acme.test", "role": "viewer"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {
            "email": ["This person is already a member of the workspace."]
        }


class TestApiKeyAccess:
    def test_admins_list_keys_of_their_workspaces_only(self, personas, client_for):
        from tests.factories import api_key_for

        mine, _ = api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["read"])
        theirs, _ = api_key_for(user=personas.outsider, workspace=personas.other_workspace, scopes=["read"])
        body = client_for(personas.owner).get("/api/v1/api-keys/").json()
        assert [k["id"] for k in body["results"]] == [mine.id]
        assert body["results"][0]["user"] == "owner@acme.test"
        assert client_for(personas.owner).get(f"/api/v1/api-keys/{theirs.id}/").status_code == 404
        assert client_for(personas.owner).delete(f"/api/v1/api-keys/{theirs.id}/").status_code == 404
        theirs.refresh_from_db()
        assert theirs.revoked_at is None
        # Members who are not admins see no keys at all.
        assert client_for(personas.editor).get("/api/v1/api-keys/").json()["results"] == []
        assert client_for(personas.editor).get(f"/api/v1/api-keys/{mine.id}/").status_code == 404

    def test_editor_cannot_create_a_key(self, personas, client_for):
        response = client_for(personas.editor).post(
            "/api/v1/api-keys/", {"name": "x", "scopes": ["read"]}, format="json"
        )
        assert response.status_code == 403
        assert ApiKey.objects.count() == 0

    def test_create_needs_a_workspace_when_the_caller_has_several(self, personas, client_for):
        Membership.objects.create(user=personas.owner, workspace=personas.other_workspace, role=Role.ADMIN)
        client = client_for(personas.owner)
        missing = client.post("/api/v1/api-keys/", {"name": "x", "scopes": ["read"]}, format="json")
        assert missing.status_code == 400
        assert list(missing.json()["error"]["fields"]) == ["workspace"]
        created = client.post(
            "/api/v1/api-keys/",
            {"name": "x", "scopes": ["read"], "workspace": personas.other_workspace.id},
            format="json",
        )
        assert created.status_code == 201
        assert created.json()["workspace"] == personas.other_workspace.id

    def test_outsider_cannot_create_a_key_in_another_workspace(self, personas, client_for):
        response = client_for(personas.outsider).post(
            "/api/v1/api-keys/",
            {"name": "x", "scopes": ["admin"], "workspace": personas.workspace.id},
            format="json",
        )
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"workspace": ["No such workspace."]}
        assert ApiKey.objects.count() == 0

    def test_bad_scope_names_the_field(self, personas, client_for):
        response = client_for(personas.owner).post(
            "/api/v1/api-keys/", {"name": "x", "scopes": ["root"]}, format="json"
        )
        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["scopes.0"]


def test_pagination_caps_the_limit(personas, client_for, monkeypatch):
    from aggregator.api.pagination import LimitOffsetPagination

    for _ in range(3):
        MembershipFactory(user=personas.owner, workspace=WorkspaceFactory(), role=Role.VIEWER)
    client = client_for(personas.owner)
    page = client.get("/api/v1/workspaces/?limit=2").json()
    assert page["count"] == 4
    assert len(page["results"]) == 2
    assert "offset=2" in page["next"]

    assert LimitOffsetPagination.max_limit == 500
    monkeypatch.setattr(LimitOffsetPagination, "max_limit", 3)
    capped = client.get("/api/v1/workspaces/?limit=100000").json()
    assert len(capped["results"]) == 3
    assert "limit=3" in capped["next"]
