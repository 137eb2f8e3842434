"""The SQL layer of the connector SDK: identifier quoting (once, in `sdk/sql.py`), the reserved-column rule
the same for every destination (`sdk/destinations.py`), and the incremental-cursor policy (`sdk/cursor.py`)
with a `postgres_source` read stopped mid-stream and resumed from its last checkpoint."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from aggregator.dataplane import (
    RESERVED_COLUMNS,
    Batch,
    Field,
    FieldType,
    StateCheckpoint,
    StreamSchema,
    WriteMode,
)
from apps.connectors.base import ConnectorError, ConnectorKind
from apps.connectors.plugins import duckdb_dest, sqlite_file
from apps.connectors.plugins.files_dest import FilesDestination
from apps.connectors.plugins.mysql import MySqlConnector, quote_ident
from apps.connectors.plugins.postgres import PostgresDestination, PostgresSource, local_warehouse
from apps.connectors.registry import registry
from apps.connectors.sdk.cursor import CursorTracker, IncrementalCursor
from apps.connectors.sdk.sql import DUCKDB, MYSQL, POSTGRES, SQLITE
from tests.connectors.conftest import bound
from tests.connectors.test_local_warehouse import warehouse_settings  # noqa: F401 - a fixture

PLUGINS = Path(__file__).resolve().parents[2] / "apps" / "connectors" / "plugins"

# --- quoting -------------------------------------------------------------------------------------------


def test_each_dialect_quotes_and_doubles_its_quote() -> None:
    assert POSTGRES.quote('we"ird') == '"we""ird"'
    assert DUCKDB.qualified("my schema", 'a"; DROP TABLE x; --') == '"my schema"."a""; DROP TABLE x; --"'
    assert SQLITE.quote("order") == '"order"'
    # PyMySQL %-formats statements run with parameters: `%` is doubled as well as the backtick.
    assert MYSQL.quote("we`ird %s table") == "`we``ird %%s table`"
    assert MYSQL.qualified("shop", "orders") == "`shop`.`orders`"


@pytest.mark.parametrize("dialect", [POSTGRES, MYSQL, DUCKDB, SQLITE])
@pytest.mark.parametrize("name", ["", "a\x00b"])
def test_no_dialect_quotes_an_empty_name_or_a_nul(dialect: Any, name: str) -> None:
    with pytest.raises(ConnectorError, match="not a valid identifier"):
        dialect.quote(name)


def test_identifier_lengths_follow_each_database() -> None:
    assert POSTGRES.identifier("a" * 63, "table") == "a" * 63
    with pytest.raises(ConnectorError, match=r"not a valid PostgreSQL name \(1 to 63 bytes\)") as exc:
        POSTGRES.identifier("é" * 32, "table")  # 32 characters, 64 bytes
    assert exc.value.field == "table"
    with pytest.raises(ConnectorError, match="1 to 64 characters"):
        MYSQL.identifier("m" * 65, "table")
    with pytest.raises(ConnectorError, match="1 to 255 characters") as exc:
        DUCKDB.identifier("d" * 256, "schema")
    assert exc.value.field == "schema"


def test_plugins_quote_through_the_sdk_only() -> None:
    """The plugins' quoting helpers are the SDK's dialects, and no plugin module spells a quoting rule of
    its own (doubling a quote character)."""
    assert quote_ident("a`b") == MYSQL.quote("a`b")
    assert sqlite_file.quote_ident == SQLITE.quote
    assert MYSQL.spelled("50%") == "`50%`"  # as the server writes it, without the driver's escaping
    assert duckdb_dest.quote_identifier == DUCKDB.quote
    doubling = re.compile(r"""\.replace\(\s*(['"])(`|\\"|")\1\s*,\s*(['"])(``|\\"\\"|"")\3\s*\)""")
    offenders = [
        str(path.relative_to(PLUGINS))
        for path in PLUGINS.rglob("*.py")
        if doubling.search(path.read_text()) and path.name != "__init__.py"
    ]
    assert offenders == []


def test_no_plugin_imports_another_plugin() -> None:
    """Every plugin (module or package) stands on the SDK, never on another plugin, absolute or relative."""
    absolute = re.compile(r"^\s*(?:from|import)\s+apps\.connectors\.plugins\.(\w+)", re.MULTILINE)
    relative = re.compile(r"^\s*from\s+\.(\w+)\s+import", re.MULTILINE)
    offenders = []
    paths = sorted(PLUGINS.rglob("*.py"))
    assert len(paths) > 20
    for path in paths:
        parts = path.relative_to(PLUGINS).parts
        own = parts[0].removesuffix(".py")
        text = path.read_text()
        names = [m.group(1) for m in absolute.finditer(text)]
        if len(parts) == 1:  # a module plugin: `from .x import` names a sibling plugin
            names += [m.group(1) for m in relative.finditer(text)]
        offenders += [f"{path.relative_to(PLUGINS)} imports {name}" for name in names if name != own]
    assert offenders == []


# --- the reserved-column rule, for every destination -----------------------------------------------------


def _with_platform_column(name: str) -> StreamSchema:
    return StreamSchema(name="orders", fields=(Field("id", FieldType.INTEGER), Field(name, FieldType.STRING)))


@pytest.fixture
def destination_configs(
    data_dir: Path,
    warehouse_settings: str,  # noqa: F811 - the fixture imported above
) -> dict[str, tuple[Any, Any]]:
    """Every destination type with a config that would fail to connect (an unresolvable host) had the
    write got past its validation: the refusal must come first."""
    return {
        "postgres": (
            PostgresDestination(),
            PostgresDestination().validate_config(
                {"host": "db.invalid", "database": "dw", "user": "loader", "schema": "public"}
            ),
        ),
        "mysql": (
            MySqlConnector(),
            MySqlConnector().validate_config({"host": "db.invalid", "database": "dw", "user": "loader"}),
        ),
        "duckdb": (
            duckdb_dest.DuckDbDestination(),
            bound(duckdb_dest.DuckDbDestination, {"database": "w.duckdb"}),
        ),
        "files": (FilesDestination(), bound(FilesDestination, {"directory": "exports"})),
        "local_warehouse": (
            local_warehouse.LocalWarehouse(),
            local_warehouse._bound_config(local_warehouse.LocalWarehouseConfig(), 424242),
        ),
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("column", RESERVED_COLUMNS)
def test_every_destination_refuses_a_platform_column_the_same_way(
    destination_configs: dict[str, tuple[Any, Any]], column: str
) -> None:
    destinations = {t.slug for t in registry.all(kind=ConnectorKind.DESTINATION)}
    assert destinations == set(destination_configs), "a new destination must be added to this test"
    messages = set()
    for slug, (connector, config) in destination_configs.items():
        with pytest.raises(ConnectorError, match="reserved for the platform") as exc:
            connector.write(config, _with_platform_column(column), [], WriteMode.APPEND, None, "run-1")
        assert exc.value.field == "stream", slug
        messages.add(str(exc.value))
    # One rule, one message: MySQL used to drop the column silently.
    assert messages == {
        f"Field {column!r} is reserved for the platform (every written row gets _ag_run_id, _ag_loaded_at): "
        "rename or drop it before the destination."
    }


# --- the cursor policy ---------------------------------------------------------------------------------


def test_the_tracker_ignores_nulls_wherever_they_sort() -> None:
    # PostgreSQL sorts NULLs last, MySQL and SQLite first: the values seen are what counts.
    last = CursorTracker()
    assert last.add([1, 2, 2]) == 1
    assert last.add([3, None, None]) == 2
    assert last.last == 3
    first = CursorTracker()
    assert first.add([None, None, 1]) is None
    assert first.add([2, 2]) == 1
    assert first.last == 2


def test_the_arrow_path_answers_as_the_python_path() -> None:
    batches = [[1, 2, 2], [2, 2], [2, 3, None], [None], [4]]
    python, arrow = CursorTracker(), CursorTracker()
    for values in batches:
        assert python.add(values) == arrow.add_arrow(pa.chunked_array([pa.array(values, pa.int64())]))
    assert python.last == arrow.last == 4


def test_a_read_without_new_rows_checkpoints_nothing() -> None:
    cursor = IncrementalCursor("s")
    assert list(cursor.after_batch([])) == []
    assert list(cursor.final()) == []


@pytest.fixture
def ties(scratch_conn: psycopg.Connection[Any], pg_schema: str) -> str:
    """Ten rows whose cursor `seq` has runs of equal values: 1 2 2 3 4 4 4 5 6 7."""
    scratch_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    scratch_conn.execute(f'CREATE TABLE "{pg_schema}".events (id int PRIMARY KEY, seq int)')
    for i, seq in enumerate([1, 2, 2, 3, 4, 4, 4, 5, 6, 7], start=1):
        scratch_conn.execute(f'INSERT INTO "{pg_schema}".events VALUES (%s, %s)', (i, seq))
    return f"{pg_schema}.events"


class WorkerKilled(Exception):
    pass


def _until_failure(items: Iterator[Any], *, fail_at_batch: int) -> tuple[list[int], dict[str, Any] | None]:
    """Consume a read as the executor does (the last checkpoint is what it would keep) until the batch
    numbered `fail_at_batch` arrives, then fail as a killed worker would."""
    ids: list[int] = []
    state = None
    batches = 0
    try:
        for item in items:
            if isinstance(item, Batch):
                batches += 1
                if batches == fail_at_batch:
                    raise WorkerKilled
                ids += item.table.column("id").to_pylist()
            elif isinstance(item, StateCheckpoint):
                state = item.state
    except WorkerKilled:
        close: Callable[[], None] | None = getattr(items, "close", None)
        if close is not None:
            close()
    return ids, state


def test_postgres_source_checkpoints_after_each_batch_and_resumes_from_the_last(
    pg_config: dict[str, Any], ties: str
) -> None:
    source = PostgresSource()
    config = source.validate_config({**pg_config, "chunk_size": 3})
    stream = next(s for s in source.discover(config) if s.name == ties)
    stream = dataclasses.replace(stream, cursor_field="seq")

    items = list(source.read(config, stream, None))
    kinds = [type(i).__name__ for i in items]
    # A checkpoint after each batch (at the last complete value), then the last value at the end.
    assert kinds == ["Batch", "StateCheckpoint"] * 4 + ["StateCheckpoint"]
    assert [i.state for i in items if isinstance(i, StateCheckpoint)] == [
        {"cursor": 1},  # batch 1 (1 2 2) ends inside the run of 2s
        {"cursor": 3},  # batch 2 (3 4 4) ends inside the run of 4s
        {"cursor": 5},  # batch 3 (4 5 6): 6 may continue
        {"cursor": 6},  # batch 4 (7) moved past 6
        {"cursor": 7},  # the end of the stream
    ]

    # The worker dies when the third batch arrives: the last committed checkpoint is after batch 2.
    first_ids, state = _until_failure(source.read(config, stream, None), fail_at_batch=3)
    assert first_ids == [1, 2, 3, 4, 5, 6] and state == {"cursor": 3}

    resumed = list(source.read(config, stream, state))
    resumed_ids = [r for i in resumed if isinstance(i, Batch) for r in i.table.column("id").to_pylist()]
    # It starts at the first row the checkpoint does not cover: the run of 4s (two of its rows were read
    # before the failure and are read again, nothing is skipped) and ends at the last row.
    assert resumed_ids == [5, 6, 7, 8, 9, 10]
    assert set(first_ids) | set(resumed_ids) == set(range(1, 11))
    assert [i.state for i in resumed if isinstance(i, StateCheckpoint)][-1] == {"cursor": 7}
