"""JSON, JSON Lines, Parquet and Excel sources: discover, read (values and counts), chunking, gzip and zip
inputs, malformed records with their line numbers or indices, incremental state, paths outside the import
directory refused."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aggregator.dataplane import Batch, FieldType, RejectedRows, StateCheckpoint, StreamSchema
from apps.connectors.base import ConnectorError, run_check
from apps.connectors.plugins.excel_file import ExcelFileSource
from apps.connectors.plugins.json_file import JsonFileSource
from apps.connectors.plugins.parquet_file import ParquetFileSource
from apps.connectors.registry import get_connector_type
from apps.connectors.sdk.files import CursorFilter
from tests.connectors.conftest import bound

UTC = dt.UTC


@pytest.fixture
def import_root(import_dir: Path) -> Path:
    return import_dir


def read_all(source: Any, config: Any, stream: StreamSchema, state: dict[str, Any] | None = None) -> dict:
    batches: list[Batch] = []
    rejected = []
    checkpoints = []
    for item in source.read(config, stream, state):
        if isinstance(item, Batch):
            batches.append(item)
        elif isinstance(item, RejectedRows):
            rejected.extend(item.rows)
        else:
            assert isinstance(item, StateCheckpoint)
            checkpoints.append(item.state)
    rows = [row for b in batches for row in b.table.to_pylist()]
    return {"batches": batches, "rows": rows, "rejected": rejected, "checkpoints": checkpoints}


def with_cursor(stream: StreamSchema, cursor: str) -> StreamSchema:
    return StreamSchema(
        name=stream.name,
        fields=stream.fields,
        cursor_field=cursor,
        cursor_candidates=stream.cursor_candidates,
        supported_sync_modes=stream.supported_sync_modes,
    )


def types_of(stream: StreamSchema) -> dict[str, str]:
    return {f.name: str(f.type) for f in stream.fields}


# --- JSON Lines ------------------------------------------------------------------------------------------

EVENTS = [
    {"id": 1, "user": "ann", "amount": 9.5, "ok": True, "at": "2024-03-01T10:00:00Z", "meta": {"k": 1}},
    {"id": 2, "user": "bob", "amount": 3, "ok": False, "at": "2024-03-02T11:30:00+01:00", "meta": None},
    {"id": 3, "user": "cy", "amount": 7.25, "ok": True, "at": "2024-03-03T00:00:00", "meta": [1, 2]},
]


def write_jsonl(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_jsonl_discover_infers_types_and_read_returns_values(import_root: Path) -> None:
    write_jsonl(import_root / "events.jsonl", [json.dumps(e) for e in EVENTS])
    source = JsonFileSource()
    config = bound(source, {"path": "events.jsonl"})
    assert run_check(source, config).ok
    [stream] = source.discover(config)
    assert stream.name == "events"
    assert types_of(stream) == {
        "id": "integer",
        "user": "string",
        "amount": "number",
        "ok": "boolean",
        "at": "datetime",
        "meta": "json",
    }
    assert stream.cursor_candidates == ("id", "amount", "at")
    out = read_all(source, config, stream)
    assert out["rejected"] == [] and out["checkpoints"] == []
    assert out["rows"] == [
        {
            "id": 1,
            "user": "ann",
            "amount": 9.5,
            "ok": True,
            "at": dt.datetime(2024, 3, 1, 10, tzinfo=UTC),
            "meta": '{"k":1}',
        },
        {
            "id": 2,
            "user": "bob",
            "amount": 3.0,
            "ok": False,
            "at": dt.datetime(2024, 3, 2, 10, 30, tzinfo=UTC),
            "meta": None,
        },
        {
            "id": 3,
            "user": "cy",
            "amount": 7.25,
            "ok": True,
            "at": dt.datetime(2024, 3, 3, tzinfo=UTC),
            "meta": "[1,2]",
        },
    ]


def test_jsonl_malformed_lines_are_rejected_with_their_line_numbers(import_root: Path) -> None:
    write_jsonl(
        import_root / "mixed.jsonl",
        [
            '{"id": 1, "name": "a"}',
            "",
            '{"id": 2, "name": ',  # line 3: truncated
            "[1, 2]",  # line 4: not an object
            '{"id": "three", "name": "c"}',  # line 5: id is not an integer
            '{"id": 4.5, "name": "d"}',  # line 6: not a whole number
            '{"id": 5, "name": "e"}',
        ],
    )
    source = JsonFileSource()
    config = bound(source, {"path": "mixed.jsonl", "column_types": {"id": "integer"}})
    [stream] = source.discover(config)
    assert stream.field("id").type == FieldType.INTEGER
    out = read_all(source, config, stream)
    assert out["rows"] == [{"id": 1, "name": "a"}, {"id": 5, "name": "e"}]
    by_line = {r.line: r for r in out["rejected"]}
    assert sorted(by_line) == [3, 4, 5, 6]
    assert by_line[3].reason.startswith("invalid JSON") and by_line[3].raw == '{"id": 2, "name": '
    assert by_line[4].reason == "a JSON array is not an object"
    assert by_line[5].reason == "id: 'three' is not a valid integer"
    assert by_line[5].raw == {"id": "three", "name": "c"}
    assert by_line[6].reason == "id: 4.5 is not a valid integer"
    assert all(r.source == "mixed.jsonl" for r in out["rejected"])


def test_jsonl_is_read_in_batches_of_chunk_size(import_root: Path) -> None:
    write_jsonl(import_root / "n.jsonl", [json.dumps({"n": i, "sq": i * i}) for i in range(25)])
    source = JsonFileSource()
    config = bound(source, {"path": "n.jsonl", "chunk_size": 7})
    [stream] = source.discover(config)
    out = read_all(source, config, stream)
    assert [b.num_rows for b in out["batches"]] == [7, 7, 7, 4]
    assert [r["sq"] for r in out["rows"]] == [i * i for i in range(25)]


def test_jsonl_gzip_and_glob_form_one_stream(import_root: Path) -> None:
    (import_root / "logs").mkdir()
    with gzip.open(import_root / "logs" / "a.jsonl.gz", "wt") as fh:
        fh.write('{"n": 1}\n{"n": 2}\n')
    (import_root / "logs" / "b.jsonl").write_text('{"n": 3}\n')
    source = JsonFileSource()
    config = bound(source, {"path": "logs/*.jsonl*"})
    [stream] = source.discover(config)
    assert stream.name == "a"
    assert [r["n"] for r in read_all(source, config, stream)["rows"]] == [1, 2, 3]


def test_jsonl_incremental_by_cursor_round_trips_state(import_root: Path) -> None:
    path = import_root / "ev.jsonl"
    write_jsonl(path, [json.dumps({"id": i, "at": f"2024-01-0{i}T00:00:00Z"}) for i in (1, 2, 3)])
    source = JsonFileSource()
    config = bound(source, {"path": "ev.jsonl"})
    [stream] = source.discover(config)
    stream = with_cursor(stream, "at")
    first = read_all(source, config, stream)
    assert [r["id"] for r in first["rows"]] == [1, 2, 3]
    assert first["checkpoints"] == [{"cursor": "2024-01-03T00:00:00+00:00"}]
    write_jsonl(path, [json.dumps({"id": i, "at": f"2024-01-0{i}T00:00:00Z"}) for i in (1, 2, 3, 4, 5)])
    second = read_all(source, config, stream, first["checkpoints"][-1])
    assert [r["id"] for r in second["rows"]] == [4, 5]
    assert second["checkpoints"] == [{"cursor": "2024-01-05T00:00:00+00:00"}]
    third = read_all(source, config, stream, second["checkpoints"][-1])
    assert third["rows"] == [] and third["checkpoints"] == [{"cursor": "2024-01-05T00:00:00+00:00"}]


# --- JSON documents ------------------------------------------------------------------------------------


def test_json_document_with_records_path_streams_records_and_rejects_by_index(import_root: Path) -> None:
    doc = {
        "meta": {"page": 1},
        "data": {
            "items": [
                {"sku": "A1", "qty": 2, "day": "2024-05-01"},
                "oops",
                {"sku": "B2", "qty": 5, "day": "2024-05-02"},
                {"sku": "C3", "qty": "many", "day": "2024-05-03"},
            ]
        },
    }
    (import_root / "orders.json").write_text(json.dumps(doc))
    source = JsonFileSource()
    config = bound(
        source, {"path": "orders.json", "records_path": "data.items", "column_types": {"qty": "integer"}}
    )
    [stream] = source.discover(config)
    assert types_of(stream) == {"sku": "string", "qty": "integer", "day": "date"}
    out = read_all(source, config, stream)
    assert out["rows"] == [
        {"sku": "A1", "qty": 2, "day": dt.date(2024, 5, 1)},
        {"sku": "B2", "qty": 5, "day": dt.date(2024, 5, 2)},
    ]
    assert [(r.row, r.line, r.reason) for r in out["rejected"]] == [
        (2, None, "a JSON string is not an object"),
        (4, None, "qty: 'many' is not a valid integer"),
    ]


def test_json_top_level_array_in_a_zip_is_read_in_chunks(import_root: Path) -> None:
    records = [{"i": i, "label": f"r{i}"} for i in range(10)]
    with zipfile.ZipFile(import_root / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner/data.json", json.dumps(records))
        archive.writestr("README.txt", "not json")
    source = JsonFileSource()
    config = bound(source, {"path": "bundle.zip", "chunk_size": 4})
    [stream] = source.discover(config)
    assert stream.name == "data"
    out = read_all(source, config, stream)
    assert [b.num_rows for b in out["batches"]] == [4, 4, 2]
    assert out["rows"] == records


def test_json_object_without_records_path_names_the_field(import_root: Path) -> None:
    (import_root / "obj.json").write_text('{"data": [{"a": 1}]}')
    source = JsonFileSource()
    config = bound(source, {"path": "obj.json"})
    with pytest.raises(ConnectorError) as exc:
        source.discover(config)
    assert exc.value.field == "records_path"
    assert "set records_path" in exc.value.message
    config = bound(source, {"path": "obj.json", "records_path": "nothing.here"})
    with pytest.raises(ConnectorError, match=r"no array of records at 'nothing\.here'"):
        source.discover(config)


def test_json_syntax_error_stops_the_read_naming_the_record(import_root: Path) -> None:
    (import_root / "broken.json").write_text('[{"a": 1}, {"a": 2}, {"a": ')
    source = JsonFileSource()
    config = bound(source, {"path": "broken.json", "sample_records": 1})
    [stream] = source.discover(config)
    with pytest.raises(ConnectorError, match=r"broken.json is not valid JSON after record 2: parse error"):
        read_all(source, config, stream)


# --- paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["json_file", "parquet_file", "excel_file"])
def test_paths_outside_the_import_directory_are_refused(import_root: Path, tmp_path: Path, slug: str) -> None:
    connector_type = get_connector_type(slug)
    for bad in ("../secret.json", "/etc/passwd", "a/../../x"):
        with pytest.raises(ConnectorError) as exc:
            bound(connector_type, {"path": bad})
        assert exc.value.field == "path"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('[{"a": 1}]')
    os.symlink(outside / "secret.json", import_root / "link.json")
    os.symlink(outside, import_root / "linkdir")
    source = connector_type()
    for path in ("link.json", "linkdir/*"):
        config = bound(connector_type, {"path": path})
        with pytest.raises(ConnectorError, match="leads outside this workspace's files") as exc:
            source.discover(config)
        assert exc.value.field == "path"


def test_zip_source_with_a_traversal_entry_is_refused(import_root: Path) -> None:
    with zipfile.ZipFile(import_root / "evil.zip", "w") as archive:
        archive.writestr("ok.jsonl", '{"a": 1}\n')
        archive.writestr("../../escape.jsonl", '{"a": 2}\n')
    source = JsonFileSource()
    config = bound(source, {"path": "evil.zip"})
    with pytest.raises(ConnectorError, match=r"zip entry '../../escape.jsonl' escapes the archive") as exc:
        source.discover(config)
    assert exc.value.field == "path"


def test_gzip_source_over_the_archive_limit_stops_at_the_counter(import_root: Path, settings: Any) -> None:
    settings.AGGREGATOR_ARCHIVE_MAX_BYTES = 100_000
    with gzip.open(import_root / "big.jsonl.gz", "wb") as fh:
        fh.write(b'{"pad": "' + b"x" * 300_000 + b'"}\n')
    source = JsonFileSource()
    config = bound(source, {"path": "big.jsonl.gz"})
    with pytest.raises(ConnectorError, match="decompresses to more than 100000 bytes") as exc:
        source.discover(config)
    assert exc.value.field == "path"
    # The same through the streaming JSON parser (its C backend pulls from the counted stream).
    with gzip.open(import_root / "big.json.gz", "wb") as fh:
        fh.write(b'[{"pad": "' + b"x" * 300_000 + b'"}]')
    config = bound(source, {"path": "big.json.gz"})
    with pytest.raises(ConnectorError, match=r"big\.json\.gz decompresses to more than 100000 bytes"):
        source.discover(config)


# --- Parquet -------------------------------------------------------------------------------------------


def sales_table(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int32()),
            "price": pa.array([i * 1.5 for i in range(start, start + n)], pa.float32()),
            "region": pa.array(["north", "south"] * (n // 2) + ["east"] * (n % 2)).dictionary_encode(),
            "sold_at": pa.array(
                [dt.datetime(2024, 1, 1) + dt.timedelta(hours=i) for i in range(start, start + n)],
                pa.timestamp("ns"),
            ),
            "tags": pa.array([[f"t{i}"] for i in range(start, start + n)]),
        }
    )


def test_parquet_discover_and_read_in_batches(import_root: Path) -> None:
    pq.write_table(sales_table(0, 25), import_root / "sales.parquet", row_group_size=10)
    source = ParquetFileSource()
    config = bound(source, {"path": "sales.parquet", "chunk_size": 8})
    assert run_check(source, config).message == "1 input matches; the first has 25 rows."
    [stream] = source.discover(config)
    assert types_of(stream) == {
        "id": "integer",
        "price": "number",
        "region": "string",
        "sold_at": "datetime",
        "tags": "json",
    }
    out = read_all(source, config, stream)
    assert all(b.num_rows <= 8 for b in out["batches"])
    assert sum(b.num_rows for b in out["batches"]) == 25
    assert out["batches"][0].table.schema == stream.arrow_schema()
    assert out["rows"][3] == {
        "id": 3,
        "price": 4.5,
        "region": "south",
        "sold_at": dt.datetime(2024, 1, 1, 3, tzinfo=UTC),
        "tags": '["t3"]',
    }
    assert [r["id"] for r in out["rows"]] == list(range(25))


def test_parquet_in_gzip_and_zip_and_incremental(import_root: Path) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(sales_table(0, 6), buffer)
    data = buffer.getvalue().to_pybytes()
    (import_root / "a.parquet.gz").write_bytes(gzip.compress(data))
    with zipfile.ZipFile(import_root / "b.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        b = pa.BufferOutputStream()
        pq.write_table(sales_table(6, 4), b)
        archive.writestr("b.parquet", b.getvalue().to_pybytes())
    source = ParquetFileSource()
    config = bound(source, {"path": "*.*z*"})
    [stream] = source.discover(config)
    stream = with_cursor(stream, "id")
    out = read_all(source, config, stream)
    assert [r["id"] for r in out["rows"]] == list(range(10))
    assert out["checkpoints"] == [{"cursor": 9}]
    again = read_all(source, config, stream, {"cursor": 7})
    assert [r["id"] for r in again["rows"]] == [8, 9]


def test_parquet_incremental_skips_row_groups_below_the_cursor(import_root: Path) -> None:
    pq.write_table(sales_table(0, 30), import_root / "sales.parquet", row_group_size=10)
    source = ParquetFileSource()
    config = bound(source, {"path": "sales.parquet", "chunk_size": 4})
    [stream] = source.discover(config)
    by_id = with_cursor(stream, "id")
    out = read_all(source, config, by_id, {"cursor": 14})
    assert [r["id"] for r in out["rows"]] == list(range(15, 30))
    assert out["checkpoints"] == [{"cursor": 29}]
    with pq.ParquetFile(import_root / "sales.parquet") as parquet:
        groups = list(ParquetFileSource._row_groups(parquet, by_id, CursorFilter(by_id, {"cursor": 14})))
        assert groups == [(0, True), (1, False), (2, False)]
        by_time = with_cursor(stream, "sold_at")
        state = {"cursor": "2024-01-01T19:00:00+00:00"}  # hour 19: the last row of the second group
        groups = list(ParquetFileSource._row_groups(parquet, by_time, CursorFilter(by_time, state)))
        assert groups == [(0, True), (1, True), (2, False)]
    out = read_all(source, config, by_time, state)
    assert [r["id"] for r in out["rows"]] == list(range(20, 30))
    assert out["checkpoints"] == [{"cursor": "2024-01-02T05:00:00+00:00"}]


def test_parquet_value_out_of_range_rejects_its_row(import_root: Path) -> None:
    table = pa.table({"n": pa.array([1, 2**63 + 5, 3], pa.uint64()), "s": ["a", "b", "c"]})
    pq.write_table(table, import_root / "u.parquet")
    source = ParquetFileSource()
    config = bound(source, {"path": "u.parquet"})
    [stream] = source.discover(config)
    out = read_all(source, config, stream)
    assert out["rows"] == [{"n": 1, "s": "a"}, {"n": 3, "s": "c"}]
    [bad] = out["rejected"]
    assert bad.row == 2 and bad.reason == f"n: {2**63 + 5} is not a valid integer"


def test_a_non_parquet_file_is_a_clear_error(import_root: Path) -> None:
    (import_root / "fake.parquet").write_text("id,name\n1,a\n")
    source = ParquetFileSource()
    config = bound(source, {"path": "fake.parquet"})
    with pytest.raises(ConnectorError, match=r"fake\.parquet is not a Parquet file"):
        source.discover(config)


# --- Excel ---------------------------------------------------------------------------------------------


def write_workbook(path: Path) -> None:
    book = openpyxl.Workbook()
    cover = book.active
    cover.title = "Cover"
    cover.append(["nothing to see"])
    sheet = book.create_sheet("Orders")
    sheet.append(["Orders export"])  # a title row above the header
    sheet.append(["id", "customer", "amount", "ordered", None, "paid"])
    sheet.append([1, "Ann", 10.5, dt.datetime(2024, 2, 1), None, True])
    sheet.append([2, "Bob", 7, dt.datetime(2024, 2, 2), None, False])
    sheet.append([None, None, None, None])  # an empty row is skipped
    sheet.append([3, "Cy", "n/a", dt.datetime(2024, 2, 3), None, True])  # row 6: bad amount
    sheet.append([4, "Di", 3.25, dt.datetime(2024, 2, 4), None, None])
    book.save(path)


def test_excel_sheet_choice_header_row_discover_and_read(import_root: Path) -> None:
    write_workbook(import_root / "book.xlsx")
    source = ExcelFileSource()
    config = bound(
        source,
        {"path": "book.xlsx", "sheet": "Orders", "header_row": 2, "column_types": {"amount": "number"}},
    )
    assert run_check(source, config).ok
    [stream] = source.discover(config)
    assert stream.name == "book"
    assert types_of(stream) == {
        "id": "integer",
        "customer": "string",
        "amount": "number",
        "ordered": "date",
        "column_5": "string",
        "paid": "boolean",
    }
    out = read_all(source, config, stream)
    assert out["rows"] == [
        {
            "id": 1,
            "customer": "Ann",
            "amount": 10.5,
            "ordered": dt.date(2024, 2, 1),
            "column_5": None,
            "paid": True,
        },
        {
            "id": 2,
            "customer": "Bob",
            "amount": 7.0,
            "ordered": dt.date(2024, 2, 2),
            "column_5": None,
            "paid": False,
        },
        {
            "id": 4,
            "customer": "Di",
            "amount": 3.25,
            "ordered": dt.date(2024, 2, 4),
            "column_5": None,
            "paid": None,
        },
    ]
    [bad] = out["rejected"]
    assert bad.line == 6
    assert bad.reason == "amount: 'n/a' is not a valid number"
    assert bad.raw["customer"] == "Cy"


def test_excel_chunking_and_unknown_sheet(import_root: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["n", "word"])
    for i in range(11):
        sheet.append([i, f"w{i}"])
    book.save(import_root / "n.xlsx")
    source = ExcelFileSource()
    config = bound(source, {"path": "n.xlsx", "chunk_size": 5})
    [stream] = source.discover(config)
    out = read_all(source, config, stream)
    assert [b.num_rows for b in out["batches"]] == [5, 5, 1]
    assert [r["n"] for r in out["rows"]] == list(range(11))
    config = bound(source, {"path": "n.xlsx", "sheet": "Nope"})
    with pytest.raises(ConnectorError, match=r"n.xlsx has no sheet 'Nope' \(sheets: Sheet\)") as exc:
        source.discover(config)
    assert exc.value.field == "sheet"


def test_excel_workbook_inside_a_zip(import_root: Path, tmp_path: Path) -> None:
    write_workbook(tmp_path / "book.xlsx")
    with zipfile.ZipFile(import_root / "books.zip", "w") as archive:
        archive.write(tmp_path / "book.xlsx", "2024/book.xlsx")
    source = ExcelFileSource()
    config = bound(source, {"path": "books.zip", "sheet": "Orders", "header_row": 2})
    [stream] = source.discover(config)
    out = read_all(source, config, stream)
    assert [r["customer"] for r in out["rows"]] == ["Ann", "Bob", "Cy", "Di"]
    assert out["rows"][2]["amount"] == "n/a"  # inferred as text: the sample holds a non-number
    assert out["rejected"] == []
