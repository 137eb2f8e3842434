"""The MySQL destination's write: load into a scratch table (LOAD DATA LOCAL INFILE from a temporary CSV
file, or multi-row INSERTs), then apply it to the target (append / merge with one INSERT ... SELECT,
overwrite with an atomic RENAME), undoing what it changed on failure."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pymysql

from aggregator.dataplane import (
    LOADED_AT_COLUMN,
    RESERVED_COLUMNS,
    RUN_ID_COLUMN,
    Batch,
    Field,
    FieldType,
    WriteMode,
    WriteResult,
    arrow_type_for,
    utc_now,
)
from aggregator.logging import get_logger
from apps.connectors.base import ConnectorError
from apps.connectors.sdk.sql import MYSQL

from .config import _KEY_STRING_TYPE, _LOAD_DATA_REFUSED, INSERT_ROWS, MAX_STATEMENT_BYTES
from .session import _error_code, _execute, quote_ident

logger = get_logger(__name__)


def _writable_columns(table: pa.Table, fields: Sequence[Field]) -> list[pa.Array | pa.ChunkedArray]:
    """The batch's columns in the stream's field order, as what MySQL reads back exactly: datetimes as naive
    UTC text, dates as ISO text, booleans as 0/1, NaN/inf as NULL, nested values as JSON text, a missing
    column as NULLs. Vectorised, except for nested values (rare: JSON fields travel as text already)."""
    out: list[pa.Array | pa.ChunkedArray] = []
    for field in fields:
        if field.name not in table.column_names:
            out.append(pa.nulls(table.num_rows, arrow_type_for(field.type)))
            continue
        col: pa.ChunkedArray = table.column(field.name)
        kind = col.type
        if pa.types.is_dictionary(kind):
            col = col.cast(kind.value_type)
            kind = col.type
        if pa.types.is_timestamp(kind):
            if kind.tz is not None:
                col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
            col = col.cast(pa.timestamp("us")).cast(pa.string())
        elif pa.types.is_date(kind):
            col = col.cast(pa.string())
        elif pa.types.is_boolean(kind):
            col = col.cast(pa.int8())
        elif pa.types.is_floating(kind):
            col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, kind))
        elif pa.types.is_nested(kind):
            col = pa.chunked_array(
                [
                    pa.array(
                        [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()],
                        pa.string(),
                    )
                ]
            )
        out.append(col)
    return out


def _column_ddl(field: Field, *, key: bool) -> str:
    sql_type = _KEY_STRING_TYPE if key and field.type == FieldType.STRING else MYSQL.column_type(field.type)
    return f"{quote_ident(field.name)} {sql_type} NULL"


_RUN_COLUMNS_DDL = tuple(f"{quote_ident(name)} {sql_type} NULL" for name, sql_type in MYSQL.run_columns)


def _arrow_for_csv(table: pa.Table, fields: Sequence[Field], run_id: str, loaded_at: str) -> pa.Table:
    """The batch as the columns LOAD DATA reads, the run columns appended."""
    arrays = _writable_columns(table, fields)
    arrays.append(pa.array([run_id] * table.num_rows, pa.string()))
    arrays.append(pa.array([loaded_at] * table.num_rows, pa.string()))
    names = [f"c{i}" for i in range(len(arrays))]  # column names are not written (no header)
    return pa.Table.from_arrays(arrays, names=names)


# What LOAD DATA expects of the file pyarrow writes: every value quoted (a quote inside doubled), NULL as
# the bare word NULL, no escape character, so a backslash in a value stays a backslash.
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, null_string="NULL", quoting_style="all_valid")


class _Writer:
    """One write: load into a scratch table, then apply it to the target in one step. Keeps what it
    created or changed, so a failure can put everything back."""

    def __init__(
        self,
        conn: Any,
        database: str,
        target: str,
        fields: list[Field],
        key: list[str],
        run_id: str,
        *,
        load_data: bool = True,
    ) -> None:
        self.conn = conn
        self.load_data = load_data
        self.database = database
        self.target = target
        self.fields = fields
        self.key = key
        self.run_id = run_id
        self.loaded_at = utc_now().replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        suffix = uuid.uuid4().hex[:16]
        self.scratch = f"_ag_stage_{suffix}"
        self.old = f"_ag_old_{suffix}"
        self.undo: list[str] = []  # statements that put things back, run in reverse order on failure

    def q(self, table: str) -> str:
        return MYSQL.qualified(self.database, table)

    def exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.conn.cursor() as cur:
            return _execute(cur, sql, params)

    def existing_columns(self, table: str) -> list[str]:
        with self.conn.cursor() as cur:
            _execute(
                cur,
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (self.database, table),
            )
            return [row[0] for row in cur.fetchall()]

    def create_table(self, table: str, *, seq: bool = False, unique: bool = False) -> None:
        columns = [_column_ddl(f, key=f.name in self.key) for f in self.fields]
        columns.extend(_RUN_COLUMNS_DDL)
        if seq:
            # Load order, so a merge applies the last of several rows with the same key last.
            columns.insert(0, "`_ag_seq` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY")
        if unique and self.key:
            columns.append(f"UNIQUE KEY `_ag_pk` ({', '.join(quote_ident(k) for k in self.key)})")
        self.exec(
            f"CREATE TABLE {self.q(table)} ({', '.join(columns)}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        self.undo.append(f"DROP TABLE IF EXISTS {self.q(table)}")

    def add_missing_columns(self, table: str) -> list[str]:
        present = {name.lower() for name in self.existing_columns(table)}
        added: list[str] = []
        definitions: list[str] = []
        for field in self.fields:
            if field.name.lower() not in present:
                added.append(field.name)
                definitions.append(_column_ddl(field, key=field.name in self.key))
        for name, ddl in zip(RESERVED_COLUMNS, _RUN_COLUMNS_DDL, strict=True):
            if name.lower() not in present:
                added.append(name)
                definitions.append(ddl)
        if definitions:
            self.exec(f"ALTER TABLE {self.q(table)} " + ", ".join(f"ADD COLUMN {d}" for d in definitions))
            if table == self.target:
                self.undo.append(
                    f"ALTER TABLE {self.q(table)} "
                    + ", ".join(f"DROP COLUMN {quote_ident(name)}" for name in added)
                )
        return added

    def ensure_unique_key(self) -> None:
        with self.conn.cursor() as cur:
            _execute(
                cur,
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0",
                (self.database, self.target),
            )
            indexes: dict[str, set[str]] = {}
            for index, column in cur.fetchall():
                indexes.setdefault(index, set()).add(column.lower())
        if {k.lower() for k in self.key} in indexes.values():
            return
        name = f"_ag_pk_{uuid.uuid4().hex[:8]}"
        try:
            self.exec(
                f"ALTER TABLE {self.q(self.target)} ADD UNIQUE KEY {quote_ident(name)} "
                f"({', '.join(quote_ident(k) for k in self.key)})"
            )
        except pymysql.MySQLError as exc:
            code = _error_code(exc)
            if code == 1062:
                reason = "already holds duplicate values of the key"
            elif code == 1170:
                reason = "has a TEXT/BLOB key column, which a unique key cannot cover"
            else:
                raise
            raise ConnectorError(
                f"Table {self.target!r} {reason} ({', '.join(self.key)}); a merge cannot use it.",
                field="primary_key",
            ) from None
        self.undo.append(f"ALTER TABLE {self.q(self.target)} DROP INDEX {quote_ident(name)}")

    def reject_null_keys(self) -> None:
        # A NULL never matches in a unique key: such a row would be inserted again on every merge.
        condition = " OR ".join(f"{quote_ident(k)} IS NULL" for k in self.key)
        with self.conn.cursor() as cur:
            _execute(cur, f"SELECT COUNT(*) FROM {self.q(self.scratch)} WHERE {condition}")  # noqa: S608
            nulls = int(cur.fetchone()[0])
        if nulls:
            raise ConnectorError(
                f"{nulls} rows have an empty primary key ({', '.join(self.key)}).", field="primary_key"
            )

    def load(self, table: str, batches: Iterable[Batch]) -> tuple[int, int, int]:
        """Every batch into `table`, committed per batch: LOAD DATA LOCAL INFILE from a temporary CSV file,
        or multi-row INSERTs where that is off or refused. Returns rows, batches and bytes (Arrow size)."""
        columns = [*(f.name for f in self.fields), RUN_ID_COLUMN, LOADED_AT_COLUMN]
        column_list = ", ".join(quote_ident(c) for c in columns)
        rows = batches_done = size = 0
        with tempfile.TemporaryDirectory(prefix="ag_mysql_") as directory:
            path = Path(directory) / "batch.csv"
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                if self.load_data:
                    try:
                        self._load_file(table, column_list, batch, path)
                    except pymysql.MySQLError as exc:
                        if _error_code(exc) not in _LOAD_DATA_REFUSED:
                            raise
                        logger.info("mysql_load_data_refused", table=self.target, code=_error_code(exc))
                        self.conn.rollback()
                        self.load_data = False
                if not self.load_data:
                    self._insert(table, column_list, len(columns), batch)
                self.conn.commit()
                rows += batch.num_rows
                batches_done += 1
                size += batch.table.nbytes
        return rows, batches_done, size

    def _load_file(self, table: str, column_list: str, batch: Batch, path: Path) -> None:
        pacsv.write_csv(
            _arrow_for_csv(batch.table, self.fields, self.run_id, self.loaded_at), path, _CSV_OPTIONS
        )
        self.conn.offered_file = str(path).encode()
        try:
            with self.conn.cursor() as cur:
                _execute(
                    cur,
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.q(table)} CHARACTER SET utf8mb4 "
                    "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                    f"LINES TERMINATED BY '\\n' ({column_list})",
                    (str(path),),
                )
                # LOCAL implies IGNORE: a value that does not fit is a warning, not an error, and the row is
                # loaded damaged. Any warning fails the write instead.
                _execute(cur, "SHOW WARNINGS LIMIT 3")
                warnings = [row for row in cur.fetchall() if row[0] != "Note"]
        finally:
            self.conn.offered_file = None
            path.unlink(missing_ok=True)
        if warnings:
            raise ConnectorError(f"Table {self.target!r}: {'; '.join(str(w[2]) for w in warnings)}")

    def _insert(self, table: str, column_list: str, width: int, batch: Batch) -> None:
        with self.conn.cursor() as cur:
            _execute(cur, "SELECT @@max_allowed_packet")
            packet = int(cur.fetchone()[0])
        sql = f"INSERT INTO {self.q(table)} ({column_list}) VALUES ({', '.join(['%s'] * width)})"  # noqa: S608
        values = [col.to_pylist() for col in _writable_columns(batch.table, self.fields)]
        records = list(zip(*values, repeat(self.run_id), repeat(self.loaded_at)))
        with self.conn.cursor() as cur:
            cur.max_stmt_length = max(64 * 1024, min(MAX_STATEMENT_BYTES, packet - 64 * 1024))
            for start in range(0, len(records), INSERT_ROWS):
                cur.executemany(sql, records[start : start + INSERT_ROWS])

    def run(self, mode: WriteMode, batches: Iterable[Batch]) -> WriteResult:
        present = self.existing_columns(self.target)
        if mode == WriteMode.OVERWRITE:
            return self._overwrite(batches, exists=bool(present))
        self.create_table(self.scratch, seq=True)
        rows, count, size = self.load(self.scratch, batches)
        added: list[str] = []
        if present:
            added = self.add_missing_columns(self.target)
        else:
            # Only a merge needs the key to be unique; an append keeps repeated keys, as it must.
            self.create_table(self.target, unique=mode == WriteMode.MERGE)
        if mode == WriteMode.MERGE:
            self.reject_null_keys()
            self.ensure_unique_key()
        columns = ", ".join(quote_ident(c) for c in [*(f.name for f in self.fields), *RESERVED_COLUMNS])
        sql = (
            f"INSERT INTO {self.q(self.target)} ({columns}) "  # noqa: S608 - identifiers quoted, values are parameters
            f"SELECT {columns} FROM {self.q(self.scratch)} ORDER BY `_ag_seq`"
        )
        if mode == WriteMode.MERGE:
            keys = {k.lower() for k in self.key}
            updates = [
                f"{quote_ident(c)} = VALUES({quote_ident(c)})"
                for c in [*(f.name for f in self.fields), *RESERVED_COLUMNS]
                if c.lower() not in keys
            ]
            sql += " ON DUPLICATE KEY UPDATE " + ", ".join(updates)
        # One InnoDB transaction: the target gets every staged row or none.
        self.exec(sql)
        self.conn.commit()
        self.undo.clear()
        self._drop_scratch()
        return WriteResult(
            table=f"{self.database}.{self.target}",
            rows_written=rows,
            batches=count,
            bytes_sent=size,
            columns_added=[c for c in added if c not in RESERVED_COLUMNS],
        )

    def _overwrite(self, batches: Iterable[Batch], *, exists: bool) -> WriteResult:
        added: list[str] = []
        if exists:
            # The new table keeps the live table's definition (types, indexes, defaults), plus new columns.
            self.exec(f"CREATE TABLE {self.q(self.scratch)} LIKE {self.q(self.target)}")
            self.undo.append(f"DROP TABLE IF EXISTS {self.q(self.scratch)}")
            added = self.add_missing_columns(self.scratch)
        else:
            self.create_table(self.scratch)
        rows, count, size = self.load(self.scratch, batches)
        if exists:
            # One atomic statement: readers see the old table or the new one, never an empty or mixed one.
            self.exec(
                f"RENAME TABLE {self.q(self.target)} TO {self.q(self.old)}, "
                f"{self.q(self.scratch)} TO {self.q(self.target)}"
            )
            self.undo.clear()
            self.exec(f"DROP TABLE IF EXISTS {self.q(self.old)}")
        else:
            self.exec(f"RENAME TABLE {self.q(self.scratch)} TO {self.q(self.target)}")
            self.undo.clear()
        return WriteResult(
            table=f"{self.database}.{self.target}",
            rows_written=rows,
            batches=count,
            bytes_sent=size,
            columns_added=[c for c in added if c not in RESERVED_COLUMNS],
        )

    def _drop_scratch(self) -> None:
        self.exec(f"DROP TABLE IF EXISTS {self.q(self.scratch)}")

    def rollback(self) -> None:
        """Best effort after a failure: roll back, drop the scratch table, undo what was changed."""
        try:
            if not self.conn.open:
                self.conn.ping(reconnect=True)
            self.conn.rollback()
            for statement in [f"DROP TABLE IF EXISTS {self.q(self.scratch)}", *reversed(self.undo)]:
                self.exec(statement)
        except Exception as exc:  # the original error matters more than a failed cleanup
            logger.warning(
                "mysql_write_cleanup_failed",
                table=self.target,
                scratch=self.scratch,
                error=type(exc).__name__,
            )
