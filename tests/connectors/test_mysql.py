"""The MySQL/MariaDB connector against the machine's MariaDB (127.0.0.1:3306, root without a password).

Every test works in its own scratch database (and user), dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pymysql
import pytest

from aggregator.dataplane import (
    LOADED_AT_COLUMN,
    RUN_ID_COLUMN,
    Batch,
    Field,
    FieldType,
    StateCheckpoint,
    StreamSchema,
    SyncMode,
    WriteMode,
)
from apps.connectors.base import ConfigInvalid, ConnectorError, run_check
from apps.connectors.plugins.mysql import (
    LOAD_DATA_GUARD_AVAILABLE,
    CursorTracker,
    MySqlConfig,
    MySqlConnector,
    quote_ident,
)
from apps.connectors.registry import get_connector_type

CANARY = "canary-Pa55word-7f3a91"
UTC = dt.UTC


def _root() -> Any:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)


@pytest.fixture
def allow_localhost(settings: Any) -> None:
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]


@pytest.fixture
def scratch(allow_localhost: None) -> Iterator[dict[str, str]]:
    """A scratch database and a user with a password that may use only it."""
    suffix = uuid.uuid4().hex[:10]
    database, user, password = f"ag_test_{suffix}", f"ag_u_{suffix}", f"pw-{suffix}"
    conn = _root()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'")
    try:
        yield {"database": database, "user": user, "password": password}
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        conn.close()


def _config(scratch: dict[str, str], **extra: Any) -> MySqlConfig:
    raw = {"host": "127.0.0.1", "port": 3306, "ssl_mode": "disabled", **scratch, **extra}
    config = MySqlConnector.validate_config(raw)
    assert isinstance(config, MySqlConfig)
    return config


def _sql(scratch: dict[str, str], *statements: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=scratch["database"], autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for statement in statements:
                cur.execute(statement, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def _tables(scratch: dict[str, str]) -> list[str]:
    rows = _sql(
        scratch,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
        params=(scratch["database"],),
    )
    return [r[0] for r in rows]


def _read_all(connector: MySqlConnector, config: MySqlConfig, stream: StreamSchema, state: Any = None):
    batches, checkpoints = [], []
    for item in connector.read(config, stream, state):
        if isinstance(item, Batch):
            batches.append(item)
        elif isinstance(item, StateCheckpoint):
            checkpoints.append(item)
    rows = [row for b in batches for row in b.table.to_pylist()]
    return batches, checkpoints, rows


# --- registry and config -------------------------------------------------------------------------------


def test_mysql_is_registered_as_source_and_destination() -> None:
    connector_type = get_connector_type("mysql")
    assert connector_type is MySqlConnector
    assert connector_type.is_source() and connector_type.is_destination()
    assert connector_type.secret_fields() == ["password"]
    schema = connector_type.json_schema()
    assert schema["properties"]["password"]["writeOnly"] is True
    assert schema["properties"]["port"]["default"] == 3306


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DELETE FROM t", "SELECT or WITH"),
        ("SELECT 1; DROP TABLE t", "single statement"),
        ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "INTO"),
        ("SELECT /*! 1 */", "executable comments"),
        ("SELECT * FROM t FOR UPDATE", "locks"),
        (" ; ", "empty"),
    ],
)
def test_custom_query_must_be_one_select(sql: str, reason: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        MySqlConnector.validate_config(
            {"host": "db.example.com", "database": "d", "user": "u", "queries": [{"name": "q", "sql": sql}]}
        )
    assert "queries.0.sql" in caught.value.errors
    assert reason.lower() in " ".join(caught.value.errors["queries.0.sql"]).lower()


def test_config_refuses_unknown_options_and_a_dsn_like_host() -> None:
    with pytest.raises(ConfigInvalid) as caught:
        MySqlConnector.validate_config({"host": "h", "database": "d", "user": "u", "init_command": "x"})
    assert "init_command" in caught.value.errors
    with pytest.raises(ConfigInvalid) as caught:
        MySqlConnector.validate_config({"host": "mysql://u:p@h/d", "database": "d", "user": "u"})
    assert "host" in caught.value.errors


def test_quote_ident_doubles_backticks_and_percent() -> None:
    assert quote_ident("plain") == "`plain`"
    assert quote_ident("we`ird%") == "`we``ird%%`"
    with pytest.raises(ConnectorError):
        quote_ident("")


# --- check -----------------------------------------------------------------------------------------------


def test_check_connects_with_the_right_password(scratch: dict[str, str]) -> None:
    result = run_check(MySqlConnector(), _config(scratch))
    assert result.ok, result.message
    assert "MariaDB" in result.message


def test_wrong_password_names_the_field_and_never_the_secret(scratch: dict[str, str]) -> None:
    config = _config(scratch, password=CANARY)
    with pytest.raises(ConnectorError) as caught:
        MySqlConnector().check(config)
    assert caught.value.field == "password"
    assert "Access denied" in caught.value.message
    assert CANARY not in caught.value.message
    result = run_check(MySqlConnector(), config)
    assert not result.ok
    assert CANARY not in result.message
    assert CANARY not in repr(config)


def test_unknown_database_names_the_field(scratch: dict[str, str]) -> None:
    config = _config({**scratch, "database": "ag_no_such_db"})
    with pytest.raises(ConnectorError) as caught:
        MySqlConnector().check(config)
    assert caught.value.field in ("database",)
    assert "ag_no_such_db" in caught.value.message


def test_unreachable_port_names_the_host_quickly(allow_localhost: None) -> None:
    config = MySqlConnector.validate_config(
        {"host": "127.0.0.1", "port": 1, "database": "d", "user": "u", "connect_timeout_s": 3}
    )
    result = run_check(MySqlConnector(), config)
    assert not result.ok
    assert result.message == "Cannot connect to 127.0.0.1:1 (refused or unreachable)."
    assert result.duration_s < 5


def test_loopback_is_refused_without_the_allow_list(settings: Any) -> None:
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]  # saved while the operator allowed it
    config = MySqlConnector.validate_config({"host": "127.0.0.1", "database": "d", "user": "root"})
    settings.AGGREGATOR_ALLOWED_HOSTS = []
    with pytest.raises(ConnectorError) as caught:
        MySqlConnector().check(config)
    assert caught.value.field == "host"
    assert caught.value.message == "Address 127.0.0.1 of host 127.0.0.1 is not allowed (loopback)"
    # Every entry point goes through the guard, not only check.
    with pytest.raises(ConnectorError, match="not allowed"):
        MySqlConnector().discover(config)


def test_required_tls_against_a_server_without_it_names_ssl_mode(scratch: dict[str, str]) -> None:
    with pytest.raises(ConnectorError) as caught:
        MySqlConnector().check(_config(scratch, ssl_mode="required"))
    assert caught.value.field == "ssl_mode"


def test_reading_connections_do_not_offer_local_infile(scratch: dict[str, str]) -> None:
    _sql(scratch, "CREATE TABLE t (line TEXT)")
    conn = MySqlConnector()._connect(_config(scratch))
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.MySQLError):
            cur.execute("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE t", ())
    finally:
        conn.close()
    assert _sql(scratch, "SELECT COUNT(*) FROM t") == [(0,)]


def test_the_writing_connection_sends_only_the_file_it_offers(scratch: dict[str, str], tmp_path: Any) -> None:
    assert LOAD_DATA_GUARD_AVAILABLE  # a PyMySQL upgrade that breaks the guard must be noticed here
    _sql(scratch, "CREATE TABLE t (line TEXT)")
    offered = tmp_path / "offered.csv"
    offered.write_text('"from the offered file"\n')
    conn = MySqlConnector()._connect(_config(scratch), write=True)
    try:
        # What a malicious server does: ask for a file of its choosing, with or without a load running.
        for current in (None, str(offered).encode()):
            conn.offered_file = current
            with conn.cursor() as cur, pytest.raises(ConnectorError, match="not offered; refused"):
                cur.execute("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE t", ())
        with conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{offered}' INTO TABLE t FIELDS ENCLOSED BY '\"'", ())
        conn.commit()
    finally:
        conn.close()
    assert _sql(scratch, "SELECT line FROM t") == [("from the offered file",)]
    assert not _config(scratch, load_data=False).load_data


# --- discover --------------------------------------------------------------------------------------------


@pytest.fixture
def typed_table(scratch: dict[str, str]) -> dict[str, str]:
    _sql(
        scratch,
        """CREATE TABLE orders (
            id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            paid TINYINT(1) NULL,
            qty SMALLINT NULL,
            big BIGINT NULL,
            price DECIMAL(10, 2) NULL,
            ratio DOUBLE NULL,
            placed DATE NULL,
            updated_at DATETIME(6) NULL,
            stamped TIMESTAMP NULL DEFAULT NULL,
            doc JSON NULL,
            note VARCHAR(100) NULL,
            raw BLOB NULL
        )""",
        "CREATE TABLE order_lines (order_id INT NOT NULL, line_no INT NOT NULL, sku TEXT,"
        " PRIMARY KEY (order_id, line_no))",
        "CREATE VIEW big_orders AS SELECT id, price FROM orders WHERE price > 100",
    )
    _sql(
        scratch,
        "INSERT INTO orders (paid, qty, big, price, ratio, placed, updated_at, stamped, doc, note, raw)"
        " VALUES"
        " (1, 3, 9007199254740993, 12.50, 0.25, '2024-01-31', '2024-02-01 10:00:00.123456',"
        "  '2024-02-01 11:00:00', '{\"a\": [1, 2]}', 'zürich ✓', X'00ff'),"
        " (0, NULL, NULL, 250.00, NULL, NULL, '2024-02-02 00:00:00', NULL, NULL, 'b', 'text'),"
        " (NULL, 7, -1, 99.99, 1.5, '2023-12-24', '2024-02-03 00:00:00', NULL, '[]', NULL, NULL)",
    )
    return scratch


def test_discover_reports_types_keys_cursors_and_views(typed_table: dict[str, str]) -> None:
    streams = {s.name: s for s in MySqlConnector().discover(_config(typed_table))}
    assert set(streams) == {"orders", "order_lines", "big_orders"}
    orders = streams["orders"]
    assert {f.name: f.type for f in orders.fields} == {
        "id": FieldType.INTEGER,
        "paid": FieldType.BOOLEAN,
        "qty": FieldType.INTEGER,
        "big": FieldType.INTEGER,
        "price": FieldType.NUMBER,
        "ratio": FieldType.NUMBER,
        "placed": FieldType.DATE,
        "updated_at": FieldType.DATETIME,
        "stamped": FieldType.DATETIME,
        "doc": FieldType.JSON,
        "note": FieldType.STRING,
        "raw": FieldType.STRING,
    }
    assert orders.field_names[0] == "id"  # column order kept
    assert orders.field("id").nullable is False and orders.field("note").nullable is True
    assert orders.primary_key == ("id",)
    assert orders.cursor_candidates == (
        "id",
        "qty",
        "big",
        "price",
        "ratio",
        "placed",
        "updated_at",
        "stamped",
    )
    assert orders.supported_sync_modes == (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL)
    assert streams["order_lines"].primary_key == ("order_id", "line_no")
    assert streams["big_orders"].primary_key == ()
    assert [f.name for f in streams["big_orders"].fields] == ["id", "price"]


def test_discover_includes_other_databases_by_qualified_name(typed_table: dict[str, str]) -> None:
    other = f"{typed_table['database']}_x"
    root = _root()
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{other}`")
        cur.execute(f"CREATE TABLE `{other}`.notes (body TEXT)")
        cur.execute(f"INSERT INTO `{other}`.notes VALUES ('hello')")
        cur.execute(f"GRANT SELECT ON `{other}`.* TO '{typed_table['user']}'@'localhost'")
        cur.execute(f"GRANT SELECT ON `{other}`.* TO '{typed_table['user']}'@'127.0.0.1'")
    try:
        config = _config(typed_table, databases=[other])
        connector = MySqlConnector()
        streams = {s.name: s for s in connector.discover(config)}
        notes = streams[f"{other}.notes"]
        assert notes.supported_sync_modes == (SyncMode.FULL_REFRESH,)
        _, _, rows = _read_all(connector, config, notes)
        assert rows == [{"body": "hello"}]
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE `{other}`")
        root.close()


# --- read ------------------------------------------------------------------------------------------------


def test_full_refresh_reads_typed_values_in_chunks(typed_table: dict[str, str]) -> None:
    connector = MySqlConnector()
    config = _config(typed_table, chunk_size=2)
    orders = next(s for s in connector.discover(config) if s.name == "orders")
    batches, checkpoints, rows = _read_all(connector, config, orders)
    assert [b.num_rows for b in batches] == [2, 1]
    assert checkpoints == []  # no cursor field: full refresh, no state
    assert batches[0].table.schema == orders.arrow_schema()
    assert rows[0] == {
        "id": 1,
        "paid": True,
        "qty": 3,
        "big": 9007199254740993,
        "price": 12.5,
        "ratio": 0.25,
        "placed": dt.date(2024, 1, 31),
        "updated_at": dt.datetime(2024, 2, 1, 10, 0, 0, 123456, tzinfo=UTC),
        "stamped": dt.datetime(2024, 2, 1, 11, 0, tzinfo=UTC),
        "doc": '{"a": [1, 2]}',
        "note": "zürich ✓",
        "raw": "0x00ff",
    }
    assert rows[1]["paid"] is False and rows[1]["qty"] is None and rows[1]["raw"] == "text"
    assert rows[2]["paid"] is None and rows[2]["big"] == -1 and rows[2]["note"] is None
    assert json.loads(rows[2]["doc"]) == []


def test_incremental_read_round_trips_its_state(typed_table: dict[str, str]) -> None:
    connector = MySqlConnector()
    config = _config(typed_table, chunk_size=2)
    discovered = next(s for s in connector.discover(config) if s.name == "orders")
    stream = StreamSchema(
        name="orders",
        fields=discovered.fields,
        primary_key=discovered.primary_key,
        cursor_field="updated_at",
    )
    _, checkpoints, rows = _read_all(connector, config, stream)
    assert [r["id"] for r in rows] == [1, 2, 3]
    final = checkpoints[-1].state
    assert final == {"cursor": "2024-02-03T00:00:00+00:00"}
    json.dumps(final)  # JSON-serialisable

    _sql(
        typed_table,
        "INSERT INTO orders (note, updated_at) VALUES ('late', '2024-02-03 00:00:00'),"
        " ('new', '2024-03-01 08:30:00.5'), ('newer', '2024-03-02 00:00:00')",
    )
    _, checkpoints, rows = _read_all(connector, config, stream, final)
    # `cursor > last`: only the rows after the state ('late' shares the last value and is not re-read).
    assert [r["note"] for r in rows] == ["new", "newer"]
    assert rows[0]["updated_at"] == dt.datetime(2024, 3, 1, 8, 30, 0, 500000, tzinfo=UTC)
    assert checkpoints[-1].state == {"cursor": "2024-03-02T00:00:00+00:00"}

    _, checkpoints, rows = _read_all(connector, config, stream, checkpoints[-1].state)
    assert rows == [] and checkpoints == []


def test_incremental_on_an_integer_cursor_checkpoints_after_batches(typed_table: dict[str, str]) -> None:
    connector = MySqlConnector()
    config = _config(typed_table, chunk_size=1)
    discovered = next(s for s in connector.discover(config) if s.name == "orders")
    stream = StreamSchema(name="orders", fields=discovered.fields, cursor_field="id")
    items = list(connector.read(config, stream, {"cursor": 1}))
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Batch", "Batch", "StateCheckpoint", "StateCheckpoint"]
    assert [i.table.column("id").to_pylist() for i in items if isinstance(i, Batch)] == [[2], [3]]
    assert [i.state for i in items if isinstance(i, StateCheckpoint)] == [{"cursor": 2}, {"cursor": 3}]


def test_cursor_tracker_never_checkpoints_inside_a_run_of_equal_values() -> None:
    tracker = CursorTracker()
    assert tracker.add([1, 2, 2]) == 1  # 2 may continue in the next batch
    assert tracker.add([2, 2]) is None  # still inside the run of 2s
    assert tracker.add([2, 3]) == 2
    assert tracker.add([4]) == 3
    assert tracker.last == 4


def test_unknown_stream_is_a_clear_error(scratch: dict[str, str]) -> None:
    stream = StreamSchema(name="nope", fields=(Field("id", FieldType.INTEGER),))
    with pytest.raises(ConnectorError, match="Unknown stream 'nope'"):
        list(MySqlConnector().read(_config(scratch), stream, None))


def test_custom_query_stream_discovers_and_reads(typed_table: dict[str, str]) -> None:
    connector = MySqlConnector()
    config = _config(
        typed_table,
        queries=[
            {
                "name": "paid_totals",
                "sql": "WITH p AS (SELECT * FROM orders WHERE price > 50)"
                " SELECT id, price * 2 AS doubled, placed, note LIKE 'b%' AS is_b FROM p;",
            }
        ],
    )
    stream = next(s for s in connector.discover(config) if s.name == "paid_totals")
    assert {f.name: f.type for f in stream.fields} == {
        "id": FieldType.INTEGER,
        "doubled": FieldType.NUMBER,
        "placed": FieldType.DATE,
        "is_b": FieldType.INTEGER,
    }
    incremental = StreamSchema(name="paid_totals", fields=stream.fields, cursor_field="id")
    _, checkpoints, rows = _read_all(connector, config, incremental)
    assert rows == [
        {"id": 2, "doubled": 500.0, "placed": None, "is_b": 1},
        {"id": 3, "doubled": 199.98, "placed": dt.date(2023, 12, 24), "is_b": None},
    ]
    assert checkpoints[-1].state == {"cursor": 3}
    _, _, rows = _read_all(connector, config, incremental, {"cursor": 2})
    assert [r["id"] for r in rows] == [3]


def test_custom_query_runs_in_a_read_only_transaction(scratch: dict[str, str]) -> None:
    _sql(scratch, "CREATE TABLE t (id INT)")
    connector = MySqlConnector()
    # A SELECT that would write through a sequence: refused by the read-only transaction.
    _sql(scratch, "CREATE SEQUENCE s")
    config = _config(scratch, queries=[{"name": "q", "sql": "SELECT NEXTVAL(s) AS n"}])
    stream = StreamSchema(name="q", fields=(Field("n", FieldType.INTEGER),))
    with pytest.raises(ConnectorError, match="Stream 'q'"):
        list(connector.read(config, stream, None))
    assert _sql(scratch, "SELECT NEXTVAL(s)") == [(1,)]


# --- write -----------------------------------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["load_data", "inserts"])
def load_data(request: pytest.FixtureRequest) -> bool:
    """Every write test runs twice: LOAD DATA LOCAL INFILE (the default) and multi-row INSERTs."""
    return bool(request.param)


PEOPLE = StreamSchema(
    name="people",
    fields=(
        Field("id", FieldType.INTEGER),
        Field("name", FieldType.STRING),
        Field("score", FieldType.NUMBER),
        Field("active", FieldType.BOOLEAN),
        Field("born", FieldType.DATE),
        Field("seen", FieldType.DATETIME),
        Field("meta", FieldType.JSON),
    ),
    primary_key=("id",),
)


def _people(*rows: tuple[Any, ...]) -> Batch:
    names = PEOPLE.field_names
    return Batch.from_records([dict(zip(names, r, strict=True)) for r in rows], PEOPLE)


def _rows(scratch: dict[str, str], table: str = "people") -> list[tuple[Any, ...]]:
    return _sql(
        scratch,
        f"SELECT id, name, score, active, born, seen, meta, {RUN_ID_COLUMN} FROM `{table}` ORDER BY id",
    )


T1 = dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


def test_append_creates_the_table_and_adds_rows(scratch: dict[str, str], load_data: bool) -> None:
    connector = MySqlConnector()
    config = _config(scratch, load_data=load_data)
    result = connector.write(
        config,
        PEOPLE,
        [
            _people((1, "Ada", 1.5, True, dt.date(1815, 12, 10), T1, '{"k": 1}')),
            _people((2, "O'Brien\\", None, False, None, None, None)),
        ],
        WriteMode.APPEND,
        None,
        "run-1",
    )
    assert (result.rows_written, result.batches, result.table) == (2, 2, f"{scratch['database']}.people")
    assert _rows(scratch) == [
        (1, "Ada", 1.5, 1, dt.date(1815, 12, 10), T1.replace(tzinfo=None), '{"k": 1}', "run-1"),
        (2, "O'Brien\\", None, 0, None, None, None, "run-1"),
    ]
    loaded = _sql(scratch, f"SELECT DISTINCT {LOADED_AT_COLUMN} FROM people")
    assert (
        len(loaded) == 1
        and abs(loaded[0][0] - dt.datetime.now(UTC).replace(tzinfo=None)).total_seconds() < 60
    )

    # A second append adds rows (same ids included: append never dedupes) and a new column.
    wider = StreamSchema(name="people", fields=(*PEOPLE.fields, Field("team", FieldType.STRING)))
    batch = Batch.from_records([{"id": 1, "name": "Ada again", "team": "core"}], wider)
    result = connector.write(config, wider, [batch], WriteMode.APPEND, None, "run-2")
    assert result.columns_added == ["team"]
    assert _sql(scratch, "SELECT id, name, team, _ag_run_id FROM people ORDER BY _ag_run_id, id") == [
        (1, "Ada", None, "run-1"),
        (2, "O'Brien\\", None, "run-1"),
        (1, "Ada again", "core", "run-2"),
    ]
    assert _tables(scratch) == ["people"]  # no staging table left behind


def test_overwrite_replaces_every_row_atomically(scratch: dict[str, str], load_data: bool) -> None:
    connector = MySqlConnector()
    config = _config(scratch, load_data=load_data)
    connector.write(
        config,
        PEOPLE,
        [_people((1, "a", 1.0, True, None, None, None), (2, "b", 2.0, True, None, None, None))],
        WriteMode.APPEND,
        None,
        "run-1",
    )
    _sql(scratch, "CREATE INDEX people_name ON people (name(10))")
    result = connector.write(
        config,
        PEOPLE,
        [_people((3, "c", 3.0, False, None, T1, None)), _people((4, "d", None, None, None, None, "[1]"))],
        WriteMode.OVERWRITE,
        None,
        "run-2",
    )
    assert result.rows_written == 2
    assert [(r[0], r[1], r[7]) for r in _rows(scratch)] == [(3, "c", "run-2"), (4, "d", "run-2")]
    # The new table was made LIKE the old one: its indexes survive the swap.
    indexes = _sql(scratch, "SHOW INDEX FROM people")
    assert "people_name" in {row[2] for row in indexes}
    assert _tables(scratch) == ["people"]


def test_overwrite_creates_a_missing_table(scratch: dict[str, str], load_data: bool) -> None:
    MySqlConnector().write(
        _config(scratch, load_data=load_data),
        PEOPLE,
        [_people((5, "e", None, None, None, None, None))],
        WriteMode.OVERWRITE,
        None,
        "r",
    )
    assert [(r[0], r[1]) for r in _rows(scratch)] == [(5, "e")]


def test_merge_updates_matches_and_inserts_the_rest(scratch: dict[str, str], load_data: bool) -> None:
    connector = MySqlConnector()
    config = _config(scratch, load_data=load_data)
    connector.write(
        config,
        PEOPLE,
        [_people((1, "Ada", 1.0, True, None, None, None), (2, "Bob", 2.0, True, None, None, None))],
        WriteMode.MERGE,
        ["id"],
        "run-1",
    )
    result = connector.write(
        config,
        PEOPLE,
        [
            _people((2, "Bobby", 20.0, False, None, T1, None), (3, "Cy", 3.0, True, None, None, None)),
            # A key seen twice in one write: the later row wins.
            _people((3, "Cyrus", 30.0, True, None, None, None)),
        ],
        WriteMode.MERGE,
        ["id"],
        "run-2",
    )
    assert result.rows_written == 3
    assert [(r[0], r[1], r[2], r[3], r[7]) for r in _rows(scratch)] == [
        (1, "Ada", 1.0, 1, "run-1"),
        (2, "Bobby", 20.0, 0, "run-2"),
        (3, "Cyrus", 30.0, 1, "run-2"),
    ]
    assert _tables(scratch) == ["people"]


def test_merge_adds_a_unique_key_to_an_existing_table(scratch: dict[str, str], load_data: bool) -> None:
    _sql(scratch, "CREATE TABLE people (id BIGINT, name VARCHAR(50))", "INSERT INTO people VALUES (1, 'old')")
    MySqlConnector().write(
        _config(scratch, load_data=load_data),
        PEOPLE,
        [_people((1, "new", None, None, None, None, None), (2, "two", None, None, None, None, None))],
        WriteMode.MERGE,
        ["id"],
        "run-m",
    )
    assert _sql(scratch, "SELECT id, name, _ag_run_id FROM people ORDER BY id") == [
        (1, "new", "run-m"),
        (2, "two", "run-m"),
    ]


def test_merge_without_a_primary_key_names_the_field(scratch: dict[str, str], load_data: bool) -> None:
    schema = StreamSchema(name="people", fields=PEOPLE.fields)
    with pytest.raises(ConnectorError) as caught:
        MySqlConnector().write(_config(scratch, load_data=load_data), schema, [], WriteMode.MERGE, None, "r")
    assert caught.value.field == "primary_key"


def test_odd_identifiers_round_trip(scratch: dict[str, str], load_data: bool) -> None:
    schema = StreamSchema(
        name="we`ird %s table",
        fields=(Field("100% `sure`", FieldType.INTEGER), Field("it's", FieldType.STRING)),
        primary_key=("100% `sure`",),
    )
    connector = MySqlConnector()
    config = _config(scratch, load_data=load_data)
    batch = Batch.from_records([{"100% `sure`": 1, "it's": "%s"}], schema)
    for mode in (WriteMode.APPEND, WriteMode.MERGE, WriteMode.OVERWRITE):
        connector.write(config, schema, [batch], mode, ["100% `sure`"], f"run-{mode}")
    discovered = next(s for s in connector.discover(config) if s.name == "we`ird %s table")
    read_back = StreamSchema(name=discovered.name, fields=discovered.fields[:2], cursor_field="100% `sure`")
    _, _, rows = _read_all(connector, config, read_back, {"cursor": 0})
    assert rows == [{"100% `sure`": 1, "it's": "%s"}]


def _raising(*batches: Batch) -> Iterator[Batch]:
    yield from batches
    raise RuntimeError("the upstream step broke")


@pytest.mark.parametrize("mode", [WriteMode.APPEND, WriteMode.OVERWRITE, WriteMode.MERGE])
def test_a_failure_mid_stream_leaves_the_target_as_it_was(
    scratch: dict[str, str], mode: WriteMode, load_data: bool
) -> None:
    connector = MySqlConnector()
    config = _config(scratch, load_data=load_data)
    connector.write(
        config, PEOPLE, [_people((1, "keep", 1.0, True, None, None, None))], WriteMode.MERGE, ["id"], "run-0"
    )
    before = _rows(scratch)
    wider = StreamSchema(name="people", fields=(*PEOPLE.fields, Field("extra", FieldType.STRING)))
    batch = Batch.from_records([{"id": 1, "name": "changed", "extra": "x"}, {"id": 9, "name": "new"}], wider)
    with pytest.raises(RuntimeError, match="upstream step broke"):
        connector.write(config, wider, _raising(batch), mode, ["id"], "run-bad")
    assert _rows(scratch) == before
    assert _tables(scratch) == ["people"]
    columns = _sql(scratch, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_NAME = 'people'")
    assert "extra" not in {c[0] for c in columns}


@pytest.mark.parametrize("mode", [WriteMode.APPEND, WriteMode.OVERWRITE, WriteMode.MERGE])
def test_a_value_that_does_not_fit_fails_the_write_and_changes_nothing(
    scratch: dict[str, str], mode: WriteMode, load_data: bool
) -> None:
    _sql(
        scratch,
        "CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR(5), score DOUBLE)",
        "INSERT INTO people VALUES (1, 'keep', 1.0)",
    )
    schema = StreamSchema(name="people", fields=PEOPLE.fields[:3], primary_key=("id",))
    batch = Batch.from_records([{"id": 2, "name": "ok"}, {"id": 3, "name": "far too long for five"}], schema)
    with pytest.raises(ConnectorError) as caught:
        MySqlConnector().write(
            _config(scratch, load_data=load_data), schema, [batch], mode, ["id"], "run-bad"
        )
    # INSERT … SELECT says "Data too long"; LOAD DATA LOCAL reports a truncation warning, which fails too.
    assert re.search(r"Data (too long|truncated) for column 'name'", caught.value.message)
    assert _sql(scratch, "SELECT id, name, score FROM people") == [(1, "keep", 1.0)]
    assert _tables(scratch) == ["people"]


def test_a_failed_first_write_does_not_leave_an_empty_target(
    scratch: dict[str, str], load_data: bool
) -> None:
    with pytest.raises(RuntimeError):
        MySqlConnector().write(
            _config(scratch, load_data=load_data),
            PEOPLE,
            _raising(_people((1, "a", None, None, None, None, None))),
            WriteMode.APPEND,
            None,
            "r",
        )
    assert _tables(scratch) == []


def test_written_rows_read_back_through_the_source(scratch: dict[str, str], load_data: bool) -> None:
    connector = MySqlConnector()
    config = _config(scratch, load_data=load_data)
    table = pa.table(
        {
            "id": pa.array(range(12_345), pa.int64()),
            "label": pa.array([f"row {i}" for i in range(12_345)]),
            "value": pa.array([i / 3 if i % 7 else float("nan") for i in range(12_345)]),
        }
    )
    schema = StreamSchema.from_arrow("bulk", table.schema)
    result = connector.write(
        config, schema, [Batch(table, stream="bulk")], WriteMode.APPEND, None, "run-bulk"
    )
    assert result.rows_written == 12_345
    discovered = next(s for s in connector.discover(config) if s.name == "bulk")
    assert {RUN_ID_COLUMN, LOADED_AT_COLUMN} <= set(discovered.field_names)
    batches, _, rows = _read_all(connector, _config(scratch, chunk_size=5_000), discovered)
    assert [b.num_rows for b in batches] == [5_000, 5_000, 2_345]
    assert rows[7]["value"] is None  # NaN is written as NULL
    assert rows[8]["value"] == pytest.approx(8 / 3)
    assert {r[RUN_ID_COLUMN] for r in rows} == {"run-bulk"}
    assert sum(r["id"] for r in rows) == sum(range(12_345))


def test_merge_refuses_rows_without_a_key_and_a_table_with_duplicate_keys(
    scratch: dict[str, str], load_data: bool
) -> None:
    connector = MySqlConnector()
    config = _config(scratch, load_data=load_data)
    with pytest.raises(ConnectorError) as caught:
        connector.write(
            config,
            PEOPLE,
            [_people((None, "nobody", None, None, None, None, None))],
            WriteMode.MERGE,
            ["id"],
            "r",
        )
    assert (caught.value.field, caught.value.message) == (
        "primary_key",
        "1 rows have an empty primary key (id).",
    )
    _sql(scratch, "CREATE TABLE dupes (id BIGINT, name TEXT)", "INSERT INTO dupes VALUES (1, 'a'), (1, 'b')")
    with pytest.raises(ConnectorError, match="already holds duplicate values") as caught:
        connector.write(
            config,
            PEOPLE,
            [_people((1, "x", None, None, None, None, None))],
            WriteMode.MERGE,
            ["id"],
            "r",
            table="dupes",
        )
    assert caught.value.field == "primary_key"
    assert _sql(scratch, "SELECT id, name FROM dupes ORDER BY name") == [(1, "a"), (1, "b")]
    assert _tables(scratch) == ["dupes"]


def test_awkward_values_survive_both_load_paths(scratch: dict[str, str], load_data: bool) -> None:
    schema = StreamSchema(
        name="awkward", fields=(Field("id", FieldType.INTEGER), Field("text", FieldType.STRING))
    )
    values = [
        "NULL",
        "",
        None,
        'say "hi", ok',
        "back\\slash \\N",
        "line\nbreak\r\n",
        "tab\tend",
        "😀 ü ✓",
        ",",
        '"',
    ]
    batch = Batch.from_records([{"id": i, "text": v} for i, v in enumerate(values)], schema)
    MySqlConnector().write(
        _config(scratch, load_data=load_data), schema, [batch], WriteMode.APPEND, None, "r"
    )
    assert [row[0] for row in _sql(scratch, "SELECT text FROM awkward ORDER BY id")] == values


def test_a_server_that_never_answers_fails_the_check_within_its_timeout(
    allow_localhost: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setattr(MySqlConnector, "check_timeout_s", 1.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection, never sends the MySQL greeting
    port = silent.getsockname()[1]
    try:
        config = MySqlConnector.validate_config(
            {"host": "127.0.0.1", "port": port, "database": "d", "user": "u"}
        )
        result = run_check(MySqlConnector(), config)
    finally:
        silent.close()
    assert not result.ok
    assert result.duration_s < 1.0
    assert result.message == f"127.0.0.1:{port} did not answer in time while connecting."


def test_a_ca_certificate_must_be_pem_and_loadable(scratch: dict[str, str]) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        _config(scratch, ssl_mode="verify_ca", ssl_ca="not a certificate")
    assert "ssl_ca" in caught.value.errors
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(ConnectorError) as caught:
        MySqlConnector().check(_config(scratch, ssl_mode="verify_ca", ssl_ca=broken))
    assert caught.value.field == "ssl_ca"


def test_overwrite_leaves_the_live_table_untouched_while_it_loads(scratch: dict[str, str]) -> None:
    connector = MySqlConnector()
    config = _config(scratch)
    connector.write(
        config, PEOPLE, [_people((1, "old", None, None, None, None, None))], WriteMode.APPEND, None, "r0"
    )
    seen_during_load: list[Any] = []

    def batches() -> Iterator[Batch]:
        yield _people((2, "new", None, None, None, None, None))
        seen_during_load.append(_sql(scratch, "SELECT id, name FROM people"))
        yield _people((3, "newer", None, None, None, None, None))

    connector.write(config, PEOPLE, batches(), WriteMode.OVERWRITE, None, "r1")
    assert seen_during_load == [[(1, "old")]]
    assert _sql(scratch, "SELECT id, name FROM people ORDER BY id") == [(2, "new"), (3, "newer")]


def test_nested_arrow_values_are_written_as_json_text(scratch: dict[str, str], load_data: bool) -> None:
    schema = StreamSchema(name="docs", fields=(Field("id", FieldType.INTEGER), Field("doc", FieldType.JSON)))
    table = pa.table({"id": [1, 2], "doc": pa.array([{"a": [1, 2], "b": "x"}, None])})
    MySqlConnector().write(
        _config(scratch, load_data=load_data), schema, [Batch(table)], WriteMode.APPEND, None, "r"
    )
    rows = _sql(scratch, "SELECT id, doc FROM docs ORDER BY id")
    assert json.loads(rows[0][1]) == {"a": [1, 2], "b": "x"}
    assert rows[1] == (2, None)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_an_abandoned_read_closes_without_draining_the_rest(scratch: dict[str, str]) -> None:
    _sql(
        scratch,
        "CREATE TABLE big (id BIGINT PRIMARY KEY, pad VARCHAR(100))",
        "INSERT INTO big SELECT seq, REPEAT('x', 100) FROM seq_1_to_200000",
    )
    connector = MySqlConnector()
    config = _config(scratch, chunk_size=1000)
    stream = next(s for s in connector.discover(config) if s.name == "big")
    reader = connector.read(config, stream, None)
    first = next(reader)
    assert isinstance(first, Batch) and first.num_rows == 1000
    reader.close()  # the engine stops early (a preview, a cancelled run)
    # The reading session is gone: no query of the test's user is left running on the server.
    queries = _sql(
        scratch,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s AND COMMAND = 'Query'",
        params=(scratch["user"],),
    )
    assert queries == [(0,)]


def test_timestamps_are_read_as_utc_whatever_the_writer_session_zone(scratch: dict[str, str]) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", password="", database=scratch["database"])
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE events (id INT PRIMARY KEY, at TIMESTAMP(3) NULL)")
        cur.execute("SET time_zone = '+02:00'")
        cur.execute("INSERT INTO events VALUES (1, '2024-01-01 12:00:00.125')")
    conn.commit()
    conn.close()
    connector = MySqlConnector()
    config = _config(scratch)
    stream = StreamSchema(
        name="events",
        fields=next(s for s in connector.discover(config) if s.name == "events").fields,
        cursor_field="at",
    )
    _, checkpoints, rows = _read_all(connector, config, stream)
    assert rows == [{"id": 1, "at": dt.datetime(2024, 1, 1, 10, 0, 0, 125000, tzinfo=UTC)}]
    assert checkpoints[-1].state == {"cursor": "2024-01-01T10:00:00.125000+00:00"}
    # A state written with another offset means the same instant.
    _, _, rows = _read_all(connector, config, stream, {"cursor": "2024-01-01T11:00:00+01:00"})
    assert [r["id"] for r in rows] == [1]
    _, _, rows = _read_all(connector, config, stream, {"cursor": "2024-01-01T12:00:00.125+02:00"})
    assert rows == []


# --- removing a run's rows (a retry of an append run) -----------------------------------------------------


def test_remove_run_rows_deletes_one_runs_rows_and_keeps_the_others(scratch: dict[str, str]) -> None:
    connector = MySqlConnector()
    config = _config(scratch)
    first = _people((1, "Ada", 1.5, True, None, None, None), (2, "Bob", 2.5, False, None, None, None))
    second = _people((3, "Cy", 3.5, True, None, None, None))
    connector.write(config, PEOPLE, [first], WriteMode.APPEND, None, "run-1")
    connector.write(config, PEOPLE, [second], WriteMode.APPEND, None, "run-2")

    assert connector.remove_run_rows(config, "people", "run-1") == 2
    assert _sql(scratch, f"SELECT id, name, {RUN_ID_COLUMN} FROM people ORDER BY id") == [(3, "Cy", "run-2")]
    assert connector.remove_run_rows(config, "people", "run-1") == 0
    assert connector.remove_run_rows(config, "no_such_table", "run-2") == 0
    assert _tables(scratch) == ["people"]


def test_remove_run_rows_quotes_the_table_name(scratch: dict[str, str]) -> None:
    connector = MySqlConnector()
    config = _config(scratch)
    odd = "we`ird %s; drop"
    connector.write(
        config,
        PEOPLE,
        [_people((1, "Ada", None, None, None, None, None))],
        WriteMode.APPEND,
        None,
        "r1",
        table=odd,
    )
    connector.write(
        config,
        PEOPLE,
        [_people((2, "Bob", None, None, None, None, None))],
        WriteMode.APPEND,
        None,
        "r2",
        table=odd,
    )
    assert connector.remove_run_rows(config, odd, "r2") == 1
    assert _sql(scratch, "SELECT id, _ag_run_id FROM `we``ird %s; drop`") == [(1, "r1")]
