"""PostgreSQL destination against the real server: the three write modes, schema evolution, and failed
writes that leave the target exactly as it was."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, WriteMode
from apps.connectors.base import ConnectorError
from apps.connectors.plugins.postgres import PostgresDestination

destination = PostgresDestination()

SCHEMA = StreamSchema(
    name="flights",
    fields=(
        Field("id", FieldType.INTEGER),
        Field("carrier", FieldType.STRING),
        Field("delay", FieldType.NUMBER),
        Field("day", FieldType.DATE),
        Field("departed_at", FieldType.DATETIME),
        Field("cancelled", FieldType.BOOLEAN),
    ),
    primary_key=("id",),
)


def _rows(ids: range, carrier: str = "UA") -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "carrier": carrier,
            "delay": i * 1.5,
            "day": dt.date(2013, 1, 1 + i % 28),
            "departed_at": dt.datetime(2013, 1, 1, 5, i % 60, tzinfo=dt.UTC),
            "cancelled": i % 2 == 0,
        }
        for i in ids
    ]


def _batches(*chunks: list[dict[str, Any]], schema: StreamSchema = SCHEMA) -> list[Batch]:
    return [Batch.from_records(chunk, schema) for chunk in chunks]


def _write(pg_config: dict[str, Any], batches: Any, mode: str, run_id: str, **kwargs: Any) -> Any:
    schema = kwargs.pop("schema", SCHEMA)
    key = kwargs.pop("primary_key", ["id"])
    return destination.write(
        destination.validate_config(pg_config), schema, batches, WriteMode(mode), key, run_id, **kwargs
    )


def _fetch(conn: psycopg.Connection[Any], schema: str, query: str) -> list[tuple[Any, ...]]:
    return conn.execute(query.format(t=f'"{schema}".flights')).fetchall()


def _tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
    ).fetchall()
    return [r[0] for r in rows]


def test_check_succeeds_against_the_scratch_database(pg_config: dict[str, Any]) -> None:
    result = destination.check(destination.validate_config(pg_config))
    assert result.ok
    assert result.message.startswith("Connected to PostgreSQL ")


def test_append_creates_the_table_and_adds_run_columns(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    result = _write(pg_config, _batches(_rows(range(0, 3)), _rows(range(3, 5))), "append", "run-1")
    assert (result.rows_written, result.batches) == (5, 2)
    result = _write(pg_config, _batches(_rows(range(0, 2))), "append", "run-2")
    assert result.rows_written == 2

    assert _fetch(scratch_conn, pg_schema, "SELECT _ag_run_id, count(*) FROM {t} GROUP BY 1 ORDER BY 1") == [
        ("run-1", 5),
        ("run-2", 2),
    ]
    row = _fetch(
        scratch_conn,
        pg_schema,
        "SELECT id, carrier, delay, day, departed_at, cancelled FROM {t} WHERE id = 3",
    )
    assert row == [(3, "UA", 4.5, dt.date(2013, 1, 4), dt.datetime(2013, 1, 1, 5, 3, tzinfo=dt.UTC), False)]
    columns = scratch_conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'flights' ORDER BY ordinal_position",
        (pg_schema,),
    ).fetchall()
    assert columns == [
        ("id", "bigint"),
        ("carrier", "text"),
        ("delay", "double precision"),
        ("day", "date"),
        ("departed_at", "timestamp with time zone"),
        ("cancelled", "boolean"),
        ("_ag_run_id", "text"),
        ("_ag_loaded_at", "timestamp with time zone"),
    ]
    assert _fetch(scratch_conn, pg_schema, "SELECT count(*) FROM {t} WHERE _ag_loaded_at IS NULL") == [(0,)]


def test_nulls_empty_strings_and_quotes_survive(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    rows = [
        {
            "id": 1,
            "carrier": 'say "hi", then\nleave',
            "delay": None,
            "day": None,
            "departed_at": None,
            "cancelled": None,
        },
        {"id": 2, "carrier": "", "delay": 0.0, "day": None, "departed_at": None, "cancelled": True},
        {"id": 3, "carrier": None, "delay": -1e300, "day": None, "departed_at": None, "cancelled": False},
    ]
    _write(pg_config, _batches(rows), "append", "run-1")
    assert _fetch(scratch_conn, pg_schema, "SELECT id, carrier, delay, cancelled FROM {t} ORDER BY id") == [
        (1, 'say "hi", then\nleave', None, None),
        (2, "", 0.0, True),
        (3, None, -1e300, False),
    ]


def test_new_fields_become_columns_and_integers_widen_to_numbers(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(2))), "append", "run-1")
    wider = StreamSchema(
        name="flights",
        fields=(
            Field("id", FieldType.NUMBER),
            Field("carrier", FieldType.STRING),
            Field("gate", FieldType.STRING),
        ),
    )
    result = _write(
        pg_config,
        _batches([{"id": 2.5, "carrier": "AA", "gate": "B7"}], schema=wider),
        "append",
        "run-2",
        schema=wider,
        primary_key=[],
    )
    assert result.columns_added == ["gate"]
    assert _fetch(scratch_conn, pg_schema, "SELECT id, carrier, gate FROM {t} ORDER BY id") == [
        (0.0, "UA", None),
        (1.0, "UA", None),
        (2.5, "AA", "B7"),
    ]


def test_overwrite_swaps_in_the_new_rows(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(10))), "append", "run-1")
    result = _write(pg_config, _batches(_rows(range(100, 103), carrier="DL")), "overwrite", "run-2")
    assert result.rows_written == 3
    assert _fetch(scratch_conn, pg_schema, "SELECT id, carrier, _ag_run_id FROM {t} ORDER BY id") == [
        (100, "DL", "run-2"),
        (101, "DL", "run-2"),
        (102, "DL", "run-2"),
    ]
    assert _tables(scratch_conn, pg_schema) == ["flights"]  # no staging or old table left behind


def test_overwrite_of_a_missing_table_creates_it(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(4))), "overwrite", "run-1")
    assert _fetch(scratch_conn, pg_schema, "SELECT count(*) FROM {t}") == [(4,)]


def test_merge_upserts_on_the_primary_key(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(5))), "merge", "run-1")
    changed = _rows(range(3, 7), carrier="AA")
    changed[0]["delay"] = 99.0
    # id 6 appears twice in one load: the last occurrence wins.
    late = _rows(range(6, 7), carrier="B6")
    result = _write(pg_config, _batches(changed, late), "merge", "run-2")
    assert result.rows_written == 4  # ids 3, 4, 5 and 6 (once)

    assert _fetch(scratch_conn, pg_schema, "SELECT id, carrier, delay, _ag_run_id FROM {t} ORDER BY id") == [
        (0, "UA", 0.0, "run-1"),
        (1, "UA", 1.5, "run-1"),
        (2, "UA", 3.0, "run-1"),
        (3, "AA", 99.0, "run-2"),
        (4, "AA", 6.0, "run-2"),
        (5, "AA", 7.5, "run-2"),
        (6, "B6", 9.0, "run-2"),
    ]
    unique = scratch_conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = 'flights' "
        "AND indexdef LIKE 'CREATE UNIQUE%%'",
        (pg_schema,),
    ).fetchone()
    assert unique == (1,)


def test_merge_into_an_existing_table_creates_the_unique_index(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(3))), "append", "run-1")
    _write(pg_config, _batches(_rows(range(2, 4), carrier="AA")), "merge", "run-2")
    assert _fetch(scratch_conn, pg_schema, "SELECT id, carrier FROM {t} ORDER BY id") == [
        (0, "UA"),
        (1, "UA"),
        (2, "AA"),
        (3, "AA"),
    ]


def test_merge_needs_a_primary_key(pg_config: dict[str, Any]) -> None:
    no_key = StreamSchema(name="flights", fields=SCHEMA.fields)
    with pytest.raises(ConnectorError) as excinfo:
        _write(
            pg_config,
            _batches(_rows(range(2)), schema=no_key),
            "merge",
            "run-1",
            schema=no_key,
            primary_key=[],
        )
    assert excinfo.value.field == "primary_key"


def _failing(batches: list[Batch]) -> Iterator[Batch]:
    yield from batches
    raise RuntimeError("the source died mid-stream")


SNAPSHOT = "SELECT id, carrier, delay, _ag_run_id FROM {t} ORDER BY id"


@pytest.mark.parametrize("mode", ["append", "overwrite", "merge"])
def test_a_failed_write_leaves_the_target_unchanged(
    mode: str, pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(5))), "merge", "run-1")
    before = _fetch(scratch_conn, pg_schema, SNAPSHOT)

    with pytest.raises(RuntimeError):
        _write(pg_config, _failing(_batches(_rows(range(3, 9), carrier="XX"))), mode, "run-2")

    assert _fetch(scratch_conn, pg_schema, SNAPSHOT) == before
    assert _tables(scratch_conn, pg_schema) == ["flights"]


def test_a_rejected_load_is_reported_and_rolled_back(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(3))), "merge", "run-1")
    before = _fetch(scratch_conn, pg_schema, SNAPSHOT)
    rows = _rows(range(10, 12))
    rows[1]["id"] = None
    with pytest.raises(ConnectorError) as excinfo:
        _write(pg_config, _batches(rows), "merge", "run-2")
    assert excinfo.value.message == "1 rows have an empty primary key (id)."
    assert _fetch(scratch_conn, pg_schema, SNAPSHOT) == before
    assert _tables(scratch_conn, pg_schema) == ["flights"]


def test_append_into_a_table_made_elsewhere_sends_the_run_columns(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    scratch_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    scratch_conn.execute(f'CREATE TABLE "{pg_schema}".flights (id bigint, note text)')
    scratch_conn.execute(f"INSERT INTO \"{pg_schema}\".flights VALUES (1, 'by hand')")

    result = _write(pg_config, _batches(_rows(range(2, 4))), "append", "run-9")

    assert result.columns_added == [
        "carrier",
        "delay",
        "day",
        "departed_at",
        "cancelled",
        "_ag_run_id",
        "_ag_loaded_at",
    ]
    rows = _fetch(
        scratch_conn,
        pg_schema,
        "SELECT id, note, carrier, _ag_run_id, _ag_loaded_at IS NULL FROM {t} ORDER BY id",
    )
    assert rows == [
        (1, "by hand", None, None, True),
        (2, None, "UA", "run-9", False),
        (3, None, "UA", "run-9", False),
    ]


def test_tables_it_creates_default_the_run_columns_from_the_write(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(2))), "append", "run-1")
    defaults = scratch_conn.execute(
        "SELECT column_name, column_default FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'flights' AND column_name LIKE '\\_ag\\_%%' ORDER BY 1",
        (pg_schema,),
    ).fetchall()
    assert defaults == [
        ("_ag_loaded_at", "now()"),
        ("_ag_run_id", "current_setting('aggregator.run_id'::text, true)"),
    ]
    loaded = _fetch(
        scratch_conn,
        pg_schema,
        "SELECT DISTINCT _ag_run_id, _ag_loaded_at > now() - interval '1 hour' FROM {t}",
    )
    assert loaded == [("run-1", True)]


# --- removing a run's rows (a retry of an append run) -----------------------------------------------------


def test_remove_run_rows_deletes_one_runs_rows_and_keeps_the_others(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    _write(pg_config, _batches(_rows(range(0, 3))), "append", "run-1")
    _write(pg_config, _batches(_rows(range(3, 5), carrier="AA")), "append", "run-2")
    config = destination.validate_config(pg_config)

    assert destination.remove_run_rows(config, "flights", "run-2") == 2
    assert _fetch(scratch_conn, pg_schema, "SELECT id, carrier, _ag_run_id FROM {t} ORDER BY id") == [
        (0, "UA", "run-1"),
        (1, "UA", "run-1"),
        (2, "UA", "run-1"),
    ]
    assert destination.remove_run_rows(config, "flights", "run-2") == 0
    assert destination.remove_run_rows(config, "no_such_table", "run-1") == 0
    assert _tables(scratch_conn, pg_schema) == ["flights"]


def test_remove_run_rows_quotes_odd_table_names(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    odd = 'we"ird; DROP TABLE x'
    _write(pg_config, _batches(_rows(range(0, 2))), "append", "run-1", table=odd)
    _write(pg_config, _batches(_rows(range(2, 3))), "append", "run-2", table=odd)
    assert destination.remove_run_rows(destination.validate_config(pg_config), odd, "run-1") == 2
    rows = scratch_conn.execute(
        psycopg.sql.SQL("SELECT id, _ag_run_id FROM {}").format(psycopg.sql.Identifier(pg_schema, odd))
    ).fetchall()
    assert rows == [(2, "run-2")]


def test_remove_run_rows_on_a_table_without_run_columns_removes_nothing(
    pg_config: dict[str, Any], pg_schema: str, scratch_conn: Any
) -> None:
    scratch_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    scratch_conn.execute(f'CREATE TABLE "{pg_schema}".plain (id int)')
    scratch_conn.execute(f'INSERT INTO "{pg_schema}".plain VALUES (1)')
    assert destination.remove_run_rows(destination.validate_config(pg_config), "plain", "run-1") == 0
    assert scratch_conn.execute(f'SELECT count(*) FROM "{pg_schema}".plain').fetchone() == (1,)
