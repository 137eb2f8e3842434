"""PostgreSQL as a source: discovery of tables, views and custom queries; full and incremental reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import psycopg
import pytest

from aggregator.dataplane import Batch, FieldType, RejectedRows, StateCheckpoint, StreamSchema
from apps.connectors.base import ConnectorError
from apps.connectors.plugins.postgres import PostgresDestination, PostgresSource

connector = PostgresSource()


@pytest.fixture
def source_table(scratch_conn: psycopg.Connection[Any], pg_schema: str) -> str:
    scratch_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    scratch_conn.execute(
        f'CREATE TABLE "{pg_schema}".orders (id int PRIMARY KEY, customer text, amount numeric, '
        "paid boolean, day date, at timestamptz, doc jsonb, ref uuid)"
    )
    scratch_conn.execute(
        f'INSERT INTO "{pg_schema}".orders VALUES '
        "(1, 'ann', 10.5, true, '2024-01-01', '2024-01-01 10:00+02', '{\"a\": 1}', "
        "'6f9619ff-8b86-d011-b42d-00c04fc964ff'), "
        "(2, '', NULL, false, NULL, NULL, NULL, NULL), "
        "(3, 'line\nbreak, \"quoted\"', 3, NULL, '2024-01-03', '2024-01-03 00:00+00', NULL, NULL)"
    )
    scratch_conn.execute(
        f'CREATE VIEW "{pg_schema}".paid_orders AS SELECT id, amount FROM "{pg_schema}".orders WHERE paid'
    )
    return f"{pg_schema}.orders"


def _config(pg_config: dict[str, Any], **extra: Any) -> Any:
    return connector.validate_config({**pg_config, **extra})


def _stream(streams: list[StreamSchema], name: str) -> StreamSchema:
    return next(s for s in streams if s.name == name)


def _rows(items: list[Any]) -> list[dict[str, Any]]:
    return [r for i in items if isinstance(i, Batch) for r in i.table.to_pylist()]


def test_discover_lists_tables_views_and_queries(
    pg_config: dict[str, Any], source_table: str, pg_schema: str
) -> None:
    config = _config(
        pg_config,
        queries=[
            {"name": "big_orders", "sql": f'SELECT id, amount * 2 AS doubled FROM "{pg_schema}".orders;'}
        ],
    )
    streams = {s.name: s for s in connector.discover(config)}

    assert set(streams) == {source_table, f"{pg_schema}.paid_orders", "big_orders"}
    orders = streams[source_table]
    assert [(f.name, f.type, f.nullable) for f in orders.fields] == [
        ("id", FieldType.INTEGER, False),
        ("customer", FieldType.STRING, True),
        ("amount", FieldType.NUMBER, True),
        ("paid", FieldType.BOOLEAN, True),
        ("day", FieldType.DATE, True),
        ("at", FieldType.DATETIME, True),
        ("doc", FieldType.JSON, True),
        ("ref", FieldType.STRING, True),
    ]
    assert orders.primary_key == ("id",)
    assert orders.cursor_candidates == ("id", "amount", "day", "at")
    assert [(f.name, f.type) for f in streams["big_orders"].fields] == [
        ("id", FieldType.INTEGER),
        ("doubled", FieldType.NUMBER),
    ]


def test_materialized_views_are_streams_read_like_tables(
    pg_config: dict[str, Any], source_table: str, pg_schema: str, scratch_conn: psycopg.Connection[Any]
) -> None:
    scratch_conn.execute(
        f'CREATE MATERIALIZED VIEW "{pg_schema}".daily AS SELECT day, count(*)::int AS orders, '
        f'sum(amount) AS total, max(at) AS last_at FROM "{pg_schema}".orders GROUP BY day'
    )
    config = _config(pg_config)
    streams = {s.name: s for s in connector.discover(config)}
    daily = streams[f"{pg_schema}.daily"]
    assert [(f.name, f.type) for f in daily.fields] == [
        ("day", FieldType.DATE),
        ("orders", FieldType.INTEGER),
        ("total", FieldType.NUMBER),
        ("last_at", FieldType.DATETIME),
    ]
    assert set(streams) == {source_table, f"{pg_schema}.paid_orders", f"{pg_schema}.daily"}

    rows = sorted(_rows(list(connector.read(config, daily, None))), key=lambda r: str(r["day"]))
    assert [(r["day"], r["orders"], r["total"]) for r in rows] == [
        (dt.date(2024, 1, 1), 1, 10.5),
        (dt.date(2024, 1, 3), 1, 3),
        (None, 1, None),
    ]
    # Incremental on a materialized view's column, as on a table's.
    incremental = dataclasses.replace(daily, cursor_field="day")
    items = list(connector.read(config, incremental, {"cursor": "2024-01-01"}))
    assert [r["day"] for r in _rows(items)] == [dt.date(2024, 1, 3)]
    assert [i.state for i in items if isinstance(i, StateCheckpoint)] == [{"cursor": "2024-01-03"}]


def test_full_read_in_chunks_with_every_type(pg_config: dict[str, Any], source_table: str) -> None:
    config = _config(pg_config, chunk_size=2)
    stream = _stream(connector.discover(config), source_table)
    items = list(connector.read(config, stream, None))

    assert [i.num_rows for i in items if isinstance(i, Batch)] == [2, 1]
    assert _rows(items) == [
        {
            "id": 1,
            "customer": "ann",
            "amount": 10.5,
            "paid": True,
            "day": dt.date(2024, 1, 1),
            "at": dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC),
            "doc": '{"a": 1}',
            "ref": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        },
        {
            "id": 2,
            "customer": "",
            "amount": None,
            "paid": False,
            "day": None,
            "at": None,
            "doc": None,
            "ref": None,
        },
        {
            "id": 3,
            "customer": 'line\nbreak, "quoted"',
            "amount": 3.0,
            "paid": None,
            "day": dt.date(2024, 1, 3),
            "at": dt.datetime(2024, 1, 3, tzinfo=dt.UTC),
            "doc": None,
            "ref": None,
        },
    ]
    assert not [i for i in items if isinstance(i, StateCheckpoint)]  # full refresh: no cursor, no state


def test_incremental_read_resumes_after_the_state(
    pg_config: dict[str, Any], source_table: str, scratch_conn: Any, pg_schema: str
) -> None:
    config = _config(pg_config)
    stream = dataclasses.replace(_stream(connector.discover(config), source_table), cursor_field="id")
    first = list(connector.read(config, stream, None))
    state = first[-1]
    assert state == StateCheckpoint(stream=source_table, state={"cursor": 3})

    scratch_conn.execute(f"INSERT INTO \"{pg_schema}\".orders (id, customer) VALUES (4, 'dan'), (5, 'eve')")
    second = list(connector.read(config, stream, state.state))

    assert [r["id"] for r in _rows(second)] == [4, 5]
    assert second[-1] == StateCheckpoint(stream=source_table, state={"cursor": 5})
    third = list(connector.read(config, stream, second[-1].state))
    # Nothing new: no checkpoint, the state stays at 5 (the SDK cursor policy, as every SQL source).
    assert third == []


def test_values_that_do_not_fit_are_rejected_with_their_row(
    pg_config: dict[str, Any], source_table: str, scratch_conn: Any, pg_schema: str
) -> None:
    scratch_conn.execute(f"INSERT INTO \"{pg_schema}\".orders (id, day) VALUES (9, 'infinity')")
    config = _config(pg_config)
    stream = _stream(connector.discover(config), source_table)
    items = list(connector.read(config, stream, None))
    assert [r["id"] for r in _rows(items)] == [1, 2, 3]
    [rejects] = [i for i in items if isinstance(i, RejectedRows)]
    assert [(r.row, r.reason) for r in rejects.rows] == [(4, "day: 'infinity' is not a valid date")]


def test_check_names_a_missing_schema(pg_config: dict[str, Any], source_table: str) -> None:
    assert connector.check(_config(pg_config)).ok
    result = connector.check(_config(pg_config, source_schemas=["nope"]))
    assert (result.ok, result.message) == (False, "schema: nope does not exist or is not readable.")


def test_custom_queries_are_single_read_only_selects(
    pg_config: dict[str, Any], source_table: str, pg_schema: str
) -> None:
    for bad in ("DELETE FROM x", "SELECT 1; DROP TABLE x", "   "):
        with pytest.raises(ConnectorError) as excinfo:
            _config(pg_config, queries=[{"name": "q", "sql": bad}])
        assert excinfo.value.field.startswith("queries.0.sql")

    # A SELECT that tries to write is stopped by the READ ONLY transaction.
    config = _config(pg_config, queries=[{"name": "sneaky", "sql": "SELECT nextval('s') AS n"}])
    with psycopg.connect(**{k: v for k, v in _conn_kwargs(pg_config).items()}, autocommit=True) as conn:
        conn.execute(f'CREATE SEQUENCE "{pg_schema}".s')
        conn.execute(f'ALTER DATABASE "{pg_config["database"]}" SET search_path = "{pg_schema}", public')
    try:
        stream = _stream(connector.discover(config), "sneaky")
        with pytest.raises(ConnectorError, match="read-only transaction"):
            list(connector.read(config, stream, None))
    finally:
        with psycopg.connect(**_conn_kwargs(pg_config), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{pg_config["database"]}" RESET search_path')


def _conn_kwargs(pg_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": pg_config["host"],
        "port": pg_config["port"],
        "user": pg_config["user"],
        "dbname": pg_config["database"],
        "password": pg_config.get("password"),
    }


def test_round_trip_destination_then_source(pg_config: dict[str, Any], pg_schema: str) -> None:
    from aggregator.dataplane import Field, WriteMode

    schema = StreamSchema(
        name="items", fields=(Field("id", FieldType.INTEGER), Field("label")), primary_key=("id",)
    )
    destination = PostgresDestination()
    rows = [{"id": i, "label": f"item {i}"} for i in range(1000)]
    destination.write(
        destination.validate_config(pg_config),
        schema,
        [Batch.from_records(rows, schema)],
        WriteMode.MERGE,
        ["id"],
        "run-rt",
    )
    config = _config(pg_config)

    stream = _stream(connector.discover(config), f"{pg_schema}.items")
    assert stream.field_names == ["id", "label", "_ag_run_id", "_ag_loaded_at"]
    read = _rows(list(connector.read(config, stream, None)))
    assert [(r["id"], r["label"], r["_ag_run_id"]) for r in read] == [
        (i, f"item {i}", "run-rt") for i in range(1000)
    ]
