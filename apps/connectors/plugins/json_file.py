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

Values: records are converted column by column with pyarrow (one vectorised conversion per column and
chunk); a value that does not convert to its field's type rejects its record (found by bisection, so a
clean chunk costs one conversion). Keys not in the stream's schema are ignored (discover again to pick them
up); missing keys are null. Objects and arrays are kept as JSON text (field type `json`).

Discovery infers the fields from the first `sample_records` records of the first file: booleans, integers,
numbers (integers mixed with floats), ISO dates and datetimes (strings that all parse as such), strings,
and `json` for objects/arrays; mixed kinds of scalars become strings. `column_types` pins a field's type.

Incremental: when the stream has a cursor field, rows whose cursor is not greater than the state's
`{"cursor": value}` are skipped (rows with a null cursor too, once there is a state) and one checkpoint with
the greatest cursor seen is yielded at the end of the stream: files are not ordered by cursor, so an
earlier checkpoint could skip rows after a crash.

The helpers below (type inference, column conversion, cursor filtering, binding to the workspace's files)
are shared with the Parquet and Excel sources.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Literal

import ijson
import orjson
import pyarrow as pa
import pyarrow.compute as pc
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
)
from aggregator.dataplane import Field as StreamField
from apps.connectors.base import CheckResult, ConnectorError, ConnectorKind
from apps.connectors.sdk.paths import ImportPath, WorkspaceFilesConfig, WorkspaceFilesType
from apps.connectors.uploads import InputMember, expand_inputs, is_member_error, open_member

# Past this many bad values in one column of one chunk, the column is not of the declared type at all.
MAX_BAD_VALUES_PER_CHUNK = 1000
# The raw text of a rejected line is kept up to this many characters (a 100 MB line must not become a
# 100 MB quarantine row).
MAX_RAW_CHARS = 10_000
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_CONVERT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError)
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)?$"
_ZONED = r"(Z|z|[+-]\d\d(:?\d\d)?)$"


# --- shared by the file sources ------------------------------------------------------------------------


def stream_name_for(name: str, suffixes: tuple[str, ...]) -> str:
    lowered = name.lower()
    for suffix in (".gz", ".zip", *suffixes):
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
    return name or "data"


def members_for(config: Any, suffixes: tuple[str, ...]) -> list[InputMember]:
    """The inputs a bound file config's `path` and `compression` name in its workspace's files."""
    area = config.area
    return expand_inputs(
        area.files(config.path), area=area, compression=config.compression, suffixes=suffixes
    )


def short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return str(value)


def _text_to_datetime(arr: pa.Array) -> pa.Array:
    """ISO text to UTC instants; values with an offset are converted, naive values are taken as UTC."""
    target = arrow_type_for(FieldType.DATETIME)
    zoned = pc.fill_null(pc.match_substring_regex(arr, _ZONED), False)
    if pc.all(zoned).as_py():
        return pc.cast(arr, target)
    if not pc.any(zoned).as_py():
        return pc.cast(pc.cast(arr, pa.timestamp("us")), target)
    with_offset = pc.cast(pc.if_else(zoned, arr, None), target)
    naive = pc.cast(pc.cast(pc.if_else(zoned, None, arr), pa.timestamp("us")), target)
    return pc.if_else(zoned, with_offset, naive)


def convert_values(values: list[Any], field_type: FieldType) -> pa.Array:
    """Python values of one column to the Arrow type of `field_type`, vectorised; raises one of
    `_CONVERT_ERRORS` if any value does not convert (never truncates: 1.5 is not an integer)."""
    target = arrow_type_for(field_type)
    if field_type == FieldType.JSON:
        return pa.array(
            [None if v is None else orjson.dumps(v, default=_text_value).decode() for v in values],
            pa.string(),
        )
    if field_type == FieldType.STRING:
        try:
            return pa.array(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else _text_value(v) for v in values], pa.string())
    arr = pa.array(values)  # inferred: a mix of kinds (1 and "a") raises here
    if pa.types.is_null(arr.type):
        return pa.nulls(len(values), target)
    if pa.types.is_boolean(arr.type) and field_type in (FieldType.INTEGER, FieldType.NUMBER):
        raise ValueError("a boolean is not a number")
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        if field_type == FieldType.DATETIME:
            return _text_to_datetime(pc.utf8_trim_whitespace(arr))
        # Arrow's text casts are strict: "1.5" and "1.0" are not integers, "x" is not a number.
        return pc.cast(pc.utf8_trim_whitespace(arr), target)
    if field_type == FieldType.DATETIME and pa.types.is_timestamp(arr.type) and arr.type.tz is None:
        return pc.cast(arr, target)  # naive instants are taken as UTC
    if field_type == FieldType.DATE and pa.types.is_timestamp(arr.type):
        times = pc.subtract(arr, pc.floor_temporal(arr, unit="day"))
        if pc.any(pc.not_equal(times, pa.scalar(0, times.type))).as_py():
            raise ValueError("a datetime with a time of day is not a date")
        return pc.cast(pc.cast(arr, pa.timestamp("us")), pa.date32())
    return pc.cast(arr, target)


def _bad_positions(values: list[Any], field_type: FieldType, offset: int, out: list[int]) -> None:
    """Positions of the values that do not convert, by bisection: O(bad * log n) conversions."""
    if len(out) > MAX_BAD_VALUES_PER_CHUNK:
        return
    try:
        convert_values(values, field_type)
        return
    except _CONVERT_ERRORS:
        pass
    if len(values) == 1:
        out.append(offset)
        return
    middle = len(values) // 2
    _bad_positions(values[:middle], field_type, offset, out)
    _bad_positions(values[middle:], field_type, offset + middle, out)


def columns_to_table(
    columns: dict[str, list[Any]], schema: StreamSchema, num_rows: int
) -> tuple[pa.Table, dict[int, str]]:
    """Build a batch table from Python column lists; returns the good rows and {row index: reason}."""
    arrays: list[pa.Array] = []
    bad: dict[int, str] = {}
    for field in schema.fields:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(num_rows, arrow_type_for(field.type)))
            continue
        try:
            arrays.append(convert_values(values, field.type))
            continue
        except _CONVERT_ERRORS:
            pass
        positions: list[int] = []
        _bad_positions(values, field.type, 0, positions)
        if len(positions) > MAX_BAD_VALUES_PER_CHUNK:
            raise ConnectorError(
                f"Field {field.name!r} does not hold {field.type} values (over {MAX_BAD_VALUES_PER_CHUNK} "
                "failures in one chunk); set its type in column_types.",
                field="column_types",
            )
        for position in positions:
            bad.setdefault(
                position, f"{field.name}: {short_repr(values[position])} is not a valid {field.type}"
            )
        dropped = set(positions)
        arrays.append(convert_values([None if i in dropped else v for i, v in enumerate(values)], field.type))
    table = pa.Table.from_arrays(arrays, schema=schema.arrow_schema())
    if bad:
        table = table.filter(pa.array([i not in bad for i in range(num_rows)]))
    return table, bad


def records_to_table(records: list[dict[str, Any]], schema: StreamSchema) -> tuple[pa.Table, dict[int, str]]:
    columns = {f.name: [r.get(f.name) for r in records] for f in schema.fields}
    return columns_to_table(columns, schema, len(records))


def infer_field_type(values: list[Any]) -> FieldType:
    """The field type of a sample of Python values (None ignored); see the module docstring."""
    kinds: set[str] = set()
    texts: list[str] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add("bool")
        elif isinstance(value, int):
            kinds.add("int")
        elif isinstance(value, float):
            kinds.add("float")
        elif isinstance(value, dt.datetime):
            kinds.add("datetime" if value.time() != dt.time(0) else "midnight")
        elif isinstance(value, dt.date):
            kinds.add("date")
        elif isinstance(value, str):
            kinds.add("str")
            texts.append(value)
        elif isinstance(value, (dict, list)):
            kinds.add("json")
        else:
            kinds.add("str")
    if not kinds:
        return FieldType.STRING
    if kinds == {"bool"}:
        return FieldType.BOOLEAN
    if kinds == {"int"}:
        return FieldType.INTEGER
    if kinds <= {"int", "float"}:
        return FieldType.NUMBER
    if kinds <= {"date", "midnight"}:
        return FieldType.DATE
    if kinds <= {"date", "midnight", "datetime"}:
        return FieldType.DATETIME
    if "json" in kinds:
        return FieldType.JSON if kinds == {"json"} else FieldType.STRING
    if kinds == {"str"}:
        arr = pa.array(texts, pa.string())
        for pattern, field_type in ((_ISO_DATE, FieldType.DATE), (_ISO_DATETIME, FieldType.DATETIME)):
            if pc.all(pc.match_substring_regex(arr, pattern)).as_py():
                try:
                    convert_values(texts, field_type)
                except _CONVERT_ERRORS:
                    continue
                return field_type
    return FieldType.STRING


def build_schema(
    name: str,
    columns: dict[str, list[Any]],
    column_types: dict[str, FieldType],
    *,
    field: str = "column_types",
) -> StreamSchema:
    unknown = set(column_types) - set(columns)
    if unknown:
        raise ConnectorError(f"No field {sorted(unknown)[0]!r} in the data.", field=field)
    fields = tuple(
        StreamField(name=key, type=column_types.get(key) or infer_field_type(values))
        for key, values in columns.items()
    )
    candidates = tuple(
        f.name
        for f in fields
        if f.type in (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
    )
    modes = (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL) if candidates else (SyncMode.FULL_REFRESH,)
    return StreamSchema(name=name, fields=fields, cursor_candidates=candidates, supported_sync_modes=modes)


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
            except _CONVERT_ERRORS:
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


def rejected(stream: StreamSchema, rows: list[RejectedRow]) -> Iterator[ReadItem]:
    if rows:
        yield RejectedRows(stream=stream.name, rows=tuple(rows))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def member_error(member: InputMember, exc: BaseException) -> ConnectorError:
    return ConnectorError(f"Cannot read {member.label}: {type(exc).__name__}: {exc}", field="path")


# --- the connector -------------------------------------------------------------------------------------


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


class JsonFileSource(WorkspaceFilesType):
    slug = "json_file"
    title = "JSON / JSON Lines files"
    kind = ConnectorKind.SOURCE
    description = "JSON documents (an array of records) and JSON Lines files from the workspace's files."
    config_model = JsonFileConfig

    def check(self, config: JsonFileConfig) -> CheckResult:
        members = members_for(config, JSON_SUFFIXES)
        with open_member(members[0]) as fh:
            fh.read(1)
        noun = "input matches" if len(members) == 1 else "inputs match"
        return CheckResult(ok=True, message=f"{len(members)} {noun}.")

    def discover(self, config: JsonFileConfig) -> list[StreamSchema]:
        members = members_for(config, JSON_SUFFIXES)
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
        name = config.stream_name or stream_name_for(first.name, JSON_SUFFIXES)
        return [build_schema(name, columns, config.column_types)]

    def read(
        self, config: JsonFileConfig, stream: StreamSchema, state: dict[str, Any] | None
    ) -> Iterator[ReadItem]:
        members = members_for(config, JSON_SUFFIXES)
        cursor = CursorFilter(stream, state)
        for member in members:
            yield from self._read_member(member, config, stream, cursor)
        checkpoint = cursor.checkpoint()
        if checkpoint is not None:
            yield checkpoint

    def _read_member(
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
            yield from rejected(stream, rejects)
            rejects.clear()
            table = cursor.apply(table)
            if table.num_rows:
                yield Batch(table, stream=stream.name)
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
            raw = _text_value(raw)
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
        except Exception as exc:
            if is_member_error(exc) or isinstance(exc, OSError):
                raise member_error(member, exc) from None
            raise

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
                f"{member.label} is not valid JSON after record {index}: {_first_line(exc)}", field="path"
            ) from None
        if not state["found"]:
            if not path and state["top"] == "start_map":
                raise ConnectorError(
                    f"{member.label} is a JSON object: set records_path to the array of records.",
                    field="records_path",
                )
            where = f"at {path!r}" if path else "at the top level"
            raise ConnectorError(f"{member.label} has no array of records {where}.", field="records_path")
