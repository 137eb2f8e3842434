"""The connectors API for the four personas: owner (admin), editor, viewer and outsider."""

from __future__ import annotations

from typing import Any

import pytest

from apps.connectors.models import Connector
from apps.schemas.models import StreamSchemaVersion

pytestmark = pytest.mark.django_db

ANY_TIME = object()


def _same(actual: Any, expected: Any) -> None:
    """Whole-body comparison where ANY_TIME stands for a timestamp string."""
    if expected is ANY_TIME:
        assert isinstance(actual, str) and actual[:2] == "20"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (actual, expected)
        for key in expected:
            _same(actual[key], expected[key])
    else:
        assert actual == expected


def _csv_body(connector: Connector, **overrides: Any) -> dict[str, Any]:
    body = {
        "id": connector.id,
        "workspace": connector.workspace_id,
        "name": "people-files",
        "connector_type": "csv_file",
        "config": {
            "path": "people.csv",
            "stream_name": None,
            "delimiter": None,
            "quote_char": None,
            "escape_char": None,
            "encoding": None,
            "header": None,
            "compression": "infer",
            "multiline_values": False,
            "null_values": None,
            "column_types": {"score": "number"},
            "sample_bytes": 1048576,
            "chunk_size": 50000,
        },
        "last_check": {"status": "never", "message": "", "at": None},
        "created_by": "owner@acme.test",
        "updated_by": "owner@acme.test",
        "created_at": ANY_TIME,
        "updated_at": ANY_TIME,
    }
    body.update(overrides)
    return body


def test_connector_types_list_serves_json_schemas(personas: Any, client_for: Any) -> None:
    response = client_for(personas.viewer).get("/api/v1/connector-types/")
    assert response.status_code == 200
    by_slug = {t["slug"]: t for t in response.json()["results"]}
    assert by_slug["postgres"]["kind"] == "destination"
    assert by_slug["postgres"]["secret_fields"] == ["password"]
    assert by_slug["postgres"]["config_schema"]["properties"]["password"]["writeOnly"] is True
    assert by_slug["csv_file"]["config_schema"]["required"] == ["path"]


def test_connector_type_retrieve_by_slug_and_unknown_slug_is_404(personas: Any, client_for: Any) -> None:
    client = client_for(personas.viewer)
    body = client.get("/api/v1/connector-types/csv_file/").json()
    assert body["slug"] == "csv_file" and body["title"] == "CSV files" and body["kind"] == "source"
    missing = client.get("/api/v1/connector-types/nope/")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_anonymous_gets_401(client_for: Any, db: None) -> None:
    assert client_for(None).get("/api/v1/connectors/").status_code == 401


def test_editor_creates_a_connector(personas: Any, client_for: Any, import_dir: Any) -> None:
    (import_dir / "people.csv").write_text("id,name\n1,a\n")
    response = client_for(personas.editor).post(
        "/api/v1/connectors/",
        {"name": "people-files", "connector_type": "csv_file", "config": {"path": "people.csv"}},
    )
    assert response.status_code == 201, response.json()
    connector = Connector.objects.get()
    assert connector.workspace == personas.workspace
    assert connector.created_by == personas.editor
    assert connector.config["path"] == "people.csv"
    _same(
        response.json(),
        _csv_body(
            connector,
            created_by="editor@acme.test",
            updated_by="editor@acme.test",
            config={**_csv_body(connector)["config"], "column_types": {}},
        ),
    )


def test_viewer_cannot_create_a_connector(personas: Any, client_for: Any) -> None:
    response = client_for(personas.viewer).post(
        "/api/v1/connectors/", {"name": "x", "connector_type": "csv_file", "config": {"path": "a.csv"}}
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "permission_denied", "message": "Your role in this workspace does not allow this."}
    }
    assert not Connector.objects.exists()


def test_viewer_lists_and_reads(personas: Any, client_for: Any, csv_connector: Connector) -> None:
    client = client_for(personas.viewer)
    listing = client.get("/api/v1/connectors/")
    assert listing.status_code == 200
    body = listing.json()
    assert body["count"] == 1
    _same(body["results"][0], _csv_body(csv_connector))
    _same(client.get(f"/api/v1/connectors/{csv_connector.id}/").json(), _csv_body(csv_connector))


def test_viewer_cannot_edit_check_or_delete(personas: Any, client_for: Any, csv_connector: Connector) -> None:
    client = client_for(personas.viewer)
    url = f"/api/v1/connectors/{csv_connector.id}/"
    assert client.patch(url, {"name": "renamed"}).status_code == 403
    assert client.post(f"{url}check/").status_code == 403
    assert client.post(f"{url}discover/").status_code == 403
    assert client.delete(url).status_code == 403
    csv_connector.refresh_from_db()
    assert csv_connector.name == "people-files"


def test_outsider_gets_404_everywhere(personas: Any, client_for: Any, csv_connector: Connector) -> None:
    client = client_for(personas.outsider)
    url = f"/api/v1/connectors/{csv_connector.id}/"
    not_found = {"error": {"code": "not_found", "message": "Not found."}}
    assert client.get("/api/v1/connectors/").json()["count"] == 0
    for response in (
        client.get(url),
        client.patch(url, {"name": "mine"}),
        client.delete(url),
        client.post(f"{url}check/"),
        client.post(f"{url}discover/"),
        client.get(f"{url}preview/?stream=people"),
    ):
        assert response.status_code == 404
        assert response.json() == not_found
    assert Connector.objects.filter(id=csv_connector.id, name="people-files").exists()


def test_outsider_cannot_create_in_a_foreign_workspace(personas: Any, client_for: Any) -> None:
    response = client_for(personas.outsider).post(
        "/api/v1/connectors/",
        {
            "workspace": personas.workspace.id,
            "name": "x",
            "connector_type": "csv_file",
            "config": {"path": "a"},
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"workspace": ["No such workspace."]}


def test_validation_errors_name_the_config_field(personas: Any, client_for: Any) -> None:
    response = client_for(personas.editor).post(
        "/api/v1/connectors/",
        {
            "name": "wh",
            "connector_type": "postgres",
            "config": {"host": "db.example.com", "port": "not-a-port", "database": "x", "user": "u"},
        },
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "config.port: Input should be a valid integer, unable to parse string as an integer",
            "fields": {
                "config.port": ["Input should be a valid integer, unable to parse string as an integer"]
            },
        }
    }


def test_missing_and_unknown_config_keys_are_reported(personas: Any, client_for: Any) -> None:
    response = client_for(personas.editor).post(
        "/api/v1/connectors/",
        {"name": "wh", "connector_type": "postgres", "config": {"host": "db.example.com", "prot": 1}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "config.database": ["Field required"],
        "config.user": ["Field required"],
        "config.prot": ["Extra inputs are not permitted"],
    }


def test_unknown_type_and_duplicate_name_are_400(
    personas: Any, client_for: Any, csv_connector: Connector
) -> None:
    client = client_for(personas.editor)
    unknown = client.post("/api/v1/connectors/", {"name": "x", "connector_type": "nope", "config": {}})
    assert unknown.json()["error"]["fields"] == {"connector_type": ["No connector type 'nope'."]}
    duplicate = client.post(
        "/api/v1/connectors/",
        {"name": "people-files", "connector_type": "csv_file", "config": {"path": "people.csv"}},
    )
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["fields"] == {
        "name": ["A connector with this name already exists in this workspace."]
    }


def test_editor_patches_config_and_type_cannot_change(
    personas: Any, client_for: Any, csv_connector: Connector
) -> None:
    client = client_for(personas.editor)
    url = f"/api/v1/connectors/{csv_connector.id}/"
    response = client.patch(url, {"config": {"delimiter": ";"}})
    assert response.status_code == 200
    assert response.json()["config"]["delimiter"] == ";"
    assert response.json()["config"]["column_types"] == {"score": "number"}  # merged, not replaced
    assert response.json()["updated_by"] == "editor@acme.test"
    changed = client.patch(url, {"connector_type": "postgres"})
    assert changed.status_code == 400
    assert changed.json()["error"]["fields"] == {
        "connector_type": ["The type of a connector cannot change; create a new one."]
    }


def test_path_outside_the_import_directory_is_refused(
    personas: Any, client_for: Any, import_dir: Any
) -> None:
    client = client_for(personas.editor)
    for path in ("../etc/passwd", "/etc/passwd"):
        response = client.post(
            "/api/v1/connectors/", {"name": "evil", "connector_type": "csv_file", "config": {"path": path}}
        )
        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["config.path"]


def test_editor_checks_and_the_result_is_recorded(
    personas: Any, client_for: Any, csv_connector: Connector
) -> None:
    response = client_for(personas.editor).post(f"/api/v1/connectors/{csv_connector.id}/check/")
    assert response.status_code == 200
    body = response.json()
    _same(body, {"ok": True, "status": "succeeded", "message": "1 file matches.", "at": ANY_TIME})
    csv_connector.refresh_from_db()
    assert csv_connector.last_check_status == "succeeded"


PEOPLE_STREAM = {
    "name": "people",
    "fields": [
        {"name": "id", "type": "integer", "nullable": True},
        {"name": "name", "type": "string", "nullable": True},
        {"name": "score", "type": "number", "nullable": True},
    ],
    "primary_key": [],
    "cursor_field": None,
    "cursor_candidates": [],
    "supported_sync_modes": ["full_refresh", "incremental"],
}


def _change(kind: str, version: int, **fields: Any) -> dict[str, Any]:
    return {
        "stream": "people",
        "kind": kind,
        "version": version,
        "added_fields": [],
        "removed_fields": [],
        "type_changes": {},
        "nullability_changes": {},
        "key_changes": {},
        **fields,
    }


def test_first_discovery_stores_version_one_and_reports_every_stream_added(
    personas: Any, client_for: Any, csv_connector: Connector
) -> None:
    response = client_for(personas.editor).post(f"/api/v1/connectors/{csv_connector.id}/discover/")
    assert response.status_code == 200
    assert response.json() == {
        "streams": [PEOPLE_STREAM],
        "changes": [_change("added", 1, added_fields=["id", "name", "score"])],
    }
    versions = list(StreamSchemaVersion.objects.filter(connector=csv_connector).values())
    assert len(versions) == 1
    assert versions[0]["stream"] == "people" and versions[0]["version"] == 1
    assert versions[0]["workspace_id"] == personas.workspace.id
    assert versions[0]["schema"] == PEOPLE_STREAM
    assert versions[0]["is_removed"] is False


def test_rediscovery_reports_unchanged_then_the_changed_header(
    personas: Any, client_for: Any, csv_connector: Connector, import_dir: Any
) -> None:
    client = client_for(personas.editor)
    url = f"/api/v1/connectors/{csv_connector.id}/discover/"
    client.post(url)

    same = client.post(url).json()
    assert same == {"streams": [PEOPLE_STREAM], "changes": [_change("unchanged", 1)]}
    assert StreamSchemaVersion.objects.filter(connector=csv_connector).count() == 1

    # `name` renamed to `full_name`, `email` added.
    (import_dir / "people.csv").write_text("id,full_name,score,email\n1,alice,1.5,a@x.test\n")
    response = client.post(url)
    assert response.status_code == 200
    body = response.json()
    assert body["changes"] == [
        _change("changed", 2, added_fields=["full_name", "email"], removed_fields=["name"])
    ]
    assert [f["name"] for f in body["streams"][0]["fields"]] == ["id", "full_name", "score", "email"]
    rows = list(
        StreamSchemaVersion.objects.filter(connector=csv_connector)
        .order_by("version")
        .values_list("version", "schema", "changes")
    )
    assert [r[0] for r in rows] == [1, 2]
    assert rows[0][1] == PEOPLE_STREAM
    assert rows[1][1] == body["streams"][0]
    assert rows[1][2] == body["changes"][0]


def test_a_stream_no_longer_found_is_reported_removed(
    personas: Any, client_for: Any, csv_connector: Connector
) -> None:
    client = client_for(personas.editor)
    url = f"/api/v1/connectors/{csv_connector.id}/discover/"
    client.post(url)
    client.patch(f"/api/v1/connectors/{csv_connector.id}/", {"config": {"stream_name": "persons"}})
    body = client.post(url).json()
    assert body["streams"] == [{**PEOPLE_STREAM, "name": "persons"}]
    assert body["changes"] == [
        {**_change("added", 1, added_fields=["id", "name", "score"]), "stream": "persons"},
        _change("removed", 2),
    ]
    removed = StreamSchemaVersion.objects.get(connector=csv_connector, stream="people", version=2)
    assert removed.is_removed is True


def test_failed_discovery_stores_nothing(
    personas: Any, client_for: Any, csv_connector: Connector, import_dir: Any
) -> None:
    (import_dir / "people.csv").unlink()
    response = client_for(personas.editor).post(f"/api/v1/connectors/{csv_connector.id}/discover/")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["config.path"]
    assert not StreamSchemaVersion.objects.exists()


def test_viewer_previews_rows_and_rejects(personas: Any, client_for: Any, csv_connector: Connector) -> None:
    response = client_for(personas.viewer).get(
        f"/api/v1/connectors/{csv_connector.id}/preview/?stream=people"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["rows"] == [{"id": 1, "name": "alice", "score": 1.5}, {"id": 2, "name": "bob", "score": 2.5}]
    assert body["rejected"] == [
        {
            "line": 4,
            "row": None,
            "reason": "score: 'x' is not a valid number",
            "raw": {"id": "3", "name": "carol", "score": "x"},
            "source": "people.csv",
        }
    ]
    assert body["limit"] == 100


def test_preview_limit_is_capped_and_unknown_stream_is_400(
    personas: Any, client_for: Any, csv_connector: Connector
) -> None:
    client = client_for(personas.viewer)
    capped = client.get(f"/api/v1/connectors/{csv_connector.id}/preview/?stream=people&limit=5000")
    assert capped.json()["limit"] == 1000
    one = client.get(f"/api/v1/connectors/{csv_connector.id}/preview/?stream=people&limit=1")
    assert one.json()["rows"] == [{"id": 1, "name": "alice", "score": 1.5}]
    unknown = client.get(f"/api/v1/connectors/{csv_connector.id}/preview/?stream=nope")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["fields"] == {"stream": ["No stream 'nope'; this source has: people."]}


def test_editor_deletes(personas: Any, client_for: Any, csv_connector: Connector) -> None:
    assert client_for(personas.editor).delete(f"/api/v1/connectors/{csv_connector.id}/").status_code == 204
    assert not Connector.objects.exists()


def test_list_query_count_does_not_grow_with_rows(
    personas: Any, client_for: Any, csv_connector: Connector, django_assert_max_num_queries: Any
) -> None:
    from apps.connectors.services import connector_create

    for i in range(5):
        connector_create(
            workspace=personas.workspace,
            user=personas.owner,
            name=f"c{i}",
            connector_type="csv_file",
            config={"path": "people.csv"},
        )
    client = client_for(personas.viewer)
    with django_assert_max_num_queries(6):
        assert client.get("/api/v1/connectors/").json()["count"] == 6
