"""Files destination: CSV, JSON Lines or Parquet files in a directory of the workspace's data directory,
`<AGGREGATOR_DATA_DIR>/workspaces/<workspace id>/` (`file_areas`).

Layout — one file set per run, so a run's output can be found, read or removed as a whole:

    <directory>/<table>/run=<run_id>/part-00000.parquet
                                      part-00001.parquet   (a new part every `max_rows_per_file` rows)

A run writes its parts into a hidden directory `<table>/.run=<run_id>.tmp-<hex>/` and renames it to
`run=<run_id>` once every part is closed; a failed run removes its hidden directory, so no partial part is
ever visible under a `run=` name (readers that glob `run=*/part-*` never see one). A retry of the same run
id replaces that run's directory.

Write modes:
- **append**: the run's directory is added next to the previous runs';
- **overwrite**: after the new run's directory is in place, every other `run=*` directory of the table is
  renamed to a hidden trash name and deleted — write new, then remove old: a reader sees the new run either
  alone or (for a moment) next to the old ones, never a table with no data;
- **merge**: refused — files have no keys to upsert on (`write_mode`).

Every row carries `_ag_run_id` and `_ag_loaded_at`. Formats: Parquet (zstd, the stream's Arrow schema),
CSV (pyarrow's writer: a header line, RFC 4180 quoting, ISO-like timestamps `2024-01-01 12:00:00.000000Z`),
JSON Lines (one object per row; datetimes as ISO 8601 `2024-01-01T12:00:00.000000Z`, dates `2024-01-02`,
`json` fields embedded as JSON, NaN and infinities as null). All three are written batch by batch from the
Arrow tables (the JSON Lines text is produced by DuckDB's `to_json` over the Arrow batch), never row by row
in Python.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import Field

from aggregator.dataplane import (
    LOADED_AT_COLUMN,
    RUN_ID_COLUMN,
    Batch,
    FieldType,
    StreamSchema,
    WriteMode,
    WriteResult,
    arrow_type_for,
    utc_now,
)
from aggregator.logging import get_logger
from apps.connectors.base import CheckResult, ConnectorError, ConnectorKind
from apps.connectors.sdk.destinations import check_stream_columns, stamp_table
from apps.connectors.sdk.paths import DataPath, Kind, WorkspaceFilesConfig, WorkspaceFilesType
from apps.connectors.sdk.sql import DUCKDB

logger = get_logger(__name__)

quote_identifier = DUCKDB.quote

SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
# A path component we create from a table name or a run id: no separators, no leading dot (hidden names
# are ours: temporary and trash directories), bounded length.
_COMPONENT = re.compile(r"^[^./\\\x00][^/\\\x00]{0,199}$")


def _component(value: str, field: str, what: str) -> str:
    if not _COMPONENT.match(value) or value in (".", ".."):
        raise ConnectorError(
            f"{value!r} cannot be used as a {what} directory name (no '/', '\\', leading '.', "
            "at most 200 characters).",
            field=field,
        )
    return value


class FilesDestConfig(WorkspaceFilesConfig):
    directory: DataPath = Field(
        title="Directory",
        description="In the workspace's data directory, e.g. `exports/daily`. Each table gets a subdirectory "
        "with one `run=<run id>` directory per run.",
        min_length=1,
        max_length=1000,
    )
    format: Literal["parquet", "csv", "jsonl"] = Field(default="parquet", title="File format")
    max_rows_per_file: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        title="Rows per file",
        description="A run's output is split into part files of at most this many rows.",
    )


class _PartWriter:
    """Writes stamped Arrow tables into numbered part files of one format in one directory."""

    def __init__(self, directory: Path, fmt: str, schema: pa.Schema, stream_schema: StreamSchema) -> None:
        self.directory = directory
        self.fmt = fmt
        self.schema = schema
        self.stream_schema = stream_schema
        self.parts = 0
        self.rows_in_part = 0
        self._writer: Any = None
        self._sink: Any = None
        self._duck: duckdb.DuckDBPyConnection | None = None

    def _open(self) -> None:
        path = self.directory / f"part-{self.parts:05d}{SUFFIXES[self.fmt]}"
        self.parts += 1
        self.rows_in_part = 0
        if self.fmt == "parquet":
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        elif self.fmt == "csv":
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pacsv.CSVWriter(self._sink, self.schema)
        else:
            self._sink = pa.OSFile(str(path), "wb")

    def _close_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()
        self._writer = None
        self._sink = None

    def write(self, table: pa.Table, max_rows: int) -> None:
        offset = 0
        while offset < table.num_rows or (self.parts == 0 and table.num_rows == 0):
            if self.parts == 0 or self.rows_in_part >= max_rows:
                self._close_part()
                self._open()
            piece = table.slice(offset, max_rows - self.rows_in_part)
            self._write_piece(piece)
            self.rows_in_part += piece.num_rows
            offset += piece.num_rows
            if table.num_rows == 0:
                break

    def _write_piece(self, piece: pa.Table) -> None:
        if piece.num_rows == 0:
            return
        if self.fmt in ("parquet", "csv"):
            self._writer.write_table(piece)
            return
        self._sink.write(self._json_lines(piece))

    def _json_lines(self, piece: pa.Table) -> pa.Buffer:
        """The rows as JSON Lines: DuckDB's to_json over the Arrow table, after making its values JSON-safe
        (ISO datetimes, NaN/inf as null) in Arrow."""
        columns = []
        for name in piece.column_names:
            column = piece.column(name)
            if pa.types.is_timestamp(column.type):
                column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
            elif pa.types.is_floating(column.type):
                column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))
            columns.append(column)
        safe = pa.Table.from_arrays(columns, names=piece.column_names)
        if self._duck is None:
            self._duck = duckdb.connect()
        json_fields = [f.name for f in self.stream_schema.fields if f.type == FieldType.JSON]
        replace = ", ".join(
            f"CAST({quote_identifier(n)} AS JSON) AS {quote_identifier(n)}" for n in json_fields
        )
        # Identifiers only, through quote_identifier.
        select = f"SELECT * REPLACE ({replace}) FROM piece" if json_fields else "SELECT * FROM piece"  # noqa: S608
        self._duck.register("piece", safe)
        try:
            lines = self._duck.sql(f"SELECT to_json(r) AS line FROM ({select}) AS r").to_arrow_table()  # noqa: S608
        finally:
            self._duck.unregister("piece")
        column = pc.cast(lines.column("line").combine_chunks(), pa.string())
        return _concat(pc.binary_join_element_wise(column, pa.scalar(""), "\n"))

    def close(self) -> None:
        self._close_part()
        if self._duck is not None:
            self._duck.close()
            self._duck = None


def _concat(strings: pa.Array) -> pa.Buffer:
    """The concatenation of a string array's values: a slice of its data buffer (no per-row Python)."""
    if len(strings) == 0:
        return pa.py_buffer(b"")
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)
    start, end = int(offsets[strings.offset]), int(offsets[strings.offset + len(strings)])
    return strings.buffers()[2][start:end]


def _part_rows(part: Path) -> int:
    """The number of rows in one part file, without loading its data."""
    if part.suffix == ".parquet":
        return int(pq.ParquetFile(part).metadata.num_rows)
    if part.suffix == ".jsonl":
        # One object per line; JSON text never holds a raw line break.
        count = 0
        with part.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                count += chunk.count(b"\n")
        return count
    # CSV: values may hold quoted line breaks, so let the CSV reader count, reading one column only.
    reader = pacsv.open_csv(
        part,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=[RUN_ID_COLUMN], column_types={RUN_ID_COLUMN: pa.string()}
        ),
    )
    return sum(batch.num_rows for batch in reader)


class FilesDestination(WorkspaceFilesType):
    slug = "files"
    title = "Files (CSV, JSON Lines, Parquet)"
    kind = ConnectorKind.DESTINATION
    description = "Part files in the workspace's data directory, one `run=<id>` directory per run."
    config_model = FilesDestConfig
    file_area: ClassVar[Kind] = "data"
    path_field: ClassVar[str] = "directory"

    def check(self, config: FilesDestConfig) -> CheckResult:
        directory = config.area.output(config.directory, field="directory")
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".ag-check-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return CheckResult(
                ok=False, message=f"directory: {config.directory} is not writable ({exc.strerror})."
            )
        return CheckResult(ok=True, message=f"{config.directory} is writable.")

    def write(
        self,
        config: FilesDestConfig,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        write_mode: WriteMode,
        primary_key: list[str] | None,
        run_id: str,
        *,
        table: str | None = None,
    ) -> WriteResult:
        started = time.monotonic()
        write_mode = WriteMode(write_mode)
        if write_mode == WriteMode.MERGE:
            raise ConnectorError(
                "The files destination cannot merge (files have no keys to upsert on): "
                "set write_mode to append or overwrite.",
                field="write_mode",
            )
        table_name = _component(table or stream_schema.name, "table", "table")
        run_dir_name = f"run={_component(run_id, 'run_id', 'run')}"
        check_stream_columns(stream_schema, [], write_mode, max_len=1000)
        table_dir = config.area.output(f"{config.directory}/{table_name}", field="directory")
        table_dir.mkdir(parents=True, exist_ok=True)
        result = WriteResult(table=f"{config.directory}/{table_name}/{run_dir_name}")
        tmp = table_dir / f".{run_dir_name}.tmp-{secrets.token_hex(4)}"
        tmp.mkdir()
        arrow_schema = pa.schema(
            [
                *(pa.field(f.name, arrow_type_for(f.type)) for f in stream_schema.fields),
                pa.field(RUN_ID_COLUMN, pa.string()),
                pa.field(LOADED_AT_COLUMN, arrow_type_for(FieldType.DATETIME)),
            ]
        )
        writer = _PartWriter(tmp, config.format, arrow_schema, stream_schema)
        loaded_at = utc_now()
        try:
            for batch in batches:
                stamped = stamp_table(batch.table, stream_schema, run_id, loaded_at).cast(arrow_schema)
                writer.write(stamped, config.max_rows_per_file)
                result.rows_written += stamped.num_rows
                result.batches += 1
                result.bytes_sent += stamped.nbytes
            if writer.parts == 0:
                writer.write(arrow_schema.empty_table(), config.max_rows_per_file)  # a schema-only part
            writer.close()
            self._publish(table_dir, tmp, run_dir_name, write_mode)
        except BaseException as exc:
            writer.close()
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, (OSError, pa.ArrowException, duckdb.Error)):
                reason = config.area.scrub(str(exc).splitlines()[0])
                logger.warning("files_write_failed", table=result.table, error=reason)
                raise ConnectorError(f"Writing {result.table} failed: {reason}", field="directory") from None
            raise
        result.duration_s = round(time.monotonic() - started, 3)
        logger.info(
            "files_write_committed",
            table=result.table,
            write_mode=str(write_mode),
            format=config.format,
            rows=result.rows_written,
            parts=writer.parts,
            run_id=run_id,
        )
        return result

    def remove_run_rows(self, config: FilesDestConfig, table: str, run_id: str) -> int:
        """Remove the run's `run=<id>` directory (renamed to a hidden trash name first, so a reader never sees
        half of it); returns how many rows its parts held. No directory: 0."""
        table_name = _component(table, "table", "table")
        run_dir_name = f"run={_component(run_id, 'run_id', 'run')}"
        table_dir = config.area.output(
            f"{config.directory}/{table_name}", field="directory", make_parent=False
        )
        run_dir = table_dir / run_dir_name
        if not run_dir.is_dir() or run_dir.is_symlink():
            return 0
        try:
            rows = sum(_part_rows(part) for part in sorted(run_dir.glob("part-*")))
            trash = table_dir / f".trash-{secrets.token_hex(4)}"
            run_dir.rename(trash)
        except (OSError, pa.ArrowException) as exc:
            reason = config.area.scrub(str(exc).splitlines()[0])
            raise ConnectorError(
                f"Removing {config.directory}/{table_name}/{run_dir_name} failed: {reason}", field="directory"
            ) from None
        shutil.rmtree(trash, ignore_errors=True)
        logger.info(
            "files_run_rows_removed", table=f"{config.directory}/{table_name}", run_id=run_id, rows=rows
        )
        return rows

    @staticmethod
    def _publish(table_dir: Path, tmp: Path, run_dir_name: str, write_mode: WriteMode) -> None:
        """Rename the finished run into place, then (overwrite) remove the other runs."""
        final = table_dir / run_dir_name
        trash: list[Path] = []
        if final.exists():  # a retry of the same run replaces it
            old = table_dir / f".trash-{secrets.token_hex(4)}"
            final.rename(old)
            trash.append(old)
        tmp.rename(final)
        if write_mode == WriteMode.OVERWRITE:
            for other in table_dir.glob("run=*"):
                if other != final and other.is_dir():
                    old = table_dir / f".trash-{secrets.token_hex(4)}"
                    other.rename(old)
                    trash.append(old)
        for old in trash:
            shutil.rmtree(old, ignore_errors=True)
