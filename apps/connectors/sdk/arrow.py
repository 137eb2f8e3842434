"""Arrow tables to a stream's types: the conversion of columns a reader already produced as Arrow.

- **Text columns** (`cast_block`, the CSV source; any text format): each column is read as text and cast to
  its field's type with one vectorised cast (`cast_text`: surrounding spaces tolerated for numbers and
  booleans, ISO datetimes with an offset converted to UTC, naive ones taken as UTC). A column that fails to
  cast is narrowed down to the offending rows by bisection; those rows are returned with a reason (the
  caller rejects them) and the rest of the block carries on. A column that already has its field's Arrow
  type is kept as it is.
- **Typed columns** (`conform_table`, the Parquet source; any typed format): each column is cast to its
  field's type (`cast_column`: dictionaries decoded, nanoseconds truncated to microseconds, naive timestamps
  taken as UTC); a column that does not cast as a whole goes through the Python values of
  `records.columns_to_table`, which rejects only the rows that do not convert.

Columns of the stream missing from the table are null. The errors caught are `records.CONVERT_ERRORS`
and `records.TEXT_CAST_ERRORS`, the one place that lists them.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import FieldType, StreamSchema, arrow_type_for
from apps.connectors.base import ConnectorError
from apps.connectors.sdk.records import CONVERT_ERRORS, TEXT_CAST_ERRORS, columns_to_table, text_to_datetime

# Past this many failed casts in one column of one block, the column is not of the declared type at all:
# failing with a message that says so beats rejecting most of the file row by row.
MAX_BAD_VALUES_PER_BLOCK = 1000


# --- text columns ----------------------------------------------------------------------------------------


def cast_text(arr: pa.Array, field_type: FieldType) -> pa.Array:
    """Cast one text column to the arrow type of `field_type`; raises ArrowInvalid if any value fails."""
    target = arrow_type_for(field_type)
    if field_type in (FieldType.STRING, FieldType.JSON):
        return arr
    if field_type == FieldType.DATETIME:
        # Values with an offset are instants; naive values are taken as UTC (documented in the data plane).
        return text_to_datetime(arr)
    try:
        return pc.cast(arr, target)
    except pa.ArrowInvalid:
        # Surrounding spaces are common in hand-made files; stripping them is never ambiguous for these types.
        return pc.cast(pc.utf8_trim_whitespace(arr), target)


def _bad_text_positions(
    arr: pa.Array, field_type: FieldType, offset: int, out: list[int], limit: int
) -> None:
    """Positions of the values of `arr` that do not cast, by bisection: O(bad * log n) casts."""
    if len(out) > limit:
        return
    try:
        cast_text(arr, field_type)
        return
    except TEXT_CAST_ERRORS:
        pass
    if len(arr) == 1:
        out.append(offset)
        return
    middle = len(arr) // 2
    _bad_text_positions(arr.slice(0, middle), field_type, offset, out, limit)
    _bad_text_positions(arr.slice(middle), field_type, offset + middle, out, limit)


def _column_array(table: pa.Table, name: str) -> pa.Array | None:
    """A column as one array: its chunk when it has one (a block always does), without a copy."""
    if name not in table.column_names:
        return None
    column = table.column(name)
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def cast_block(table: pa.Table, schema: StreamSchema) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Cast a text table to the schema; returns the good rows and (row index, reason) of the bad. A column
    that already has its field's arrow type is kept as it is."""
    columns: list[pa.Array] = []
    bad: dict[int, str] = {}
    for field in schema.fields:
        arr = _column_array(table, field.name)
        if arr is None:
            columns.append(pa.nulls(table.num_rows, arrow_type_for(field.type)))
            continue
        if arr.type == arrow_type_for(field.type):
            columns.append(arr)  # converted by the CSV reader already (the fast path), or text for text
            continue
        try:
            columns.append(cast_text(arr, field.type))
            continue
        except TEXT_CAST_ERRORS:
            pass
        positions: list[int] = []
        _bad_text_positions(arr, field.type, 0, positions, MAX_BAD_VALUES_PER_BLOCK)
        if len(positions) > MAX_BAD_VALUES_PER_BLOCK:
            raise ConnectorError(
                f"Column {field.name!r} does not hold {field.type} values (over {MAX_BAD_VALUES_PER_BLOCK} "
                f"failures in one block); set its type in column_types.",
                field="column_types",
            )
        for position in positions:
            bad.setdefault(position, f"{field.name}: {arr[position].as_py()!r} is not a valid {field.type}")
        bad_set = set(positions)
        mask = pa.array([i in bad_set for i in range(len(arr))])
        columns.append(cast_text(pc.if_else(mask, None, arr), field.type))
    result = pa.Table.from_arrays(columns, schema=schema.arrow_schema().remove_metadata())
    if bad:
        keep = pa.array([i not in bad for i in range(table.num_rows)])
        result = result.filter(keep)
    return result, sorted(bad.items())


# --- typed columns ---------------------------------------------------------------------------------------


def cast_column(column: pa.ChunkedArray | pa.Array, field_type: FieldType) -> pa.Array | pa.ChunkedArray:
    target = arrow_type_for(field_type)
    source = column.type
    if pa.types.is_dictionary(source):
        column = pc.cast(column, source.value_type)
        source = source.value_type
    if field_type == FieldType.JSON and (pa.types.is_nested(source) or not pa.types.is_string(source)):
        raise pa.ArrowNotImplementedError("nested values go through JSON text")
    if field_type == FieldType.DATETIME and pa.types.is_timestamp(source):
        # Nanoseconds are truncated to microseconds (the batch contract's unit); naive values are UTC.
        return pc.cast(column, target, safe=False)
    if field_type == FieldType.DATE and pa.types.is_timestamp(source):
        return pc.cast(pc.cast(column, pa.timestamp("us"), safe=False), pa.date32())
    return pc.cast(column, target)


def conform_table(table: pa.Table, schema: StreamSchema) -> tuple[pa.Table, dict[int, str]]:
    """Cast a file's batch to the stream's types; the good rows and {row index: reason} of the bad."""
    arrays: list[pa.Array | pa.ChunkedArray] = []
    failing: dict[str, list[Any]] = {}
    for field in schema.fields:
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, arrow_type_for(field.type)))
            continue
        column = table.column(field.name)
        try:
            arrays.append(cast_column(column, field.type))
        except CONVERT_ERRORS:
            # The slow path, only for a column that does not cast as a whole: Python values, converted (and
            # bad ones found) by the shared converter.
            failing[field.name] = column.to_pylist()
            arrays.append(pa.nulls(table.num_rows, arrow_type_for(field.type)))
    if not failing:
        return pa.Table.from_arrays(arrays, schema=schema.arrow_schema()), {}
    sub = StreamSchema(name=schema.name, fields=tuple(f for f in schema.fields if f.name in failing))
    converted, bad = columns_to_table(failing, sub, table.num_rows)
    keep = pa.array([i not in bad for i in range(table.num_rows)])
    good = pa.Table.from_arrays(arrays, schema=schema.arrow_schema()).filter(keep)
    for name in failing:
        good = good.set_column(schema.field_names.index(name), name, converted.column(name))
    return good, bad
