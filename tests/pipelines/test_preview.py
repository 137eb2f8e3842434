"""Preview: the upstream subgraph of a node on a sample, through the real step runners, writing nothing."""

from __future__ import annotations

import copy
import itertools

import pytest

from apps.pipelines.models import Run
from apps.pipelines.services import pipeline_create

from .conftest import flights_definition

pytestmark = pytest.mark.django_db


def five_steps() -> dict:
    definition = flights_definition(table="preview_target")
    source, _, destination = definition["nodes"]
    steps = [
        {
            "id": "known",
            "kind": "transform",
            "step": "filter",
            "config": {"expression": "dep_delay is not null"},
        },
        {"id": "typed", "kind": "transform", "step": "cast", "config": {"columns": {"dep_delay": "number"}}},
        {"id": "named", "kind": "transform", "step": "rename", "config": {"columns": {"dep_delay": "delay"}}},
        {
            "id": "slim",
            "kind": "transform",
            "step": "select",
            "config": {"columns": ["carrier", "flight", "delay"]},
        },
        {"id": "late", "kind": "transform", "step": "filter", "config": {"expression": "delay > 60"}},
    ]
    chain = [source, *steps, destination]
    return {
        "nodes": chain,
        "edges": [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(chain)],
    }


@pytest.fixture
def pipeline(personas, csv_connector, pg_connector):
    return pipeline_create(workspace=personas.workspace, name="preview", definition=five_steps(), user=None)


def test_preview_shows_a_nodes_input_and_output_and_writes_nothing(
    pipeline, personas, client_for, scratch_conn, pg_schema
):
    response = client_for(personas.viewer).post(
        f"/api/v1/pipelines/{pipeline.id}/preview/", {"node": "late"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["node"] == "late" and body["limit"] == 100
    assert body["inputs"] == {
        "slim": [
            {"carrier": "UA", "flight": 1545, "delay": 2.0},
            {"carrier": "UA", "flight": 1714, "delay": 4.0},
            {"carrier": "AA", "flight": 1141, "delay": 75.0},
            {"carrier": "B6", "flight": 725, "delay": -1.0},
            {"carrier": "UA", "flight": 1696, "delay": 101.0},
            {"carrier": "AA", "flight": 33, "delay": 61.0},
        ]
    }
    assert body["output"] == [
        {"carrier": "AA", "flight": 1141, "delay": 75.0},
        {"carrier": "UA", "flight": 1696, "delay": 101.0},
        {"carrier": "AA", "flight": 33, "delay": 61.0},
    ]
    assert [(f["name"], f["type"]) for f in body["schema"]["fields"]] == [
        ("carrier", "string"),
        ("flight", "integer"),
        ("delay", "number"),
    ]
    assert body["rejected"] == [] and body["rule_failures"] == []
    # The output sample's profile, as a run keeps one: 75, 101 and 61 minutes late.
    profile = body["profile"]
    assert profile["rows"] == 3
    columns = {c["name"]: c for c in profile["columns"]}
    assert list(columns) == ["carrier", "flight", "delay"]
    delay = columns["delay"]
    assert (delay["nulls"], delay["distinct"], delay["min"], delay["max"]) == (0, 3, 61.0, 101.0)
    assert delay["mean"] == pytest.approx((75 + 101 + 61) / 3)
    assert sum(delay["histogram"]["counts"]) == 3
    assert sorted((t["value"], t["count"]) for t in columns["carrier"]["top_values"]) == [
        ("AA", 2),
        ("UA", 1),
    ]
    # Nothing was written: no destination table, no run.
    exists = scratch_conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (pg_schema,)
    ).fetchone()
    assert exists == (0,)
    assert Run.objects.count() == 0


def test_preview_of_an_unsaved_document_with_a_limit(pipeline, personas, client_for):
    definition = copy.deepcopy(pipeline.definition)
    definition["nodes"][-2]["config"]["expression"] = "delay > 3"
    response = client_for(personas.editor).post(
        f"/api/v1/pipelines/{pipeline.id}/preview/",
        {"node": "late", "definition": definition, "limit": 3},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["limit"] == 3
    # The first three rows of the source: 2, 4 and 75 minutes late; two are over 3.
    assert [r["flight"] for r in body["inputs"]["slim"]] == [1545, 1714, 1141]
    assert [r["flight"] for r in body["output"]] == [1714, 1141]


def test_preview_of_a_destination_is_what_would_reach_it(pipeline, personas, client_for):
    body = (
        client_for(personas.viewer)
        .post(f"/api/v1/pipelines/{pipeline.id}/preview/", {"node": "warehouse"}, format="json")
        .json()
    )
    assert [r["flight"] for r in body["output"]] == [1141, 1696, 33]
    assert body["inputs"]["late"] == body["output"]


def test_preview_reports_rejected_rows_and_rule_failures(pipeline, personas, client_for, flights_file):
    flights_file.write_text(flights_file.read_text() + "2013,1,4,abc,UA,9,EWR\n")
    definition = copy.deepcopy(pipeline.definition)
    definition["nodes"][-2]["rules"] = [
        {"id": "few", "type": "range", "column": "delay", "max": 70, "action": "warn"}
    ]
    body = (
        client_for(personas.viewer)
        .post(
            f"/api/v1/pipelines/{pipeline.id}/preview/",
            {"node": "late", "definition": definition},
            format="json",
        )
        .json()
    )
    assert [(r["node"], r["line"]) for r in body["rejected"]] == [("flights", 9)]
    (failure,) = body["rule_failures"]
    assert (failure["node"], failure["rule"], failure["status"], failure["failed"]) == (
        "late",
        "few",
        "warned",
        2,
    )


def test_preview_applies_a_destinations_own_rules_to_what_would_reach_it(pipeline, personas, client_for):
    definition = copy.deepcopy(pipeline.definition)
    definition["nodes"][-1]["rules"] = [
        {"id": "short", "type": "range", "column": "delay", "max": 100, "action": "reject"}
    ]
    body = (
        client_for(personas.viewer)
        .post(
            f"/api/v1/pipelines/{pipeline.id}/preview/",
            {"node": "warehouse", "definition": definition},
            format="json",
        )
        .json()
    )
    assert [r["flight"] for r in body["inputs"]["late"]] == [1141, 1696, 33]
    kept = [r["flight"] for r in body["output"]]
    refused = [r["raw"]["flight"] for r in body["rejected"]]
    assert refused and sorted(kept + refused) == sorted([1141, 1696, 33])
    assert all(r["node"] == "warehouse" and "short" in r["reason"] for r in body["rejected"])
    (failure,) = body["rule_failures"]
    assert (failure["node"], failure["rule"], failure["status"], failure["rejected"]) == (
        "warehouse",
        "short",
        "rejected",
        len(refused),
    )


def test_preview_errors_name_the_node(pipeline, personas, client_for):
    client = client_for(personas.viewer)
    url = f"/api/v1/pipelines/{pipeline.id}/preview/"
    response = client.post(url, {"node": "nowhere"}, format="json")
    assert response.status_code == 400
    assert "nowhere" in str(response.json())
    broken = copy.deepcopy(pipeline.definition)
    broken["nodes"][-2]["config"]["expression"] = "delya > 3"
    response = client.post(url, {"node": "late", "definition": broken}, format="json")
    assert response.status_code == 400
    assert "nodes.late.config.expression" in str(response.json())


def test_outsiders_cannot_preview(pipeline, personas, client_for):
    response = client_for(personas.outsider).post(
        f"/api/v1/pipelines/{pipeline.id}/preview/", {"node": "late"}, format="json"
    )
    assert response.status_code == 404
