"""The OpenAPI schema generates without warnings and the docs are protected outside development."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient


def test_openapi_schema_generates_and_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for route in ("/api/v1/auth/token/", "/api/v1/workspaces/", "/api/v1/api-keys/", "/api/v1/me/"):
        assert f"{route}:" in text


@pytest.mark.django_db
def test_schema_and_docs_are_public_in_development(settings):
    settings.AGGREGATOR_PUBLIC_API_DOCS = True
    assert APIClient().get("/api/schema/").status_code == 200
    assert APIClient().get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_schema_needs_a_login_when_docs_are_private(settings, personas):
    settings.AGGREGATOR_PUBLIC_API_DOCS = False
    anonymous = APIClient().get("/api/schema/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    client = APIClient()
    client.force_login(personas.viewer)
    assert client.get("/api/schema/").status_code == 200
