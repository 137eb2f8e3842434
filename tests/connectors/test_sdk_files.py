"""The SDK's file-source layer, tested on its own: records -> Arrow (`sdk.records`), Arrow -> a stream's
types (`sdk.arrow`), and the inputs, cursor filter and read loop of the file sources (`sdk.files`). The
formats end to end are in test_csv_source.py and test_file_formats.py."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pytest
from pydantic import Field

from aggregator.dataplane import (
    Batch,
    FieldType,
    ReadItem,
    RejectedRow,
    RejectedRows,
    StateCheckpoint,
    StreamSchema,
)
from aggregator.dataplane import Field as StreamField
from apps.connectors.base import ConnectorError
from apps.connectors.sdk.arrow import cast_block, conform_table
from apps.connectors.sdk.files import (
    CursorFilter,
    FileSource,
    InputMember,
    arrow_input,
    check_zip_file,
    emit,
    open_member,
    stream_name_for,
)
from apps.connectors.sdk.paths import ImportPath, WorkspaceFilesConfig
from apps.connectors.sdk.records import (
    CONVERT_ERRORS,
    MAX_BAD_VALUES_PER_CHUNK,
    build_schema,
    convert_values,
    infer_field_type,
    records_to_table,
)

from .conftest import bound


def schema(**types: FieldType) -> StreamSchema:
    return StreamSchema(name="s", fields=tuple(StreamField(name=n, type=t) for n, t in types.items()))


# --- records -> Arrow --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field_type"),
    [
        ([1.5], FieldType.INTEGER),
        (["x"], FieldType.NUMBER),
        ([True], FieldType.INTEGER),
        ([dt.datetime(2024, 1, 1, 12, 30)], FieldType.DATE),
        ([1, "a"], FieldType.INTEGER),
    ],
)
def test_convert_values_is_strict(values: list[Any], field_type: FieldType) -> None:
    with pytest.raises(CONVERT_ERRORS):
        convert_values(values, field_type)


def test_convert_values_reads_iso_text_and_takes_naive_datetimes_as_utc() -> None:
    got = convert_values(["2024-01-01T10:00:00+02:00", "2024-01-01 08:00:00", None], FieldType.DATETIME)
    utc = dt.UTC
    assert got.to_pylist() == [
        dt.datetime(2024, 1, 1, 8, tzinfo=utc),
        dt.datetime(2024, 1, 1, 8, tzinfo=utc),
        None,
    ]
    assert convert_values([" 7 ", "8"], FieldType.INTEGER).to_pylist() == [7, 8]
    assert convert_values([{"a": 1}, [1, 2]], FieldType.JSON).to_pylist() == ['{"a":1}', "[1,2]"]


def test_records_to_table_rejects_only_the_rows_that_do_not_convert() -> None:
    records: list[dict[str, Any]] = [{"id": 1, "v": "a"}, {"id": "two", "v": "b"}, {"id": 3, "extra": True}]
    table, bad = records_to_table(records, schema(id=FieldType.INTEGER, v=FieldType.STRING))
    assert table.to_pylist() == [{"id": 1, "v": "a"}, {"id": 3, "v": None}]
    assert bad == {1: "id: 'two' is not a valid integer"}


def test_a_column_of_the_wrong_type_fails_the_read_instead_of_rejecting_everything() -> None:
    records = [{"id": "x"} for _ in range(MAX_BAD_VALUES_PER_CHUNK + 2)]
    with pytest.raises(ConnectorError, match="does not hold integer values") as exc:
        records_to_table(records, schema(id=FieldType.INTEGER))
    assert exc.value.field == "column_types"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, None, False], FieldType.BOOLEAN),
        ([1, 2], FieldType.INTEGER),
        ([1, 2.5], FieldType.NUMBER),
        (["2024-01-02", "2024-02-03"], FieldType.DATE),
        (["2024-01-02T10:00:00Z"], FieldType.DATETIME),
        ([{"a": 1}], FieldType.JSON),
        ([1, "a"], FieldType.STRING),
        ([None], FieldType.STRING),
    ],
)
def test_infer_field_type(values: list[Any], expected: FieldType) -> None:
    assert infer_field_type(values) == expected


def test_build_schema_pins_types_and_offers_cursor_candidates() -> None:
    built = build_schema("s", {"id": [1, 2], "name": ["a", "b"]}, {"name": FieldType.JSON})
    assert [(f.name, f.type) for f in built.fields] == [("id", FieldType.INTEGER), ("name", FieldType.JSON)]
    assert built.cursor_candidates == ("id",)
    with pytest.raises(ConnectorError, match="No field 'nope'"):
        build_schema("s", {"id": [1]}, {"nope": FieldType.STRING})


# --- Arrow -> a stream's types -----------------------------------------------------------------------------


def test_cast_block_casts_text_columns_and_returns_the_bad_rows() -> None:
    text = pa.table({"n": [" 1", "2", "x"], "at": ["2024-01-01T00:00:00Z", "2024-01-01 00:00:00", None]})
    table, bad = cast_block(
        text, schema(n=FieldType.INTEGER, at=FieldType.DATETIME, missing=FieldType.STRING)
    )
    assert table.column("n").to_pylist() == [1, 2]
    assert table.column("missing").to_pylist() == [None, None]
    assert bad == [(2, "n: 'x' is not a valid integer")]


def test_conform_table_casts_typed_columns_and_rejects_values_out_of_range() -> None:
    typed = pa.table({"n": pa.array([1, 2**63 + 1], pa.uint64()), "s": ["a", "b"]})
    table, bad = conform_table(typed, schema(n=FieldType.INTEGER, s=FieldType.STRING, gone=FieldType.NUMBER))
    assert table.to_pylist() == [{"n": 1, "s": "a", "gone": None}]
    assert list(bad) == [1]


# --- inputs, cursor, read loop -----------------------------------------------------------------------------


def test_stream_name_drops_compression_and_format_suffixes() -> None:
    assert stream_name_for("Events.JSONL.gz", (".jsonl",)) == "Events"
    assert stream_name_for(".json", (".json",)) == "data"


def test_cursor_filter_keeps_rows_above_the_state_and_checkpoints_the_greatest() -> None:
    stream = StreamSchema(name="s", fields=(StreamField(name="at", type=FieldType.DATE),), cursor_field="at")
    cursor = CursorFilter(stream, {"cursor": "2024-01-02"})
    table = pa.table({"at": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 3), None], pa.date32())})
    assert cursor.apply(table).column("at").to_pylist() == [dt.date(2024, 1, 3)]
    assert cursor.checkpoint() == StateCheckpoint(stream="s", state={"cursor": "2024-01-03"})
    with pytest.raises(ConnectorError, match="reset the stream's state"):
        CursorFilter(stream, {"cursor": "yesterday"})


class _LinesConfig(WorkspaceFilesConfig):
    path: ImportPath = Field(min_length=1)
    stream_name: str | None = None
    compression: Literal["infer", "none", "gzip", "zip"] = "infer"


class _LinesSource(FileSource):
    """The smallest file source: one integer per line."""

    slug = "test_lines"
    title = "Lines"
    config_model = _LinesConfig
    suffixes = (".txt",)

    def read_member(
        self, member: InputMember, config: Any, stream: StreamSchema, cursor: CursorFilter
    ) -> Iterator[ReadItem]:
        with open_member(member) as fh:
            values = [line.strip() for line in fh.read().decode().splitlines()]
        table, bad = records_to_table([{"n": v} for v in values], stream)
        rejects = [
            RejectedRow(reason=r, raw=values[i], line=i + 1, source=member.label) for i, r in bad.items()
        ]
        yield from emit(stream, table, rejects, cursor)


def test_a_file_source_reads_every_member_and_checkpoints_at_the_end(import_dir: Path) -> None:
    (import_dir / "a.txt").write_text("1\n2\n")
    with zipfile.ZipFile(import_dir / "b.zip", "w") as archive:
        archive.writestr("inner.txt", "3\nx\n")
        archive.writestr("README.md", "not read")
    source = _LinesSource()
    config = bound(source, {"path": "*"})
    members = source.members(config)
    assert [m.label for m in members] == ["a.txt", "b.zip!inner.txt"]
    assert source.stream_name(config, members[1]) == "inner"
    stream = StreamSchema(name="s", fields=(StreamField(name="n", type=FieldType.INTEGER),), cursor_field="n")
    items = list(source.read(config, stream, {"cursor": 1}))
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Batch", "RejectedRows", "Batch", "StateCheckpoint"]
    batches = [i for i in items if isinstance(i, Batch)]
    assert [b.table.column("n").to_pylist() for b in batches] == [[2], [3]]
    [rejected] = [i for i in items if isinstance(i, RejectedRows)]
    assert rejected.rows[0].source == "b.zip!inner.txt" and rejected.rows[0].line == 2
    assert items[-1] == StateCheckpoint(stream="s", state={"cursor": 3})


def test_a_file_source_path_is_held_to_the_workspace(import_dir: Path) -> None:
    source = _LinesSource()
    with pytest.raises(ConnectorError, match="leave this workspace's files"):
        source.validate_config({"path": "../x.txt"})
    with pytest.raises(ConnectorError, match="No file matches"):
        source.members(bound(source, {"path": "none.txt"}))


def test_arrow_input_reads_a_gzip_member_through_the_counted_stream(import_dir: Path) -> None:
    path = import_dir / "a.txt.gz"
    path.write_bytes(gzip.compress(b"hello"))
    member = InputMember(path=path, label="a.txt.gz", compression="gzip")
    with arrow_input(member, buffer_size=1024) as stream:
        assert stream.read(100) == b"hello"


def test_check_zip_file_refuses_what_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"not a zip")
    with pytest.raises(ConnectorError, match=r"book\.xlsx is not an \.xlsx workbook"):
        check_zip_file(path, label="book.xlsx", what="an .xlsx workbook")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil", "x")
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ConnectorError) as refused:
        check_zip_file(path, label="book.xlsx", what="an .xlsx workbook")
    assert refused.value.field == "path"


@pytest.mark.parametrize("plugin", ["csv_file", "json_file", "parquet_file", "excel_file"])
def test_file_plugins_stand_on_the_sdk_not_on_each_other(plugin: str) -> None:
    source = (Path(__file__).parents[2] / "apps" / "connectors" / "plugins" / f"{plugin}.py").read_text()
    assert "apps.connectors.plugins" not in source
    assert len(source.splitlines()) <= 500
