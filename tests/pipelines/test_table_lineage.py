"""Lineage of destination tables across pipelines (`/api/v1/lineage/`, `/api/v1/lineage/table/`)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.connectors.services import connector_create
from apps.pipelines.services import pipeline_create
from tests.pipelines.conftest import flights_definition
from tests.pipelines.test_lineage import airlines, graph  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def pipelines(personas, csv_connector, pg_connector, airlines):  # noqa: F811
    joined = pipeline_create(workspace=personas.workspace, name="by airline", definition=graph(), user=None)
    # A second pipeline writing the same table straight from the flights stream (by connector id).
    straight = flights_definition(table="late_by_airline")
    straight["nodes"][2]["connector"] = pg_connector.id
    straight["nodes"][1] = {
        "id": "keep",
        "kind": "transform",
        "step": "select",
        "config": {"columns": ["carrier", "flight"]},
    }
    straight["edges"] = [{"from": "flights", "to": "keep"}, {"from": "keep", "to": "warehouse"}]
    direct = pipeline_create(workspace=personas.workspace, name="direct", definition=straight, user=None)
    late = pipeline_create(
        workspace=personas.workspace, name="late", definition=flights_definition(), user=None
    )
    return joined, direct, late


def test_viewer_lists_the_destination_tables_with_the_pipelines_writing_them(
    personas, client_for, pipelines, pg_connector
):
    joined, direct, late = pipelines
    client = client_for(personas.viewer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/lineage/", {"workspace": personas.workspace.id})
    assert response.status_code == 200, response.json()
    connector = {"id": pg_connector.id, "name": "warehouse-pg", "connector_type": "postgres"}
    assert response.json() == {
        "count": 2,
        "results": [
            {
                "workspace": personas.workspace.id,
                "connector": connector,
                "table": "late_by_airline",
                "pipelines": [
                    {"id": joined.id, "name": "by airline", "node": "warehouse"},
                    {"id": direct.id, "name": "direct", "node": "warehouse"},
                ],
            },
            {
                "workspace": personas.workspace.id,
                "connector": connector,
                "table": "late_flights",
                "pipelines": [{"id": late.id, "name": "late", "node": "warehouse"}],
            },
        ],
    }
    # Session/auth lookups aside, one query for the connectors and one for the pipelines, however many.
    assert len(queries) <= 5
    more = [
        pipeline_create(
            workspace=personas.workspace, name=f"late {i}", definition=flights_definition(), user=None
        )
        for i in range(3)
    ]
    with CaptureQueriesContext(connection) as again:
        assert len(client.get("/api/v1/lineage/").json()["results"][1]["pipelines"]) == 1 + len(more)
    assert len(again) == len(queries)


def test_an_outsider_sees_no_tables_and_gets_404_for_one(personas, client_for, pipelines, pg_connector):
    client = client_for(personas.outsider)
    assert client.get("/api/v1/lineage/").json() == {"count": 0, "results": []}
    response = client.get("/api/v1/lineage/table/", {"connector": pg_connector.id, "table": "late_flights"})
    assert response.status_code == 404
    assert b"late_flights" not in response.content
    # Naming the outsider's own workspace does not help either.
    response = client.get(
        "/api/v1/lineage/table/",
        {"connector": pg_connector.id, "table": "late_flights", "workspace": personas.other_workspace.id},
    )
    assert response.status_code == 404


def test_a_table_nothing_writes_is_404_and_parameters_are_required(
    personas, client_for, pipelines, pg_connector
):
    client = client_for(personas.viewer)
    nothing = client.get("/api/v1/lineage/table/", {"connector": pg_connector.id, "table": "nope"})
    assert nothing.status_code == 404
    missing = client.get("/api/v1/lineage/table/", {"table": "late_flights"})
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {"connector": ["This parameter is required."]}


def test_table_lineage_traces_each_column_through_every_pipeline_writing_it(
    personas,
    client_for,
    pipelines,
    pg_connector,
    csv_connector,
    airlines,  # noqa: F811
):
    joined, direct, _ = pipelines
    response = client_for(personas.viewer).get(
        "/api/v1/lineage/table/",
        {"connector": pg_connector.id, "table": "late_by_airline", "workspace": personas.workspace.id},
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["table"] == "late_by_airline"
    assert [(p["id"], p["nodes"], p["error"]) for p in body["pipelines"]] == [
        (joined.id, ["warehouse"], None),
        (direct.id, ["warehouse"], None),
    ]
    flights = {"id": csv_connector.id, "name": "flights-files"}
    names = {"id": airlines.id, "name": "airlines-files"}
    columns = {c["name"]: c for c in body["columns"]}
    assert list(columns) == ["carrier", "airline_name", "delay_hours", "flight_no", "flight"]
    assert columns["carrier"] == {
        "name": "carrier",
        "type": "string",
        "sources": [{"connector": flights, "stream": "flights", "column": "carrier"}],
        "pipelines": [joined.id, direct.id],
    }
    assert columns["airline_name"]["sources"] == [
        {"connector": names, "stream": "airlines", "column": "name"}
    ]
    assert columns["delay_hours"]["sources"] == [
        {"connector": flights, "stream": "flights", "column": "dep_delay"}
    ]
    assert columns["flight"]["pipelines"] == [direct.id]

    nodes = {n["id"]: n for n in body["nodes"]}
    source = f"source:{csv_connector.id}:flights:dep_delay"
    assert nodes[source] == {
        "id": source,
        "kind": "source",
        "label": "dep_delay",
        "connector": flights,
        "stream": "flights",
        "column": "dep_delay",
        "type": "integer",
        "columns": ["delay_hours"],
    }
    assert nodes[f"step:{joined.id}:hours"]["step"] == "derive"
    assert nodes["column:flight"]["kind"] == "column"
    kinds = sorted(n["kind"] for n in body["nodes"])
    # 5 destination columns; sources carrier, flight, dep_delay (flights) and name (airlines); the joined
    # pipeline's five steps and the direct one's select.
    assert kinds.count("column") == 5 and kinds.count("source") == 4 and kinds.count("step") == 6

    def path(column: str) -> set[tuple[str, str]]:
        return {(e["source"], e["target"]) for e in body["edges"] if column in e["columns"]}

    j = f"step:{joined.id}"
    assert path("delay_hours") == {
        (source, f"{j}:late"),
        (f"{j}:late", f"{j}:joined"),
        (f"{j}:joined", f"{j}:hours"),
        (f"{j}:hours", f"{j}:named"),
        (f"{j}:named", f"{j}:mapped"),
        (f"{j}:mapped", "column:delay_hours"),
    }
    carrier = f"source:{csv_connector.id}:flights:carrier"
    assert (carrier, f"step:{direct.id}:keep") in path("carrier")
    assert (f"step:{direct.id}:keep", "column:carrier") in path("carrier")
    assert path("flight") == {
        (f"source:{csv_connector.id}:flights:flight", f"step:{direct.id}:keep"),
        (f"step:{direct.id}:keep", "column:flight"),
    }
    edge = next(e for e in body["edges"] if e["target"] == "column:carrier" and e["source"].startswith(j))
    assert edge["pipelines"] == [joined.id]


def test_a_pipeline_that_no_longer_validates_is_listed_with_its_error(
    personas, client_for, pipelines, pg_connector, import_dir
):
    joined, direct, _ = pipelines
    # The lookup stream's file now lacks the joined column: the joined pipeline cannot be planned.
    (import_dir / "airlines.csv").write_text("carrier\nUA\n")
    from apps.schemas.services import schema_discover

    schema_discover(connector=connector_by_name(personas, "airlines-files"))
    body = (
        client_for(personas.viewer)
        .get("/api/v1/lineage/table/", {"connector": pg_connector.id, "table": "late_by_airline"})
        .json()
    )
    errors = {p["id"]: p["error"] for p in body["pipelines"]}
    assert errors[direct.id] is None
    assert errors[joined.id] and "name" in errors[joined.id]
    assert [c["name"] for c in body["columns"]] == ["carrier", "flight"]


def connector_by_name(personas, name):
    from apps.connectors.models import Connector

    return Connector.objects.get(workspace=personas.workspace, name=name)


def test_another_workspaces_tables_stay_apart(personas, client_for, pg_connector, pipelines):
    # The outsider's workspace has a destination of the same name: names resolve within a workspace only.
    other = connector_create(
        workspace=personas.other_workspace,
        name="warehouse-pg",
        connector_type="duckdb",
        config={"database": "other.duckdb"},
        user=None,
    )
    document = {
        "nodes": [
            {"id": "dest", "kind": "destination", "connector": "warehouse-pg", "table": "late_flights"},
        ],
        "edges": [],
    }
    from apps.pipelines.models import Pipeline

    Pipeline.objects.create(workspace=personas.other_workspace, name="theirs", definition=document)
    mine = client_for(personas.owner).get("/api/v1/lineage/").json()["results"]
    assert {t["connector"]["id"] for t in mine} == {pg_connector.id}
    theirs = client_for(personas.outsider).get("/api/v1/lineage/").json()["results"]
    assert [(t["connector"]["id"], t["table"]) for t in theirs] == [(other.id, "late_flights")]
