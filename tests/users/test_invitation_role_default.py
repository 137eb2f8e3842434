"""An invitation without a role (once a 500: KeyError) invites a viewer, the model's default."""

from __future__ import annotations

import pytest

from apps.users.models import Invitation, Role

pytestmark = pytest.mark.django_db


def test_an_invitation_without_a_role_invites_a_viewer(personas, client_for):
    response = client_for(personas.owner).post(
        f"/api/v1/workspaces/{personas.workspace.id}/invitations/", {"email": "f@example.com"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["email"], body["role"], body["status"]) == ("f@example.com", "viewer", "pending")
    invitation = Invitation.objects.get(id=body["id"])
    assert (invitation.workspace_id, invitation.role) == (personas.workspace.id, Role.VIEWER)
