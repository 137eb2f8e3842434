"""union and join through their runners: misaligned columns, the lookup side fed first (or late)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.transformations.steps import StepError, get_step_type

from ._helpers import batches, run_stream

FLIGHTS = pa.table(
    {
        "carrier": pa.array(["UA", "AA", None, "B6", "UA", "ZZ"]),
        "flight": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
    }
)
FS = StreamSchema.from_arrow("flights", FLIGHTS.schema)
AIRLINES = pa.table(
    {
        "carrier": ["UA", "AA", "B6", None, "UA"],
        "name": ["United", "American", "JetBlue", "Nobody", "United 2"],
    }
)
AS = StreamSchema.from_arrow("airlines", AIRLINES.schema)


def test_union_aligns_columns_by_name_and_nulls_the_missing() -> None:
    a = pa.table({"x": pa.array([1, 2], pa.int64()), "s": ["p", "q"]})
    b = pa.table({"s": ["r"], "x": pa.array([2.5]), "extra": pa.array([True])})
    inputs = {"a": StreamSchema.from_arrow("a", a.schema), "b": StreamSchema.from_arrow("b", b.schema)}
    step = get_step_type("union")
    declared = step.output_schema_for({"source_column": "src"}, inputs)
    assert declared.fields == (
        Field("x", FieldType.NUMBER),
        Field("s", FieldType.STRING),
        Field("extra", FieldType.BOOLEAN),
        Field("src", FieldType.STRING, nullable=False),
    )
    rows = run_stream("union", {"source_column": "src"}, [("a", a), ("b", b), ("a", a.slice(1))], inputs)
    assert rows == [
        {"x": 1.0, "s": "p", "extra": None, "src": "a"},
        {"x": 2.0, "s": "q", "extra": None, "src": "a"},
        {"x": 2.5, "s": "r", "extra": True, "src": "b"},
        {"x": 2.0, "s": "q", "extra": None, "src": "a"},
    ]


def test_union_type_conflict_names_the_column_and_both_inputs() -> None:
    a = StreamSchema(name="a", fields=(Field("when", FieldType.DATE),))
    b = StreamSchema(name="b", fields=(Field("when", FieldType.STRING),))
    with pytest.raises(StepError) as caught:
        get_step_type("union").output_schema_for({}, {"a": a, "b": b, "c": a})
    assert caught.value.message == "column 'when' is date in 'a' but string in 'b'"


def test_left_join_with_the_lookup_fed_first_keeps_main_order() -> None:
    config = {"lookup": "airlines", "on": ["carrier"], "how": "left"}
    inputs = {"flights": FS, "airlines": AS}
    assert get_step_type("join").input_order(config, ["flights", "airlines"]) == ["airlines"]
    feeds = [("airlines", b) for b in batches(AIRLINES, 2)] + [("flights", b) for b in batches(FLIGHTS, 4)]
    rows = run_stream("join", config, feeds, inputs)
    assert [(r["flight"], r["name"]) for r in rows] == [
        (1, "United"),
        (1, "United 2"),  # a key that matches two lookup rows repeats the main row
        (2, "American"),
        (3, None),  # null keys never match
        (4, "JetBlue"),
        (5, "United"),
        (5, "United 2"),
        (6, None),
    ]


def test_inner_join_with_different_key_names_suffix_and_late_lookup() -> None:
    lookup = AIRLINES.rename_columns(["code", "carrier"])  # its 'carrier' clashes with the main one
    inputs = {"flights": FS, "codes": StreamSchema.from_arrow("codes", lookup.schema)}
    config = {"lookup": "codes", "on": [{"left": "carrier", "right": "code"}], "how": "inner"}
    declared = get_step_type("join").output_schema_for(config, inputs)
    assert declared.field_names == ["carrier", "flight", "carrier_lookup"]
    # Main batches that come before the lookup is complete wait for it.
    feeds = [("flights", FLIGHTS.slice(0, 3)), ("codes", lookup), ("flights", FLIGHTS.slice(3))]
    rows = run_stream("join", config, feeds, inputs)
    assert [(r["flight"], r["carrier_lookup"]) for r in rows] == [
        (1, "United"),
        (1, "United 2"),
        (2, "American"),
        (4, "JetBlue"),
        (5, "United"),
        (5, "United 2"),
    ]


def test_join_with_an_empty_lookup() -> None:
    inputs = {"flights": FS, "airlines": AS}
    rows = run_stream("join", {"lookup": "airlines", "on": ["carrier"]}, [("flights", FLIGHTS)], inputs)
    assert [r["name"] for r in rows] == [None] * 6
    rows = run_stream(
        "join", {"lookup": "airlines", "on": ["carrier"], "how": "inner"}, [("flights", FLIGHTS)], inputs
    )
    assert rows == []
