"""`?workspace=` on the schema lists: advertised in the OpenAPI schema (so the generated client has it) and
honoured, for a person in two workspaces."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.core.management import call_command

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.connectors.models import Connector
from apps.schemas.services import schema_record_discovery, stream_contract_set
from apps.users.models import Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def _flights(*extra: Field) -> StreamSchema:
    return StreamSchema(name="flights", fields=(Field("id", FieldType.INTEGER), *extra), primary_key=("id",))


def _frozen_drift(workspace: Any, name: str) -> Connector:
    connector = Connector.objects.create(workspace=workspace, name=name, connector_type="csv_file", config={})
    stream_contract_set(connector=connector, stream="", user=None, new_columns="freeze")
    schema_record_discovery(connector=connector, streams=[_flights()])
    schema_record_discovery(connector=connector, streams=[_flights(Field("tailnum"))])
    return connector


@pytest.mark.parametrize("path", ["/api/v1/schemas/changes/", "/api/v1/schemas/contracts/"])
def test_the_workspace_filter_is_in_the_openapi_schema(path: str, tmp_path: Any) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    parameters = yaml.safe_load(out.read_text())["paths"][path]["get"]["parameters"]
    workspace = next(p for p in parameters if p["name"] == "workspace")
    assert workspace["in"] == "query"
    assert workspace["schema"]["type"] == "integer"
    assert "workspace" in workspace["description"]


def test_changes_and_contracts_narrow_to_the_workspace(personas: Any, client_for: Any) -> None:
    MembershipFactory(workspace=personas.other_workspace, user=personas.viewer, role=Role.VIEWER)
    ours = _frozen_drift(personas.workspace, "ours")
    theirs = _frozen_drift(personas.other_workspace, "theirs")
    client = client_for(personas.viewer)
    for path in ("/api/v1/schemas/changes/", "/api/v1/schemas/contracts/"):
        everything = client.get(path).json()["results"]
        assert {row["connector"] for row in everything} == {ours.id, theirs.id}
        narrowed = client.get(path, {"workspace": personas.workspace.id}).json()["results"]
        assert {row["connector"] for row in narrowed} == {ours.id}
        other = client.get(path, {"workspace": personas.other_workspace.id}).json()["results"]
        assert {row["connector"] for row in other} == {theirs.id}
        # A workspace the caller is not in shows nothing, not an error and never its rows.
        outsiders_only = client_for(personas.owner).get(path, {"workspace": personas.other_workspace.id})
        assert outsiders_only.status_code == 200 and outsiders_only.json()["results"] == []
        bad = client.get(path, {"workspace": "abc"})
        assert bad.status_code == 400
        assert list(bad.json()["error"]["fields"]) == ["workspace"]
