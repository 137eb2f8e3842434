"""SQLite file source: a `.sqlite` / `.sqlite3` / `.db` file among the workspace's files (`file_areas`),
opened read-only.

The file is opened through a `file:…?mode=ro` URI, so nothing this connector runs can change it (SQLite
refuses writes on such a connection) and a missing file is an error rather than a new empty database.
The path is resolved with symlinks followed and must stay inside the workspace's files.

Types: SQLite's columns have a declared type only as a hint ("type affinity", sqlite.org/datatype3.html
§3.1). Discovery applies the affinity rules to the declared type, with the common conventions on top
(BOOL → boolean, DATE → date, DATETIME/TIMESTAMP → datetime, JSON → json); where a column has no declared
type (a view's computed column, `CREATE TABLE t(a, b)`) it looks at the storage classes of a sample of
values. SQLite does not enforce types, so a value that does not fit its column's type (text in an INTEGER
column) rejects its row, with the reason, as RejectedRows; the rest of the batch carries on.

Reading: `SELECT <quoted columns> FROM <quoted table>` with `fetchmany(chunk_size)`; each column is built as
an Arrow array in one call (text dates are cast by Arrow in one vectorised call too). Incremental reads add
`WHERE cursor > ? ORDER BY cursor` and checkpoint `{"cursor": <value>}` with the value as SQLite stored
it (text, integer or real: JSON-serialisable and compared by SQLite exactly as stored).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field as PydanticField
from pydantic import field_validator

from aggregator.dataplane import (
    DEFAULT_CHUNK_SIZE,
    Batch,
    Field,
    FieldType,
    ReadItem,
    RejectedRow,
    RejectedRows,
    StreamSchema,
    SyncMode,
    arrow_type_for,
)
from apps.connectors.base import CheckResult, ConnectorError, ConnectorKind
from apps.connectors.sdk.cursor import IncrementalCursor
from apps.connectors.sdk.paths import FileArea, ImportPath, WorkspaceFilesConfig, WorkspaceFilesType
from apps.connectors.sdk.sql import SQLITE

SUFFIXES = (".sqlite", ".sqlite3", ".db")
# Rows looked at to type a column that has no declared type.
SAMPLE_ROWS = 1000
_CURSOR_TYPES = (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)


class SqliteFileConfig(WorkspaceFilesConfig):
    path: ImportPath = PydanticField(
        title="Path",
        description="A .sqlite, .sqlite3 or .db file among the workspace's files (e.g. `uploads/<file>`).",
        min_length=1,
        max_length=1000,
    )
    tables: list[str] = PydanticField(
        default_factory=list,
        title="Tables and views",
        description="Discover only these (all tables and views when empty).",
        max_length=1000,
    )
    chunk_size: int = PydanticField(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")

    @field_validator("path")
    @classmethod
    def _suffix(cls, value: str) -> str:
        # After the SDK's path policy (`ImportPath`): one of SQLite's file suffixes.
        if not value.lower().endswith(SUFFIXES):
            raise ValueError(f"Must be a {', '.join(SUFFIXES)} file.")
        return value


def resolve_database(area: FileArea, relative: str) -> Path:
    """The file the config names among the workspace's files, symlinks resolved (no glob: a name is a
    name). Errors name the configured path only, never a server path."""
    [real] = area.files(relative, glob=False)
    return real


quote_ident = SQLITE.quote  # the SDK's dialect: double quotes, inner quotes doubled, no NUL


def field_type_for(declared: str) -> FieldType | None:
    """SQLite's affinity rules (in their order) with the usual conventions; None when nothing is declared."""
    decl = declared.upper().strip()
    if not decl:
        return None
    if "BOOL" in decl:
        return FieldType.BOOLEAN
    if "INT" in decl:
        return FieldType.INTEGER
    if "CHAR" in decl or "CLOB" in decl or "TEXT" in decl:
        return FieldType.STRING
    if "JSON" in decl:
        return FieldType.JSON
    if "BLOB" in decl:
        return FieldType.STRING
    if "REAL" in decl or "FLOA" in decl or "DOUB" in decl:
        return FieldType.NUMBER
    if "DATETIME" in decl or "TIMESTAMP" in decl:
        return FieldType.DATETIME
    if "DATE" in decl:
        return FieldType.DATE
    return FieldType.NUMBER  # NUMERIC affinity: NUMERIC, DECIMAL(10,5), MONEY, …


def _type_of_sample(storage_classes: set[str]) -> FieldType:
    classes = storage_classes - {"null"}
    if classes == {"integer"}:
        return FieldType.INTEGER
    if classes and classes <= {"integer", "real"}:
        return FieldType.NUMBER
    return FieldType.STRING


# --- values to Arrow -------------------------------------------------------------------------------------


def _epoch(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


def _coerce(value: Any, field_type: FieldType) -> Any:
    """One value to the Python value of `field_type`; raises ValueError/TypeError when it does not fit.
    Only used on a column whose one-call conversion failed."""
    if value is None:
        return None
    if field_type in (FieldType.STRING, FieldType.JSON):
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return "0x" + value.hex()
        return str(value)
    if isinstance(value, bytes):
        raise TypeError("a blob")
    if field_type == FieldType.INTEGER:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        if isinstance(value, int):
            return value
        raise ValueError(value)
    if field_type == FieldType.NUMBER:
        return float(value)
    if field_type == FieldType.BOOLEAN:
        if isinstance(value, int | float):
            return bool(value)
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "t", "yes", "y"):
            return True
        if lowered in ("0", "false", "f", "no", "n"):
            return False
        raise ValueError(value)
    if field_type == FieldType.DATE:
        if isinstance(value, int | float):
            return _epoch(value).date()
        return dt.date.fromisoformat(str(value).strip()[:10])
    # DATETIME: ISO text (naive is UTC) or Unix seconds.
    if isinstance(value, int | float):
        return _epoch(value)
    parsed = dt.datetime.fromisoformat(str(value).strip())
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _fast_array(values: Sequence[Any], field_type: FieldType) -> pa.Array:
    """The whole column in one call (the common case: values stored as the declared type says)."""
    target = arrow_type_for(field_type)
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        text = pa.array(values, type=pa.string())  # ISO text, as SQLite's date functions write it
        if field_type == FieldType.DATE:
            return text.cast(pa.date32())
        zoned = pc.fill_null(pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$"), False)
        if pc.any(zoned).as_py():
            raise pa.ArrowInvalid("mixed offsets")  # rare: the per-value path handles them
        return text.cast(pa.timestamp("us")).cast(target)
    if field_type == FieldType.BOOLEAN:
        return pc.not_equal(pa.array(values, type=pa.int64()), 0)
    return pa.array(values, type=target)


def column_to_arrow(values: Sequence[Any], field: Field, bad: dict[int, str]) -> pa.Array:
    try:
        return _fast_array(values, field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        pass
    out: list[Any] = []
    for index, value in enumerate(values):
        try:
            out.append(_coerce(value, field.type))
        except (ValueError, TypeError, OverflowError, OSError):
            bad.setdefault(index, f"{field.name}: {value!r} is not a valid {field.type}")
            out.append(None)
    return pa.array(out, type=arrow_type_for(field.type))


def _raw(value: Any) -> Any:
    return "0x" + value.hex() if isinstance(value, bytes) else value


class SqliteFileSource(WorkspaceFilesType):
    slug = "sqlite_file"
    title = "SQLite file"
    kind = ConnectorKind.SOURCE
    description = "Tables and views of a SQLite database file among the workspace's files (read-only)."
    config_model = SqliteFileConfig
    path_is_glob: ClassVar[bool] = False

    def _open(self, config: SqliteFileConfig) -> sqlite3.Connection:
        path = resolve_database(config.area, config.path)
        try:
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
            # The file comes from outside: its views and triggers may not call functions with side effects.
            conn.execute("PRAGMA trusted_schema = OFF")
            # Fails here, with a clear message, when the file is not a SQLite database.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ConnectorError(
                f"{config.path!r} is not a readable SQLite database ({exc}).", field="path"
            ) from None
        return conn

    def check(self, config: SqliteFileConfig) -> CheckResult:
        conn = self._open(config)
        try:
            count = conn.execute(
                "SELECT count(*) FROM sqlite_master "
                "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
        finally:
            conn.close()
        return CheckResult(ok=True, message=f"{count} tables and views.")

    def _objects(self, conn: sqlite3.Connection) -> list[tuple[str, str]]:
        return conn.execute(
            "SELECT name, type FROM sqlite_master "
            "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()

    def discover(self, config: SqliteFileConfig) -> list[StreamSchema]:
        conn = self._open(config)
        try:
            objects = self._objects(conn)
            if config.tables:
                names = {name for name, _ in objects}
                missing = [t for t in config.tables if t not in names]
                if missing:
                    raise ConnectorError(f"No table or view {missing[0]!r} in the file.", field="tables")
                objects = [(name, kind) for name, kind in objects if name in config.tables]
            return [self._discover_one(conn, name) for name, _ in objects]
        except sqlite3.DatabaseError as exc:
            raise ConnectorError(f"Cannot read {config.path!r}: {exc}", field="path") from None
        finally:
            conn.close()

    def _discover_one(self, conn: sqlite3.Connection, name: str) -> StreamSchema:
        # table_info(name, type, notnull, dflt_value, pk): pk is the column's 1-based position in the key.
        info = conn.execute('SELECT name, type, "notnull", pk FROM pragma_table_info(?)', (name,)).fetchall()
        untyped = [column for column, declared, _, _ in info if field_type_for(declared) is None]
        sampled: dict[str, FieldType] = {}
        if untyped:
            probes = ", ".join(f"typeof({quote_ident(c)})" for c in untyped)
            classes: list[set[str]] = [set() for _ in untyped]
            for row in conn.execute(f"SELECT {probes} FROM {quote_ident(name)} LIMIT ?", (SAMPLE_ROWS,)):  # noqa: S608
                for index, storage_class in enumerate(row):
                    classes[index].add(storage_class)
            sampled = {c: _type_of_sample(s) for c, s in zip(untyped, classes, strict=True)}
        fields = tuple(
            Field(name=column, type=field_type_for(declared) or sampled[column], nullable=not notnull)
            for column, declared, notnull, _ in info
        )
        key = tuple(column for column, _, _, pk in sorted(info, key=lambda c: c[3]) if pk)
        candidates = tuple(f.name for f in fields if f.type in _CURSOR_TYPES)
        return StreamSchema(
            name=name,
            fields=fields,
            primary_key=key,
            cursor_candidates=candidates,
            supported_sync_modes=(SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL)
            if candidates
            else (SyncMode.FULL_REFRESH,),
        )

    def read(
        self, config: SqliteFileConfig, stream: StreamSchema, state: dict[str, Any] | None
    ) -> Iterator[ReadItem]:
        conn = self._open(config)
        try:
            known = {name for name, _ in self._objects(conn)}
            if stream.name not in known:
                raise ConnectorError(
                    f"Unknown stream {stream.name!r}: no such table or view in {config.path!r}."
                )
            cursor_field = stream.cursor_field
            columns = ", ".join(quote_ident(f.name) for f in stream.fields)
            sql = f"SELECT {columns} FROM {quote_ident(stream.name)}"  # noqa: S608 - quoted identifiers
            params: list[Any] = []
            if cursor_field:
                last = (state or {}).get("cursor")
                if last is not None:
                    sql += f" WHERE {quote_ident(cursor_field)} > ?"
                    params.append(last)
                sql += f" ORDER BY {quote_ident(cursor_field)}"
            try:
                cur = conn.execute(sql, params)
            except sqlite3.DatabaseError as exc:
                raise ConnectorError(f"Stream {stream.name!r}: {exc}") from None
            cursor_index = stream.field_names.index(cursor_field) if cursor_field else -1
            tracker = IncrementalCursor(stream.name, _raw)
            row_number = 0
            while True:
                rows = cur.fetchmany(config.chunk_size)
                if not rows:
                    break
                table, rejected = self._to_table(rows, stream, row_number)
                row_number += len(rows)
                if table.num_rows:
                    yield Batch(table, stream=stream.name)
                if rejected:
                    yield RejectedRows(stream=stream.name, rows=tuple(rejected))
                if cursor_field:
                    yield from tracker.after_batch([row[cursor_index] for row in rows])
            if cursor_field:
                yield from tracker.final()
        finally:
            conn.close()

    def _to_table(
        self, rows: list[tuple[Any, ...]], stream: StreamSchema, offset: int
    ) -> tuple[pa.Table, list[RejectedRow]]:
        columns = list(zip(*rows, strict=True))
        bad: dict[int, str] = {}
        arrays = [
            column_to_arrow(values, field, bad) for values, field in zip(columns, stream.fields, strict=True)
        ]
        table = pa.Table.from_arrays(arrays, schema=stream.arrow_schema())
        if not bad:
            return table, []
        rejected = [
            RejectedRow(
                reason=reason,
                raw={f.name: _raw(v) for f, v in zip(stream.fields, rows[index], strict=True)},
                row=offset + index + 1,
                source=stream.name,
            )
            for index, reason in sorted(bad.items())
        ]
        keep = pa.array([i not in bad for i in range(len(rows))])
        return table.filter(keep), rejected
