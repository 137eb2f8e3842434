"""The SQL step: read-only SELECT per batch, sandboxed, time-limited; schema from DuckDB's description."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.transformations.steps import StepError, get_step_type

from ._helpers import apply, config_error, run_stream

T = pa.table({"carrier": ["UA", "AA", "UA"], "delay": pa.array([10, None, 30], pa.int64())})
S = StreamSchema.from_arrow("t", T.schema)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM input", "only a SELECT is allowed, not DELETE"),
        ("SELECT 1; SELECT 2", "write exactly one SELECT statement (found 2)"),
        ("CREATE TABLE x AS SELECT 1", "only a SELECT is allowed, not CREATE"),
        ("COPY input TO '/tmp/x.csv'", "only a SELECT is allowed, not COPY"),
        ("ATTACH '/tmp/x.db'", "only a SELECT is allowed, not ATTACH"),
        ("INSTALL httpfs", "only a SELECT is allowed"),
        ("SET threads = 64", "only a SELECT is allowed"),
        ("SELEC 1", "Parser Error"),
    ],
)
def test_only_one_select_is_accepted(query: str, message: str) -> None:
    error = config_error("sql", {"query": query})
    assert error.field == "config.query"
    assert message in error.message


def test_schema_comes_from_the_query_and_values_are_converted() -> None:
    config = {
        "query": "WITH x AS (SELECT * FROM input) SELECT carrier, delay / 2 AS half, delay::INTEGER AS d32, "
        "[delay, 1] AS pair, {'c': carrier} AS obj, DATE '2013-01-01' AS day, "
        "TIMESTAMP '2013-01-01 05:00' AS ts, 1.25::DECIMAL(5,2) AS dec FROM x WHERE carrier = 'UA'"
    }
    declared = get_step_type("sql").output_schema(config, [S])
    assert [(f.name, f.type) for f in declared.fields] == [
        ("carrier", FieldType.STRING),
        ("half", FieldType.NUMBER),
        ("d32", FieldType.INTEGER),
        ("pair", FieldType.JSON),
        ("obj", FieldType.JSON),
        ("day", FieldType.DATE),
        ("ts", FieldType.DATETIME),
        ("dec", FieldType.NUMBER),
    ]
    rows = apply("sql", config, T).batch.table.to_pylist()
    assert [(r["carrier"], r["half"], r["pair"], r["obj"], r["dec"]) for r in rows] == [
        ("UA", 5.0, "[10,1]", '{"c":"UA"}', 1.25),
        ("UA", 15.0, "[30,1]", '{"c":"UA"}', 1.25),
    ]
    assert rows[0]["ts"].isoformat() == "2013-01-01T05:00:00+00:00"


def test_files_network_and_settings_are_out_of_reach() -> None:
    for query in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ):
        with pytest.raises(StepError) as caught:
            apply("sql", {"query": query}, T)
        assert caught.value.field == "config.query"
        assert "disabled by configuration" in caught.value.message or "Permission" in caught.value.message


def test_unknown_table_and_duplicate_columns() -> None:
    with pytest.raises(StepError) as caught:
        get_step_type("sql").output_schema({"query": "SELECT * FROM flights"}, [S])
    assert "flights" in caught.value.message
    with pytest.raises(StepError) as caught:
        get_step_type("sql").output_schema({"query": "SELECT carrier, carrier FROM input"}, [S])
    assert "two columns named 'carrier'" in caught.value.message


def test_a_slow_query_is_interrupted() -> None:
    config = {"query": "SELECT count(*) AS n FROM range(100000000000) a", "timeout_s": 0.2}
    with pytest.raises(StepError) as caught:
        apply("sql", config, T)
    assert caught.value.field == "config.timeout_s"
    assert caught.value.message == "the query ran longer than its time limit of 0.2 s"


def test_other_inputs_are_read_first_and_named_by_node_id() -> None:
    names = pa.table({"code": ["UA", "AA"], "name": ["United", "American"]})
    inputs = {"flights": S, "airline-codes": StreamSchema.from_arrow("codes", names.schema)}
    config = {
        "query": 'SELECT i.carrier, c.name FROM input i LEFT JOIN "airline-codes" c ON c.code = i.carrier '
        "ORDER BY i.delay NULLS LAST"
    }
    step = get_step_type("sql")
    assert step.input_order(config, list(inputs)) == ["airline-codes"]
    assert step.output_schema_for(config, inputs).fields == (
        Field("carrier", FieldType.STRING),
        Field("name", FieldType.STRING),
    )
    rows = run_stream("sql", config, [("airline-codes", names), ("flights", T)], inputs)
    assert rows == [
        {"carrier": "UA", "name": "United"},
        {"carrier": "UA", "name": "United"},
        {"carrier": "AA", "name": "American"},
    ]
    # per batch: an aggregate sees one batch at a time
    per_batch = run_stream(
        "sql",
        {"query": "SELECT count(*) AS n FROM input"},
        [("flights", T.slice(0, 2)), ("flights", T.slice(2))],
        {"flights": S},
    )
    assert per_batch == [{"n": 2}, {"n": 1}]
