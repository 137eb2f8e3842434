"""Sign-in by session, JWT and API key; lockout; the request id."""

from __future__ import annotations

import pytest
from django.core import mail
from rest_framework.test import APIClient

from apps.users.models import ApiKey, Membership, Role
from tests.factories import DEFAULT_PASSWORD, UserFactory, api_key_for

pytestmark = pytest.mark.django_db


def test_jwt_obtain_returns_a_pair_that_authenticates(personas):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    me = client.get("/api/v1/me/").json()
    assert me["email"] == "owner@acme.test"
    assert me["auth"] == "jwt"
    assert me["workspaces"] == [
        {"id": personas.workspace.id, "name": "Acme", "slug": personas.workspace.slug, "role": "admin"}
    ]


def test_jwt_email_is_case_insensitive(personas):
    response = APIClient().post(
        "/api/v1/auth/token/", {"email": "OWNER@acme.test", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200


def test_wrong_password_is_401_with_the_error_shape(personas):
    response = APIClient().post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": "nope"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "invalid_credentials", "message": "Email or password is wrong."}
    }


def test_missing_field_names_the_field(db):
    response = APIClient().post("/api/v1/auth/token/", {"email": "a@b.test"})
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "validation_error"
    assert body["fields"] == {"password": ["This field is required."]}


def test_refresh_rotates_and_the_old_refresh_token_is_blacklisted(personas):
    client = APIClient()
    pair = client.post(
        "/api/v1/auth/token/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD}
    ).json()

    rotated = client.post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]})
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != pair["refresh"]

    reused = client.post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]})
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_not_valid"


def test_jwt_logout_blacklists_the_refresh_token(personas):
    client = APIClient()
    pair = client.post(
        "/api/v1/auth/token/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD}
    ).json()
    assert client.post("/api/v1/auth/token/logout/", {"refresh": pair["refresh"]}).status_code == 200
    assert client.post("/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}).status_code == 401


def test_lockout_after_repeated_bad_passwords_even_with_the_right_one(personas, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    for _ in range(2):
        assert (
            client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": "bad"}).status_code
            == 401
        )
    third = client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": "bad"})
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "locked_out"

    right = client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD})
    assert right.status_code == 429
    session = client.post("/api/v1/auth/login/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD})
    assert session.status_code == 429

    # The lockout is per account and address: the same person from elsewhere, and others, still sign in.
    other_address = APIClient(REMOTE_ADDR="198.51.100.9")
    assert (
        other_address.post(
            "/api/v1/auth/token/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD}
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/api/v1/auth/token/", {"email": "editor@acme.test", "password": DEFAULT_PASSWORD}
        ).status_code
        == 200
    )


def test_session_login_sets_an_httponly_cookie_and_needs_csrf_for_writes(personas):
    client = APIClient(enforce_csrf_checks=True)
    csrf = client.get("/api/v1/auth/csrf/")
    token = csrf.json()["csrf_token"]
    assert client.cookies["csrftoken"]

    denied = client.post("/api/v1/auth/login/", {"email": "owner@acme.test", "password": DEFAULT_PASSWORD})
    assert denied.status_code == 403

    response = client.post(
        "/api/v1/auth/login/",
        {"email": "owner@acme.test", "password": DEFAULT_PASSWORD},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200
    assert response.json()["email"] == "owner@acme.test"
    assert client.cookies["sessionid"]["httponly"]

    token = client.cookies["csrftoken"].value  # rotated at login
    assert client.get("/api/v1/me/").json()["auth"] == "session"
    no_csrf = client.post("/api/v1/workspaces/", {"name": "New"})
    assert no_csrf.status_code == 403
    with_csrf = client.post("/api/v1/workspaces/", {"name": "New"}, HTTP_X_CSRFTOKEN=token)
    assert with_csrf.status_code == 201

    assert client.post("/api/v1/auth/logout/", HTTP_X_CSRFTOKEN=token).status_code == 204
    assert client.get("/api/v1/me/").status_code in (401, 403)


def test_anonymous_requests_are_refused(db):
    response = APIClient().get("/api/v1/workspaces/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


class TestApiKeys:
    def test_read_key_reads_its_workspace_only_and_cannot_write(self, personas):
        _key, raw = api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["read"])
        # The owner also administers a second workspace: the key must not see it.
        second = Membership.objects.create(
            user=personas.owner, workspace=personas.other_workspace, role=Role.ADMIN
        ).workspace
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")

        listed = client.get("/api/v1/workspaces/").json()
        assert [w["id"] for w in listed["results"]] == [personas.workspace.id]
        assert listed["results"][0]["role"] == "viewer"  # capped by the key's scope
        assert client.get(f"/api/v1/workspaces/{second.id}/").status_code == 404

        rename = client.patch(f"/api/v1/workspaces/{personas.workspace.id}/", {"name": "Hacked"})
        assert rename.status_code == 403
        personas.workspace.refresh_from_db()
        assert personas.workspace.name == "Acme"
        assert client.get("/api/v1/me/").json()["auth"] == "api_key"

    def test_admin_key_acts_with_the_users_role_at_most(self, personas):
        _key, raw = api_key_for(user=personas.editor, workspace=personas.workspace, scopes=["admin"])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        # An editor's admin-scoped key is still an editor: it cannot rename the workspace.
        assert client.patch(f"/api/v1/workspaces/{personas.workspace.id}/", {"name": "X"}).status_code == 403

    def test_revoked_key_is_rejected_at_once(self, personas, client_for):
        key, raw = api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["read"])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        assert client.get("/api/v1/workspaces/").status_code == 200

        assert client_for(personas.owner).delete(f"/api/v1/api-keys/{key.id}/").status_code == 204
        response = client.get("/api/v1/workspaces/")
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "Invalid, expired or revoked API key."
        key.refresh_from_db()
        assert key.revoked_at is not None

    def test_expired_and_malformed_keys_are_rejected(self, personas):
        from datetime import timedelta

        from django.utils import timezone

        key, raw = api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["read"])
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        for header in (f"Api-Key {raw}", "Api-Key agk_nope.nope", "Api-Key ", f"Api-Key {raw[:-2]}xx"):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=header)
            assert client.get("/api/v1/workspaces/").status_code == 401, header

    def test_key_is_shown_once_and_stored_hashed(self, personas, client_for):
        response = client_for(personas.owner).post(
            "/api/v1/api-keys/", {"name": "ci", "scopes": ["read", "write"]}, format="json"
        )
        assert response.status_code == 201
        body = response.json()
        raw = body.pop("key")
        assert raw.startswith("agk_")
        key = ApiKey.objects.get(id=body["id"])
        assert raw.split(".", 1)[1] not in key.key_hash
        assert body["scopes"] == ["read", "write"]
        assert body["workspace"] == personas.workspace.id

        detail = client_for(personas.owner).get(f"/api/v1/api-keys/{key.id}/").json()
        assert "key" not in detail
        assert "key_hash" not in detail
        assert key.last_used_at is None

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        assert client.get("/api/v1/workspaces/").status_code == 200
        key.refresh_from_db()
        assert key.last_used_at is not None

    def test_write_key_can_change_content_but_not_manage_keys(self, personas):
        _key, raw = api_key_for(user=personas.owner, workspace=personas.workspace, scopes=["write"])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        assert client.get("/api/v1/api-keys/").json()["results"] == []
        created = client.post("/api/v1/api-keys/", {"name": "escalate", "scopes": ["admin"]}, format="json")
        assert created.status_code == 403
        assert created.json()["error"]["code"] == "permission_denied"
        assert ApiKey.objects.filter(name="escalate").count() == 0


def test_request_id_is_returned_and_honoured(db):
    response = APIClient().get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    generated = APIClient().get("/healthz")["X-Request-ID"]
    assert len(generated) >= 32


def test_invitation_email_is_sent_after_commit(personas, client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(personas.owner).post(
            f"/api/v1/workspaces/{personas.workspace.id}/invitations/",
            {"email": "New.Person@example.com", "role": "editor"},
        )
    assert response.status_code == 201
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.com"]
    assert "/accept-invitation?token=" in mail.outbox[0].body


def test_user_factory_password_works(db):
    user = UserFactory()
    assert user.check_password(DEFAULT_PASSWORD)
