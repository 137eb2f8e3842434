"""`POST /api/v1/expressions/check/`: the builder's check-as-you-type, with the one parser steps use."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from apps.transformations.expressions import MAX_DEPTH, MAX_LENGTH, check, columns_used, parse

pytestmark = pytest.mark.django_db

URL = "/api/v1/expressions/check/"
FLIGHTS = [
    {"name": "dep_delay", "type": "integer"},
    {"name": "carrier", "type": "string"},
    {"name": "air time", "type": "number"},
]


@pytest.fixture
def post(personas, client_for):
    client = client_for(personas.viewer)

    def send(expression, columns=None, **extra):
        body = {"expression": expression, **extra}
        if columns is not None:
            body["columns"] = columns
        return client.post(URL, body, format="json")

    return send


def test_a_valid_condition_gives_its_type_and_the_columns_it_reads(post):
    response = post("dep_delay > 60 and carrier in ('UA', 'AA')", FLIGHTS)
    assert response.status_code == 200
    assert response.json() == {
        "valid": True,
        "error": None,
        "type": "boolean",
        "columns_used": ["dep_delay", "carrier"],
        "unknown_columns": [],
    }


def test_a_derived_value_has_the_type_of_the_expression(post):
    assert post("dep_delay / 60", FLIGHTS).json()["type"] == "number"
    assert post("`air time` + dep_delay", FLIGHTS).json()["columns_used"] == ["air time", "dep_delay"]
    assert post("upper(carrier)", FLIGHTS).json()["type"] == "string"


def test_a_syntax_error_has_its_reason_and_column(post):
    body = post("dep_delay > ", FLIGHTS).json()
    assert body["valid"] is False and body["type"] is None
    assert body["error"] == {
        "message": "unexpected end of the expression at 1:13, expected a value",
        "reason": "unexpected end of the expression",
        "hint": "expected a value",
        "position": {"line": 1, "column": 13},
    }
    assert body["columns_used"] == [] and body["unknown_columns"] == []


def test_positions_count_lines_and_characters(post):
    body = post("dep_delay > 60\n  and carrier = 'UA", FLIGHTS).json()
    assert body["error"]["reason"] == "unterminated string"
    assert body["error"]["position"] == {"line": 2, "column": 17}
    # Characters, not bytes: an accented literal before the mistake moves it by one each.
    body = post("carrier = 'été' and ) ", FLIGHTS).json()
    assert body["error"]["position"] == {"line": 1, "column": 21}


def test_unknown_columns_are_flagged_against_the_columns_given(post):
    body = post("dep_dely > 60 or carier = 'UA' or dep_delay < 0", FLIGHTS).json()
    assert body["valid"] is False
    assert body["error"] == {
        "message": "unknown column 'dep_dely' at 1:1, did you mean 'dep_delay'?",
        "reason": "unknown column 'dep_dely'",
        "hint": "did you mean 'dep_delay'?",
        "position": {"line": 1, "column": 1},
    }
    assert body["columns_used"] == ["dep_dely", "carier", "dep_delay"]
    assert body["unknown_columns"] == ["dep_dely", "carier"]


def test_without_columns_only_the_syntax_and_literals_are_judged(post):
    body = post("anything_at_all > 60").json()
    assert body == {
        "valid": True,
        "error": None,
        "type": "boolean",
        "columns_used": ["anything_at_all"],
        "unknown_columns": [],
    }
    # The type depends on a column nobody described.
    assert post("a + b").json()["type"] is None
    assert post("'x' + 1").json()["error"]["reason"] == "'+' needs numbers, got string 'x'"
    # An empty list of columns is a stream with no columns, not "unknown".
    assert post("a > 1", []).json()["unknown_columns"] == ["a"]


def test_type_mistakes_are_reported_where_they_are(post):
    body = post("carrier > 60", FLIGHTS).json()
    assert body["error"]["reason"] == "cannot compare string column 'carrier' with integer 60"
    assert body["error"]["position"] == {"line": 1, "column": 9}
    assert post("null", FLIGHTS).json()["error"]["reason"] == "the expression is always null"


def test_empty_and_blank_expressions_say_so(post):
    for text in ("", "   "):
        body = post(text, FLIGHTS).json()
        assert body["valid"] is False
        assert body["error"] == {
            "message": "the expression is empty",
            "reason": "the expression is empty",
            "hint": None,
            "position": None,
        }


def test_hostile_input_is_answered_quickly_and_never_evaluated(post):
    started = time.monotonic()
    # Over the language's limit: its own message, at the field.
    body = post("a" * (MAX_LENGTH + 1)).json()
    assert (
        body["error"]["reason"]
        == f"expression is too long ({MAX_LENGTH + 1} characters, at most {MAX_LENGTH})"
    )
    # Far over: refused before parsing.
    response = post("1 + " * 50_000 + "1")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["expression"]
    # Deep nesting stops at the depth limit, not at Python's recursion limit.
    body = post("(" * (MAX_DEPTH + 50) + "1" + ")" * (MAX_DEPTH + 50)).json()
    assert body["valid"] is False and "nested" in body["error"]["reason"]
    # Nothing reaches Python: no attribute access, no calls of anything but the built-in functions.
    body = post("__import__('os').system('true')").json()
    assert body["valid"] is False
    assert body["error"]["reason"] == "unexpected character '.'"
    assert post("eval('1')").json()["error"]["reason"].startswith("unknown function 'eval'")
    assert time.monotonic() - started < 5


def test_malformed_requests_are_refused_with_the_field(post):
    response = post({"op": "gt"})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["expression"]
    response = post("a > 1", [{"name": "a", "type": "teleport"}])
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["columns.0.type"]
    response = post("a > 1", [{"name": "a", "type": "integer"}] * 5001)
    assert response.status_code == 400


def test_only_signed_in_people_check_expressions(db):
    assert APIClient().post(URL, {"expression": "1"}, format="json").status_code == 401


def test_check_and_columns_used_in_the_language_module():
    node = parse("case when a > 1 then b else coalesce(c, a) end")
    assert columns_used(node) == ["a", "b", "c"]
    checked = check(node)
    assert checked.columns == ["a", "b", "c"] and checked.type is None
