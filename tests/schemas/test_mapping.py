"""The map_fields step: validation against the input and destination schemas, and its output."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema
from apps.transformations.steps import StepError, get_step_type

SOURCE = StreamSchema(
    name="flights",
    fields=(
        Field("flight", FieldType.INTEGER, nullable=False),
        Field("dep_delay", FieldType.STRING),
        Field("carrier", FieldType.STRING),
    ),
    primary_key=("flight",),
)


def step():
    return get_step_type("map_fields")


def batch() -> Batch:
    return Batch(
        pa.table(
            {
                "flight": pa.array([1, 2, 3], pa.int64()),
                "dep_delay": pa.array(["5", None, " 7 "]),
                "carrier": pa.array(["UA", "AA", None]),
            }
        ),
        stream="flights",
    )


MAPPINGS = [
    {"from": "flight", "to": "flight_no"},
    {"from": "dep_delay", "to": "delay", "cast": "integer", "default": 0},
    {"from": "carrier", "to": "airline", "default": "??"},
]


def test_output_is_exactly_the_mapped_columns_cast_and_defaulted():
    out = step().apply({"mappings": MAPPINGS}, batch(), SOURCE)
    assert out.batch.table.column_names == ["flight_no", "delay", "airline"]
    assert out.batch.table.to_pylist() == [
        {"flight_no": 1, "delay": 5, "airline": "UA"},
        {"flight_no": 2, "delay": 0, "airline": "AA"},
        {"flight_no": 3, "delay": 7, "airline": "??"},
    ]
    schema = step().output_schema({"mappings": MAPPINGS}, [SOURCE])
    assert [f.to_dict() for f in schema.fields] == [
        {"name": "flight_no", "type": "integer", "nullable": False},
        {"name": "delay", "type": "integer", "nullable": False},
        {"name": "airline", "type": "string", "nullable": False},
    ]
    assert schema.primary_key == ("flight_no",)
    assert out.batch.table.schema.field("delay").type == pa.int64()


def test_an_unknown_source_field_names_the_mapping_index():
    with pytest.raises(StepError) as caught:
        step().output_schema({"mappings": [MAPPINGS[0], {"from": "dep_dealy", "to": "d"}]}, [SOURCE])
    assert caught.value.field == "config.mappings.1.from"
    assert str(caught.value) == "mappings[1]: unknown column 'dep_dealy', did you mean 'dep_delay'?"


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        (
            {"mappings": [{"from": "flight", "to": "x", "cast": "date"}]},
            "config.mappings.0.cast",
            "mappings[0]: cannot cast 'flight' from integer to date",
        ),
        (
            {"mappings": [{"from": "flight", "to": "x", "default": "abc"}]},
            "config.mappings.0.default",
            "mappings[0]: the default 'abc' is not a valid integer value",
        ),
        (
            {"mappings": [{"from": "flight", "to": "x"}, {"from": "carrier", "to": "x"}]},
            "config.mappings",
            None,
        ),
    ],
)
def test_config_errors_name_their_key(config, field, message):
    with pytest.raises(StepError) as caught:
        step().output_schema(config, [SOURCE])
    assert caught.value.field == field
    if message:
        assert caught.value.message == message


def test_checked_against_the_destination_fields():
    destination = [
        {"name": "flight_no", "type": "integer", "nullable": False},
        {"name": "delay", "type": "integer"},
        {"name": "airline", "type": "string"},
        {"name": "loaded_by", "type": "string", "nullable": False},
    ]
    with pytest.raises(StepError) as caught:
        step().output_schema({"mappings": MAPPINGS, "destination_schema": destination}, [SOURCE])
    assert caught.value.field == "config.destination_schema"
    assert caught.value.message == "required destination field(s) 'loaded_by' are not mapped"

    mappings = [*MAPPINGS, {"from": "carrier", "to": "loaded_by", "default": "x"}]
    schema = step().output_schema({"mappings": mappings, "destination_schema": destination}, [SOURCE])
    assert schema.field_names == ["flight_no", "delay", "airline", "loaded_by"]

    wrong_type = [{"from": "dep_delay", "to": "delay"}]
    with pytest.raises(StepError) as caught:
        step().output_schema({"mappings": wrong_type, "destination_schema": destination[1:3]}, [SOURCE])
    assert (caught.value.field, caught.value.message) == (
        "config.mappings.0.cast",
        "mappings[0]: gives string but the destination's 'delay' is integer; cast it",
    )
    with pytest.raises(StepError) as caught:
        step().output_schema(
            {"mappings": [{"from": "carrier", "to": "nowhere"}], "destination_schema": destination[1:3]},
            [SOURCE],
        )
    assert caught.value.field == "config.mappings.0.to"


def test_values_that_do_not_cast_follow_the_error_policy():
    bad = Batch(
        pa.table(
            {"flight": pa.array([1, 2], pa.int64()), "dep_delay": ["5", "late"], "carrier": ["UA", "AA"]}
        )
    )
    mappings = [
        {"from": "flight", "to": "flight_no"},
        {"from": "dep_delay", "to": "delay", "cast": "integer"},
    ]
    with pytest.raises(StepError) as caught:
        step().apply({"mappings": mappings}, bad, SOURCE)
    assert caught.value.field == "config.mappings.1.cast"
    assert "'late'" in caught.value.message
    out = step().apply({"mappings": mappings, "on_error": "reject"}, bad, SOURCE)
    assert out.batch.table.to_pylist() == [{"flight_no": 1, "delay": 5}]
    (rejected,) = out.rejected
    assert rejected.raw == {"flight_no": 2, "delay": "late"}


def test_listed_in_the_step_types_api(personas, client_for):
    body = client_for(personas.viewer).get("/api/v1/step-types/map_fields/").json()
    assert body["slug"] == "map_fields"
    assert "from" in body["config_schema"]["$defs"]["FieldMapping"]["properties"]


@pytest.mark.parametrize("rows", [0, 3], ids=["empty", "all-null"])
def test_empty_and_null_heavy_input_match_the_declared_schema(rows):
    table = pa.table(
        {
            "flight": pa.array(range(rows), pa.int64()),
            "dep_delay": pa.nulls(rows, pa.string()),
            "carrier": pa.nulls(rows, pa.string()),
        }
    )
    declared = step().output_schema({"mappings": MAPPINGS}, [SOURCE])
    out = step().apply({"mappings": MAPPINGS}, Batch(table), SOURCE)
    assert [(f.name, f.type) for f in out.batch.table.schema] == [
        (f.name, f.type) for f in declared.arrow_schema()
    ]
    assert out.batch.table.to_pylist() == [{"flight_no": i, "delay": 0, "airline": "??"} for i in range(rows)]
    assert out.rejected == []
