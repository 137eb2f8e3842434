"""CSV files source: a file or a glob among the workspace's files (its uploads, the files an operator put in
its import area, the shared directories opened to it: `apps/connectors/file_areas.py`).

How it reads: pyarrow's streaming CSV reader (`pyarrow.csv.open_csv`, multithreaded, in blocks) with every
column read as text, then a vectorised cast of each column to the stream's field types. Reading as text and
casting afterwards is what lets a bad value reject its row instead of failing the whole read: a failed cast
is narrowed down to the offending rows by bisection (the SDK's `cast_block`, `apps.connectors.sdk.arrow`),
those rows go out as RejectedRows with the reason and the raw values, and the rest of the batch carries on.
Rows with the wrong number of columns are rejected the same way. Memory stays bounded by the block and
`chunk_size`, whatever the size of the file.

Fast path: that text path parses every number twice, so a file is first read with its integer, number and
boolean columns converted by the reader itself (the others as text, cast as above); any value the reader
converts, the text path converts to the same value. If a block has a value the reader cannot convert, the
file is read again from its start on the text path and the records already yielded are skipped (both
passes see the same records in the same order), so the bad row is rejected exactly as before.

Line numbers: pyarrow does not report them, so when a file had rejected rows it is scanned once more with
Python's csv module after it has been read, to map each rejected record to its physical line (exact, quoted
newlines included). Rejected rows of a file are therefore yielded after that file's batches.

Detection (each one can be overridden in the config): encoding from the BOM or a UTF-8 trial of the first
64 KB (else cp1252, else latin-1); delimiter by csv.Sniffer among `, ; tab |`; header unless a value in the
first row is a number; gzip by the `.gz` suffix or the gzip magic bytes. Column types are inferred by pyarrow
from the first `sample_bytes` of the first file; `column_types` pins them.

Gzip files are decompressed through `uploads.open_member` like every other compressed input, not by
pyarrow's own reader: only that path counts the bytes and the ratio that stop a gzip bomb.

Zip archives (`.zip`, or `compression: zip`): every `.csv` / `.tsv` / `.txt` entry is one input of the stream.
The whole archive is checked from its central directory first (`uploads.check_zip`: traversal names,
symlinks and special files, encryption, entry count, declared sizes and ratios) and each entry is then read
as a stream, never extracted to disk, through the byte counter that stops a decompression bomb at
AGGREGATOR_ARCHIVE_MAX_BYTES whatever its headers say (`uploads.open_member`). Rejected rows and errors
name an entry as `archive.zip!entry.csv`, and the state keeps one fingerprint per entry.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, field_validator

from aggregator.dataplane import (
    DEFAULT_CHUNK_SIZE,
    Batch,
    FieldType,
    ReadItem,
    RejectedRow,
    RejectedRows,
    StateCheckpoint,
    StreamSchema,
    SyncMode,
    arrow_type_for,
    rechunk,
)
from apps.connectors.base import CheckResult, ConnectorError, ConnectorKind
from apps.connectors.sdk.arrow import cast_block as cast_block  # re-exported: postgres imports it from here
from apps.connectors.sdk.files import READ_ERRORS, InputMember, arrow_input, inputs_for, open_member
from apps.connectors.sdk.paths import ImportPath, WorkspaceFilesConfig, WorkspaceFilesType

SAMPLE_BYTES = 64 * 1024
# pyarrow parses a block at a time and reads several blocks ahead. 1 MB blocks measured fastest on the
# benchmark (tests/benchmarks) and keep the read-ahead small: 4 MB blocks cost ~100 MB more peak memory on a
# 340 MB file for no speed gain.
BLOCK_SIZE = 1024 * 1024
# Entries of a zip that are read as CSV; other entries (a README, a manifest) are left alone.
ZIP_ENTRY_SUFFIXES = (".csv", ".tsv", ".txt")


class CsvFileConfig(WorkspaceFilesConfig):
    path: ImportPath = Field(
        title="Path or glob",
        description="A file or a glob (e.g. `flights/2013-*.csv.gz`, `uploads/<file>`, "
        "`shared/<name>/<file>`) among the workspace's files. All files of a glob form one stream and "
        "must share their columns.",
        min_length=1,
        max_length=1000,
    )
    stream_name: str | None = Field(
        default=None, title="Stream name", description="Defaults to the file name without its suffixes."
    )
    delimiter: str | None = Field(
        default=None, title="Delimiter", description="Detected when empty.", min_length=1, max_length=1
    )
    quote_char: str | None = Field(
        default=None, title="Quote character", description='Detected when empty (usually ").', max_length=1
    )
    escape_char: str | None = Field(default=None, title="Escape character", min_length=1, max_length=1)
    encoding: str | None = Field(default=None, title="Encoding", description="Detected when empty.")
    header: bool | None = Field(
        default=None, title="First row is a header", description="Detected when empty."
    )
    compression: Literal["infer", "none", "gzip", "zip"] = Field(
        default="infer",
        title="Compression",
        description="infer: gzip by the .gz suffix or its magic bytes, zip by the .zip suffix.",
    )
    multiline_values: bool = Field(
        default=False,
        title="Values may contain line breaks",
        description="Slower: the file is then parsed without splitting it at line ends.",
    )
    null_values: list[str] | None = Field(
        default=None, title="Null markers", description="Defaults to pyarrow's: empty, NA, NULL, NaN, n/a, …"
    )
    column_types: dict[str, FieldType] = Field(
        default_factory=dict, title="Column types", description="Override the inferred type of some columns."
    )
    sample_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        title="Inference sample (bytes)",
        description="Column types are inferred from this much of the first file; raise it (or pin "
        "column_types) when a column's values only vary further down.",
    )
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"Unknown encoding {value!r}.") from None
        return value or None


@dataclass(frozen=True, slots=True)
class Dialect:
    encoding: str
    delimiter: str
    quote_char: str
    escape_char: str | None
    header: bool


def _detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for candidate in ("utf-8", "cp1252"):
        try:
            # final=False: a multi-byte character cut at the end of the sample is not an error.
            codecs.getincrementaldecoder(candidate)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        return candidate
    return "latin-1"


def _looks_numeric(value: str) -> bool:
    try:
        float(value.strip())
    except ValueError:
        return False
    return bool(value.strip())


def detect_dialect(member: InputMember, config: CsvFileConfig) -> Dialect:
    try:
        with open_member(member) as fh:
            sample = fh.read(SAMPLE_BYTES)
    except READ_ERRORS as exc:
        raise ConnectorError(f"Cannot read {member.label}: {type(exc).__name__}.", field="path") from None
    encoding = config.encoding or _detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    if len(sample) == SAMPLE_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # drop the partial last line
    sniffed: Any = None
    if config.delimiter is None or config.quote_char is None:
        try:
            sniffed = csv.Sniffer().sniff(text[:32768], delimiters=",;\t|")
        except csv.Error:
            sniffed = None
    delimiter = config.delimiter or (sniffed.delimiter if sniffed else ",")
    quote_char = config.quote_char or (sniffed.quotechar if sniffed and sniffed.quotechar else '"')
    header = config.header
    if header is None:
        first = next(csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote_char), [])
        header = bool(first) and not any(_looks_numeric(v) for v in first)
    return Dialect(
        encoding=encoding,
        delimiter=delimiter,
        quote_char=quote_char,
        escape_char=config.escape_char,
        header=header,
    )


def _pyarrow_encoding(encoding: str) -> str:
    # Arrow reads UTF-8 natively (and skips a UTF-8 BOM); anything else is transcoded through Python's codecs.
    return "utf8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding


# --- the connector -------------------------------------------------------------------------------------


# Field types the CSV reader converts itself on the fast path. For these, any value the reader converts is
# converted to the same value by the text path (`_cast_text`: its cast, and its retry with surrounding spaces
# stripped); a value it does not convert sends the rest of the file down the text path, which rejects the row.
# Dates and datetimes (naive values taken as UTC) stay on the text path.
_DIRECT_TYPES = frozenset({FieldType.INTEGER, FieldType.NUMBER, FieldType.BOOLEAN})


class _DirectReadFailed(Exception):
    """The fast path met a value the CSV reader could not convert to its column's type."""


class CsvFileSource(WorkspaceFilesType):
    slug = "csv_file"
    title = "CSV files"
    kind = ConnectorKind.SOURCE
    description = "CSV files (optionally gzip- or zip-compressed) from the workspace's files."
    config_model = CsvFileConfig

    def check(self, config: CsvFileConfig) -> CheckResult:
        files, members = inputs_for(config, ZIP_ENTRY_SUFFIXES)
        detect_dialect(members[0], config)
        noun = "file matches" if len(files) == 1 else "files match"
        entries = sum(1 for m in members if m.compression == "zip")
        detail = (
            f" ({entries} CSV {'entry' if entries == 1 else 'entries'} in zip archives)" if entries else ""
        )
        return CheckResult(ok=True, message=f"{len(files)} {noun}{detail}.")

    def _stream_name(self, config: CsvFileConfig, first: InputMember) -> str:
        if config.stream_name:
            return config.stream_name
        # A zip's entries are one stream named after the archive, like the files of a glob after the first.
        name = first.path.name
        if first.compression == "zip" and name.lower().endswith(".zip"):
            name = name[: -len(".zip")]
        for suffix in (".gz", ".csv", ".tsv", ".txt"):
            name = name.removesuffix(suffix)
        return name or "data"

    def discover(self, config: CsvFileConfig) -> list[StreamSchema]:
        _, members = inputs_for(config, ZIP_ENTRY_SUFFIXES)
        first_member = members[0]
        dialect = detect_dialect(first_member, config)
        try:
            with arrow_input(first_member, buffer_size=BLOCK_SIZE) as source:
                reader = self._open(
                    source, dialect, config, column_types=None, block_size=config.sample_bytes
                )
                first = reader.read_next_batch()
        except StopIteration:
            raise ConnectorError(f"{first_member.label} has no rows.", field="path") from None
        except (pa.ArrowInvalid, *READ_ERRORS) as exc:
            raise ConnectorError(f"Cannot parse {first_member.label}: {exc}", field="path") from None
        inferred = StreamSchema.from_arrow(self._stream_name(config, first_member), first.schema)
        if config.column_types:
            unknown = set(config.column_types) - set(inferred.field_names)
            if unknown:
                raise ConnectorError(f"No column {sorted(unknown)[0]!r} in the file.", field="column_types")
            fields = tuple(
                type(f)(name=f.name, type=config.column_types.get(f.name, f.type), nullable=True)
                for f in inferred.fields
            )
            inferred = StreamSchema(name=inferred.name, fields=fields)
        return [
            StreamSchema(
                name=inferred.name,
                fields=inferred.fields,
                cursor_candidates=(),
                supported_sync_modes=(SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL),
            )
        ]

    def _open(
        self,
        source: Any,
        dialect: Dialect,
        config: CsvFileConfig,
        *,
        column_types: dict[str, pa.DataType] | None,
        column_names: list[str] | None = None,
        block_size: int = BLOCK_SIZE,
        invalid_rows: list[str] | None = None,
    ) -> pacsv.CSVStreamingReader:
        def on_invalid(row: Any) -> str:
            if invalid_rows is not None:
                invalid_rows.append(row.text)
            return "skip"

        read_options = pacsv.ReadOptions(
            use_threads=True,
            block_size=block_size,
            encoding=_pyarrow_encoding(dialect.encoding),
            column_names=None if dialect.header else column_names,
            autogenerate_column_names=not dialect.header and not column_names,
        )
        parse_options = pacsv.ParseOptions(
            delimiter=dialect.delimiter,
            quote_char=dialect.quote_char or False,
            escape_char=dialect.escape_char or False,
            double_quote=True,
            newlines_in_values=config.multiline_values,
            invalid_row_handler=on_invalid,
        )
        convert_kwargs: dict[str, Any] = {"strings_can_be_null": True}
        if config.null_values is not None:
            convert_kwargs["null_values"] = config.null_values
        if column_types is not None:
            convert_kwargs["column_types"] = column_types
            convert_kwargs["include_columns"] = list(column_types)
            convert_kwargs["include_missing_columns"] = True
        return pacsv.open_csv(
            source,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=pacsv.ConvertOptions(**convert_kwargs),
        )

    def read(
        self, config: CsvFileConfig, stream: StreamSchema, state: dict[str, Any] | None
    ) -> Iterator[ReadItem]:
        _, members = inputs_for(config, ZIP_ENTRY_SUFFIXES)
        done: dict[str, Any] = dict((state or {}).get("files", {}))
        for member in members:
            # A file's key is its path as the workspace names it; a zip entry's `archive.zip!entry`,
            # fingerprinted by the archive (a changed archive re-reads its entries).
            stat = member.path.stat()
            fingerprint = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            legacy = config.area.legacy_upload_label(member.label)
            if legacy is not None and legacy in done:
                # An upload moved into the workspace's area keeps its size and mtime: not a new file.
                done.setdefault(member.label, done.pop(legacy))
            if done.get(member.label) == fingerprint:
                continue  # incremental: this exact file was read completely before
            yield from self._read_file(member, config, stream)
            done[member.label] = fingerprint
            yield StateCheckpoint(stream=stream.name, state={"files": dict(done)})

    def _read_file(
        self, member: InputMember, config: CsvFileConfig, stream: StreamSchema
    ) -> Iterator[ReadItem]:
        relative = member.label
        dialect = detect_dialect(member, config)
        # Without a header the columns are positional: the stream's fields in order, read as f0, f1, ...
        names = None if dialect.header else [f"f{i}" for i in range(len(stream.fields))]
        keys = names if names is not None else list(stream.field_names)
        text_types = {key: pa.string() for key in keys}
        # The fast path: the reader converts the columns of _DIRECT_TYPES itself (no second parse of every
        # number by a cast); the others are read as text and cast by cast_block as on the text path.
        direct_types = {
            key: arrow_type_for(f.type) if f.type in _DIRECT_TYPES else pa.string()
            for key, f in zip(keys, stream.fields, strict=True)
        }

        invalid_texts: list[str] = []
        # Cast failures: (ordinal of the record among the good records, reason, raw values).
        cast_failures: list[tuple[int, str, dict[str, Any]]] = []
        good_seen = 0

        def tables(column_types: dict[str, pa.DataType], *, fast: bool) -> Iterator[pa.Table]:
            """One pass over the input: its good records (right number of columns), block by block. A
            conversion error of the fast path raises _DirectReadFailed; any other parse error, or one of
            the text path, is the file's error."""
            with arrow_input(member, buffer_size=BLOCK_SIZE) as source:
                try:
                    reader = self._open(
                        source,
                        dialect,
                        config,
                        column_types=column_types,
                        column_names=names,
                        invalid_rows=invalid_texts,
                    )
                    while True:
                        try:
                            block = reader.read_next_batch()
                        except StopIteration:
                            return
                        table = pa.Table.from_batches([block])
                        yield table.rename_columns(stream.field_names) if names is not None else table
                except pa.ArrowInvalid as exc:
                    if fast:
                        raise _DirectReadFailed from None
                    raise ConnectorError(f"Cannot parse {relative}: {exc}", field="path") from None
                except READ_ERRORS as exc:
                    raise ConnectorError(f"Cannot parse {relative}: {exc}", field="path") from None

        def cast(table: pa.Table) -> pa.Table:
            nonlocal good_seen
            typed, bad = cast_block(table, stream)
            for index, reason in bad:
                cast_failures.append((good_seen + index, reason, table.slice(index, 1).to_pylist()[0]))
            good_seen += table.num_rows
            return typed

        def typed_blocks() -> Iterator[pa.Table]:
            if direct_types != text_types:
                try:
                    for table in tables(direct_types, fast=True):
                        yield cast(table)
                    return
                except _DirectReadFailed:
                    pass
            # Text path, for the whole file or, after a value the fast path could not convert, for the rest
            # of it: the input is read again from its start as text and the `good_seen` records already
            # yielded are skipped. Both passes see the same records in the same order (the reader drops
            # the same rows with the wrong number of columns), so ordinals and line numbers are unchanged;
            # those dropped rows are collected again by this pass, in order.
            invalid_texts.clear()
            skip = good_seen
            for table in tables(text_types, fast=False):
                if skip >= table.num_rows:
                    skip -= table.num_rows
                    continue
                if skip:
                    table, skip = table.slice(skip), 0
                yield cast(table)

        for table in rechunk(typed_blocks(), config.chunk_size):
            yield Batch(table, stream=stream.name)

        if invalid_texts or cast_failures:
            yield RejectedRows(
                stream=stream.name,
                rows=tuple(
                    self._locate_rejects(member, dialect, len(stream.fields), invalid_texts, cast_failures)
                ),
            )

    def _locate_rejects(
        self,
        member: InputMember,
        dialect: Dialect,
        expected_columns: int,
        invalid_texts: list[str],
        cast_failures: list[tuple[int, str, dict[str, Any]]],
    ) -> Iterator[RejectedRow]:
        """Physical line numbers for the rejected records: one pass of Python's csv module over the file."""
        invalid_lines: list[int] = []
        good_lines: dict[int, int] = {}
        wanted = {ordinal for ordinal, _, _ in cast_failures}
        relative = member.label
        good = 0
        with open_member(member) as raw:
            text = io.TextIOWrapper(raw, encoding=dialect.encoding, errors="replace", newline="")
            reader = csv.reader(
                text,
                delimiter=dialect.delimiter,
                quotechar=dialect.quote_char,
                escapechar=dialect.escape_char,
                doublequote=True,
                strict=False,
            )
            previous_line = 0
            for record_index, record in enumerate(reader):
                line = previous_line + 1
                previous_line = reader.line_num
                if record_index == 0 and dialect.header:
                    continue
                if not record:
                    continue  # blank line: pyarrow skips these as well
                if len(record) != expected_columns:
                    invalid_lines.append(line)
                    continue
                if good in wanted:
                    good_lines[good] = line
                good += 1
        located = len(invalid_lines) == len(invalid_texts)
        for number, raw_text in enumerate(invalid_texts):
            columns = len(
                next(csv.reader([raw_text], delimiter=dialect.delimiter, quotechar=dialect.quote_char), [])
            )
            yield RejectedRow(
                reason=f"expected {expected_columns} columns, found {columns}",
                raw=raw_text,
                line=invalid_lines[number] if located else None,
                source=relative,
            )
        for ordinal, reason, raw_values in cast_failures:
            yield RejectedRow(reason=reason, raw=raw_values, line=good_lines.get(ordinal), source=relative)
