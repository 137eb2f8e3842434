"""JSON and JSON Lines files source: a file or a glob among the workspace's files (`file_areas`).

Formats (`format`, or by suffix when `auto`):
- **JSON Lines** (`.jsonl`, `.ndjson`): one JSON object per line, read line by line (orjson) and turned into
  an Arrow table every `chunk_size` records. A line that is not valid JSON, or not an object, is a rejected
  row with its physical line number; blank lines are skipped.
- **JSON** (`.json`): a document whose records are an array, at the top level or at `records_path`
  (`data.items` for `{"data": {"items": [...]}}`). The document is parsed as a stream (ijson's C backend),
  so only `chunk_size` records are in memory at a time, whatever the size of the file. A record that is not
  an object is a rejected row with its 1-based index in the array (`row`); a syntax error stops the read
  with an error naming the file and the record it stopped at (the rest of the document cannot be parsed).

Values: records are converted column by column by the SDK (`apps.connectors.sdk.records`): a value that
does not convert to its field's type rejects its record. Keys not in the stream's schema are ignored
(discover again to pick them up); missing keys are null. Objects and arrays are kept as JSON text (field
type `json`). Discovery infers the fields from the first `sample_records` records of the first file
(`records.build_schema`); `column_types` pins a field's type.

Incremental: by a cursor field, the file sources' policy (`apps.connectors.sdk.files.CursorFilter`: rows
above the state's cursor, one checkpoint at the end of the stream).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Literal

import ijson
import orjson
from pydantic import Field, field_validator

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, FieldType, ReadItem, RejectedRow, StreamSchema
from apps.connectors.base import CheckResult, ConnectorError
from apps.connectors.sdk.files import (
    READ_ERRORS,
    CursorFilter,
    FileSource,
    InputMember,
    emit,
    first_line,
    member_error,
    open_member,
)
from apps.connectors.sdk.files import rejected as rejected  # re-exported: push_stream imports it from here
from apps.connectors.sdk.paths import ImportPath, WorkspaceFilesConfig
from apps.connectors.sdk.records import build_schema, json_kind, records_to_table, text_value
from apps.connectors.sdk.records import short_repr as short_repr  # re-exported, as `rejected`

# The raw text of a rejected line is kept up to this many characters (a 100 MB line must not become a
# 100 MB quarantine row).
MAX_RAW_CHARS = 10_000
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


class JsonFileConfig(WorkspaceFilesConfig):
    path: ImportPath = Field(
        title="Path or glob",
        description="A file or a glob (e.g. `events/*.jsonl.gz`, `uploads/<file>`) among the workspace's "
        "files; `.gz` and `.zip` files are read compressed. All files of a glob form one stream.",
        min_length=1,
        max_length=1000,
    )
    stream_name: str | None = Field(
        default=None, title="Stream name", description="Defaults to the file name without its suffixes."
    )
    format: Literal["auto", "json", "jsonl"] = Field(
        default="auto",
        title="Format",
        description="`jsonl`: one object per line; `json`: an array of objects (at `records_path`). "
        "`auto`: by suffix (.jsonl/.ndjson, .json), else JSON when `records_path` is set or the file "
        "starts with `[`, else JSON Lines.",
    )
    records_path: str | None = Field(
        default=None,
        title="Records path",
        description="Dotted path to the array of records in a JSON document, e.g. `data.items`.",
        max_length=500,
    )
    compression: Literal["infer", "none", "gzip", "zip"] = Field(default="infer", title="Compression")
    column_types: dict[str, FieldType] = Field(
        default_factory=dict, title="Column types", description="Override the inferred type of some fields."
    )
    sample_records: int = Field(default=1000, ge=1, le=100_000, title="Records sampled for discovery")
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")

    @field_validator("records_path")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if any(not part for part in value.split(".")):
            raise ValueError("Must be dot-separated keys, e.g. `data.items`.")
        return value


class JsonFileSource(FileSource):
    slug = "json_file"
    title = "JSON / JSON Lines files"
    description = "JSON documents (an array of records) and JSON Lines files from the workspace's files."
    config_model = JsonFileConfig
    suffixes = JSON_SUFFIXES

    def check(self, config: JsonFileConfig) -> CheckResult:
        members = self.members(config)
        with open_member(members[0]) as fh:
            fh.read(1)
        noun = "input matches" if len(members) == 1 else "inputs match"
        return CheckResult(ok=True, message=f"{len(members)} {noun}.")

    def discover(self, config: JsonFileConfig) -> list[StreamSchema]:
        members = self.members(config)
        first = members[0]
        sample: list[dict[str, Any]] = []
        for item in self._records(first, config, limit=config.sample_records):
            if isinstance(item[2], dict):
                sample.append(item[2])
        if not sample:
            raise ConnectorError(f"{first.label} has no records.", field="path")
        columns: dict[str, list[Any]] = {}
        for record in sample:
            for key in record:
                columns.setdefault(key, [])
        for key in columns:
            columns[key] = [r.get(key) for r in sample]
        return [build_schema(self.stream_name(config, first), columns, config.column_types)]

    def read_member(
        self, member: InputMember, config: JsonFileConfig, stream: StreamSchema, cursor: CursorFilter
    ) -> Iterator[ReadItem]:
        lines_mode = self._format(member, config) == "jsonl"
        records: list[dict[str, Any]] = []
        positions: list[int] = []
        rejects: list[RejectedRow] = []

        def flush() -> Iterator[ReadItem]:
            table, bad = records_to_table(records, stream)
            for index, reason in bad.items():
                rejects.append(self._reject(member, positions[index], reason, records[index], lines_mode))
            yield from emit(stream, table, rejects, cursor)
            rejects.clear()
            records.clear()
            positions.clear()

        for position, error, value in self._records(member, config):
            if error is not None:
                rejects.append(self._reject(member, position, error, value, lines_mode))
                continue
            records.append(value)
            positions.append(position)
            if len(records) >= config.chunk_size:
                yield from flush()
        yield from flush()

    @staticmethod
    def _reject(member: InputMember, position: int, reason: str, raw: Any, lines_mode: bool) -> RejectedRow:
        if isinstance(raw, str) and len(raw) > MAX_RAW_CHARS:
            raw = raw[:MAX_RAW_CHARS] + "…"
        elif not isinstance(raw, (dict, list, str)):
            raw = text_value(raw)
        if lines_mode:
            return RejectedRow(reason=reason, raw=raw, line=position, source=member.label)
        return RejectedRow(reason=reason, raw=raw, row=position, source=member.label)

    def _format(self, member: InputMember, config: JsonFileConfig) -> str:
        if config.format != "auto":
            return config.format
        name = member.name.lower()
        if name.endswith((".jsonl", ".ndjson")):
            return "jsonl"
        if name.endswith(".json") or config.records_path:
            return "json"
        with open_member(member) as fh:
            start = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        return "json" if start == b"[" else "jsonl"

    def _records(
        self, member: InputMember, config: JsonFileConfig, *, limit: int | None = None
    ) -> Iterator[tuple[int, str | None, Any]]:
        """(line or 1-based record index, error or None, record or raw text), at most `limit` records."""
        reader: Callable[[BinaryIO], Iterator[tuple[int, str | None, Any]]]
        if self._format(member, config) == "jsonl":
            reader = self._jsonl_records
        else:

            def reader(fh: BinaryIO) -> Iterator[tuple[int, str | None, Any]]:
                return self._document_records(fh, member, config)

        count = 0
        try:
            with open_member(member) as fh:
                for item in reader(fh):
                    yield item
                    count += 1
                    if limit is not None and count >= limit:
                        return
        except ConnectorError:
            raise
        except READ_ERRORS as exc:
            raise member_error(member, exc) from None

    @staticmethod
    def _jsonl_records(fh: BinaryIO) -> Iterator[tuple[int, str | None, Any]]:
        for line_number, line in enumerate(fh, start=1):
            if line_number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield line_number, f"invalid JSON: {exc}", line.decode("utf-8", "replace").rstrip("\r\n")
                continue
            if not isinstance(value, dict):
                yield line_number, f"a JSON {json_kind(value)} is not an object", value
                continue
            yield line_number, None, value

    @staticmethod
    def _document_records(
        fh: BinaryIO, member: InputMember, config: JsonFileConfig
    ) -> Iterator[tuple[int, str | None, Any]]:
        path = config.records_path or ""
        state = {"found": False, "top": None}

        def events() -> Iterator[tuple[str, str, Any]]:
            for prefix, event, value in ijson.parse(fh, use_float=True):
                if state["top"] is None:
                    state["top"] = event
                if prefix == path and event == "start_array":
                    state["found"] = True
                yield prefix, event, value

        index = 0
        try:
            for record in ijson.items(events(), f"{path}.item" if path else "item"):
                index += 1
                if isinstance(record, dict):
                    yield index, None, record
                else:
                    yield index, f"a JSON {json_kind(record)} is not an object", record
        except ijson.JSONError as exc:
            raise ConnectorError(
                f"{member.label} is not valid JSON after record {index}: {first_line(exc)}", field="path"
            ) from None
        if not state["found"]:
            if not path and state["top"] == "start_map":
                raise ConnectorError(
                    f"{member.label} is a JSON object: set records_path to the array of records.",
                    field="records_path",
                )
            where = f"at {path!r}" if path else "at the top level"
            raise ConnectorError(f"{member.label} has no array of records {where}.", field="records_path")
