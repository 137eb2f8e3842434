"""Lineage of a realistic graph: a filtered stream joined with a lookup stream, a derived column, a
rename and a field mapping into the destination; and the rules on their own."""

from __future__ import annotations

import pytest

from apps.connectors.services import connector_create
from apps.pipelines.lineage import expression_columns, pipeline_lineage
from apps.pipelines.services import pipeline_create, pipeline_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def airlines(personas, import_dir):
    (import_dir / "airlines.csv").write_text(
        "carrier,name\nUA,United Air Lines Inc.\nAA,American Airlines Inc.\n"
    )
    return connector_create(
        workspace=personas.workspace,
        name="airlines-files",
        connector_type="csv_file",
        config={"path": "airlines.csv"},
        user=None,
    )


def graph() -> dict:
    nodes = [
        {"id": "flights", "kind": "source", "connector": "flights-files", "stream": "flights"},
        {"id": "airlines", "kind": "source", "connector": "airlines-files", "stream": "airlines"},
        {"id": "late", "kind": "transform", "step": "filter", "config": {"expression": "dep_delay > 0"}},
        {
            "id": "joined",
            "kind": "transform",
            "step": "join",
            "config": {"lookup": "airlines", "on": ["carrier"], "columns": ["name"]},
        },
        {
            "id": "hours",
            "kind": "transform",
            "step": "derive",
            "config": {"column": "delay_hours", "expression": "dep_delay / 60"},
        },
        {"id": "named", "kind": "transform", "step": "rename", "config": {"columns": {"name": "airline"}}},
        {
            "id": "mapped",
            "kind": "transform",
            "step": "map_fields",
            "config": {
                "mappings": [
                    {"from": "carrier", "to": "carrier"},
                    {"from": "airline", "to": "airline_name", "default": "unknown"},
                    {"from": "delay_hours", "to": "delay_hours", "cast": "number"},
                    {"from": "flight", "to": "flight_no"},
                ]
            },
        },
        {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg", "table": "late_by_airline"},
    ]
    edges = [
        ("flights", "late"),
        ("late", "joined"),
        ("airlines", "joined"),
        ("joined", "hours"),
        ("hours", "named"),
        ("named", "mapped"),
        ("mapped", "warehouse"),
    ]
    return {"nodes": nodes, "edges": [{"from": a, "to": b} for a, b in edges]}


def test_lineage_of_each_destination_column_through_the_api(
    personas, csv_connector, pg_connector, airlines, client_for
):
    pipeline = pipeline_create(workspace=personas.workspace, name="lineage", definition=graph(), user=None)
    response = client_for(personas.viewer).get(f"/api/v1/pipelines/{pipeline.id}/lineage/")
    assert response.status_code == 200
    assert response.json() == {
        "warehouse": {
            "carrier": [{"node": "flights", "column": "carrier"}],
            "airline_name": [{"node": "airlines", "column": "name"}],
            "delay_hours": [{"node": "flights", "column": "dep_delay"}],
            "flight_no": [{"node": "flights", "column": "flight"}],
        },
        "paths": {
            "warehouse": {
                "carrier": ["flights", "late", "joined", "hours", "named", "mapped", "warehouse"],
                "airline_name": ["airlines", "joined", "hours", "named", "mapped", "warehouse"],
                "delay_hours": ["flights", "late", "joined", "hours", "named", "mapped", "warehouse"],
                "flight_no": ["flights", "late", "joined", "hours", "named", "mapped", "warehouse"],
            }
        },
    }
    assert client_for(personas.outsider).get(f"/api/v1/pipelines/{pipeline.id}/lineage/").status_code == 404


def test_opaque_and_unknown_steps_claim_every_input_column(personas, csv_connector, pg_connector, airlines):
    definition = graph()
    definition["nodes"][4] = {
        "id": "hours",
        "kind": "transform",
        "step": "sql",
        "config": {"query": "SELECT carrier, flight, name, dep_delay / 60.0 AS delay_hours FROM input"},
    }
    plan = pipeline_plan(workspace_id=personas.workspace.id, definition=definition)
    lineage = pipeline_lineage(plan=plan)
    every = {(o["node"], o["column"]) for o in lineage["warehouse"]["carrier"]}
    assert ("flights", "carrier") in every and ("airlines", "name") in every and ("flights", "year") in every


def test_expression_columns_walk_the_parsed_tree():
    assert expression_columns("case when dep_delay > 60 then upper(carrier) else origin end") == [
        "dep_delay",
        "carrier",
        "origin",
    ]
    assert expression_columns("flight in (1, 2) and tailnum is null") == ["flight", "tailnum"]
    assert expression_columns("1 +") == []


def test_union_and_aggregate_rules_on_a_plan():
    import networkx as nx

    from aggregator.dataplane import Field, FieldType, StreamSchema
    from apps.pipelines.definition import Plan

    def schema(*names: str) -> StreamSchema:
        return StreamSchema(name="s", fields=tuple(Field(n, FieldType.INTEGER) for n in names))

    nodes = {
        "jan": {"id": "jan", "kind": "source"},
        "feb": {"id": "feb", "kind": "source"},
        "both": {
            "id": "both",
            "kind": "transform",
            "step": "union",
            "config": {"source_column": "month_file"},
        },
        "per_carrier": {
            "id": "per_carrier",
            "kind": "transform",
            "step": "aggregate",
            "config": {
                "group_by": ["carrier"],
                "aggregations": [
                    {"function": "mean", "column": "delay"},
                    {"function": "count", "name": "flights"},
                ],
            },
        },
        "out": {"id": "out", "kind": "destination"},
    }
    graph = nx.DiGraph([("jan", "both"), ("feb", "both"), ("both", "per_carrier"), ("per_carrier", "out")])
    plan = Plan(
        graph=graph,
        nodes=nodes,
        order=["jan", "feb", "both", "per_carrier", "out"],
        schemas={
            "jan": schema("carrier", "delay"),
            "feb": schema("carrier", "delay", "extra"),
            "both": schema("carrier", "delay", "extra", "month_file"),
            "per_carrier": schema("carrier", "mean_delay", "flights"),
            "out": schema("carrier", "mean_delay", "flights"),
        },
    )
    lineage = pipeline_lineage(plan=plan)
    assert lineage["out"] == {
        "carrier": [{"node": "jan", "column": "carrier"}, {"node": "feb", "column": "carrier"}],
        "mean_delay": [{"node": "jan", "column": "delay"}, {"node": "feb", "column": "delay"}],
        "flights": [],
    }
    assert lineage["paths"]["out"]["flights"] == ["per_carrier", "out"]
    assert lineage["paths"]["out"]["carrier"] == ["jan", "feb", "both", "per_carrier", "out"]
