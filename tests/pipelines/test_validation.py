"""Every validation rule, each error naming the node (or edge) it is about."""

from __future__ import annotations

import copy

import pytest
from django.core.exceptions import ValidationError

from apps.pipelines.services import pipeline_plan

from .conftest import flights_definition

pytestmark = pytest.mark.django_db


def errors_of(workspace, definition) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        pipeline_plan(workspace_id=workspace.id, definition=definition)
    return info.value.message_dict


@pytest.fixture
def base(csv_connector, pg_connector):
    return flights_definition()


def test_the_flights_pipeline_is_valid_and_fields_flow_to_each_node(personas, base):
    plan = pipeline_plan(workspace_id=personas.workspace.id, definition=base)
    assert plan.order == ["flights", "late", "warehouse"]
    assert plan.schemas["late"].field_names == [
        "year",
        "month",
        "day",
        "dep_delay",
        "carrier",
        "flight",
        "origin",
    ]
    assert plan.sources["flights"].connector.name == "flights-files"


def test_a_cycle_is_refused_naming_a_node_on_it(personas, base):
    base["nodes"].insert(
        2, {"id": "again", "kind": "transform", "step": "filter", "config": {"expression": "day > 1"}}
    )
    base["edges"] += [{"from": "late", "to": "again"}, {"from": "again", "to": "late"}]
    errors = errors_of(personas.workspace, base)
    assert any("cycle" in m for msgs in errors.values() for m in msgs)
    assert any(key.startswith(("nodes.late", "nodes.again")) for key in errors)


def test_arity_rules(personas, base):
    broken = copy.deepcopy(base)
    broken["edges"].append({"from": "warehouse", "to": "late"})
    errors = errors_of(personas.workspace, broken)
    assert "A destination has no outputs." in errors["nodes.warehouse"]
    assert "Step 'filter' takes 1 input(s), not 2." in errors["nodes.late"]

    lonely = copy.deepcopy(base)
    lonely["edges"] = [{"from": "late", "to": "warehouse"}]
    errors = errors_of(personas.workspace, lonely)
    assert "A source must feed at least one node." in errors["nodes.flights"]
    assert "Step 'filter' takes 1 input(s), not 0." in errors["nodes.late"]


def test_unknown_connector_stream_step_and_edge_ends(personas, base):
    broken = copy.deepcopy(base)
    broken["nodes"][0]["connector"] = "nope"
    broken["nodes"][1]["step"] = "teleport"
    broken["edges"].append({"from": "late", "to": "ghost"})
    errors = errors_of(personas.workspace, broken)
    assert errors["nodes.flights.connector"] == ["No connector 'nope' in this workspace."]
    assert "teleport" in errors["nodes.late.step"][0]
    assert errors["edges.2.to"] == ["Edge to unknown node 'ghost'."]

    wrong_stream = copy.deepcopy(base)
    wrong_stream["nodes"][0]["stream"] = "airports"
    assert errors_of(personas.workspace, wrong_stream)["nodes.flights.stream"] == [
        "Connector 'flights-files' has no stream 'airports'."
    ]


def test_an_edge_whose_end_is_not_a_node_id_is_an_error_not_a_crash(personas, base):
    broken = copy.deepcopy(base)
    broken["edges"].append({"from": "late", "to": {"node": "warehouse"}})
    broken["edges"].append({"from": ["flights"], "to": "late"})
    errors = errors_of(personas.workspace, broken)
    assert errors["edges.2"] == ['An edge is `{"from": <node id>, "to": <node id>}`.']
    assert errors["edges.3"] == ['An edge is `{"from": <node id>, "to": <node id>}`.']


def test_connectors_of_another_workspace_are_unknown(personas, base):
    from apps.connectors.services import connector_create

    connector_create(
        workspace=personas.other_workspace,
        name="theirs",
        connector_type="csv_file",
        config={"path": "flights.csv"},
        user=None,
    )
    base["nodes"][0]["connector"] = "theirs"
    assert errors_of(personas.workspace, base)["nodes.flights.connector"] == [
        "No connector 'theirs' in this workspace."
    ]


def test_a_connector_of_the_wrong_kind(personas, base):
    from apps.connectors.services import connector_create

    connector_create(
        workspace=personas.workspace,
        name="exports",
        connector_type="files",
        config={"directory": "exports"},
        user=None,
    )
    base["nodes"][0]["connector"] = "exports"
    assert errors_of(personas.workspace, base)["nodes.flights.connector"] == [
        "Connector 'exports' is not a source."
    ]
    base["nodes"][0]["connector"] = "flights-files"
    base["nodes"][2]["connector"] = "flights-files"
    assert errors_of(personas.workspace, base)["nodes.warehouse.connector"] == [
        "Connector 'flights-files' is not a destination."
    ]


def test_a_field_the_step_needs_must_exist_upstream(personas, base):
    base["nodes"][1]["config"]["expression"] = "dep_dely > 60"
    errors = errors_of(personas.workspace, base)
    (message,) = [m for key, msgs in errors.items() if key.startswith("nodes.late") for m in msgs]
    assert "unknown column 'dep_dely'" in message
    assert "dep_delay" in message


def test_merge_needs_a_primary_key_that_reaches_the_destination(personas, base):
    base["nodes"][2]["write_mode"] = "merge"
    assert errors_of(personas.workspace, base)["nodes.warehouse.primary_key"] == [
        "Merge needs a `primary_key`."
    ]
    base["nodes"][2]["primary_key"] = ["flight", "tail"]
    assert errors_of(personas.workspace, base)["nodes.warehouse.primary_key"] == [
        "Primary key field(s) tail do not reach this destination."
    ]


def test_incremental_needs_a_cursor_field_of_the_stream(personas, base):
    base["nodes"][0]["sync_mode"] = "incremental"
    assert "nodes.flights.cursor_field" in errors_of(personas.workspace, base)
    base["nodes"][0]["cursor_field"] = "nope"
    assert errors_of(personas.workspace, base)["nodes.flights.cursor_field"] == [
        "Stream 'flights' has no field 'nope' to use as cursor."
    ]


def test_bad_keys_and_values_are_named(personas, base):
    base["nodes"][2]["write_mode"] = "upsert"
    base["nodes"][0]["sync_mode"] = "sometimes"
    base["nodes"].append({"id": "late", "kind": "transform", "step": "filter"})
    base["nodes"].append({"id": "x", "kind": "magic"})
    errors = errors_of(personas.workspace, base)
    assert errors["nodes.warehouse.write_mode"] == [
        "`write_mode` must be append, overwrite or merge, not 'upsert'."
    ]
    assert "nodes.flights.sync_mode" in errors
    assert errors["nodes.late.id"] == ["Node id 'late' is used twice."]
    assert errors["nodes.x.kind"] == ["`kind` must be one of source, transform, destination, not 'magic'."]


def test_not_a_document(personas):
    assert errors_of(personas.workspace, [1, 2]) == {
        "definition": ["The definition must be an object with `nodes` and `edges`."]
    }
    errors = errors_of(personas.workspace, {"nodes": []})
    assert errors["definition.nodes"] == ["`nodes` must be a non-empty list."]
