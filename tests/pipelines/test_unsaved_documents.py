"""Validate and preview a document that is not saved as a pipeline yet (`POST /pipelines/validate/`,
`POST /pipelines/preview/`), scoped to the workspace in the body; and the partial schemas validation keeps
when part of a document is broken."""

from __future__ import annotations

import copy

import pytest

from apps.connectors.services import connector_create
from apps.pipelines.models import Pipeline, Run
from apps.schemas.models import StreamSchemaVersion
from tests.factories import MembershipFactory

from .conftest import flights_definition

pytestmark = pytest.mark.django_db

VALIDATE = "/api/v1/pipelines/validate/"
PREVIEW = "/api/v1/pipelines/preview/"

FLIGHTS_FIELDS = [
    {"name": "year", "type": "integer", "nullable": True},
    {"name": "month", "type": "integer", "nullable": True},
    {"name": "day", "type": "integer", "nullable": True},
    {"name": "dep_delay", "type": "integer", "nullable": True},
    {"name": "carrier", "type": "string", "nullable": True},
    {"name": "flight", "type": "integer", "nullable": True},
    {"name": "origin", "type": "string", "nullable": True},
]
DELAY_HOURS = {"name": "delay_hours", "type": "number", "nullable": True}


def with_derive(definition: dict) -> dict:
    """source → late (filter) → hours (derive delay_hours) → warehouse."""
    document = copy.deepcopy(definition)
    source, late, destination = document["nodes"]
    hours = {
        "id": "hours",
        "kind": "transform",
        "step": "derive",
        "config": {"column": "delay_hours", "expression": "dep_delay / 60"},
    }
    document["nodes"] = [source, late, hours, destination]
    document["edges"] = [
        {"from": "flights", "to": "late"},
        {"from": "late", "to": "hours"},
        {"from": "hours", "to": "warehouse"},
    ]
    return document


@pytest.fixture
def their_connector(personas, flights_file):
    """A source of the same name and file in the other workspace."""
    return connector_create(
        workspace=personas.other_workspace,
        name="their-files",
        connector_type="csv_file",
        config={"path": "flights.csv"},
        user=personas.outsider,
    )


# --- validate ----------------------------------------------------------------------------------------------


def test_an_editor_validates_an_unsaved_document_and_gets_every_nodes_fields(
    personas, client_for, csv_connector, pg_connector
):
    response = client_for(personas.editor).post(
        VALIDATE,
        {"workspace": personas.workspace.id, "definition": with_derive(flights_definition())},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "valid": True,
        "errors": {},
        "schemas": {
            "flights": FLIGHTS_FIELDS,
            "late": FLIGHTS_FIELDS,
            "hours": [*FLIGHTS_FIELDS, DELAY_HOURS],
            "warehouse": [*FLIGHTS_FIELDS, DELAY_HOURS],
        },
    }
    assert Pipeline.objects.count() == 0


def test_a_viewer_validates_in_their_only_workspace_without_naming_it(
    personas, client_for, csv_connector, pg_connector
):
    body = (
        client_for(personas.viewer).post(VALIDATE, {"definition": flights_definition()}, format="json").json()
    )
    assert body["valid"] is True
    assert sorted(body["schemas"]) == ["flights", "late", "warehouse"]


def test_someone_in_several_workspaces_must_name_one(personas, client_for, csv_connector, pg_connector):
    MembershipFactory(workspace=personas.other_workspace, user=personas.editor)
    response = client_for(personas.editor).post(VALIDATE, {"definition": flights_definition()}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "workspace": ["Required: you belong to several workspaces (or none)."]
    }


def test_an_outsider_naming_our_workspace_is_refused_without_a_word_about_it(
    personas, client_for, csv_connector, pg_connector
):
    client = client_for(personas.outsider)
    for url in (VALIDATE, PREVIEW):
        response = client.post(
            url,
            {"workspace": personas.workspace.id, "definition": flights_definition(), "node": "late"},
            format="json",
        )
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"workspace": ["No such workspace."]}


def test_an_outsider_in_their_own_workspace_cannot_reach_our_connectors(
    personas, client_for, csv_connector, pg_connector
):
    """The document names our connectors by name and by id: in the outsider's workspace they do not
    exist, and the answer says only that, at the node, with no schema of ours."""
    definition = flights_definition()
    definition["nodes"][2]["connector"] = pg_connector.id
    body = client_for(personas.outsider).post(VALIDATE, {"definition": definition}, format="json").json()
    assert body["valid"] is False
    assert body["errors"]["nodes.flights.connector"] == ["No connector 'flights-files' in this workspace."]
    assert body["errors"]["nodes.warehouse.connector"] == [
        f"No connector {pg_connector.id} in this workspace."
    ]
    assert body["schemas"] == {}
    assert "dep_delay" not in str(body)


def test_another_workspaces_connector_in_the_document_is_an_error_at_its_node(
    personas, client_for, csv_connector, pg_connector, their_connector
):
    client = client_for(personas.editor)
    for ref in ("their-files", their_connector.id):
        definition = flights_definition()
        definition["nodes"][0]["connector"] = ref
        body = client.post(
            VALIDATE, {"workspace": personas.workspace.id, "definition": definition}, format="json"
        ).json()
        assert body["valid"] is False
        assert body["errors"] == {"nodes.flights.connector": [f"No connector {ref!r} in this workspace."]}
        assert body["schemas"] == {}
    # Their connector was never discovered on our behalf.
    assert not StreamSchemaVersion.objects.filter(connector=their_connector).exists()


def test_validate_needs_a_document(personas, client_for):
    response = client_for(personas.editor).post(VALIDATE, {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"definition": ["This field is required."]}


def test_validate_needs_a_session(client_for):
    assert client_for(None).post(VALIDATE, {"definition": {}}, format="json").status_code in (401, 403)


# --- partial schemas ---------------------------------------------------------------------------------------


def test_a_broken_node_leaves_the_fields_of_every_node_that_could_still_be_planned(
    personas, client_for, csv_connector, pg_connector
):
    """Two branches from one source: the filter's branch is broken (a misspelt column), the derive's is
    sound. Fields are known at the source, along the sound branch, and nowhere below the mistake."""
    definition = flights_definition(expression="dep_dely > 60")
    definition["nodes"] += [
        {
            "id": "hours",
            "kind": "transform",
            "step": "derive",
            "config": {"column": "delay_hours", "expression": "dep_delay / 60"},
        },
        {"id": "hours_pg", "kind": "destination", "connector": "warehouse-pg", "table": "hours"},
    ]
    definition["edges"] += [{"from": "flights", "to": "hours"}, {"from": "hours", "to": "hours_pg"}]
    body = (
        client_for(personas.viewer)
        .post(VALIDATE, {"workspace": personas.workspace.id, "definition": definition}, format="json")
        .json()
    )
    assert body["valid"] is False
    assert body["errors"] == {
        "nodes.late.config.expression": ["unknown column 'dep_dely' at 1:1, did you mean 'dep_delay'?"]
    }
    assert body["schemas"] == {
        "flights": FLIGHTS_FIELDS,
        "hours": [*FLIGHTS_FIELDS, DELAY_HOURS],
        "hours_pg": [*FLIGHTS_FIELDS, DELAY_HOURS],
    }


def test_a_saved_pipelines_validate_keeps_the_fields_above_a_mistake(
    personas, client_for, csv_connector, pg_connector
):
    from apps.pipelines.services import pipeline_create

    pipeline = pipeline_create(
        workspace=personas.workspace, name="late", definition=with_derive(flights_definition()), user=None
    )
    definition = copy.deepcopy(pipeline.definition)
    definition["nodes"][2]["config"]["expression"] = "dep_delay / "
    definition["nodes"][3]["table"] = ""
    body = (
        client_for(personas.viewer)
        .post(f"/api/v1/pipelines/{pipeline.id}/validate/", {"definition": definition}, format="json")
        .json()
    )
    assert body["valid"] is False
    assert set(body["errors"]) == {"nodes.hours.config.expression", "nodes.warehouse.table"}
    assert body["schemas"] == {"flights": FLIGHTS_FIELDS, "late": FLIGHTS_FIELDS}


def test_an_unknown_stream_leaves_no_fields_below_it(personas, client_for, csv_connector, pg_connector):
    definition = flights_definition()
    definition["nodes"][0]["stream"] = "no_such_stream"
    body = (
        client_for(personas.editor)
        .post(VALIDATE, {"workspace": personas.workspace.id, "definition": definition}, format="json")
        .json()
    )
    assert body["errors"] == {
        "nodes.flights.stream": ["Connector 'flights-files' has no stream 'no_such_stream'."]
    }
    assert body["schemas"] == {}


# --- preview -----------------------------------------------------------------------------------------------


def test_an_editor_previews_a_node_of_an_unsaved_document(personas, client_for, csv_connector, pg_connector):
    response = client_for(personas.editor).post(
        PREVIEW,
        {
            "workspace": personas.workspace.id,
            "definition": with_derive(flights_definition()),
            "node": "hours",
            "limit": 5,
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["node"] == "hours" and body["limit"] == 5
    # The first five rows are 2, 4, 75, -1 and 101 minutes late; the filter keeps two of them.
    assert [r["flight"] for r in body["inputs"]["late"]] == [1141, 1696]
    assert [(r["flight"], r["delay_hours"]) for r in body["output"]] == [(1141, 1.25), (1696, 101 / 60)]
    assert body["schema"]["fields"][-1]["name"] == "delay_hours"
    assert body["rejected"] == [] and body["rule_failures"] == []
    assert Pipeline.objects.count() == 0 and Run.objects.count() == 0


def test_a_viewer_previews_an_unsaved_document(personas, client_for, csv_connector, pg_connector):
    body = (
        client_for(personas.viewer)
        .post(PREVIEW, {"definition": flights_definition(), "node": "late"}, format="json")
        .json()
    )
    assert [r["flight"] for r in body["output"]] == [1141, 1696, 33]
    assert len(body["inputs"]["flights"]) == 7


def test_preview_of_a_document_naming_another_workspaces_connector_reads_nothing(
    personas, client_for, csv_connector, pg_connector, their_connector
):
    definition = flights_definition()
    definition["nodes"][0]["connector"] = their_connector.id
    response = client_for(personas.editor).post(
        PREVIEW,
        {"workspace": personas.workspace.id, "definition": definition, "node": "late"},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"]["nodes.flights.connector"] == [
        f"No connector {their_connector.id} in this workspace."
    ]
    assert "1141" not in str(error)


def test_preview_of_an_unsaved_document_names_the_node_at_fault(
    personas, client_for, csv_connector, pg_connector
):
    client = client_for(personas.editor)
    response = client.post(PREVIEW, {"definition": flights_definition(), "node": "nowhere"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"node": ["No node 'nowhere' in this pipeline."]}
    response = client.post(
        PREVIEW, {"definition": flights_definition(expression="dep_delay >"), "node": "late"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["nodes.late.config.expression"]
    response = client.post(PREVIEW, {"node": "late"}, format="json")
    assert response.json()["error"]["fields"] == {"definition": ["This field is required."]}


def test_a_node_is_previewed_while_the_pipeline_below_it_is_unfinished(
    personas, client_for, csv_connector, pg_connector
):
    """The filter is sound; the derive below it has no config yet and the destination no table. The
    filter can be previewed; the broken derive cannot, and the answer says why, at the derive."""
    document = with_derive(flights_definition())
    document["nodes"][2]["config"] = {}
    document["nodes"][3]["table"] = ""
    client = client_for(personas.editor)
    response = client.post(PREVIEW, {"definition": document, "node": "late", "limit": 5}, format="json")
    assert response.status_code == 200, response.json()
    assert [r["flight"] for r in response.json()["output"]] == [1141, 1696]

    response = client.post(PREVIEW, {"definition": document, "node": "hours"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "nodes.hours.config.column": ["config.column: Field required"]
    }


def test_a_lone_node_is_previewed_before_anything_is_connected_below_it(
    personas, client_for, csv_connector, pg_connector
):
    document = {
        "nodes": [
            {"id": "flights", "kind": "source", "connector": "flights-files", "stream": "flights"},
            {"id": "late", "kind": "transform", "step": "filter", "config": {"expression": "dep_delay > 60"}},
            {"id": "other", "kind": "transform", "step": "filter", "config": {"expression": "nope >"}},
        ],
        "edges": [{"from": "flights", "to": "late"}],
    }
    client = client_for(personas.editor)
    body = client.post(PREVIEW, {"definition": document, "node": "late"}, format="json").json()
    assert [r["flight"] for r in body["output"]] == [1141, 1696, 33]
    body = client.post(PREVIEW, {"definition": document, "node": "flights", "limit": 2}, format="json").json()
    assert [r["flight"] for r in body["output"]] == [1545, 1714]
    # A cycle anywhere blocks every preview: there is no order to run in.
    document["nodes"][2]["config"]["expression"] = "dep_delay > 0"
    document["edges"] += [{"from": "late", "to": "other"}, {"from": "other", "to": "late"}]
    response = client.post(PREVIEW, {"definition": document, "node": "flights"}, format="json")
    assert response.status_code == 400
    assert any("cycle" in m for ms in response.json()["error"]["fields"].values() for m in ms)
