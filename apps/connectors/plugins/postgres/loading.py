"""How the PostgreSQL destination puts rows on the wire: each batch is written as CSV by pyarrow
(`pyarrow.csv.write_csv`, columnar, no Python per row) and streamed into `COPY ... FROM STDIN (FORMAT csv)`
by a sender thread while the next batch is encoded. Also the column definitions of the tables it creates,
with the run columns filled by default from the write's transaction."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from aggregator.dataplane import (
    LOADED_AT_COLUMN,
    RUN_ID_COLUMN,
    Batch,
    FieldType,
    StreamSchema,
    WriteResult,
)
from apps.connectors.sdk.sql import POSTGRES

PG_TYPES = POSTGRES.types
# Rows encoded and handed to COPY at a time: the server starts on a batch's first rows while the rest are
# still being encoded, and per-call overhead stays negligible (about 1.5 MB of CSV per slice).
COPY_SLICE_ROWS = 10_000


def column_defs(fields: Iterable[tuple[str, str]]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg)) for name, pg in fields
    )


# Tables this destination creates fill the run columns by default from the write's transaction: the run id
# from a transaction-local setting, the load time as the transaction's start. COPY then sends only the data
# columns, which saves the server parsing a timestamp per row (about a quarter of its COPY time on the
# benchmark table). Tables made elsewhere, without these defaults, get both columns sent explicitly.
RUN_SETTING = "aggregator.run_id"
RUN_DEFAULTS = {RUN_ID_COLUMN: f"current_setting('{RUN_SETTING}', true)", LOADED_AT_COLUMN: "now()"}


def all_columns(schema: StreamSchema, *, with_defaults: bool = False) -> list[tuple[str, str]]:
    run_columns = list(POSTGRES.run_columns)
    if with_defaults:
        run_columns = [(name, f"{pg_type} DEFAULT {RUN_DEFAULTS[name]}") for name, pg_type in run_columns]
    return [(f.name, PG_TYPES[f.type]) for f in schema.fields] + run_columns


def has_run_defaults(cur: psycopg.Cursor[Any], schema: str, table: str) -> bool:
    cur.execute(
        "SELECT column_name, column_default FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s AND column_name IN (%s, %s)",
        (schema, table, RUN_ID_COLUMN, LOADED_AT_COLUMN),
    )
    defaults = dict(cur.fetchall())
    return RUN_SETTING in (defaults.get(RUN_ID_COLUMN) or "") and "now()" in (
        defaults.get(LOADED_AT_COLUMN) or ""
    )


class CsvEncoder:
    """Turns batches into CSV bytes for COPY, with the run columns appended. Columnar throughout.

    Formatting timestamps is by far the slowest part of pyarrow's CSV writer (about 1 µs a value, more than
    every other column of a typical table together), so temporal columns are dictionary-encoded first and
    only their distinct values are formatted: event times repeat a lot, and the run's own `_ag_loaded_at`
    is a single value. The writer expands a dictionary column as cheaply as a string column."""

    def __init__(self, schema: StreamSchema, run_id: str, loaded_at: Any, *, with_run_columns: bool) -> None:
        self.schema = schema
        self.with_run_columns = with_run_columns
        self.options = pacsv.WriteOptions(include_header=False, batch_size=8192)
        self.run_id = pa.array([run_id], pa.string())
        stamp = pa.array([loaded_at], pa.timestamp("us", tz="UTC"))
        self.loaded_at = stamp.cast(pa.string())

    @staticmethod
    def _constant(value: pa.Array, n: int) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), value)

    @staticmethod
    def _temporal_as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
        chunks = []
        for chunk in column.chunks:
            encoded = pc.dictionary_encode(chunk)
            chunks.append(
                pa.DictionaryArray.from_arrays(encoded.indices, encoded.dictionary.cast(pa.string()))
            )
        return pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()))

    def _column(self, table: pa.Table, name: str, field_type: FieldType) -> pa.Array | pa.ChunkedArray:
        if name not in table.column_names:
            return pa.nulls(table.num_rows, pa.string())
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            if pa.types.is_timestamp(column.type) and column.type.tz is None:
                column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))  # naive values are UTC
            return self._temporal_as_text(column)
        if pa.types.is_nested(column.type) or (
            field_type == FieldType.JSON and not pa.types.is_string(column.type)
        ):
            # Rare path (JSON fields from nested types): Python per value, to produce JSON text.
            return pa.array(
                [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.string()
            )
        return column

    def encode(self, table: pa.Table) -> pa.Buffer:
        n = table.num_rows
        columns = [self._column(table, f.name, f.type) for f in self.schema.fields]
        names = list(self.schema.field_names)
        if self.with_run_columns:
            columns += [self._constant(self.run_id, n), self._constant(self.loaded_at, n)]
            names += [RUN_ID_COLUMN, LOADED_AT_COLUMN]
        sink = pa.BufferOutputStream()
        pacsv.write_csv(pa.Table.from_arrays(columns, names=names), sink, write_options=self.options)
        return sink.getvalue()


def copy_batches(
    cur: psycopg.Cursor[Any],
    target: sql.Identifier,
    batches: Iterable[Batch],
    encoder: CsvEncoder,
    result: WriteResult,
) -> None:
    names = list(encoder.schema.field_names)
    if encoder.with_run_columns:
        names += [RUN_ID_COLUMN, LOADED_AT_COLUMN]
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, columns)
    # A sender thread writes to COPY while this thread reads and encodes the next batch (pyarrow releases
    # the GIL), so the source, the encoder and the server all work at once. The hand-over queue holds at
    # most four encoded slices: memory stays bounded however large the stream.
    with cur.copy(statement) as copy:
        pending: queue.Queue[pa.Buffer | None] = queue.Queue(maxsize=4)
        failures: list[BaseException] = []

        def send() -> None:
            while (payload := pending.get()) is not None:
                if failures:
                    continue  # drain, so the producer never blocks on a dead sender
                try:
                    copy.write(memoryview(payload))
                except BaseException as exc:
                    failures.append(exc)

        sender = threading.Thread(target=send, name="postgres-copy", daemon=True)
        sender.start()
        try:
            for batch in batches:
                if failures:
                    break
                if batch.num_rows == 0:
                    continue
                # Encoded in slices, so the server starts on a batch before all of it is encoded.
                for offset in range(0, batch.num_rows, COPY_SLICE_ROWS):
                    payload = encoder.encode(batch.table.slice(offset, COPY_SLICE_ROWS))
                    pending.put(payload)
                    result.bytes_sent += payload.size
                result.rows_written += batch.num_rows
                result.batches += 1
        finally:
            pending.put(None)
            sender.join()
        if failures:
            raise failures[0]
