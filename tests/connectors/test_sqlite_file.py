"""The SQLite file source, on database files made in each test in the test workspace's import area."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aggregator.dataplane import Batch, FieldType, RejectedRows, StateCheckpoint, StreamSchema, SyncMode
from apps.connectors.base import ConfigInvalid, ConnectorError, run_check
from apps.connectors.plugins.sqlite_file import SqliteFileConfig, SqliteFileSource, field_type_for
from apps.connectors.registry import get_connector_type
from tests.connectors.conftest import bound

UTC = dt.UTC
WHERE = "this workspace's files (the import directory's workspaces/7/)"


def _make(path: Path, *statements: str, rows: dict[str, list[tuple[Any, ...]]] | None = None) -> Path:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    for table, values in (rows or {}).items():
        marks = ", ".join("?" * len(values[0]))
        conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', values)
    conn.commit()
    conn.close()
    return path


def _config(**raw: Any) -> SqliteFileConfig:
    config = bound(SqliteFileSource, raw)
    assert isinstance(config, SqliteFileConfig)
    return config


def _read(config: SqliteFileConfig, stream: StreamSchema, state: Any = None):
    items = list(SqliteFileSource().read(config, stream, state))
    batches = [i for i in items if isinstance(i, Batch)]
    rows = [r for b in batches for r in b.table.to_pylist()]
    checkpoints = [i.state for i in items if isinstance(i, StateCheckpoint)]
    rejected = [r for i in items if isinstance(i, RejectedRows) for r in i.rows]
    return batches, rows, checkpoints, rejected


@pytest.fixture
def shop(import_dir: Path) -> Path:
    return _make(
        import_dir / "shop.db",
        """CREATE TABLE orders (
            id INTEGER PRIMARY KEY,
            customer VARCHAR(40) NOT NULL,
            total NUMERIC(10, 2),
            ratio REAL,
            paid BOOLEAN,
            placed DATE,
            updated_at DATETIME,
            doc JSON,
            blob_data BLOB,
            anything
        )""",
        "CREATE TABLE pairs (a INT, b INT, label TEXT, PRIMARY KEY (b, a))",
        "CREATE VIEW big AS SELECT id, total * 2 AS doubled, customer || '!' AS shout FROM orders"
        " WHERE total > 10",
        rows={
            "orders": [
                (1, "ann", 12.5, 0.5, 1, "2024-01-31", "2024-02-01 10:00:00", '{"a": 1}', b"\x00\xff", 7),
                (2, "bob", 99, None, 0, None, "2024-02-02 00:00:00.250", None, b"hi", 8),
                (3, "cy", None, 2.0, None, "2024-03-01", "2024-02-03T00:00:00", "[]", None, None),
            ],
            "pairs": [(1, 2, "x")],
        },
    )


def test_sqlite_file_is_a_registered_source() -> None:
    connector_type = get_connector_type("sqlite_file")
    assert connector_type is SqliteFileSource
    assert connector_type.is_source() and not connector_type.is_destination()


def test_check_counts_tables_and_views(shop: Path) -> None:
    result = run_check(SqliteFileSource(), _config(path="shop.db"))
    assert result.ok and result.message == "3 tables and views."


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.db", "'../outside.db' must not leave this workspace's files"),
        ("/etc/passwd.db", "'/etc/passwd.db' must be relative"),
        ("notes.txt", "Must be a .sqlite, .sqlite3, .db file"),
    ],
)
def test_paths_outside_the_import_dir_are_refused_by_the_config(path: str, message: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        SqliteFileSource.validate_config({"path": path})
    assert list(caught.value.errors) == ["path"]
    assert message in caught.value.errors["path"][0]


def test_a_symlink_out_of_the_import_dir_is_refused(import_dir: Path, tmp_path: Path) -> None:
    secret = _make(tmp_path / "secret.db", "CREATE TABLE s (x)", rows={"s": [("hidden",)]})
    os.symlink(secret, import_dir / "link.db")
    with pytest.raises(ConnectorError) as caught:
        SqliteFileSource().discover(_config(path="link.db"))
    assert caught.value.field == "path"
    assert caught.value.message == f"'link.db' leads outside {WHERE}."
    assert str(tmp_path) not in caught.value.message


def test_missing_and_non_sqlite_files_name_the_path(import_dir: Path) -> None:
    result = run_check(SqliteFileSource(), _config(path="nope.db"))
    assert not result.ok and result.message == f"No file matches 'nope.db' in {WHERE}."
    (import_dir / "fake.db").write_text("this is not a database, just text" * 100)
    with pytest.raises(ConnectorError) as caught:
        SqliteFileSource().check(_config(path="fake.db"))
    assert caught.value.field == "path" and "is not a readable SQLite database" in caught.value.message


def test_the_file_is_opened_read_only(shop: Path) -> None:
    before = shop.read_bytes()
    conn = SqliteFileSource()._open(_config(path="shop.db"))
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM orders")
    finally:
        conn.close()
    assert shop.read_bytes() == before


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("INTEGER", FieldType.INTEGER),
        ("BIGINT", FieldType.INTEGER),
        ("VARCHAR(10)", FieldType.STRING),
        ("CLOB", FieldType.STRING),
        ("BLOB", FieldType.STRING),
        ("DOUBLE PRECISION", FieldType.NUMBER),
        ("FLOAT", FieldType.NUMBER),
        ("DECIMAL(10,5)", FieldType.NUMBER),
        ("BOOLEAN", FieldType.BOOLEAN),
        ("DATE", FieldType.DATE),
        ("DATETIME", FieldType.DATETIME),
        ("TIMESTAMP", FieldType.DATETIME),
        ("JSON", FieldType.JSON),
        ("", None),
    ],
)
def test_declared_types_follow_the_affinity_rules(declared: str, expected: FieldType | None) -> None:
    assert field_type_for(declared) == expected


def test_discover_types_keys_cursors_and_views(shop: Path) -> None:
    streams = {s.name: s for s in SqliteFileSource().discover(_config(path="shop.db"))}
    assert list(streams) == ["big", "orders", "pairs"]
    orders = streams["orders"]
    assert {f.name: f.type for f in orders.fields} == {
        "id": FieldType.INTEGER,
        "customer": FieldType.STRING,
        "total": FieldType.NUMBER,
        "ratio": FieldType.NUMBER,
        "paid": FieldType.BOOLEAN,
        "placed": FieldType.DATE,
        "updated_at": FieldType.DATETIME,
        "doc": FieldType.JSON,
        "blob_data": FieldType.STRING,
        "anything": FieldType.INTEGER,  # no declared type: sampled (7, 8, NULL)
    }
    assert orders.field("customer").nullable is False
    assert orders.primary_key == ("id",)
    assert orders.cursor_candidates == ("id", "total", "ratio", "placed", "updated_at", "anything")
    assert orders.supported_sync_modes == (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL)
    assert streams["pairs"].primary_key == ("b", "a")
    big = streams["big"]
    assert {f.name: f.type for f in big.fields} == {
        "id": FieldType.INTEGER,
        "doubled": FieldType.NUMBER,  # computed: sampled (25.0, 198)
        "shout": FieldType.STRING,
    }


def test_discover_only_the_chosen_tables(shop: Path) -> None:
    streams = SqliteFileSource().discover(_config(path="shop.db", tables=["pairs"]))
    assert [s.name for s in streams] == ["pairs"]
    with pytest.raises(ConnectorError) as caught:
        SqliteFileSource().discover(_config(path="shop.db", tables=["missing"]))
    assert caught.value.field == "tables"


def test_full_refresh_reads_typed_values_in_chunks(shop: Path) -> None:
    config = _config(path="shop.db", chunk_size=2)
    orders = next(s for s in SqliteFileSource().discover(config) if s.name == "orders")
    batches, rows, checkpoints, rejected = _read(config, orders)
    assert [b.num_rows for b in batches] == [2, 1]
    assert batches[0].table.schema == orders.arrow_schema()
    assert checkpoints == [] and rejected == []
    assert rows == [
        {
            "id": 1,
            "customer": "ann",
            "total": 12.5,
            "ratio": 0.5,
            "paid": True,
            "placed": dt.date(2024, 1, 31),
            "updated_at": dt.datetime(2024, 2, 1, 10, tzinfo=UTC),
            "doc": '{"a": 1}',
            "blob_data": "0x00ff",
            "anything": 7,
        },
        {
            "id": 2,
            "customer": "bob",
            "total": 99.0,
            "ratio": None,
            "paid": False,
            "placed": None,
            "updated_at": dt.datetime(2024, 2, 2, 0, 0, 0, 250000, tzinfo=UTC),
            "doc": None,
            "blob_data": "hi",
            "anything": 8,
        },
        {
            "id": 3,
            "customer": "cy",
            "total": None,
            "ratio": 2.0,
            "paid": None,
            "placed": dt.date(2024, 3, 1),
            "updated_at": dt.datetime(2024, 2, 3, tzinfo=UTC),
            "doc": "[]",
            "blob_data": None,
            "anything": None,
        },
    ]


def test_incremental_read_round_trips_its_state(shop: Path) -> None:
    config = _config(path="shop.db", chunk_size=1)
    discovered = next(s for s in SqliteFileSource().discover(config) if s.name == "orders")
    stream = StreamSchema(name="orders", fields=discovered.fields, cursor_field="updated_at")
    _, rows, checkpoints, _ = _read(config, stream)
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert checkpoints == [
        {"cursor": "2024-02-01 10:00:00"},
        {"cursor": "2024-02-02 00:00:00.250"},
        {"cursor": "2024-02-03T00:00:00"},
    ]
    state = json.loads(json.dumps(checkpoints[-1]))

    conn = sqlite3.connect(shop)
    conn.execute("INSERT INTO orders (id, customer, updated_at) VALUES (4, 'dee', '2024-02-04 00:00:00')")
    conn.execute("INSERT INTO orders (id, customer, updated_at) VALUES (5, 'eve', '2024-02-05 12:30:00')")
    conn.commit()
    conn.close()

    _, rows, checkpoints, _ = _read(config, stream, state)
    assert [(r["id"], r["customer"]) for r in rows] == [(4, "dee"), (5, "eve")]
    assert checkpoints[-1] == {"cursor": "2024-02-05 12:30:00"}
    _, rows, checkpoints, _ = _read(config, stream, checkpoints[-1])
    assert rows == [] and checkpoints == []


def test_incremental_on_an_integer_key(shop: Path) -> None:
    config = _config(path="shop.db")
    discovered = next(s for s in SqliteFileSource().discover(config) if s.name == "orders")
    stream = StreamSchema(name="orders", fields=discovered.fields, cursor_field="id")
    _, rows, checkpoints, _ = _read(config, stream, {"cursor": 1})
    assert [r["id"] for r in rows] == [2, 3]
    # 2 is complete once the batch holds a later value; the last value is checkpointed at the end.
    assert checkpoints == [{"cursor": 2}, {"cursor": 3}]


def test_values_that_do_not_fit_their_type_are_rejected_with_the_reason(import_dir: Path) -> None:
    _make(
        import_dir / "messy.sqlite",
        "CREATE TABLE m (id INTEGER, qty INTEGER, seen DATETIME, flag BOOLEAN)",
        rows={
            "m": [
                (1, 5, "2024-01-01 00:00:00", 1),
                (2, "lots", "2024-01-02 00:00:00", 0),
                (3, "7", 1704153600, "yes"),
                (4, 8, "not a date", 1),
            ]
        },
    )
    config = _config(path="messy.sqlite")
    stream = SqliteFileSource().discover(config)[0]
    _, rows, _, rejected = _read(config, stream)
    assert rows == [
        {"id": 1, "qty": 5, "seen": dt.datetime(2024, 1, 1, tzinfo=UTC), "flag": True},
        {"id": 3, "qty": 7, "seen": dt.datetime(2024, 1, 2, tzinfo=UTC), "flag": True},
    ]
    assert [(r.row, r.reason) for r in rejected] == [
        (2, "qty: 'lots' is not a valid integer"),
        (4, "seen: 'not a date' is not a valid datetime"),
    ]
    assert rejected[0].raw == {"id": 2, "qty": "lots", "seen": "2024-01-02 00:00:00", "flag": 0}
    assert rejected[0].source == "m"


def test_unknown_stream_is_a_clear_error(shop: Path) -> None:
    stream = StreamSchema.from_dict({"name": "nope", "fields": [{"name": "id", "type": "integer"}]})
    with pytest.raises(ConnectorError, match="Unknown stream 'nope'"):
        list(SqliteFileSource().read(_config(path="shop.db"), stream, None))


def test_odd_table_and_column_names_are_quoted(import_dir: Path) -> None:
    _make(
        import_dir / "odd.sqlite3",
        'CREATE TABLE "we""ird; DROP TABLE x" ("col ""1""" INTEGER, "?" TEXT)',
        rows={'we""ird; DROP TABLE x': [(1, "a"), (2, "b")]},
    )
    config = _config(path="odd.sqlite3")
    stream = SqliteFileSource().discover(config)[0]
    assert stream.name == 'we"ird; DROP TABLE x'
    incremental = StreamSchema(name=stream.name, fields=stream.fields, cursor_field='col "1"')
    _, rows, _, _ = _read(config, incremental, {"cursor": 1})
    assert rows == [{'col "1"': 2, "?": "b"}]
