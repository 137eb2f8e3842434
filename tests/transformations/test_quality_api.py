"""`GET /api/v1/rule-types/`: the rule types with their config schemas, for any signed-in user."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_rule_types_list_every_type_with_its_schema(personas, client_for):
    response = client_for(personas.viewer).get("/api/v1/rule-types/")
    assert response.status_code == 200
    body = response.json()
    assert [r["type"] for r in body] == [
        "not_null",
        "unique",
        "range",
        "regex",
        "allowed_values",
        "type",
        "row_count",
        "freshness",
        "expression",
    ]
    by_type = {r["type"]: r for r in body}
    assert by_type["not_null"] == {
        "type": "not_null",
        "description": "The value is not null.",
        "stream_level": False,
        "actions": ["fail", "reject", "warn"],
        "config_schema": by_type["not_null"]["config_schema"],
    }
    schema = by_type["not_null"]["config_schema"]
    assert schema["required"] == ["id", "type", "column"]
    assert schema["additionalProperties"] is False
    assert (by_type["row_count"]["stream_level"], by_type["row_count"]["actions"]) == (True, ["fail", "warn"])
    assert set(by_type["range"]["config_schema"]["properties"]) == {
        "id", "action", "description", "type", "column", "min", "max", "min_inclusive", "max_inclusive",
    }  # fmt: skip


def test_rule_types_need_a_signed_in_user(client_for):
    assert client_for(None).get("/api/v1/rule-types/").status_code in (401, 403)
