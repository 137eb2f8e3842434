"""The SQL step: read-only SELECT per batch, sandboxed, time-limited; schema from DuckDB's description."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.transformations.steps import StepBudgetExceeded, StepError, get_step_type

from ._helpers import apply, config_error, run_stream

T = pa.table({"carrier": ["UA", "AA", "UA"], "delay": pa.array([10, None, 30], pa.int64())})
S = StreamSchema.from_arrow("t", T.schema)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "DELETE FROM input",
            "DELETE is not allowed in the sql step: it runs one SELECT over the batch and changes nothing",
        ),
        ("SELECT 1; SELECT 2", "write exactly one SELECT statement (found 2)"),
        (
            "CREATE TABLE x AS SELECT 1",
            "CREATE is not allowed in the sql step: it runs one SELECT over the batch and changes nothing",
        ),
        ("SET threads = 64", "SET is not allowed in the sql step: its settings are fixed"),
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


# What the server is (its directories, settings, extensions, environment) is not the batch's business:
# each of these is refused, before it runs, with its own reason and without a path in the message.
REFUSED = [
    (
        "SELECT * FROM duckdb_settings()",
        "duckdb_settings() is not allowed in the sql step: it describes the server, not the batch",
    ),
    (
        "SELECT current_setting('allowed_directories') AS dirs",
        "current_setting() is not allowed in the sql step: the engine's settings are not shown",
    ),
    (
        "INSTALL httpfs",
        "INSTALL is not allowed in the sql step: it runs one SELECT over the batch and cannot add extensions",
    ),
    (
        "LOAD httpfs",
        "LOAD is not allowed in the sql step: it runs one SELECT over the batch and cannot add extensions",
    ),
    (
        "ATTACH '/tmp/x.db' AS x",
        "ATTACH is not allowed in the sql step: it runs one SELECT over the batch and cannot open other "
        "databases",
    ),
    (
        "COPY input TO '/tmp/x.csv'",
        "COPY is not allowed in the sql step: it runs one SELECT over the batch and cannot read or write "
        "files",
    ),
    (
        "COPY (SELECT * FROM input) TO '/tmp/x.csv'",
        "COPY is not allowed in the sql step: it runs one SELECT over the batch and cannot read or write "
        "files",
    ),
    (
        "SELECT * FROM read_csv('/etc/passwd')",
        "read_csv() is not allowed in the sql step: it reads files, and the step reads only its inputs",
    ),
    (
        "SELECT getenv('HOME') AS home",
        "getenv() is not allowed in the sql step: it reads the server's environment",
    ),
    (
        "SELECT * FROM duckdb_extensions()",
        "duckdb_extensions() is not allowed in the sql step: it describes the server, not the batch",
    ),
    (
        "SELECT * FROM duckdb_secrets()",
        "duckdb_secrets() is not allowed in the sql step: it describes the server, not the batch",
    ),
    (
        "SELECT * FROM pragma_database_size()",
        "pragma_database_size() is not allowed in the sql step: it describes the server, not the batch",
    ),
    ("PRAGMA version", "PRAGMA is not allowed in the sql step: its settings are fixed"),
    ("CALL duckdb_settings()", "CALL is not allowed in the sql step: it runs one SELECT over the batch"),
    (
        "SELECT * FROM query('SELECT * FROM duckdb_settings()')",
        "query() is not allowed in the sql step: it runs SQL text that the step cannot check",
    ),
    (
        "SELECT * FROM read_text('/etc/hostname')",
        "read_text() is not allowed in the sql step: it reads files, and the step reads only its inputs",
    ),
    (
        "SELECT * FROM glob('/*')",
        "glob() is not allowed in the sql step: it reads files, and the step reads only its inputs",
    ),
    (
        "SELECT (SELECT value FROM duckdb_settings() LIMIT 1) AS hidden, carrier FROM input",
        "duckdb_settings() is not allowed in the sql step: it describes the server, not the batch",
    ),
    (
        "DESCRIBE input",
        "DESCRIBE, SHOW and SUMMARIZE are not allowed in the sql step: it runs one SELECT over the batch",
    ),
    (
        "-- a comment first\nINSTALL httpfs",
        "INSTALL is not allowed in the sql step: it runs one SELECT over the batch and cannot add extensions",
    ),
]


@pytest.mark.parametrize(("query", "message"), REFUSED)
def test_what_describes_the_server_is_refused_with_its_own_reason(query: str, message: str) -> None:
    error = config_error("sql", {"query": query})
    assert (error.field, error.message) == ("config.query", f"config.query: {message}")
    assert "/work" not in error.message and "/root" not in error.message and ".duckdb" not in error.message


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT * FROM '/etc/passwd'", "'/etc/passwd' is a file: the sql step reads only its inputs"),
        (
            "SELECT * FROM pg_catalog.pg_settings",
            "'pg_settings' is not a table of this step: the query can read input and what its own WITH "
            "defines",
        ),
        (
            "SELECT * FROM duckdb_settings",
            "'duckdb_settings' is not a table of this step: the query can read input and what its own WITH "
            "defines",
        ),
    ],
)
def test_tables_other_than_the_inputs_are_refused(query: str, message: str) -> None:
    with pytest.raises(StepError) as caught:
        get_step_type("sql").output_schema({"query": query}, [S])
    assert (caught.value.field, caught.value.message) == ("config.query", message)


def test_a_select_over_the_batch_still_runs() -> None:
    config = {
        "query": "WITH up AS (SELECT upper(carrier) AS c, delay FROM input) "
        "SELECT c, sum(delay) AS total, count(*) AS n, max(g) AS g FROM up, range(2) AS r(g) "
        "GROUP BY c ORDER BY c"
    }
    rows = apply("sql", config, T).batch.table.to_pylist()
    assert rows == [
        {"c": "AA", "total": None, "n": 2, "g": 1},
        {"c": "UA", "total": 80.0, "n": 4, "g": 1},
    ]


def test_the_sandbox_still_refuses_files_if_a_name_gets_through() -> None:
    from apps.transformations.library._util import sandbox

    con = sandbox()
    try:
        for query in ("SELECT * FROM read_csv('/etc/passwd')", "SET enable_external_access = true"):
            with pytest.raises(Exception, match=r"disabled by configuration|locked"):
                con.sql(query).fetchall()
    finally:
        con.close()


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


def test_a_sql_result_past_the_budget_stops_while_it_is_read(settings: Any) -> None:
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 1024 * 1024
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 1
    table = pa.table({"v": list(range(100))})
    started = time.monotonic()
    with pytest.raises(StepBudgetExceeded) as caught:
        apply("sql", {"query": "SELECT a.v, b.range AS w FROM input a, range(100000000) b"}, table)
    assert time.monotonic() - started < 10
    assert caught.value.field == "config.query"
    assert caught.value.message.startswith("the query's result passed 1 MiB for a batch of ")
