"""Parquet files source: a file or a glob among the workspace's files (`file_areas`).

Read with `pyarrow.parquet.ParquetFile.iter_batches(batch_size=chunk_size)`: one batch at a time, never the
whole file (a row group is decoded at most once, in slices of `chunk_size` rows). Parquet needs random access
(its schema is in a footer), so a Parquet file inside a `.gz` or a `.zip` is first streamed through the
archive byte counter into a temporary file (deleted after the read); a plain file is read in place.

Types: discovery maps the file's Arrow schema to field types (`field_type_of`): integers, floats and
decimals, booleans, dates, timestamps (naive ones are taken as UTC), strings; lists, structs and maps become
`json` (their JSON text). Each batch is cast column by column to the stream's types; a value that does not
cast (a uint64 above the int64 range, an invalid UTF-8 binary) rejects its row, with its 1-based row number
in the file. Columns of the stream missing from a file are null (a glob of files whose schemas evolved).

Incremental: by a cursor field, the file sources' policy (`apps.connectors.sdk.files.CursorFilter`: rows
above the state's cursor; one checkpoint at the end of the stream); row groups whose statistics put every
cursor value at or below the state's are skipped without being decoded. Casting a batch to the stream's
types is the SDK's (`apps.connectors.sdk.arrow.conform_table`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, FieldType, ReadItem, RejectedRow, StreamSchema, SyncMode
from apps.connectors.base import CheckResult, ConnectorError
from apps.connectors.sdk.arrow import cast_column, conform_table
from apps.connectors.sdk.files import CursorFilter, FileSource, InputMember, emit, is_member_error, local_file
from apps.connectors.sdk.paths import ImportPath, WorkspaceFilesConfig
from apps.connectors.sdk.records import CONVERT_ERRORS

PARQUET_SUFFIXES = (".parquet", ".pq")


class ParquetFileConfig(WorkspaceFilesConfig):
    path: ImportPath = Field(
        title="Path or glob",
        description="A file or a glob (e.g. `sales/*.parquet`) among the workspace's files. All files "
        "of a glob form one stream; columns missing from a file are null.",
        min_length=1,
        max_length=1000,
    )
    stream_name: str | None = Field(
        default=None, title="Stream name", description="Defaults to the file name without its suffixes."
    )
    compression: Literal["infer", "none", "gzip", "zip"] = Field(
        default="infer",
        title="Archive",
        description="Outer compression of the file (Parquet's own column compression is always read).",
    )
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")


class ParquetFileSource(FileSource):
    slug = "parquet_file"
    title = "Parquet files"
    description = "Parquet files from the workspace's files, read batch by batch."
    config_model = ParquetFileConfig
    suffixes = PARQUET_SUFFIXES

    def check(self, config: ParquetFileConfig) -> CheckResult:
        members = self.members(config)
        with self._open(members[0]) as parquet:
            rows = parquet.metadata.num_rows
        noun = "input matches" if len(members) == 1 else "inputs match"
        return CheckResult(ok=True, message=f"{len(members)} {noun}; the first has {rows} rows.")

    def discover(self, config: ParquetFileConfig) -> list[StreamSchema]:
        members = self.members(config)
        with self._open(members[0]) as parquet:
            arrow_schema = parquet.schema_arrow
        name = self.stream_name(config, members[0])
        inferred = StreamSchema.from_arrow(name, arrow_schema)
        modes = (
            (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL)
            if inferred.cursor_candidates
            else (SyncMode.FULL_REFRESH,)
        )
        return [
            StreamSchema(
                name=name,
                fields=inferred.fields,
                cursor_candidates=inferred.cursor_candidates,
                supported_sync_modes=modes,
            )
        ]

    def read_member(
        self, member: InputMember, config: ParquetFileConfig, stream: StreamSchema, cursor: CursorFilter
    ) -> Iterator[ReadItem]:
        with self._open(member) as parquet:
            present = [n for n in stream.field_names if n in parquet.schema_arrow.names]
            metadata = parquet.metadata
            offset = 0
            try:
                for group in self._row_groups(parquet, stream, cursor):
                    if group is None:  # the whole file, in one reader
                        batches = parquet.iter_batches(batch_size=config.chunk_size, columns=present)
                    else:
                        index, skip = group
                        if skip:
                            offset += metadata.row_group(index).num_rows
                            continue
                        batches = parquet.iter_batches(
                            batch_size=config.chunk_size, columns=present, row_groups=[index]
                        )
                    for record_batch in batches:
                        yield from self._batch_items(record_batch, stream, cursor, member, offset)
                        offset += record_batch.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise ConnectorError(f"Cannot read {member.label}: {exc}", field="path") from None

    @staticmethod
    def _batch_items(
        record_batch: pa.RecordBatch,
        stream: StreamSchema,
        cursor: CursorFilter,
        member: InputMember,
        offset: int,
    ) -> Iterator[ReadItem]:
        table, bad = conform_table(pa.Table.from_batches([record_batch]), stream)
        rejects: list[RejectedRow] = []
        if bad:
            raw_rows = pa.Table.from_batches([record_batch]).take(sorted(bad)).to_pylist()
            rejects = [
                RejectedRow(reason=reason, raw=_jsonable(raw), row=offset + i + 1, source=member.label)
                for (i, reason), raw in zip(sorted(bad.items()), raw_rows, strict=True)
            ]
        yield from emit(stream, table, rejects, cursor)

    @staticmethod
    def _row_groups(
        parquet: pq.ParquetFile, stream: StreamSchema, cursor: CursorFilter
    ) -> Iterator[tuple[int, bool] | None]:
        """Incremental reads skip the row groups whose cursor statistics say every row is at or below the
        state's cursor (without decoding them); otherwise the file is read in one pass (None)."""
        floor = cursor.floor
        metadata = parquet.metadata
        leaf = None
        if cursor.field is not None and floor is not None:
            leaf = next(
                (j for j in range(metadata.num_columns) if metadata.schema.column(j).path == cursor.field),
                None,
            )
        if leaf is None:
            yield None
            return
        field_type = stream.field(cursor.field).type  # type: ignore[arg-type]
        for index in range(metadata.num_row_groups):
            yield (
                index,
                _all_at_or_below(metadata.row_group(index).column(leaf).statistics, field_type, floor),
            )

    def _open(self, member: InputMember) -> _OpenParquet:
        return _OpenParquet(member)


def _all_at_or_below(statistics: Any, field_type: FieldType, floor: pa.Scalar) -> bool:
    """Whether a row group's max (from its statistics) is at or below `floor`; False when unsure."""
    try:
        if statistics is None or not statistics.has_min_max:
            return False
        top = cast_column(pa.array([statistics.max]), field_type)[0]
        return bool(pc.less_equal(top, floor).as_py())
    except (*CONVERT_ERRORS, TypeError):
        return False


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in row.items()}


class _OpenParquet:
    """`with _OpenParquet(member) as parquet_file:` — the member as a seekable file, opened by pyarrow."""

    def __init__(self, member: InputMember) -> None:
        self.member = member
        self._local: Any = None
        self._file: pq.ParquetFile | None = None

    def __enter__(self) -> pq.ParquetFile:
        self._local = local_file(self.member)
        try:
            path = self._local.__enter__()
            self._file = pq.ParquetFile(path)
        except ConnectorError:
            self._local.__exit__(None, None, None)
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            self._local.__exit__(None, None, None)
            raise ConnectorError(f"{self.member.label} is not a Parquet file: {exc}", field="path") from None
        except Exception as exc:
            self._local.__exit__(None, None, None)
            if is_member_error(exc):
                raise ConnectorError(f"Cannot read {self.member.label}: {exc}", field="path") from None
            raise
        return self._file

    def __exit__(self, *exc_info: Any) -> None:
        if self._file is not None:
            self._file.close()
        if self._local is not None:
            self._local.__exit__(*exc_info)
