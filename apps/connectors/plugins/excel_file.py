"""Excel workbooks (.xlsx) source: a file or a glob among the workspace's files (`file_areas`).

One sheet per connector (`sheet`, by name; the first sheet when empty), its header in row `header_row`
(1-based; rows above it are ignored), data in the rows below. The workbook is opened with openpyxl in
read-only mode (`read_only=True, data_only=True`: rows are streamed from the sheet's XML, formulas give
their cached values), and rows are turned into an Arrow table every `chunk_size` rows, column by column.

Safety: an xlsx is a zip archive, so it passes the archive checks of `apps.connectors.uploads.check_zip`
(no traversal or symlink entries, bounded entry count, size and compression ratio) before openpyxl sees
it; openpyxl parses the XML through defusedxml (installed), which refuses entity-expansion bombs.

Columns: header cells become field names (an empty header cell is `column_<n>`, a repeated name gets
`_2`, `_3`, …); columns right of the last non-empty header cell are ignored, and so are empty rows.
Types are inferred from the first `sample_rows` data rows: numbers (integers when every value is whole),
booleans, dates (date cells at midnight), datetimes, strings; `column_types` pins them. A cell that does not
convert to its column's type (`n/a` in a number column, `#DIV/0!`) rejects its row, with the sheet's row
number as `line`.

Incremental: by a cursor field, the file sources' policy (`apps.connectors.sdk.files.CursorFilter`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import openpyxl
from pydantic import Field

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, FieldType, ReadItem, RejectedRow, StreamSchema
from apps.connectors.base import CheckResult, ConnectorError
from apps.connectors.sdk.files import (
    CursorFilter,
    FileSource,
    InputMember,
    check_zip_file,
    emit,
    is_member_error,
    local_file,
)
from apps.connectors.sdk.paths import ImportPath, WorkspaceFilesConfig
from apps.connectors.sdk.records import build_schema, columns_to_table, short_repr

EXCEL_SUFFIXES = (".xlsx", ".xlsm")


class ExcelFileConfig(WorkspaceFilesConfig):
    path: ImportPath = Field(
        title="Path or glob",
        description="An .xlsx file or a glob among the workspace's files. All files of a glob form one "
        "stream and must have the same header.",
        min_length=1,
        max_length=1000,
    )
    sheet: str | None = Field(
        default=None,
        title="Sheet",
        description="The sheet's name; the first sheet when empty.",
        max_length=31,
    )
    header_row: int = Field(
        default=1, ge=1, le=1_000_000, title="Header row", description="1-based row holding the column names."
    )
    stream_name: str | None = Field(
        default=None, title="Stream name", description="Defaults to the file name without its suffix."
    )
    compression: Literal["infer", "none", "gzip", "zip"] = Field(default="infer", title="Archive")
    column_types: dict[str, FieldType] = Field(
        default_factory=dict, title="Column types", description="Override the inferred type of some columns."
    )
    sample_rows: int = Field(default=1000, ge=1, le=100_000, title="Rows sampled for discovery")
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")


def header_names(cells: tuple[Any, ...]) -> list[str]:
    values = list(cells)
    while values and (values[-1] is None or str(values[-1]).strip() == ""):
        values.pop()
    names: list[str] = []
    seen: dict[str, int] = {}
    for index, value in enumerate(values, start=1):
        name = str(value).strip() if value is not None else ""
        name = name or f"column_{index}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 1)
        names.append(name)
    return names


class _Sheet:
    """An open sheet of a member: its label, header names and an iterator of (row number, values)."""

    def __init__(self, member: InputMember, config: ExcelFileConfig) -> None:
        self.member = member
        self.config = config
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _Sheet:
        try:
            path = self._stack.enter_context(local_file(self.member))
            check_zip_file(path, label=self.member.label, what="an .xlsx workbook")
            workbook = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
        except ConnectorError:
            self._stack.close()
            raise
        except Exception as exc:
            self._stack.close()
            if is_member_error(exc) or isinstance(exc, (OSError, KeyError, ValueError)):
                raise ConnectorError(
                    f"{self.member.label} is not a readable .xlsx workbook ({type(exc).__name__}).",
                    field="path",
                ) from None
            raise
        self._stack.callback(workbook.close)
        sheet_name = self.config.sheet or workbook.sheetnames[0]
        if sheet_name not in workbook.sheetnames:
            self._stack.close()
            raise ConnectorError(
                f"{self.member.label} has no sheet {sheet_name!r} "
                f"(sheets: {', '.join(workbook.sheetnames)}).",
                field="sheet",
            )
        self.sheet = workbook[sheet_name]
        header = next(
            self.sheet.iter_rows(
                min_row=self.config.header_row, max_row=self.config.header_row, values_only=True
            ),
            (),
        )
        self.names = header_names(header)
        if not self.names:
            self._stack.close()
            raise ConnectorError(
                f"Row {self.config.header_row} of sheet {sheet_name!r} in {self.member.label} is empty.",
                field="header_row",
            )
        return self

    def rows(self) -> Iterator[tuple[int, tuple[Any, ...]]]:
        width = len(self.names)
        first = self.config.header_row + 1
        for number, values in enumerate(self.sheet.iter_rows(min_row=first, values_only=True), start=first):
            row = tuple(values[:width])
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
                continue
            if len(row) < width:
                row = row + (None,) * (width - len(row))
            yield number, row

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.close()


class ExcelFileSource(FileSource):
    slug = "excel_file"
    title = "Excel workbooks"
    description = "A sheet of .xlsx workbooks from the workspace's files, streamed in read-only mode."
    config_model = ExcelFileConfig
    suffixes = EXCEL_SUFFIXES

    def check(self, config: ExcelFileConfig) -> CheckResult:
        members = self.members(config)
        with _Sheet(members[0], config) as sheet:
            columns = len(sheet.names)
        noun = "workbook matches" if len(members) == 1 else "workbooks match"
        return CheckResult(ok=True, message=f"{len(members)} {noun}; {columns} columns.")

    def discover(self, config: ExcelFileConfig) -> list[StreamSchema]:
        members = self.members(config)
        with _Sheet(members[0], config) as sheet:
            sample: list[tuple[Any, ...]] = []
            for _, row in sheet.rows():
                sample.append(row)
                if len(sample) >= config.sample_rows:
                    break
            names = sheet.names
        columns = {name: [row[i] for row in sample] for i, name in enumerate(names)}
        stream = self.stream_name(config, members[0])
        schema = build_schema(stream, columns, config.column_types)
        return [_whole_numbers(schema, columns, config.column_types)]

    def read_member(
        self, member: InputMember, config: ExcelFileConfig, stream: StreamSchema, cursor: CursorFilter
    ) -> Iterator[ReadItem]:
        with _Sheet(member, config) as sheet:
            index_of = {name: i for i, name in enumerate(sheet.names)}
            rows: list[tuple[Any, ...]] = []
            numbers: list[int] = []

            def flush() -> Iterator[ReadItem]:
                transposed = list(zip(*rows, strict=True)) if rows else []
                columns = {
                    name: list(transposed[index_of[name]])
                    for name in stream.field_names
                    if name in index_of and transposed
                }
                table, bad = columns_to_table(columns, stream, len(rows))
                rejects = [
                    RejectedRow(
                        reason=reason, raw=_raw(sheet.names, rows[i]), line=numbers[i], source=member.label
                    )
                    for i, reason in sorted(bad.items())
                ]
                yield from emit(stream, table, rejects, cursor)
                rows.clear()
                numbers.clear()

            for number, row in sheet.rows():
                rows.append(row)
                numbers.append(number)
                if len(rows) >= config.chunk_size:
                    yield from flush()
            if rows:
                yield from flush()


def _raw(names: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        n: v if v is None or isinstance(v, (str, int, float, bool)) else short_repr(v)
        for n, v in zip(names, row, strict=True)
    }


def _whole_numbers(
    schema: StreamSchema, columns: dict[str, list[Any]], pinned: dict[str, FieldType]
) -> StreamSchema:
    """Excel stores every number as a float: a NUMBER column whose sampled values are all whole is INTEGER."""
    fields = []
    for field in schema.fields:
        if field.name not in pinned and field.type == FieldType.NUMBER:
            values = [v for v in columns[field.name] if v is not None]
            if values and all(float(v).is_integer() for v in values):
                field = type(field)(name=field.name, type=FieldType.INTEGER)
        fields.append(field)
    return StreamSchema(
        name=schema.name,
        fields=tuple(fields),
        cursor_candidates=schema.cursor_candidates,
        supported_sync_modes=schema.supported_sync_modes,
    )
