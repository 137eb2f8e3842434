"""Files destination: one run directory of part files per run, in Parquet, CSV and JSON Lines, with the run
columns; overwrite replaces previous runs; merge is refused; a failed run leaves no part file behind."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, WriteMode
from apps.connectors.base import ConnectorError, run_check
from apps.connectors.plugins.files_dest import FilesDestination
from tests.connectors.conftest import bound

UTC = dt.UTC
SCHEMA = StreamSchema(
    name="orders",
    fields=(
        Field("id", FieldType.INTEGER),
        Field("customer", FieldType.STRING),
        Field("amount", FieldType.NUMBER),
        Field("day", FieldType.DATE),
        Field("at", FieldType.DATETIME),
        Field("meta", FieldType.JSON),
    ),
)


@pytest.fixture
def dest() -> FilesDestination:
    return FilesDestination()


def rows(start: int, n: int) -> Batch:
    return Batch.from_records(
        [
            {
                "id": i,
                "customer": f"c{i}",
                "amount": i * 1.5,
                "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
                "at": dt.datetime(2024, 1, 1, 12, 30, tzinfo=UTC) + dt.timedelta(hours=i),
                "meta": json.dumps({"n": i}),
            }
            for i in range(start, start + n)
        ],
        SCHEMA,
    )


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_check_reports_a_writable_directory(dest: FilesDestination, data_dir: Path) -> None:
    result = run_check(dest, bound(dest, {"directory": "exports/daily"}))
    assert result.ok and result.message == "exports/daily is writable."
    assert listing(data_dir) == ["exports", "exports/daily"]


def test_parquet_append_writes_one_run_directory_per_run(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "exports", "format": "parquet"})
    first = dest.write(config, SCHEMA, [rows(0, 3), rows(3, 2)], WriteMode.APPEND, None, "r1")
    assert (first.table, first.rows_written, first.batches) == ("exports/orders/run=r1", 5, 2)
    dest.write(config, SCHEMA, [rows(5, 1)], WriteMode.APPEND, None, "r2")
    assert listing(data_dir / "exports") == [
        "orders",
        "orders/run=r1",
        "orders/run=r1/part-00000.parquet",
        "orders/run=r2",
        "orders/run=r2/part-00000.parquet",
    ]
    table = pq.read_table(data_dir / "exports/orders/run=r1/part-00000.parquet")
    assert table.column_names == [
        "id",
        "customer",
        "amount",
        "day",
        "at",
        "meta",
        "_ag_run_id",
        "_ag_loaded_at",
    ]
    assert table.num_rows == 5
    assert table.slice(4, 1).to_pylist()[0] | {"_ag_loaded_at": None} == {
        "id": 4,
        "customer": "c4",
        "amount": 6.0,
        "day": dt.date(2024, 1, 5),
        "at": dt.datetime(2024, 1, 1, 16, 30, tzinfo=UTC),
        "meta": '{"n": 4}',
        "_ag_run_id": "r1",
        "_ag_loaded_at": None,
    }
    assert table.column("_ag_loaded_at").null_count == 0
    assert pq.read_table(data_dir / "exports/orders/run=r2").column("id").to_pylist() == [5]


def test_parts_are_split_at_max_rows_per_file(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "out", "format": "parquet", "max_rows_per_file": 4})
    result = dest.write(config, SCHEMA, [rows(0, 3), rows(3, 7)], WriteMode.APPEND, None, "r1")
    assert result.rows_written == 10
    run = data_dir / "out/orders/run=r1"
    assert sorted(p.name for p in run.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    counts = [pq.read_metadata(run / f"part-0000{i}.parquet").num_rows for i in range(3)]
    assert counts == [4, 4, 2]
    assert pq.read_table(run).sort_by("id").column("id").to_pylist() == list(range(10))


def test_csv_format(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "out", "format": "csv", "max_rows_per_file": 2})
    dest.write(config, SCHEMA, [rows(0, 3)], WriteMode.APPEND, None, "r1", table="sales")
    run = data_dir / "out/sales/run=r1"
    assert sorted(p.name for p in run.iterdir()) == ["part-00000.csv", "part-00001.csv"]
    first = (run / "part-00000.csv").read_text().splitlines()
    assert first[0] == '"id","customer","amount","day","at","meta","_ag_run_id","_ag_loaded_at"'
    assert first[1].startswith('0,"c0",0,2024-01-01,2024-01-01 12:30:00.000000Z,"{""n"": 0}","r1",')
    table = pacsv.read_csv(run / "part-00001.csv")
    assert table.column("id").to_pylist() == [2]
    assert table.column("customer").to_pylist() == ["c2"]


def test_jsonl_format(dest: FilesDestination, data_dir: Path) -> None:
    schema = StreamSchema(name="m", fields=(Field("x", FieldType.NUMBER), *SCHEMA.fields))
    batch = Batch.from_records(
        [
            {
                "x": 1.5,
                "id": 1,
                "customer": 'quote " and \\',
                "day": dt.date(2024, 2, 3),
                "meta": '{"a": [1, 2]}',
                "at": dt.datetime(2024, 2, 3, 4, 5, 6, 789, tzinfo=UTC),
                "amount": None,
            },
            {"x": math.nan, "id": 2, "customer": None, "day": None, "meta": None, "at": None, "amount": 2.0},
        ],
        schema,
    )
    config = bound(dest, {"directory": "out", "format": "jsonl"})
    dest.write(config, schema, [batch], WriteMode.APPEND, None, "r1")
    lines = (data_dir / "out/m/run=r1/part-00000.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        assert record.pop("_ag_loaded_at").endswith("Z")
    assert records == [
        {
            "x": 1.5,
            "id": 1,
            "customer": 'quote " and \\',
            "amount": None,
            "day": "2024-02-03",
            "at": "2024-02-03T04:05:06.000789Z",
            "meta": {"a": [1, 2]},
            "_ag_run_id": "r1",
        },
        {
            "x": None,
            "id": 2,
            "customer": None,
            "amount": 2.0,
            "day": None,
            "at": None,
            "meta": None,
            "_ag_run_id": "r1",
        },
    ]


def test_overwrite_replaces_the_previous_runs(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "out"})
    dest.write(config, SCHEMA, [rows(0, 2)], WriteMode.APPEND, None, "r1")
    dest.write(config, SCHEMA, [rows(2, 2)], WriteMode.APPEND, None, "r2")
    dest.write(config, SCHEMA, [rows(10, 1)], WriteMode.OVERWRITE, None, "r3")
    assert listing(data_dir / "out/orders") == ["run=r3", "run=r3/part-00000.parquet"]
    assert pq.read_table(data_dir / "out/orders").column("id").to_pylist() == [10]


def test_a_retry_of_the_same_run_replaces_its_directory(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "out"})
    dest.write(config, SCHEMA, [rows(0, 5)], WriteMode.APPEND, None, "r1")
    dest.write(config, SCHEMA, [rows(0, 2)], WriteMode.APPEND, None, "r1")
    assert listing(data_dir / "out/orders") == ["run=r1", "run=r1/part-00000.parquet"]
    assert pq.read_table(data_dir / "out/orders/run=r1").num_rows == 2


def test_an_empty_stream_writes_a_schema_only_part(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "out"})
    result = dest.write(config, SCHEMA, [], WriteMode.APPEND, None, "r1")
    assert result.rows_written == 0
    table = pq.read_table(data_dir / "out/orders/run=r1/part-00000.parquet")
    assert table.num_rows == 0 and "_ag_run_id" in table.column_names


def test_merge_is_refused_naming_write_mode(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "out"})
    with pytest.raises(ConnectorError, match="cannot merge") as exc:
        dest.write(config, SCHEMA, [rows(0, 1)], WriteMode.MERGE, ["id"], "r1")
    assert exc.value.field == "write_mode"
    assert "set write_mode to append or overwrite" in exc.value.message
    assert listing(data_dir) == []


def failing(good: list[Batch]) -> Iterator[Batch]:
    yield from good
    raise RuntimeError("the source died mid-stream")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_a_failed_run_leaves_no_part_files(dest: FilesDestination, data_dir: Path, fmt: str) -> None:
    config = bound(dest, {"directory": "out", "format": fmt, "max_rows_per_file": 2})
    dest.write(config, SCHEMA, [rows(0, 1)], WriteMode.APPEND, None, "r1")
    before = listing(data_dir)
    with pytest.raises(RuntimeError, match="the source died"):
        dest.write(config, SCHEMA, failing([rows(1, 3), rows(4, 3)]), WriteMode.OVERWRITE, None, "r2")
    assert listing(data_dir) == before  # the old run is intact, nothing of r2 (not even a hidden dir)


def test_paths_and_names_that_leave_the_directory_are_refused(
    dest: FilesDestination, data_dir: Path, tmp_path: Path
) -> None:
    for bad in ("../out", "/tmp/out", "a/../../out"):
        with pytest.raises(ConnectorError) as exc:
            bound(dest, {"directory": bad})
        assert exc.value.field == "directory"
    config = bound(dest, {"directory": "out"})
    for table in ("../escape", "a/b", ".hidden"):
        with pytest.raises(ConnectorError, match="cannot be used as a table directory name") as exc:
            dest.write(config, SCHEMA, [rows(0, 1)], WriteMode.APPEND, None, "r1", table=table)
        assert exc.value.field == "table"
    with pytest.raises(ConnectorError, match="cannot be used as a run directory name"):
        dest.write(config, SCHEMA, [rows(0, 1)], WriteMode.APPEND, None, "../r1")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, data_dir / "link")
    config = bound(dest, {"directory": "link"})
    with pytest.raises(ConnectorError, match="leads outside this workspace's data directory"):
        dest.write(config, SCHEMA, [rows(0, 1)], WriteMode.APPEND, None, "r1")
    assert list(outside.iterdir()) == []


def test_registered_as_a_destination_with_its_config_schema() -> None:
    from apps.connectors.registry import get_connector_type

    connector_type = get_connector_type("files")
    assert connector_type is FilesDestination
    assert connector_type.is_destination() and not connector_type.is_source()
    schema = connector_type.json_schema()
    assert schema["required"] == ["directory"]
    assert list(schema["properties"]) == ["directory", "format", "max_rows_per_file"]
    assert schema["properties"]["format"]["enum"] == ["parquet", "csv", "jsonl"]


# --- removing a run's files (a retry of an append run) ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_remove_run_rows_removes_the_run_directory_and_keeps_the_others(
    dest: FilesDestination, data_dir: Path, fmt: str
) -> None:
    config = bound(dest, {"directory": "exports", "format": fmt, "max_rows_per_file": 2})
    dest.write(config, SCHEMA, [rows(0, 5)], WriteMode.APPEND, None, "r1")
    dest.write(config, SCHEMA, [rows(5, 2)], WriteMode.APPEND, None, "r2")

    assert dest.remove_run_rows(config, "orders", "r1") == 5
    suffix = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}[fmt]
    assert listing(data_dir) == [
        "exports",
        "exports/orders",
        "exports/orders/run=r2",
        f"exports/orders/run=r2/part-00000{suffix}",
    ]
    assert dest.remove_run_rows(config, "orders", "r1") == 0
    assert dest.remove_run_rows(config, "nothing", "r1") == 0
    assert not (data_dir / "exports" / "nothing").exists()


def test_remove_run_rows_refuses_a_run_id_that_is_a_path(dest: FilesDestination, data_dir: Path) -> None:
    config = bound(dest, {"directory": "exports"})
    dest.write(config, SCHEMA, [rows(0, 1)], WriteMode.APPEND, None, "r1")
    with pytest.raises(ConnectorError) as error:
        dest.remove_run_rows(config, "orders", "../orders")
    assert error.value.field == "run_id"
    assert listing(data_dir)[-1] == "exports/orders/run=r1/part-00000.parquet"
