"""File sources: what every connector reading the workspace's files (CSV, JSON, Parquet, Excel, …) shares.

- **Inputs** (`members_for`, `inputs_for`): a bound config's `path` (a file or a glob, checked by the path
  policy of `sdk.paths` and resolved by `file_areas`) and `compression` become the members to read: each
  file, or each entry of a zip whose name has one of the plugin's suffixes (the archive checked whole
  first). The archive members themselves (`InputMember`, `open_member`, `local_file`: gzip and zip
  content through the byte counter that stops a decompression bomb) are `apps.connectors.uploads`'s,
  re-exported here so a plugin imports them from the SDK. `READ_ERRORS` are the exceptions of a corrupt or
  unreadable input (reported against `path`, never a bug).
- **The read loop** (`FileSource.read`): for each member, the plugin's `read_member` yields its batches and
  rejected rows; `emit` turns one converted chunk into a `RejectedRows` (if any) and a `Batch` of the rows
  the cursor keeps.
- **Incremental reads by a cursor field** (`CursorFilter`): rows whose cursor is not greater than the
  state's `{"cursor": value}` are skipped (rows with a null cursor too, once there is a state) and one
  checkpoint with the greatest cursor seen is yielded at the end of the stream: files are not ordered by
  cursor, so an earlier checkpoint could skip rows after a crash.

A new file plugin subclasses `FileSource` with a config holding `path: ImportPath`, `compression` and
`stream_name`, sets `slug`, `suffixes` and `config_model`, and implements `check`, `discover` (a sample of
records through `records.build_schema`, or a file's Arrow schema) and `read_member` (parse the member,
convert chunks with `records.records_to_table` or `arrow.conform_table`, `yield from emit(...)`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import Batch, ReadItem, RejectedRow, RejectedRows, StateCheckpoint, StreamSchema
from apps.connectors.base import ConnectorError, ConnectorKind
from apps.connectors.sdk.paths import WorkspaceFilesType
from apps.connectors.sdk.records import CONVERT_ERRORS, convert_values, short_repr
from apps.connectors.uploads import (
    ArchiveRefused,
    InputMember,
    check_zip,
    expand_inputs,
    is_member_error,
    local_file,
    open_member,
)

__all__ = [
    "READ_ERRORS",
    "CursorFilter",
    "FileSource",
    "InputMember",
    "arrow_input",
    "check_zip_file",
    "emit",
    "first_line",
    "inputs_for",
    "is_member_error",
    "local_file",
    "member_error",
    "members_for",
    "open_member",
    "rejected",
    "stream_name_for",
]

# Errors of a corrupt or unreadable input (`uploads.is_member_error`'s, plus the OS's): the file's error.
READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, gzip.BadGzipFile)


# --- inputs ----------------------------------------------------------------------------------------------


def inputs_for(config: Any, suffixes: tuple[str, ...]) -> tuple[list[Path], list[InputMember]]:
    """The files a bound config's `path` matches and the members to read from them (each file, or each
    entry of a zip with one of `suffixes`, the zip checked whole before anything of it is read)."""
    area = config.area
    files = area.files(config.path)
    return files, expand_inputs(files, area=area, compression=config.compression, suffixes=suffixes)


def members_for(config: Any, suffixes: tuple[str, ...]) -> list[InputMember]:
    """The inputs a bound file config's `path` and `compression` name in its workspace's files."""
    return inputs_for(config, suffixes)[1]


def stream_name_for(name: str, suffixes: tuple[str, ...]) -> str:
    """A stream's default name: the file name without its compression and format suffixes."""
    lowered = name.lower()
    for suffix in (".gz", ".zip", *suffixes):
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
    return name or "data"


@contextlib.contextmanager
def arrow_input(member: InputMember, *, buffer_size: int) -> Iterator[Any]:
    """What a pyarrow reader reads: a plain file natively, a gzip file or zip entry as the checked, counted
    stream of `open_member` (pyarrow's own gzip reader would not stop a bomb)."""
    if member.compression != "none":
        with open_member(member) as fh:
            yield pa.PythonFile(fh, mode="r")
        return
    with pa.input_stream(str(member.path), buffer_size=buffer_size) as stream:
        yield stream


def check_zip_file(path: Path, *, label: str, what: str) -> None:
    """A format that is itself a zip archive (xlsx) passes the archive checks (`uploads.check_zip`: no
    traversal or symlink entries, bounded entry count, size and ratio) before its parser sees it."""
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip(archive, label=label)
    except zipfile.BadZipFile:
        raise ConnectorError(f"{label} is not {what}.", field="path") from None
    except ArchiveRefused as exc:
        raise ArchiveRefused(exc.message, field="path") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def member_error(member: InputMember, exc: BaseException) -> ConnectorError:
    return ConnectorError(f"Cannot read {member.label}: {type(exc).__name__}: {exc}", field="path")


# --- incremental reads -----------------------------------------------------------------------------------


def _json_state_value(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


class CursorFilter:
    """Incremental reads: keep rows whose cursor is greater than the state's, remember the greatest seen."""

    def __init__(self, stream: StreamSchema, state: dict[str, Any] | None) -> None:
        self.field = stream.cursor_field
        self.stream = stream.name
        self.previous = (state or {}).get("cursor")
        self.greatest: pa.Scalar | None = None
        self._floor: pa.Scalar | None = None
        if self.field is not None and self.previous is not None:
            field_type = stream.field(self.field).type
            try:
                self._floor = convert_values([self.previous], field_type)[0]
            except CONVERT_ERRORS:
                raise ConnectorError(
                    f"The saved cursor {short_repr(self.previous)} is not a {field_type} value for "
                    f"{self.field!r}; reset the stream's state.",
                    field="cursor_field",
                ) from None

    @property
    def active(self) -> bool:
        return self.field is not None

    @property
    def floor(self) -> pa.Scalar | None:
        """The state's cursor as an Arrow scalar of the field's type (None on a first read)."""
        return self._floor

    def apply(self, table: pa.Table) -> pa.Table:
        if self.field is None or table.num_rows == 0:
            return table
        column = table.column(self.field)
        if self._floor is not None:
            table = table.filter(pc.fill_null(pc.greater(column, self._floor), False))
            column = table.column(self.field)
        if table.num_rows:
            top = pc.max(column)
            if top.is_valid and (self.greatest is None or pc.greater(top, self.greatest).as_py()):
                self.greatest = top
        return table

    def checkpoint(self) -> StateCheckpoint | None:
        if self.field is None:
            return None
        value = _json_state_value(self.greatest.as_py()) if self.greatest is not None else self.previous
        return StateCheckpoint(stream=self.stream, state={"cursor": value} if value is not None else {})


# --- the read loop ---------------------------------------------------------------------------------------


def rejected(stream: StreamSchema, rows: list[RejectedRow]) -> Iterator[ReadItem]:
    if rows:
        yield RejectedRows(stream=stream.name, rows=tuple(rows))


def emit(
    stream: StreamSchema, table: pa.Table, rejects: list[RejectedRow], cursor: CursorFilter
) -> Iterator[ReadItem]:
    """One converted chunk of a member: its rejected rows, then a batch of the rows the cursor keeps."""
    yield from rejected(stream, rejects)
    table = cursor.apply(table)
    if table.num_rows:
        yield Batch(table, stream=stream.name)


class FileSource(WorkspaceFilesType):
    """Base of the file sources whose incremental reads filter by a cursor field (see the module): the
    members of the config's path, the default stream name, and the read loop over the members."""

    kind = ConnectorKind.SOURCE
    # The names a zip's entries must end with to be read (case-insensitive), and the format suffixes a
    # default stream name drops.
    suffixes: ClassVar[tuple[str, ...]] = ()

    def members(self, config: Any) -> list[InputMember]:
        return members_for(config, self.suffixes)

    def stream_name(self, config: Any, member: InputMember) -> str:
        return str(config.stream_name or stream_name_for(member.name, self.suffixes))

    def read(self, config: Any, stream: StreamSchema, state: dict[str, Any] | None) -> Iterator[ReadItem]:
        members = self.members(config)
        cursor = CursorFilter(stream, state)
        for member in members:
            yield from self.read_member(member, config, stream, cursor)
        checkpoint = cursor.checkpoint()
        if checkpoint is not None:
            yield checkpoint

    def read_member(
        self, member: InputMember, config: Any, stream: StreamSchema, cursor: CursorFilter
    ) -> Iterator[ReadItem]:
        """The batches and rejected rows of one member, each chunk through `emit`."""
        raise NotImplementedError
