"""/api/v1/schemas/: streams with versions, version diffs, contracts and pending changes, with the three
personas; drift on discovery (the connectors' discover action) under each contract."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.connectors.models import Connector
from apps.monitoring.models import Event
from apps.schemas.models import SchemaChange, StreamContract, StreamSchemaVersion
from apps.schemas.services import schema_record_discovery, stream_contract_set

pytestmark = pytest.mark.django_db


def flights(*extra: Field, delay: FieldType = FieldType.INTEGER) -> StreamSchema:
    return StreamSchema(
        name="flights",
        fields=(Field("id", FieldType.INTEGER, nullable=False), Field("dep_delay", delay), *extra),
        primary_key=("id",),
    )


@pytest.fixture
def connector(personas):
    return Connector.objects.create(
        workspace=personas.workspace, name="files", connector_type="csv_file", config={}
    )


def test_streams_of_a_connector_with_their_versions(connector, personas, client_for):
    schema_record_discovery(
        connector=connector, streams=[flights(), StreamSchema(name="airports", fields=(Field("faa"),))]
    )
    schema_record_discovery(
        connector=connector,
        streams=[flights(Field("tailnum")), StreamSchema(name="airports", fields=(Field("faa"),))],
    )
    url = f"/api/v1/schemas/connectors/{connector.id}/streams/"
    with CaptureQueriesContext(connection) as queries:
        response = client_for(personas.viewer).get(url)
    assert response.status_code == 200
    body = response.json()
    assert body["connector"] == connector.id
    assert [(s["stream"], s["latest_version"], s["accepted_version"]) for s in body["streams"]] == [
        ("airports", 1, 1),
        ("flights", 2, 2),
    ]
    flights_summary = body["streams"][1]
    assert flights_summary["contract"] == {
        "new_columns": "evolve",
        "type_changes": "discard_row",
        "new_tables": "evolve",
    }
    assert (flights_summary["contract_source"], flights_summary["contract_id"]) == ("platform", None)
    assert body["default_contract"] == flights_summary["contract"]
    assert body["default_contract_id"] is None
    assert [v["version"] for v in flights_summary["versions"]] == [2, 1]
    assert flights_summary["versions"][0]["changes"]["added_fields"] == ["tailnum"]
    assert flights_summary["versions"][0]["is_accepted"] is True
    # Auth, membership, the connector, its versions, its contracts: a constant whatever the streams.
    assert len(queries) <= 8
    assert client_for(personas.outsider).get(url).status_code == 404


def test_streams_say_where_their_contract_comes_from(connector, personas, client_for):
    schema_record_discovery(
        connector=connector, streams=[flights(), StreamSchema(name="airports", fields=(Field("faa"),))]
    )
    editor = client_for(personas.editor)
    default = editor.post(
        "/api/v1/schemas/contracts/",
        {"connector": connector.id, "stream": "", "new_columns": "freeze"},
        format="json",
    ).json()
    own = editor.post(
        "/api/v1/schemas/contracts/",
        {"connector": connector.id, "stream": "airports", "type_changes": "freeze"},
        format="json",
    ).json()
    body = client_for(personas.viewer).get(f"/api/v1/schemas/connectors/{connector.id}/streams/").json()
    assert body["default_contract"] == {
        "new_columns": "freeze",
        "type_changes": "discard_row",
        "new_tables": "evolve",
    }
    assert body["default_contract_id"] == default["id"]
    summaries = {s["stream"]: s for s in body["streams"]}
    assert (summaries["flights"]["contract_source"], summaries["flights"]["contract_id"]) == (
        "connector",
        None,
    )
    assert summaries["flights"]["contract"]["new_columns"] == "freeze"
    assert (summaries["airports"]["contract_source"], summaries["airports"]["contract_id"]) == (
        "stream",
        own["id"],
    )
    # The settings the POST left out are the ones in force for the stream then (the connector's default).
    assert summaries["airports"]["contract"] == {
        "new_columns": "freeze",
        "type_changes": "freeze",
        "new_tables": "evolve",
    }
    # Removing the stream's own contract falls back to the connector's default.
    assert editor.delete(f"/api/v1/schemas/contracts/{own['id']}/").status_code == 204
    body = client_for(personas.viewer).get(f"/api/v1/schemas/connectors/{connector.id}/streams/").json()
    airports = next(s for s in body["streams"] if s["stream"] == "airports")
    assert (airports["contract_source"], airports["contract"]["type_changes"]) == ("connector", "discard_row")


def test_diff_between_any_two_versions(connector, personas, client_for):
    schema_record_discovery(connector=connector, streams=[flights(Field("carrier"))])
    schema_record_discovery(connector=connector, streams=[flights(Field("carrier"), Field("tailnum"))])
    schema_record_discovery(
        connector=connector,
        streams=[
            StreamSchema(
                name="flights",
                fields=(
                    Field("id", FieldType.INTEGER, nullable=True),
                    Field("dep_delay", FieldType.NUMBER),
                    Field("tailnum"),
                ),
                primary_key=(),
            )
        ],
    )
    url = f"/api/v1/schemas/connectors/{connector.id}/diff/?stream=flights&base=1&other=3"
    response = client_for(personas.viewer).get(url)
    assert response.status_code == 200
    assert response.json() == {
        "connector": connector.id,
        "stream": "flights",
        "base": 1,
        "other": 3,
        "kind": "changed",
        "added_fields": ["tailnum"],
        "removed_fields": ["carrier"],
        "type_changes": {"dep_delay": {"from": "integer", "to": "number"}},
        "nullability_changes": {"id": {"from": False, "to": True}},
        "key_changes": {"primary_key": {"from": ["id"], "to": []}},
    }
    missing = client_for(personas.viewer).get(
        f"/api/v1/schemas/connectors/{connector.id}/diff/?stream=flights&base=1&other=9"
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {"other": ["No version 9 of stream 'flights'."]}
    assert client_for(personas.outsider).get(url).status_code == 404


def test_contracts_editors_set_viewers_read_outsiders_see_nothing(connector, personas, client_for):
    body = {
        "connector": connector.id,
        "stream": "flights",
        "new_columns": "freeze",
        "type_changes": "discard_row",
    }
    assert (
        client_for(personas.viewer).post("/api/v1/schemas/contracts/", body, format="json").status_code == 403
    )
    outsider = client_for(personas.outsider).post("/api/v1/schemas/contracts/", body, format="json")
    assert outsider.status_code == 400
    assert StreamContract.objects.count() == 0

    response = client_for(personas.editor).post("/api/v1/schemas/contracts/", body, format="json")
    assert response.status_code == 201
    created = response.json()
    assert {
        k: created[k]
        for k in ("connector", "stream", "new_columns", "type_changes", "new_tables", "updated_by")
    } == {
        "connector": connector.id,
        "stream": "flights",
        "new_columns": "freeze",
        "type_changes": "discard_row",
        "new_tables": "evolve",
        "updated_by": "editor@acme.test",
    }
    detail = f"/api/v1/schemas/contracts/{created['id']}/"
    assert client_for(personas.viewer).get(detail).json()["new_columns"] == "freeze"
    assert (
        client_for(personas.viewer).patch(detail, {"new_columns": "evolve"}, format="json").status_code == 403
    )
    assert client_for(personas.outsider).get(detail).status_code == 404
    assert (
        client_for(personas.outsider).patch(detail, {"new_columns": "evolve"}, format="json").status_code
        == 404
    )

    patched = client_for(personas.editor).patch(detail, {"new_columns": "discard_value"}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["new_columns"], patched.json()["type_changes"]) == ("discard_value", "discard_row")
    bad = client_for(personas.editor).patch(detail, {"new_columns": "ignore"}, format="json")
    assert bad.status_code == 400
    listed = client_for(personas.viewer).get(f"/api/v1/schemas/contracts/?connector={connector.id}").json()
    assert [c["id"] for c in listed["results"]] == [created["id"]]
    assert client_for(personas.outsider).get("/api/v1/schemas/contracts/").json()["results"] == []
    assert Event.objects.filter(type="schema.contract_updated").count() == 2

    assert client_for(personas.editor).delete(detail).status_code == 204
    assert StreamContract.objects.count() == 0


def test_drift_on_discovery_under_freeze_waits_for_a_decision(connector, personas, client_for):
    stream_contract_set(
        connector=connector, stream="", user=None, new_columns="freeze", type_changes="freeze"
    )
    schema_record_discovery(connector=connector, streams=[flights()])
    assert not Event.objects.filter(type="schema.drift_detected").exists()  # a first discovery is no drift

    schema_record_discovery(connector=connector, streams=[flights(Field("tailnum"))])
    change = SchemaChange.objects.get()
    drift = Event.objects.get(type="schema.drift_detected")
    assert drift.payload == {
        "connector": connector.id,
        "connector_name": "files",
        "stream": "flights",
        "version": 2,
        "changes": {
            "stream": "flights",
            "kind": "changed",
            "version": 2,
            "added_fields": ["tailnum"],
            "removed_fields": [],
            "type_changes": {},
            "nullability_changes": {},
            "key_changes": {},
        },
        "contract": "pending",
        "schema_change": change.id,
    }
    # Pipelines keep being planned with the accepted version.
    from apps.schemas.selectors import latest_stream_schemas

    assert [f["name"] for f in latest_stream_schemas(connector_id=connector.id)["flights"]["fields"]] == [
        "id",
        "dep_delay",
    ]

    # A newer drift supersedes the undecided one.
    schema_record_discovery(connector=connector, streams=[flights(Field("tailnum"), delay=FieldType.STRING)])
    older, newer = SchemaChange.objects.order_by("id")
    assert (older.status, newer.status, newer.frozen) == (
        "superseded",
        "pending",
        ["new_columns", "type_changes"],
    )
    assert client_for(personas.editor).post(f"/api/v1/schemas/changes/{older.id}/approve/").status_code == 400

    listed = client_for(personas.viewer).get(
        f"/api/v1/schemas/changes/?status=pending&connector={connector.id}"
    )
    assert [c["id"] for c in listed.json()["results"]] == [newer.id]
    assert client_for(personas.outsider).get(f"/api/v1/schemas/changes/{newer.id}/").status_code == 404
    assert client_for(personas.viewer).post(f"/api/v1/schemas/changes/{newer.id}/reject/").status_code == 403
    rejected = client_for(personas.editor).post(f"/api/v1/schemas/changes/{newer.id}/reject/")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert list(
        StreamSchemaVersion.objects.filter(stream="flights")
        .order_by("version")
        .values_list("is_accepted", flat=True)
    ) == [True, False, False]


def test_new_streams_follow_the_new_tables_setting(connector):
    stream_contract_set(connector=connector, stream="", user=None, new_tables="freeze")
    schema_record_discovery(connector=connector, streams=[flights()])
    schema_record_discovery(
        connector=connector, streams=[flights(), StreamSchema(name="planes", fields=(Field("tailnum"),))]
    )
    change = SchemaChange.objects.get()
    assert (change.stream, change.from_version, change.frozen) == ("planes", None, ["new_tables"])
    assert not StreamSchemaVersion.objects.get(stream="planes").is_accepted

    stream_contract_set(connector=connector, stream="", user=None, new_tables="evolve")
    schema_record_discovery(
        connector=connector,
        streams=[
            flights(),
            StreamSchema(name="planes", fields=(Field("tailnum"),)),
            StreamSchema(name="weather", fields=(Field("temp"),)),
        ],
    )
    assert StreamSchemaVersion.objects.get(stream="weather").is_accepted


def test_list_of_changes_makes_a_constant_number_of_queries(connector, personas, client_for):
    stream_contract_set(connector=connector, stream="", user=None, new_columns="freeze")
    schema_record_discovery(connector=connector, streams=[flights()])
    client = client_for(personas.viewer)
    schema_record_discovery(connector=connector, streams=[flights(Field("a"))])
    with CaptureQueriesContext(connection) as one:
        client.get("/api/v1/schemas/changes/")
    for name in ("b", "c", "d"):
        schema_record_discovery(connector=connector, streams=[flights(Field(name))])
    with CaptureQueriesContext(connection) as four:
        assert len(client.get("/api/v1/schemas/changes/").json()["results"]) == 4
    assert len(four) == len(one)


def test_a_discovery_after_the_contract_changed_settles_a_held_back_version(connector):
    stream_contract_set(connector=connector, stream="flights", user=None, new_columns="discard_value")
    schema_record_discovery(connector=connector, streams=[flights()])
    schema_record_discovery(connector=connector, streams=[flights(Field("tailnum"))])
    assert not StreamSchemaVersion.objects.get(stream="flights", version=2).is_accepted

    stream_contract_set(connector=connector, stream="flights", user=None, new_columns="evolve")
    (change,) = schema_record_discovery(connector=connector, streams=[flights(Field("tailnum"))])
    assert change.kind == "unchanged"
    assert StreamSchemaVersion.objects.get(stream="flights", version=2).is_accepted


def test_runs_rediscover_files_and_databases_but_not_apis_or_push_streams():
    from apps.schemas.services import _discovers_on_run

    assert [
        _discovers_on_run(s) for s in ("csv_file", "postgres_source", "rest_api", "push_stream", "nope")
    ] == [
        True,
        True,
        False,
        False,
        False,
    ]
