"""DuckDB destination: check, the three write modes with their values, run columns, schema evolution, and
failed writes that leave the table as it was with no staging table behind."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, WriteMode
from apps.connectors.base import ConnectorError, run_check
from apps.connectors.plugins.duckdb_dest import DuckDbDestination
from tests.connectors.conftest import bound

UTC = dt.UTC
SCHEMA = StreamSchema(
    name="orders",
    fields=(
        Field("id", FieldType.INTEGER),
        Field("customer", FieldType.STRING),
        Field("amount", FieldType.NUMBER),
        Field("paid", FieldType.BOOLEAN),
        Field("day", FieldType.DATE),
        Field("at", FieldType.DATETIME),
        Field("meta", FieldType.JSON),
    ),
    primary_key=("id",),
)


@pytest.fixture
def dest() -> DuckDbDestination:
    return DuckDbDestination()


@pytest.fixture
def config(dest: DuckDbDestination, data_dir: Path) -> Any:
    return bound(dest, {"database": "wh/warehouse.duckdb", "schema": "analytics"})


def batch(rows: list[dict[str, Any]], schema: StreamSchema = SCHEMA) -> Batch:
    return Batch.from_records(rows, schema)


def order(i: int, customer: str, amount: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": i,
        "customer": customer,
        "amount": amount,
        "paid": i % 2 == 0,
        "day": dt.date(2024, 1, i),
        "at": dt.datetime(2024, 1, i, 12, tzinfo=UTC),
        "meta": f'{{"n": {i}}}',
        **extra,
    }


def query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(data_dir / "wh" / "warehouse.duckdb"), read_only=True)
    try:
        # Through Arrow: DuckDB's own Python conversion of TIMESTAMPTZ needs pytz, which is not installed.
        return [tuple(row.values()) for row in con.sql(sql).to_arrow_table().to_pylist()]
    finally:
        con.close()


def table_names(data_dir: Path) -> list[str]:
    return [
        r[0]
        for r in query(
            data_dir, "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1"
        )
    ]


def test_check_creates_the_database_file(dest: DuckDbDestination, config: Any, data_dir: Path) -> None:
    result = run_check(dest, config)
    assert result.ok, result.message
    assert result.message == f"DuckDB {duckdb.__version__}: wh/warehouse.duckdb is ready."
    assert (data_dir / "wh" / "warehouse.duckdb").is_file()


def test_paths_outside_the_data_directory_are_refused(
    dest: DuckDbDestination, data_dir: Path, tmp_path: Path
) -> None:
    for bad in ("../x.duckdb", "/tmp/x.duckdb", "a/../../x.duckdb"):
        with pytest.raises(ConnectorError) as exc:
            bound(dest, {"database": bad})
        assert exc.value.field == "database"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, data_dir / "link")
    config = bound(dest, {"database": "link/x.duckdb"})
    result = run_check(dest, config)
    assert not result.ok
    assert result.message == (
        "'link/x.duckdb' leads outside this workspace's data directory (the data directory's workspaces/7/)."
    )
    assert list(outside.iterdir()) == []


def test_append_creates_the_table_and_adds_run_columns(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    first = dest.write(
        config, SCHEMA, [batch([order(1, "ann", 9.5), order(2, "bob", 3.0)])], WriteMode.APPEND, None, "run-1"
    )
    assert (first.table, first.rows_written, first.batches) == ("analytics.orders", 2, 1)
    second = dest.write(
        config,
        SCHEMA,
        [batch([order(3, "cy", 1.25)]), batch([order(4, "di", 4.0)])],
        WriteMode.APPEND,
        None,
        "run-2",
    )
    assert (second.rows_written, second.batches) == (2, 2)
    rows = query(
        data_dir,
        'SELECT id, customer, amount, paid, day, "at", meta, _ag_run_id FROM analytics.orders ORDER BY id',
    )
    assert rows == [
        (
            1,
            "ann",
            9.5,
            False,
            dt.date(2024, 1, 1),
            dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
            '{"n": 1}',
            "run-1",
        ),
        (
            2,
            "bob",
            3.0,
            True,
            dt.date(2024, 1, 2),
            dt.datetime(2024, 1, 2, 12, tzinfo=UTC),
            '{"n": 2}',
            "run-1",
        ),
        (
            3,
            "cy",
            1.25,
            False,
            dt.date(2024, 1, 3),
            dt.datetime(2024, 1, 3, 12, tzinfo=UTC),
            '{"n": 3}',
            "run-2",
        ),
        (
            4,
            "di",
            4.0,
            True,
            dt.date(2024, 1, 4),
            dt.datetime(2024, 1, 4, 12, tzinfo=UTC),
            '{"n": 4}',
            "run-2",
        ),
    ]
    [(loaded_runs,)] = query(data_dir, "SELECT count(DISTINCT _ag_loaded_at) FROM analytics.orders")
    assert loaded_runs == 2
    [(column_type,)] = query(
        data_dir,
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'orders' AND column_name = 'meta'",
    )
    assert column_type == "JSON"


def test_overwrite_replaces_the_rows_in_one_swap(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    dest.write(
        config, SCHEMA, [batch([order(i, f"c{i}", i) for i in range(1, 6)])], WriteMode.APPEND, None, "r1"
    )
    result = dest.write(
        config,
        SCHEMA,
        [batch([order(7, "new", 70.0)]), batch([order(8, "newer", 80.0)])],
        WriteMode.OVERWRITE,
        None,
        "r2",
    )
    assert result.rows_written == 2
    assert query(data_dir, "SELECT id, customer, amount, _ag_run_id FROM analytics.orders ORDER BY id") == [
        (7, "new", 70.0, "r2"),
        (8, "newer", 80.0, "r2"),
    ]
    assert table_names(data_dir) == ["analytics.orders"]


def test_merge_upserts_on_the_primary_key(dest: DuckDbDestination, config: Any, data_dir: Path) -> None:
    dest.write(
        config, SCHEMA, [batch([order(1, "ann", 1.0), order(2, "bob", 2.0)])], WriteMode.MERGE, ["id"], "r1"
    )
    result = dest.write(
        config,
        SCHEMA,
        [batch([order(2, "bob-v2", 20.0), order(3, "cy", 3.0)]), batch([order(3, "cy-v2", 30.0)])],
        WriteMode.MERGE,
        ["id"],
        "r2",
    )
    assert result.rows_written == 3
    assert query(data_dir, "SELECT id, customer, amount, _ag_run_id FROM analytics.orders ORDER BY id") == [
        (1, "ann", 1.0, "r1"),
        (2, "bob-v2", 20.0, "r2"),
        (3, "cy-v2", 30.0, "r2"),  # the last row of a key within one write wins
    ]
    assert query(
        data_dir,
        "SELECT column_name FROM information_schema.key_column_usage WHERE table_name = 'orders'",
    ) == [("id",)]
    assert table_names(data_dir) == ["analytics.orders"]


def test_merge_into_a_table_made_by_append_and_on_a_composite_key(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    schema = StreamSchema(
        name="scores",
        fields=(
            Field("team", FieldType.STRING),
            Field("round", FieldType.INTEGER),
            Field("pts", FieldType.INTEGER),
        ),
    )
    rows = [
        {"team": "a", "round": 1, "pts": 3},
        {"team": "a", "round": 2, "pts": 1},
        {"team": None, "round": 1, "pts": 0},
    ]
    dest.write(config, schema, [batch(rows, schema)], WriteMode.APPEND, None, "r1")
    update = [
        {"team": "a", "round": 2, "pts": 5},
        {"team": None, "round": 1, "pts": 9},
        {"team": "b", "round": 1, "pts": 2},
    ]
    dest.write(config, schema, [batch(update, schema)], WriteMode.MERGE, ["team", "round"], "r2")
    assert query(
        data_dir, "SELECT team, round, pts FROM analytics.scores ORDER BY team NULLS FIRST, round"
    ) == [
        (None, 1, 9),
        ("a", 1, 3),
        ("a", 2, 5),
        ("b", 1, 2),
    ]


def test_new_columns_are_added_and_integers_widen_to_numbers(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    v1 = StreamSchema(name="m", fields=(Field("id", FieldType.INTEGER), Field("v", FieldType.INTEGER)))
    dest.write(config, v1, [batch([{"id": 1, "v": 10}], v1)], WriteMode.APPEND, None, "r1")
    v2 = StreamSchema(
        name="m",
        fields=(
            Field("id", FieldType.INTEGER),
            Field("v", FieldType.NUMBER),
            Field("note", FieldType.STRING),
        ),
    )
    result = dest.write(
        config, v2, [batch([{"id": 2, "v": 2.5, "note": "hi"}], v2)], WriteMode.APPEND, None, "r2"
    )
    assert result.columns_added == ["note"]
    assert query(data_dir, "SELECT id, v, note FROM analytics.m ORDER BY id") == [
        (1, 10.0, None),
        (2, 2.5, "hi"),
    ]


def failing_batches(good: list[Batch]) -> Iterator[Batch]:
    yield from good
    raise RuntimeError("the source died mid-stream")


@pytest.mark.parametrize("mode", [WriteMode.APPEND, WriteMode.OVERWRITE, WriteMode.MERGE])
def test_a_failed_write_leaves_the_table_as_it_was(
    dest: DuckDbDestination, config: Any, data_dir: Path, mode: WriteMode
) -> None:
    dest.write(
        config, SCHEMA, [batch([order(1, "ann", 1.0), order(2, "bob", 2.0)])], WriteMode.MERGE, ["id"], "r1"
    )
    before = query(data_dir, "SELECT * FROM analytics.orders ORDER BY id")
    with pytest.raises(RuntimeError, match="the source died"):
        dest.write(
            config,
            SCHEMA,
            failing_batches([batch([order(3, "new", 3.0), order(4, "new", 4.0)])]),
            mode,
            ["id"],
            "r2",
        )
    assert query(data_dir, "SELECT * FROM analytics.orders ORDER BY id") == before
    assert table_names(data_dir) == ["analytics.orders"]  # no staging table left behind


def test_a_duplicate_key_in_append_mode_is_a_clear_error(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    dest.write(config, SCHEMA, [batch([order(1, "ann", 1.0)])], WriteMode.MERGE, ["id"], "r1")
    with pytest.raises(
        ConnectorError, match=r"Writing analytics.orders failed: Constraint Error: .*primary key"
    ):
        dest.write(
            config,
            SCHEMA,
            [batch([order(2, "b", 2.0)]), batch([order(1, "dup", 0.0)])],
            WriteMode.APPEND,
            None,
            "r2",
        )
    assert query(data_dir, "SELECT id, customer FROM analytics.orders") == [(1, "ann")]


def test_a_database_error_is_a_connector_error_and_rolls_back(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    dest.write(config, SCHEMA, [batch([order(1, "ann", 1.0)])], WriteMode.MERGE, ["id"], "r1")
    # Two different rows for one key in the same batch are fine (last wins), but a NULL primary key is not.
    bad = batch([order(5, "x", 1.0), {**order(6, "y", 2.0), "id": None}])
    with pytest.raises(ConnectorError, match=r"Writing analytics.orders failed: .*NOT NULL") as exc:
        dest.write(config, SCHEMA, [bad], WriteMode.MERGE, ["id"], "r2")
    assert exc.value.field == "table"
    assert query(data_dir, "SELECT id, customer FROM analytics.orders") == [(1, "ann")]
    assert table_names(data_dir) == ["analytics.orders"]


def test_odd_identifiers_are_quoted(dest: DuckDbDestination, data_dir: Path) -> None:
    config = bound(dest, {"database": "wh/warehouse.duckdb", "schema": 'we"ird schema'})
    schema = StreamSchema(name="t", fields=(Field('a"; DROP TABLE x; --', FieldType.STRING),))
    dest.write(
        config,
        schema,
        [batch([{'a"; DROP TABLE x; --': "v"}], schema)],
        WriteMode.APPEND,
        None,
        "r",
        table="My Table",
    )
    assert query(data_dir, 'SELECT "a""; DROP TABLE x; --" FROM "we""ird schema"."My Table"') == [("v",)]


def test_merge_without_a_key_and_reserved_columns_are_refused(dest: DuckDbDestination, config: Any) -> None:
    schema = StreamSchema(name="t", fields=(Field("a", FieldType.STRING),))
    with pytest.raises(ConnectorError, match="A merge needs a primary key") as exc:
        dest.write(config, schema, [], WriteMode.MERGE, None, "r")
    assert exc.value.field == "primary_key"
    reserved = StreamSchema(name="t", fields=(Field("_ag_run_id", FieldType.STRING),))
    with pytest.raises(ConnectorError, match="reserved for the platform"):
        dest.write(config, reserved, [], WriteMode.APPEND, None, "r")


def test_a_database_held_by_another_process_is_a_clear_error(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    import subprocess
    import sys

    path = data_dir / "wh" / "warehouse.duckdb"
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = run_check(dest, config)
        assert not result.ok
        assert result.message.startswith(
            "Cannot open wh/warehouse.duckdb: IO Error: Could not set lock on file"
        )
        assert str(data_dir) not in result.message
    finally:
        holder.communicate("", timeout=30)
    assert run_check(dest, config).ok


def test_registered_as_a_destination_with_its_config_schema() -> None:
    from apps.connectors.registry import get_connector_type

    connector_type = get_connector_type("duckdb")
    assert connector_type is DuckDbDestination
    assert connector_type.is_destination() and not connector_type.is_source()
    schema = connector_type.json_schema()
    assert schema["required"] == ["database"]
    assert list(schema["properties"]) == ["database", "schema"]
    assert schema["properties"]["schema"]["default"] == "main"


# --- removing a run's rows (a retry of an append run) -----------------------------------------------------


def test_remove_run_rows_deletes_one_runs_rows_and_keeps_the_others(
    dest: DuckDbDestination, config: Any, data_dir: Path
) -> None:
    dest.write(
        config, SCHEMA, [batch([order(1, "ann", 10.0), order(2, "bo", 20.0)])], WriteMode.APPEND, None, "r1"
    )
    dest.write(config, SCHEMA, [batch([order(3, "cy", 30.0)])], WriteMode.APPEND, None, "r2")

    assert dest.remove_run_rows(config, "orders", "r1") == 2
    assert query(data_dir, "SELECT id, customer, _ag_run_id FROM analytics.orders ORDER BY id") == [
        (3, "cy", "r2")
    ]
    assert dest.remove_run_rows(config, "orders", "r1") == 0
    assert dest.remove_run_rows(config, "missing", "r2") == 0


def test_remove_run_rows_without_a_database_file_creates_none(
    dest: DuckDbDestination, data_dir: Path
) -> None:
    config = bound(dest, {"database": "nothing/here.duckdb"})
    assert dest.remove_run_rows(config, "orders", "r1") == 0
    assert list(data_dir.iterdir()) == []
