from __future__ import annotations

import pytest

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.connectors.models import Connector
from apps.schemas.models import StreamSchemaVersion
from apps.schemas.selectors import latest_stream_schemas, schema_versions_for_user
from apps.schemas.services import schema_record_discovery

pytestmark = pytest.mark.django_db


def flights(*fields: Field, pk: tuple[str, ...] = ("id",)) -> StreamSchema:
    return StreamSchema(
        name="flights", fields=(Field("id", FieldType.INTEGER, nullable=False), *fields), primary_key=pk
    )


@pytest.fixture
def connector(personas):
    return Connector.objects.create(
        workspace=personas.workspace, name="files", connector_type="csv_file", config={}
    )


def test_first_discovery_adds_every_stream_as_version_one(connector):
    changes = schema_record_discovery(
        connector=connector,
        streams=[flights(Field("carrier")), StreamSchema(name="airports", fields=(Field("faa"),))],
    )
    assert [(c.stream, c.kind, c.version) for c in changes] == [
        ("flights", "added", 1),
        ("airports", "added", 1),
    ]
    assert changes[0].added_fields == ["id", "carrier"]
    assert StreamSchemaVersion.objects.filter(connector=connector).count() == 2


def test_same_schema_makes_no_new_version(connector):
    schema_record_discovery(connector=connector, streams=[flights(Field("carrier"))])
    changes = schema_record_discovery(connector=connector, streams=[flights(Field("carrier"))])
    assert [(c.stream, c.kind, c.version) for c in changes] == [("flights", "unchanged", 1)]
    assert StreamSchemaVersion.objects.filter(connector=connector).count() == 1


def test_changes_are_reported_field_by_field(connector):
    schema_record_discovery(
        connector=connector, streams=[flights(Field("carrier"), Field("dep_delay", FieldType.INTEGER))]
    )
    changes = schema_record_discovery(
        connector=connector,
        streams=[flights(Field("dep_delay", FieldType.NUMBER), Field("tailnum"), pk=("id", "tailnum"))],
    )
    (change,) = changes
    assert change.to_dict() == {
        "stream": "flights",
        "kind": "changed",
        "version": 2,
        "added_fields": ["tailnum"],
        "removed_fields": ["carrier"],
        "type_changes": {"dep_delay": {"from": "integer", "to": "number"}},
        "nullability_changes": {},
        "key_changes": {"primary_key": {"from": ["id"], "to": ["id", "tailnum"]}},
    }
    latest = latest_stream_schemas(connector_id=connector.id)
    assert [f["name"] for f in latest["flights"]["fields"]] == ["id", "dep_delay", "tailnum"]


def test_a_stream_that_disappears_is_marked_removed_and_can_come_back(connector):
    schema_record_discovery(
        connector=connector, streams=[flights(), StreamSchema(name="old", fields=(Field("a"),))]
    )
    changes = schema_record_discovery(connector=connector, streams=[flights()])
    assert {(c.stream, c.kind, c.version) for c in changes} == {
        ("flights", "unchanged", 1),
        ("old", "removed", 2),
    }
    assert "old" not in latest_stream_schemas(connector_id=connector.id)

    back = schema_record_discovery(
        connector=connector, streams=[flights(), StreamSchema(name="old", fields=(Field("a"),))]
    )
    assert ("old", "added", 3) in {(c.stream, c.kind, c.version) for c in back}


def test_versions_are_visible_to_members_only(connector, personas):
    schema_record_discovery(connector=connector, streams=[flights()])
    assert schema_versions_for_user(user=personas.viewer, connector_id=connector.id).count() == 1
    assert schema_versions_for_user(user=personas.outsider, connector_id=connector.id).count() == 0
