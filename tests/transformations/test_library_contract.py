"""Every registered step against the contract: its declared output schema is exactly what it produces —
on normal, empty and null-heavy input, through its runner over several batches — and a step given a
column of the wrong type refuses it naming the field. One sample config per step."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations import library
from apps.transformations.steps import StepError, StepOutput, all_step_types, get_step_type

UTC = dt.UTC


def _rows() -> list[dict[str, Any]]:
    carriers = ["UA", "AA", "UA", "B6", None, "AA", "UA", "DL"]
    origins = ["EWR", "LGA", "JFK", None, "EWR", "JFK", "EWR", "LGA"]
    rows = []
    for i in range(8):
        rows.append(
            {
                "year": 2013,
                "month": 1 + i % 3,
                "flight": 1000 + i % 5,
                "carrier": carriers[i],
                "origin": origins[i],
                "tailnum": None if i % 4 == 1 else f" N{100 + i}UA ",
                "dep_delay": None if i % 3 == 2 else float(i * 7 - 10),
                "cancelled": i % 5 == 0,
                "time_hour": dt.datetime(2013, 1, 1 + i, 5 + i, tzinfo=UTC),
                "day_date": dt.date(2013, 1, 1 + i),
                "dep_text": f"2013-01-0{1 + i} 0{i}:15" if i != 3 else "garbage",
                "payload": json.dumps({"a": {"b": i, "c": "x"}, "name": f"n{i}"}) if i != 2 else "{not json",
                "tags": json.dumps(["x", "y"][: i % 3]) if i != 4 else None,
            }
        )
    return rows


SCHEMA = StreamSchema(
    name="flights",
    fields=(
        Field("year", FieldType.INTEGER, nullable=False),
        Field("month", FieldType.INTEGER, nullable=False),
        Field("flight", FieldType.INTEGER, nullable=False),
        Field("carrier", FieldType.STRING),
        Field("origin", FieldType.STRING),
        Field("tailnum", FieldType.STRING),
        Field("dep_delay", FieldType.NUMBER),
        Field("cancelled", FieldType.BOOLEAN),
        Field("time_hour", FieldType.DATETIME),
        Field("day_date", FieldType.DATE),
        Field("dep_text", FieldType.STRING),
        Field("payload", FieldType.JSON),
        Field("tags", FieldType.JSON),
    ),
    primary_key=("year", "month", "flight"),
    cursor_field="time_hour",
)
TABLE = pa.Table.from_pylist(_rows(), schema=SCHEMA.arrow_schema())

AIRLINES_SCHEMA = StreamSchema(
    name="airlines",
    fields=(
        Field("carrier", FieldType.STRING),
        Field("name", FieldType.STRING),
        Field("founded", FieldType.INTEGER),
    ),
)
AIRLINES = pa.Table.from_pylist(
    [
        {"carrier": "UA", "name": "United", "founded": 1926},
        {"carrier": "AA", "name": "American", "founded": 1930},
    ],
    schema=AIRLINES_SCHEMA.arrow_schema(),
)
EXTRA_SCHEMA = StreamSchema(
    name="more",
    fields=(
        Field("carrier", FieldType.STRING),
        Field("flight", FieldType.INTEGER),
        Field("note", FieldType.STRING),
    ),
)
EXTRA = pa.Table.from_pylist(
    [{"carrier": "ZZ", "flight": 1, "note": "extra"}, {"carrier": None, "flight": 2, "note": None}],
    schema=EXTRA_SCHEMA.arrow_schema(),
)

# slug → (config, extra inputs {node id: (schema, table)})
SAMPLES: dict[str, tuple[dict[str, Any], dict[str, tuple[StreamSchema, pa.Table]]]] = {
    "select": ({"columns": ["carrier", "flight"]}, {}),
    "rename": ({"columns": {"dep_delay": "delay"}}, {}),
    "filter": ({"expression": "dep_delay > 0 or carrier = 'AA'"}, {}),
    "cast": ({"columns": {"flight": "string", "dep_text": "datetime"}, "on_error": "null"}, {}),
    "drop": ({"columns": ["tailnum", "payload"]}, {}),
    "reorder": ({"columns": ["carrier", "dep_delay"]}, {}),
    "derive": ({"column": "delay_h", "expression": "round(dep_delay / 60, 1)"}, {}),
    "fill_nulls": (
        {"values": {"dep_delay": 0, "day_date": "2013-01-01"}, "forward": ["tailnum", "carrier"]},
        {},
    ),
    "deduplicate": ({"keys": ["carrier", "origin"]}, {}),
    "sort": ({"keys": [{"column": "dep_delay", "descending": True}, {"column": "flight"}]}, {}),
    "limit": ({"count": 5, "offset": 2}, {}),
    "union": ({"source_column": "source"}, {"more": (EXTRA_SCHEMA, EXTRA)}),
    "join": (
        {"lookup": "airlines", "on": ["carrier"], "how": "left"},
        {"airlines": (AIRLINES_SCHEMA, AIRLINES)},
    ),
    "aggregate": (
        {
            "group_by": ["carrier"],
            "aggregations": [
                {"function": "count"},
                {"function": "count", "column": "dep_delay"},
                {"function": "count_distinct", "column": "origin"},
                {"function": "sum", "column": "flight"},
                {"function": "mean", "column": "dep_delay"},
                {"function": "min", "column": "time_hour"},
                {"function": "max", "column": "origin"},
                {"function": "first", "column": "tailnum"},
                {"function": "last", "column": "dep_delay"},
            ],
        },
        {},
    ),
    "pivot": (
        {
            "index": ["carrier"],
            "column": "origin",
            "values": ["EWR", "JFK", "LGA"],
            "function": "sum",
            "value": "dep_delay",
        },
        {},
    ),
    "hash": ({"columns": ["tailnum", "flight"]}, {}),
    "mask": ({"columns": ["tailnum"], "keep_last": 3}, {}),
    "redact": ({"columns": ["origin"]}, {}),
    "sql": (
        {
            "query": "SELECT carrier, dep_delay * 2 AS d2, time_hour, [flight] AS l, "
            "1.5::DECIMAL(4,2) AS d FROM input"
        },
        {},
    ),
    "trim": ({"columns": ["tailnum"]}, {}),
    "change_case": ({"columns": ["tailnum", "carrier"], "case": "lower"}, {}),
    "normalize": ({"columns": ["tailnum"], "unicode": "NFKC"}, {}),
    "regex_replace": ({"columns": ["tailnum"], "pattern": r"N(\d+)", "replacement": r"#\1"}, {}),
    "regex_extract": ({"column": "tailnum", "pattern": r"N(?P<tail_no>\d+)(?P<tail_op>[A-Z]+)"}, {}),
    "split": ({"column": "dep_text", "separator": " ", "into": ["dep_day", "dep_time"]}, {}),
    "parse_datetime": (
        {"column": "dep_text", "format": "%Y-%m-%d %H:%M", "timezone": "America/New_York"},
        {},
    ),
    "convert_timezone": ({"column": "time_hour", "timezone": "Europe/Paris", "target": "local"}, {}),
    "truncate_datetime": ({"columns": ["time_hour", "day_date"], "unit": "month"}, {}),
    "extract_date_parts": ({"column": "time_hour", "parts": ["year", "day_of_week", "hour"]}, {}),
    "flatten_json": ({"column": "payload", "fields": {"a.b": "integer", "a": "json", "name": "string"}}, {}),
    "explode": ({"column": "tags", "index_column": "pos"}, {}),
}

# Steps whose result over several batches differs, by design, from their result over one whole table.
PER_BATCH = {"sql"}  # the query runs per batch (its result here happens to be the same: a projection)


def library_slugs() -> list[str]:
    return [cls.slug for cls in all_step_types()]


def _run(slug: str, table: pa.Table, *, batch_rows: int = 3) -> tuple[StreamSchema, pa.Table]:
    """The step's declared schema and what its runner produces from `table` fed in batches (the other
    inputs first, whole)."""
    config, extra = SAMPLES[slug]
    step = get_step_type(slug)
    inputs = {"main": SCHEMA, **{node: schema for node, (schema, _) in extra.items()}}
    if slug == "join":
        inputs = {"main": SCHEMA, "airlines": AIRLINES_SCHEMA}
    declared = step.output_schema_for(step.validate_config(config), inputs)
    runner = step.runner(step.validate_config(config), inputs)
    outputs: list[StepOutput] = []
    first = step.input_order(config, list(inputs))
    for node in first:
        outputs += runner.feed(node, Batch(extra[node][1], stream=node))
        outputs += runner.end(node)
    batches = [table.slice(i, batch_rows) for i in range(0, table.num_rows, batch_rows)] or [table]
    for piece in batches:
        outputs += runner.feed("main", Batch(piece, stream="flights"))
    outputs += runner.end("main")
    for node, (_, other) in extra.items():
        if node not in first:
            outputs += runner.feed(node, Batch(other, stream=node))
            outputs += runner.end(node)
    tables = [o.batch.table for o in outputs]
    produced = (
        pa.concat_tables(tables) if tables else pa.Table.from_pylist([], schema=declared.arrow_schema())
    )
    return declared, produced


def assert_matches(declared: StreamSchema, produced: pa.Table) -> None:
    assert produced.column_names == declared.field_names
    for f in declared.fields:
        assert produced.schema.field(f.name).type == arrow_type_for(f.type), f.name
        if not f.nullable:
            assert produced.column(f.name).null_count == 0, f"{f.name} is declared not nullable"


def test_every_registered_library_step_has_a_sample() -> None:
    ours = {cls.slug for cls in all_step_types() if cls.__module__.startswith(library.__name__)}
    assert ours <= set(SAMPLES), sorted(ours - set(SAMPLES))
    assert len(ours) >= 31


@pytest.mark.parametrize("slug", sorted(SAMPLES))
def test_declared_schema_is_what_the_step_produces(slug: str) -> None:
    declared, produced = _run(slug, TABLE)
    assert_matches(declared, produced)
    step = type(get_step_type(slug))
    schema = step.json_schema()
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert step.title and step.description and step.category
    assert "Example" in step.description
    for name, prop in schema["properties"].items():  # the builder's forms show these
        assert prop.get("title") and (prop.get("description") or "$ref" in prop or "allOf" in prop), name


@pytest.mark.parametrize("slug", sorted(SAMPLES))
def test_empty_input(slug: str) -> None:
    declared, produced = _run(slug, TABLE.slice(0, 0))
    assert_matches(declared, produced)
    if slug == "union":
        assert produced.num_rows == EXTRA.num_rows
    elif slug not in ("aggregate",):
        assert produced.num_rows == 0


def _null_heavy() -> pa.Table:
    arrays = []
    for f in SCHEMA.fields:
        if f.nullable:
            arrays.append(pa.nulls(TABLE.num_rows, arrow_type_for(f.type)))
        else:
            arrays.append(TABLE.column(f.name))
    return pa.Table.from_arrays(arrays, schema=SCHEMA.arrow_schema())


@pytest.mark.parametrize("slug", sorted(SAMPLES))
def test_null_heavy_input(slug: str) -> None:
    if slug == "fill_nulls":
        # Constants fill; forward fill has nothing to carry, so the declared nullability still holds.
        pass
    declared, produced = _run(slug, _null_heavy())
    assert_matches(declared, produced)


@pytest.mark.parametrize("slug", sorted(s for s in SAMPLES if s not in ("union", "join")))
def test_several_batches_give_what_one_whole_batch_gives(slug: str) -> None:
    """Stateful runners (dedupe, limit, sort, aggregate, pivot, forward fill) over batches of 1, 3 and 8
    rows agree with the step applied to the whole table at once."""
    config, _ = SAMPLES[slug]
    step = get_step_type(slug)
    whole = step.apply(step.validate_config(config), Batch(TABLE, stream="flights"), SCHEMA).batch.table
    for size in (1, 3, 8):
        _, produced = _run(slug, TABLE, batch_rows=size)
        assert produced.to_pylist() == whole.to_pylist(), (slug, size)


WRONG_TYPES = [
    (
        "trim",
        {"columns": ["flight"]},
        "config.columns.0",
        "column 'flight' is integer, but this step needs text",
    ),
    ("change_case", {"columns": ["dep_delay"], "case": "upper"}, "config.columns.0", "is number"),
    ("normalize", {"columns": ["cancelled"]}, "config.columns.0", "is boolean"),
    (
        "regex_replace",
        {"columns": ["time_hour"], "pattern": "a", "replacement": ""},
        "config.columns.0",
        "is datetime",
    ),
    ("regex_extract", {"column": "year", "pattern": "(?P<y>\\d+)"}, "config.column", "is integer"),
    ("split", {"column": "day_date", "separator": "-"}, "config.column", "is date"),
    ("parse_datetime", {"column": "time_hour", "format": "%Y"}, "config.column", "is datetime"),
    ("convert_timezone", {"column": "dep_text", "timezone": "UTC"}, "config.column", "needs a datetime"),
    (
        "truncate_datetime",
        {"columns": ["flight"], "unit": "day"},
        "config.columns.0",
        "needs a date or datetime",
    ),
    (
        "truncate_datetime",
        {"columns": ["day_date"], "unit": "hour"},
        "config.unit",
        "is a date: it has no hours",
    ),
    ("extract_date_parts", {"column": "carrier", "parts": ["year"]}, "config.column", "is string"),
    ("flatten_json", {"column": "flight", "fields": {"a": "string"}}, "config.column", "needs json or text"),
    ("explode", {"column": "dep_delay"}, "config.column", "is number"),
    (
        "aggregate",
        {"aggregations": [{"function": "sum", "column": "carrier"}]},
        "config.aggregations.0.column",
        "needs a number to sum",
    ),
    (
        "aggregate",
        {"group_by": ["payload"], "aggregations": [{"function": "count"}]},
        "config.group_by.0",
        "is json",
    ),
    (
        "pivot",
        {"index": ["carrier"], "column": "origin", "values": [1], "function": "count"},
        "config.values.0",
        "1 is not a string value of 'origin'",
    ),
    ("sort", {"keys": [{"column": "payload"}]}, "config.keys.0.column", "is json"),
    ("derive", {"column": "x", "expression": "carrier + 1"}, "config.expression", "'+' needs numbers"),
    ("redact", {"columns": ["flight"], "pattern": "1"}, "config.columns.0", "is integer"),
    (
        "fill_nulls",
        {"values": {"dep_delay": "zero"}},
        "config.values.dep_delay",
        "'zero' is not a valid number value",
    ),
    (
        "fill_nulls",
        {"values": {"day_date": "2013-02-30"}},
        "config.values.day_date",
        "is not a valid date value",
    ),
    (
        "deduplicate",
        {"keys": ["carier"]},
        "config.keys.0",
        "unknown column 'carier', did you mean 'carrier'?",
    ),
    (
        "drop",
        {"columns": ["tailnumber"]},
        "config.columns.0",
        "unknown column 'tailnumber', did you mean 'tailnum'?",
    ),
    ("reorder", {"columns": ["orign"]}, "config.columns.0", "unknown column 'orign', did you mean 'origin'?"),
    ("hash", {"columns": ["email"]}, "config.columns.0", "unknown column 'email'"),
    ("mask", {"columns": ["email"]}, "config.columns.0", "unknown column 'email'"),
    ("sql", {"query": "SELECT nope FROM input"}, "config.query", "Binder Error"),
]


@pytest.mark.parametrize(("slug", "config", "field", "message"), WRONG_TYPES)
def test_wrong_typed_or_missing_columns_are_refused_naming_the_field(
    slug: str, config: dict[str, Any], field: str, message: str
) -> None:
    step = get_step_type(slug)
    with pytest.raises(StepError) as caught:
        step.output_schema(step.validate_config(config), [SCHEMA])
    assert caught.value.field == field
    assert message in caught.value.message


def test_union_and_join_check_their_inputs() -> None:
    union = get_step_type("union")
    with pytest.raises(StepError) as caught:
        union.output_schema_for({}, {"flights": SCHEMA})
    assert (caught.value.field, caught.value.message) == ("inputs", "'union' takes 2 or more input(s), got 1")
    clash = StreamSchema(name="x", fields=(Field("carrier", FieldType.INTEGER),))
    with pytest.raises(StepError) as caught:
        union.output_schema_for({}, {"flights": SCHEMA, "other": clash})
    assert caught.value.message == "column 'carrier' is string in 'flights' but integer in 'other'"
    assert caught.value.field == "inputs.other.carrier"

    join = get_step_type("join")
    with pytest.raises(StepError) as caught:
        join.output_schema_for(
            {"lookup": "airline", "on": ["carrier"]}, {"main": SCHEMA, "airlines": AIRLINES_SCHEMA}
        )
    assert caught.value.field == "config.lookup"
    assert caught.value.message == "'airline' is not an input of this node (its inputs: main, airlines)"
    with pytest.raises(StepError) as caught:
        join.output_schema_for(
            {"lookup": "airlines", "on": [{"left": "flight", "right": "carrier"}]},
            {"main": SCHEMA, "airlines": AIRLINES_SCHEMA},
        )
    assert caught.value.field == "config.on.0"
    assert (
        caught.value.message
        == "key 'flight' is integer but the lookup's 'carrier' is string; cast one of them first"
    )


def test_buffering_steps_say_so() -> None:
    ours = [cls for cls in all_step_types() if cls.slug in SAMPLES]
    assert {cls.slug for cls in ours if cls.buffers} == {
        "sort",
        "aggregate",
        "pivot",
        "join",
        "deduplicate",
        "sql",
    }
    for cls in ours:
        if cls.buffers:
            assert any(word in cls.description for word in ("hold", "buffer", "held", "Buffers", "memory")), (
                cls.slug
            )
