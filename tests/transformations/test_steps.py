"""The step contract and the built-in steps: configs and their errors, output schemas, applied values."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations import steps
from apps.transformations.library.core import CastStep, FilterStep, RenameStep, SelectStep
from apps.transformations.steps import (
    StepError,
    StepOutput,
    StepType,
    all_step_types,
    get_step_type,
)

UTC = dt.UTC

FLIGHTS = pa.table(
    {
        "year": pa.array([2013, 2013, 2013, 2013], pa.int64()),
        "flight": pa.array([1545, 1714, 1141, 725], pa.int64()),
        "carrier": ["UA", "AA", "UA", "B6"],
        "dep_delay": pa.array([2.0, None, 101.0, 61.0], pa.float64()),
        "origin": ["EWR", "LGA", "JFK", None],
    }
)
SCHEMA = StreamSchema(
    name="flights",
    fields=(
        Field("year", FieldType.INTEGER, nullable=False),
        Field("flight", FieldType.INTEGER, nullable=False),
        Field("carrier", FieldType.STRING, nullable=False, description="two-letter code"),
        Field("dep_delay", FieldType.NUMBER),
        Field("origin", FieldType.STRING),
    ),
    primary_key=("year", "flight", "carrier"),
    cursor_field="year",
    cursor_candidates=("year", "flight", "dep_delay"),
)


def run(
    slug: str, config: dict[str, Any], table: pa.Table = FLIGHTS, schema: StreamSchema = SCHEMA
) -> StepOutput:
    step = get_step_type(slug)
    return step.apply(step.validate_config(config), Batch(table, stream=schema.name), schema)


def schema_after(slug: str, config: dict[str, Any], schema: StreamSchema = SCHEMA) -> StreamSchema:
    step = get_step_type(slug)
    return step.output_schema(step.validate_config(config), [schema])


def error_of(call: Any) -> StepError:
    with pytest.raises(StepError) as caught:
        call()
    return caught.value


def assert_declared_schema_matches(output: StepOutput, declared: StreamSchema) -> None:
    table = output.batch.table
    assert table.column_names == declared.field_names
    for f in declared.fields:
        assert table.schema.field(f.name).type == arrow_type_for(f.type), f.name


# --- the contract --------------------------------------------------------------------------------------


def test_registry_lists_the_built_in_steps() -> None:
    assert {cls.slug for cls in all_step_types()} >= {"select", "rename", "filter", "cast"}
    assert isinstance(get_step_type("filter"), FilterStep)
    assert get_step_type("filter") is get_step_type("filter")
    for cls in all_step_types():
        assert issubclass(cls, StepType)
        assert cls.title and cls.description and cls.category
        if cls.slug in ("select", "rename", "filter", "cast"):
            assert (cls.min_inputs, cls.max_inputs, cls.buffers) == (1, 1, False)
        schema = cls.json_schema()
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False


def test_unknown_step_names_the_step_field() -> None:
    error = error_of(lambda: get_step_type("pivot_table"))
    assert (error.message, error.field) == ("unknown step 'pivot_table'", "step")


@pytest.mark.parametrize(
    ("slug", "config", "field", "message"),
    [
        ("select", {}, "config.columns", "Field required"),
        (
            "select",
            {"columns": []},
            "config.columns",
            "List should have at least 1 item after validation, not 0",
        ),
        ("select", {"columns": ["a", "a"]}, "config.columns", "column 'a' is listed twice"),
        ("select", {"columns": ["a"], "colums": ["b"]}, "config.colums", "Extra inputs are not permitted"),
        ("rename", {"columns": {"a": ""}}, "config.columns", "the new name of 'a' is empty"),
        (
            "rename",
            {"columns": {"a": "_ag_run_id"}},
            "config.columns",
            "'_ag_run_id' is reserved for the loader's own column",
        ),
        ("filter", {"expression": "x.y > 1"}, "config.expression", "unexpected character '.' at 1:2"),
        ("filter", {"expression": "{{ 7*7 }}"}, "config.expression", "unexpected character '{' at 1:1"),
        ("cast", {"columns": {"a": "int"}}, "config.columns.a", "Input should be 'string', 'integer',"),
        (
            "cast",
            {"columns": {"a": "integer"}, "on_error": "skip"},
            "config.on_error",
            "Input should be 'fail', 'null' or 'reject'",
        ),
        ("cast", "not a dict", "config", "Input should be a valid dictionary or instance of CastConfig"),
    ],
)
def test_config_errors_name_the_field(slug: str, config: Any, field: str, message: str) -> None:
    error = error_of(lambda: get_step_type(slug).validate_config(config))
    assert error.field == field
    assert error.errors[field][0].startswith(message)
    assert error.message.startswith(f"{field}: {message}")


def test_output_schema_checks_the_number_of_inputs() -> None:
    error = error_of(
        lambda: (
            schema_after("select", {"columns": ["year"]}, schema=SCHEMA)
            and get_step_type("select").output_schema({"columns": ["year"]}, [SCHEMA, SCHEMA])
        )
    )
    assert (error.message, error.field) == ("'select' takes 1 input(s), got 2", "inputs")


def test_apply_accepts_a_raw_config_too() -> None:
    out = get_step_type("select").apply({"columns": ["flight"]}, Batch(FLIGHTS), SCHEMA)
    assert out.batch.table.column("flight").to_pylist() == [1545, 1714, 1141, 725]


# --- select --------------------------------------------------------------------------------------------


def test_select_keeps_and_reorders_columns() -> None:
    config = {"columns": ["carrier", "year", "dep_delay"]}
    out = run("select", config)
    assert out.batch.table.column_names == ["carrier", "year", "dep_delay"]
    assert out.batch.table.column("carrier").to_pylist() == ["UA", "AA", "UA", "B6"]
    assert out.batch.table.column("dep_delay").to_pylist() == [2.0, None, 101.0, 61.0]
    assert out.batch.stream == "flights"
    assert out.rejected == []
    declared = schema_after("select", config)
    assert declared.fields == (SCHEMA.field("carrier"), SCHEMA.field("year"), SCHEMA.field("dep_delay"))
    assert declared.primary_key == ()  # part of the key is gone: no key
    assert declared.cursor_field == "year"
    assert declared.cursor_candidates == ("year", "dep_delay")
    assert_declared_schema_matches(out, declared)


def test_select_keeps_the_primary_key_when_all_of_it_survives() -> None:
    declared = schema_after("select", {"columns": ["carrier", "flight", "year"]})
    assert declared.primary_key == ("year", "flight", "carrier")


def test_select_unknown_column_names_it_and_suggests() -> None:
    error = error_of(lambda: schema_after("select", {"columns": ["year", "dep_dely"]}))
    assert error.message == "unknown column 'dep_dely', did you mean 'dep_delay'?"
    assert error.field == "config.columns.1"
    # A batch that lost the column (drift after validation) fails the same way.
    narrow = FLIGHTS.drop_columns(["origin"])
    error = error_of(lambda: run("select", {"columns": ["origin"]}, table=narrow))
    assert (error.message, error.field) == ("unknown column 'origin'", "config.columns.0")


# --- rename --------------------------------------------------------------------------------------------


def test_rename_renames_and_carries_key_and_cursor() -> None:
    config = {"columns": {"dep_delay": "departure_delay", "year": "yr"}}
    out = run("rename", config)
    assert out.batch.table.column_names == ["yr", "flight", "carrier", "departure_delay", "origin"]
    assert out.batch.table.column("departure_delay").to_pylist() == [2.0, None, 101.0, 61.0]
    declared = schema_after("rename", config)
    assert declared.field_names == ["yr", "flight", "carrier", "departure_delay", "origin"]
    assert declared.field("yr") == Field("yr", FieldType.INTEGER, nullable=False)
    assert declared.primary_key == ("yr", "flight", "carrier")
    assert declared.cursor_field == "yr"
    assert declared.cursor_candidates == ("yr", "flight", "departure_delay")
    assert_declared_schema_matches(out, declared)


def test_rename_can_swap_two_names() -> None:
    out = run("rename", {"columns": {"carrier": "origin", "origin": "carrier"}})
    assert out.batch.table.column_names == ["year", "flight", "origin", "dep_delay", "carrier"]
    assert out.batch.table.column("origin").to_pylist() == ["UA", "AA", "UA", "B6"]


@pytest.mark.parametrize(
    ("columns", "field", "message"),
    [
        ({"carier": "airline"}, "config.columns.carier", "unknown column 'carier', did you mean 'carrier'?"),
        (
            {"origin": "carrier"},
            "config.columns.origin",
            "renaming 'origin' to 'carrier' collides with the column 'carrier'",
        ),
        (
            {"origin": "code", "carrier": "code"},
            "config.columns.origin",
            "renaming 'origin' to 'code' collides with 'carrier', also renamed to 'code'",
        ),
    ],
)
def test_rename_errors_name_the_column(columns: dict[str, str], field: str, message: str) -> None:
    error = error_of(lambda: schema_after("rename", {"columns": columns}))
    assert (error.message, error.field) == (message, field)
    error = error_of(lambda: run("rename", {"columns": columns}))
    assert (error.message, error.field) == (message, field)


# --- filter --------------------------------------------------------------------------------------------


def test_filter_keeps_rows_where_the_condition_is_true_and_drops_nulls() -> None:
    config = {"expression": "dep_delay > 60 and carrier in ('UA', 'AA')"}
    out = run("filter", config)
    assert out.batch.table.column("flight").to_pylist() == [1141]
    assert out.batch.table.schema == FLIGHTS.schema
    assert schema_after("filter", config) == SCHEMA
    # A null condition drops the row, and so does its negation: null is not true.
    assert run("filter", {"expression": "dep_delay > 10"}).batch.table.column("flight").to_pylist() == [
        1141,
        725,
    ]
    assert run("filter", {"expression": "not dep_delay > 10"}).batch.table.column("flight").to_pylist() == [
        1545
    ]
    assert run("filter", {"expression": "origin is null or dep_delay is null"}).batch.table.column(
        "flight"
    ).to_pylist() == [1714, 725]


def test_filter_of_an_empty_batch_is_empty() -> None:
    out = run("filter", {"expression": "dep_delay > 60"}, table=FLIGHTS.slice(0, 0))
    assert out.batch.num_rows == 0
    assert out.batch.table.schema == FLIGHTS.schema


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("dep_dely > 60", "unknown column 'dep_dely' at 1:1, did you mean 'dep_delay'?"),
        ("carrier > 5", "cannot compare string column 'carrier' with integer 5 at 1:9"),
        (
            "dep_delay + 1",
            "the filter expression must be a condition (true or false), but it gives number values",
        ),
    ],
)
def test_filter_schema_errors_name_the_expression(expression: str, message: str) -> None:
    error = error_of(lambda: schema_after("filter", {"expression": expression}))
    assert (error.message, error.field) == (message, "config.expression")


def test_filter_runtime_failure_is_a_step_error() -> None:
    error = error_of(lambda: run("filter", {"expression": "flight * 9223372036854775807 > 0"}))
    assert error.field == "config.expression"
    assert "overflow" in error.message


# --- cast ----------------------------------------------------------------------------------------------

MIXED = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "amount": [" 12", "abc", "", None, "+7", "9999999999999999999"],
        "day": ["2013-01-01", "2013-02-30", "2013-01-03", "01/04/2013", None, "2013-01-06"],
    }
)
MIXED_SCHEMA = StreamSchema.from_arrow("mixed", MIXED.schema, primary_key=("id",))
MIXED_CONFIG = {"columns": {"amount": "integer", "day": "date"}}


def test_cast_null_policy_nulls_the_bad_values() -> None:
    out = run("cast", {**MIXED_CONFIG, "on_error": "null"}, MIXED, MIXED_SCHEMA)
    table = out.batch.table
    assert table.column("id").to_pylist() == [1, 2, 3, 4, 5, 6]
    assert table.column("amount").to_pylist() == [12, None, None, None, 7, None]
    assert table.column("day").to_pylist() == [
        dt.date(2013, 1, 1),
        None,
        dt.date(2013, 1, 3),
        None,
        None,
        dt.date(2013, 1, 6),
    ]
    assert out.rejected == []
    declared = schema_after("cast", {**MIXED_CONFIG, "on_error": "null"}, MIXED_SCHEMA)
    assert [(f.name, f.type, f.nullable) for f in declared.fields] == [
        ("id", FieldType.INTEGER, True),
        ("amount", FieldType.INTEGER, True),
        ("day", FieldType.DATE, True),
    ]
    assert declared.primary_key == ("id",)
    assert declared.cursor_candidates == ("id", "amount", "day")
    assert_declared_schema_matches(out, declared)


def test_cast_reject_policy_quarantines_bad_rows_with_reasons() -> None:
    out = run("cast", {**MIXED_CONFIG, "on_error": "reject"}, MIXED, MIXED_SCHEMA)
    table = out.batch.table
    assert table.column("id").to_pylist() == [1, 3, 5]
    assert table.column("amount").to_pylist() == [12, None, 7]  # a blank is missing, not bad
    assert table.column("day").to_pylist() == [dt.date(2013, 1, 1), dt.date(2013, 1, 3), None]
    assert [(r.reason, r.raw, r.source) for r in out.rejected] == [
        (
            "cannot cast column 'amount' value 'abc' to integer; "
            "cannot cast column 'day' value '2013-02-30' to date",
            {"id": 2, "amount": "abc", "day": "2013-02-30"},
            "cast",
        ),
        (
            "cannot cast column 'day' value '01/04/2013' to date",
            {"id": 4, "amount": None, "day": "01/04/2013"},
            "cast",
        ),
        (
            "cannot cast column 'amount' value '9999999999999999999' to integer",
            {"id": 6, "amount": "9999999999999999999", "day": "2013-01-06"},
            "cast",
        ),
    ]
    assert table.num_rows + len(out.rejected) == MIXED.num_rows


def test_cast_fail_policy_names_the_column_and_the_first_bad_row() -> None:
    error = error_of(lambda: run("cast", MIXED_CONFIG, MIXED, MIXED_SCHEMA))
    assert error.message == "cannot cast column 'amount' value 'abc' to integer (row index 1 of the batch)"
    assert error.field == "config.columns.amount"
    # Clean values pass under the default policy.
    clean = MIXED.filter(pa.array([True, False, True, False, True, False]))
    out = run("cast", MIXED_CONFIG, clean, MIXED_SCHEMA)
    assert out.batch.table.column("amount").to_pylist() == [12, None, 7]


def test_cast_text_to_each_type() -> None:
    table = pa.table(
        {
            "n": ["1.5", "-2e3", ".5", "x", "1,5"],
            "b": ["true", "No", " Y ", "1", "maybe"],
            "ts": [
                "2013-01-01 05:00",
                "2013-01-01T05:00:00+01:00",
                "2013-01-01",
                "2013-01-01T05:00:00Z",
                "tomorrow",
            ],
            "d": ["2013-01-01", "2013-1-1", "2013-01-01 00:00", "", "2013-12-31"],
        }
    )
    schema = StreamSchema.from_arrow("t", table.schema)
    config = {"columns": {"n": "number", "b": "boolean", "ts": "datetime", "d": "date"}, "on_error": "null"}
    out = run("cast", config, table, schema).batch.table
    assert out.column("n").to_pylist() == [1.5, -2000.0, 0.5, None, None]
    assert out.column("b").to_pylist() == [True, False, True, True, None]
    assert out.column("ts").to_pylist() == [
        dt.datetime(2013, 1, 1, 5, tzinfo=UTC),
        dt.datetime(2013, 1, 1, 4, tzinfo=UTC),
        dt.datetime(2013, 1, 1, tzinfo=UTC),
        dt.datetime(2013, 1, 1, 5, tzinfo=UTC),
        None,
    ]
    assert out.column("d").to_pylist() == [dt.date(2013, 1, 1), None, None, None, dt.date(2013, 12, 31)]


def test_cast_text_edges_of_ranges_and_calendars() -> None:
    table = pa.table(
        {
            "i": [
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775808",
                "-9223372036854775809",
                "00012",
                "0x1F",
            ],
            "d": ["2012-02-29", "2013-02-29", "2013-04-31", "2013-12-31", "2013-00-10", "0000-01-01"],
            "t": [
                "2012-02-29 23:59:59",
                "2013-02-29 05:00",
                "2013-01-01 24:00",
                "2013-01-01T05:00+14:00",
                "2013-04-31T00:00Z",
                "2013-01-01 05:00:00.1234567",
            ],
        }
    )
    schema = StreamSchema.from_arrow("t", table.schema)
    config = {"columns": {"i": "integer", "d": "date", "t": "datetime"}, "on_error": "null"}
    out = run("cast", config, table, schema).batch.table
    assert out.column("i").to_pylist() == [2**63 - 1, None, -(2**63), None, 12, None]
    assert out.column("d").to_pylist() == [
        dt.date(2012, 2, 29),
        None,
        None,
        dt.date(2013, 12, 31),
        None,
        None,
    ]
    assert out.column("t").to_pylist() == [
        dt.datetime(2012, 2, 29, 23, 59, 59, tzinfo=UTC),
        None,
        None,
        dt.datetime(2012, 12, 31, 15, tzinfo=UTC),
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("value", "target"),
    [("9999999999999999999", "integer"), ("2013-02-30", "date"), ("2013-02-30T05:00Z", "datetime")],
)
def test_cast_of_a_batch_of_nothing_but_subtly_bad_values_stays_fast(value: str, target: str) -> None:
    table = pa.table({"v": [value] * 50_000})
    schema = StreamSchema.from_arrow("t", table.schema)
    started = time.perf_counter()
    out = run("cast", {"columns": {"v": target}, "on_error": "null"}, table, schema)
    assert out.batch.table.column("v").null_count == 50_000
    assert time.perf_counter() - started < 2.0


def test_cast_between_non_text_types() -> None:
    table = pa.table(
        {
            "f": [1.0, 2.5, None, -3.0, float("nan")],
            "i": pa.array([1, 0, None, 2**60, -1], pa.int64()),
            "when": pa.array(
                [dt.datetime(2013, 1, 1, 23, 59, tzinfo=UTC)] * 4 + [None], pa.timestamp("us", tz="UTC")
            ),
            "day": pa.array([dt.date(2013, 1, 2)] * 5, pa.date32()),
            "flag": pa.array([True, False, None, True, False]),
        }
    )
    schema = StreamSchema.from_arrow("t", table.schema)
    config = {
        "columns": {"f": "integer", "i": "number", "when": "date", "day": "datetime", "flag": "string"},
        "on_error": "reject",
    }
    out = run("cast", config, table, schema)
    assert [r.reason for r in out.rejected] == [
        "cannot cast column 'f' value 2.5 to integer",
        "cannot cast column 'f' value nan to integer",
    ]
    assert out.rejected[1].raw["f"] == "nan"  # JSON has no NaN
    result = out.batch.table
    assert result.column("f").to_pylist() == [1, None, -3]
    assert result.column("i").to_pylist() == [1.0, None, float(2**60)]
    assert result.column("when").to_pylist() == [dt.date(2013, 1, 1)] * 3
    assert result.column("day").to_pylist() == [dt.datetime(2013, 1, 2, tzinfo=UTC)] * 3
    assert result.column("flag").to_pylist() == ["true", None, "true"]


def test_cast_of_dictionary_encoded_text() -> None:
    table = pa.table({"code": pa.array(["1", "2", "x", "1"]).dictionary_encode()})
    schema = StreamSchema.from_arrow("t", table.schema)
    out = run("cast", {"columns": {"code": "integer"}, "on_error": "reject"}, table, schema)
    assert out.batch.table.column("code").to_pylist() == [1, 2, 1]
    assert [r.raw for r in out.rejected] == [{"code": "x"}]


def test_cast_of_an_empty_batch() -> None:
    out = run("cast", MIXED_CONFIG, MIXED.slice(0, 0), MIXED_SCHEMA)
    assert out.batch.num_rows == 0
    assert out.batch.table.schema.field("amount").type == pa.int64()


@pytest.mark.parametrize(
    ("columns", "field", "message"),
    [
        ({"amout": "integer"}, "config.columns.amout", "unknown column 'amout', did you mean 'amount'?"),
        ({"id": "date"}, "config.columns.id", "cannot cast column 'id' from integer to date"),
        ({"day": "json"}, "config.columns.day", "cannot cast column 'day' from string to json"),
    ],
)
def test_cast_schema_errors_name_the_column(columns: dict[str, str], field: str, message: str) -> None:
    error = error_of(lambda: schema_after("cast", {"columns": columns}, MIXED_SCHEMA))
    assert (error.message, error.field) == (message, field)
    error = error_of(lambda: run("cast", {"columns": columns}, MIXED, MIXED_SCHEMA))
    assert (error.message, error.field) == (message, field)


def test_cast_finds_bad_rows_in_a_full_batch_without_a_row_loop() -> None:
    size = 50_000
    numbers = np.arange(size).astype(str).astype(object)
    bad_rows = [7, 1234, 31_000, 49_999]
    for row in bad_rows:
        numbers[row] = f"bad{row}"
    numbers[20_000] = "9" * 19  # passes the text pattern, overflows in Arrow: found by halving
    table = pa.table({"n": pa.array(numbers, pa.string())})
    schema = StreamSchema.from_arrow("t", table.schema)
    started = time.perf_counter()
    out = run("cast", {"columns": {"n": "integer"}, "on_error": "reject"}, table, schema)
    elapsed = time.perf_counter() - started
    assert [r.raw["n"] for r in out.rejected] == ["bad7", "bad1234", "9" * 19, "bad31000", "bad49999"]
    assert out.batch.num_rows == size - 5
    assert out.batch.table.column("n")[:3].to_pylist() == [0, 1, 2]
    assert elapsed < 1.0, elapsed


def test_cast_steps_are_the_registered_classes() -> None:
    assert type(get_step_type("cast")) is CastStep
    assert type(get_step_type("rename")) is RenameStep
    assert type(get_step_type("select")) is SelectStep


def test_steps_module_is_the_framework_and_the_app_registers_the_library() -> None:
    # The built-in steps live in library/ and are registered when the app is ready, not by steps.py.
    defined_in_steps = [
        name
        for name, value in vars(steps).items()
        if isinstance(value, type) and issubclass(value, StepType) and value.__module__ == steps.__name__
    ]
    assert defined_in_steps == ["StepType"]
    ours = {cls.__module__ for cls in all_step_types() if cls.__module__.startswith("apps.transformations.")}
    assert all(m.startswith("apps.transformations.library.") for m in ours), ours
    assert {"select", "rename", "filter", "cast"} <= {cls.slug for cls in all_step_types()}
