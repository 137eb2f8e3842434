"""What the API does at its edges, as the OpenAPI schema documents it: one error body for every error status
an operation can answer, a JSON 404 for an unknown path under /api/, strict pagination and query values,
strings that are strings."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.factories import WorkspaceFactory

ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def document() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _errors(document: dict, path: str, method: str) -> dict[str, dict]:
    responses = document["paths"][path][method]["responses"]
    return {code: r for code, r in responses.items() if code.startswith(("4", "5"))}


def test_every_error_response_of_every_operation_is_the_one_error_body(document):
    operations = [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]
    assert len(operations) > 100
    for path, method, op in operations:
        for code, response in op["responses"].items():
            if code.startswith("4"):
                assert response["content"]["application/json"]["schema"] == ERROR_REF, (method, path, code)
    error = document["components"]["schemas"]["ErrorDetail"]
    assert error["required"] == ["code", "message"]
    assert set(error["properties"]) == {"code", "message", "fields", "retry_after"}


def test_error_statuses_follow_what_each_view_does(document):
    # A detail route: credentials, role, the object.
    assert set(_errors(document, "/api/v1/pipelines/{id}/", "get")) == {"401", "403", "404"}
    # A change: the body, credentials, role, the object.
    assert set(_errors(document, "/api/v1/pipelines/{id}/", "patch")) == {"400", "401", "403", "404", "415"}
    # A list with query parameters, no object in the path.
    assert set(_errors(document, "/api/v1/runs/", "get")) == {"400", "401", "403"}
    # The sign-in reads no credential but answers a wrong password with 401, and is rate-limited.
    assert set(_errors(document, "/api/v1/auth/token/", "post")) == {"400", "401", "415", "429"}
    assert set(_errors(document, "/api/v1/auth/token/refresh/", "post")) == {"400", "401", "415"}
    # Objects named in the query or the body are looked up like any other.
    assert "404" in _errors(document, "/api/v1/metrics/runs/", "get")
    assert "404" in _errors(document, "/api/v1/pipeline-triggers/", "post")


def test_a_path_under_api_that_no_route_matches_answers_the_error_body(client_for, personas):
    response = client_for(personas.owner).get("/api/v1/pipelines/not-a-number/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=ten", "limit=", "offset=-5", "offset=1.5"])
def test_a_limit_or_offset_that_is_not_a_whole_number_in_range_is_refused(client_for, personas, query):
    response = client_for(personas.owner).get(f"/api/v1/workspaces/?{query}")
    assert response.status_code == 400
    name = query.split("=")[0]
    assert response.json()["error"]["fields"] == {
        name: [f"A whole number from {0 if name == 'offset' else 1}."]
    }


def test_a_limit_above_the_ceiling_is_cut_to_it_and_a_huge_offset_is_an_empty_page(client_for, personas):
    client = client_for(personas.owner)
    assert client.get("/api/v1/workspaces/?limit=100000").json()["count"] == 1
    page = client.get(f"/api/v1/workspaces/?offset={'9' * 40}").json()
    assert page["count"] == 1
    assert page["results"] == []


def test_a_number_where_a_string_is_due_is_refused(client_for, personas):
    client = client_for(personas.owner)
    response = client.patch("/api/v1/me/", {"full_name": 12345}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"full_name": ["Not a valid string."]}
    too_long = client.patch("/api/v1/me/", {"full_name": " " + "x" * 200}, format="json")
    assert too_long.status_code == 400


def test_a_boolean_filter_takes_true_or_false_only(client_for, personas):
    client = client_for(personas.owner)
    assert client.get("/api/v1/alert-rules/?is_enabled=true").status_code == 200
    for value in ("7", "yes", ""):
        response = client.get(f"/api/v1/alert-rules/?is_enabled={value}")
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"is_enabled": ["Must be true or false."]}


def test_an_empty_time_bound_or_bucket_is_refused_not_ignored(client_for, personas):
    client = client_for(personas.owner)
    assert client.get("/api/v1/events/?since=").status_code == 400
    assert client.get("/api/v1/metrics/runs/?bucket=").status_code == 400
    assert client.get("/api/v1/connector-types/?kind=both").status_code == 400


def test_a_patch_without_the_field_changes_nothing(client_for, personas):
    client = client_for(personas.owner)
    workspace = client.patch(f"/api/v1/workspaces/{personas.workspace.id}/", {}, format="json")
    assert workspace.status_code == 200
    assert workspace.json()["name"] == "Acme"
    member = personas.workspace.memberships.get(user=personas.viewer)
    response = client.patch(
        f"/api/v1/workspaces/{personas.workspace.id}/members/{member.id}/", {}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["role"] == "viewer"


def test_bodies_are_json_only_but_uploads(client_for, personas):
    response = client_for(personas.owner).post("/api/v1/workspaces/", {"name": "Forms"}, format="multipart")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not WorkspaceFactory._meta.model.objects.filter(name="Forms").exists()
