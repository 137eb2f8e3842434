from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_step_types_are_listed_with_their_config_schemas(personas, client_for):
    body = client_for(personas.viewer).get("/api/v1/step-types/?limit=100").json()
    by_slug = {s["slug"]: s for s in body["results"]}
    assert {"select", "rename", "filter", "cast"} <= set(by_slug)
    flt = by_slug["filter"]
    assert (flt["min_inputs"], flt["max_inputs"], flt["buffers"]) == (1, 1, False)
    assert "expression" in flt["config_schema"]["properties"]
    assert flt["config_schema"]["required"] == ["expression"]


def test_one_step_type_and_an_unknown_one(personas, client_for):
    client = client_for(personas.viewer)
    assert client.get("/api/v1/step-types/cast/").json()["slug"] == "cast"
    missing = client.get("/api/v1/step-types/teleport/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_anonymous_callers_are_refused(db):
    assert APIClient().get("/api/v1/step-types/").status_code == 401
