"""Helpers shared by the library's steps: column lookups that name the config field at fault, unique name
lists, a sandboxed DuckDB connection, text views of columns."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic_core import PydanticCustomError

from aggregator.dataplane import RESERVED_COLUMNS, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations import limits
from apps.transformations.steps import StepBudgetExceeded, StepError, unknown_column

TEXT_TYPES = frozenset({FieldType.STRING, FieldType.JSON})
NUMERIC_TYPES = frozenset({FieldType.INTEGER, FieldType.NUMBER})
TEMPORAL_TYPES = frozenset({FieldType.DATE, FieldType.DATETIME})
ORDERED_TYPES = frozenset(
    {
        FieldType.STRING,
        FieldType.INTEGER,
        FieldType.NUMBER,
        FieldType.BOOLEAN,
        FieldType.DATE,
        FieldType.DATETIME,
    }
)


def unique_names(names: list[str]) -> list[str]:
    """A pydantic validator body: a list of column names without repeats or blanks."""
    seen: set[str] = set()
    for name in names:
        if not name.strip():
            raise PydanticCustomError("empty_name", "a column name is empty")
        if name in seen:
            raise PydanticCustomError("duplicate_column", "column '{name}' is listed twice", {"name": name})
        seen.add(name)
    return names


def new_name(name: str) -> str:
    """A pydantic validator body for a column a step creates."""
    if not name.strip():
        raise PydanticCustomError("empty_name", "the column name is empty")
    if name in RESERVED_COLUMNS:
        raise PydanticCustomError(
            "reserved_name", "'{name}' is reserved for the loader's own column", {"name": name}
        )
    return name


def field_of(schema: StreamSchema, name: str, path: str) -> Field:
    try:
        return schema.field(name)
    except KeyError:
        raise unknown_column(name, schema.field_names, field=path) from None


def typed_field(
    schema: StreamSchema, name: str, path: str, allowed: Iterable[FieldType], wants: str
) -> Field:
    f = field_of(schema, name, path)
    if f.type not in frozenset(allowed):
        raise StepError(f"column '{name}' is {f.type}, but this step needs {wants}", field=path)
    return f


def column(table: pa.Table, name: str, path: str) -> pa.Array:
    """One column of a batch as a single array (dictionaries decoded); a column missing from the batch
    (drift after validation) is the same error as at validation."""
    index = table.schema.get_field_index(name)
    if index < 0:
        raise unknown_column(name, table.column_names, field=path)
    values = table.column(index).combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values


def text(values: pa.Array) -> pa.Array:
    """A column as Arrow strings (large strings and other types converted)."""
    if values.type == pa.string():
        return values
    return pc.cast(values, pa.string())


def set_column(
    table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray, field_type: FieldType
) -> pa.Table:
    """Replace the column in place, or append it, with the data plane's Arrow type for `field_type`."""
    arrow_type = arrow_type_for(field_type)
    if values.type != arrow_type:
        values = pc.cast(values, arrow_type)
    index = table.schema.get_field_index(name)
    field = pa.field(name, arrow_type)
    if index < 0:
        return table.append_column(field, values)
    return table.set_column(index, field, values)


def conform(table: pa.Table, schema: StreamSchema) -> pa.Table:
    """The table with exactly the schema's columns, in order, in the data plane's Arrow types."""
    arrays = []
    for f in schema.fields:
        values = table.column(f.name)
        arrow_type = arrow_type_for(f.type)
        if values.type != arrow_type:
            values = pc.cast(values, arrow_type)
        arrays.append(values)
    return pa.Table.from_arrays(
        arrays, schema=pa.schema([pa.field(f.name, arrow_type_for(f.type)) for f in schema.fields])
    )


def refuse_growth(table: pa.Table, produced: int, *, what: str, field: str | None) -> None:
    """Refuse, before it is built, a column of `produced` bytes that would take a batch past its step's
    budget (`limits`: the same bound BudgetedRunner applies once an output exists)."""
    budget = limits.current().output_budget(table.nbytes)
    if produced > budget:
        raise StepBudgetExceeded(
            f"{what} would make {limits.size(produced)} from a batch of {limits.size(table.nbytes)}, more "
            f"than the step's budget of {limits.size(budget)} for it ({limits.BUDGET_SETTINGS})",
            field=field,
        )


def text_bytes(values: pa.Array) -> int:
    """The bytes of a text column's values (its offsets and validity left out)."""
    return int(pc.sum(pc.binary_length(values)).as_py() or 0)


def replacement_growth(
    table: pa.Table, values: pa.Array, pattern: str, literal: int, copies: int, *, what: str, field: str
) -> None:
    """Refuse a regex replacement that would build too much: each match becomes `literal` bytes plus
    `copies` copies of matched text (group references). The exact count of matches costs a second pass of
    the pattern, so it is made only when the worst case (a match at every byte boundary) could exceed
    the budget."""
    total = text_bytes(values)
    worst = total * (1 + copies) + (total + len(values)) * literal
    if worst <= limits.current().output_budget(table.nbytes):
        return
    matches = int(pc.sum(pc.count_substring_regex(values, pattern)).as_py() or 0)
    refuse_growth(table, total * (1 + copies) + matches * literal, what=what, field=field)


def empty_table(schema: StreamSchema) -> pa.Table:
    return pa.Table.from_pylist(
        [], schema=pa.schema([pa.field(f.name, arrow_type_for(f.type)) for f in schema.fields])
    )


# --- DuckDB -------------------------------------------------------------------------------------------
#
# Steps that need kernels Arrow lacks (SHA-256, JSON paths, row hashes) and the SQL step run DuckDB
# in process, over the batch's Arrow table without copying it. Every connection is in memory, cannot
# touch files or the network (`enable_external_access=false`), cannot load or install extensions, and
# has its configuration locked so a query cannot undo any of this.

_DUCK_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    # A worker runs several runs at once; a step should not take every core of the machine.
    "threads": 2,
    "memory_limit": "1GB",
}


def sandbox() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config=dict(_DUCK_CONFIG))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET lock_configuration = true")
    return con


_local = threading.local()
# Connections a forked child found in memory, kept referenced so that they are never closed from it.
_inherited: list[Any] = []


def forget_inherited_connections() -> None:
    """For a forked child: the parent's DuckDB connection is not this process's to use (the engine's
    worker threads did not survive the fork), nor to close; the child makes its own."""
    _inherited.append(getattr(_local, "con", None))
    _local.con = None


def shared_sandbox() -> duckdb.DuckDBPyConnection:
    """One sandboxed connection per thread for the steps' own fixed queries (never user SQL)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = sandbox()
    return con


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duck(query: str, tables: dict[str, pa.Table]) -> pa.Table:
    """Run one of the steps' own queries over Arrow tables (registered under the given names)."""
    con = shared_sandbox()
    for name, table in tables.items():
        con.register(name, table)
    try:
        return con.sql(query).to_arrow_table()
    finally:
        for name in tables:
            con.unregister(name)


def row_hashes(table: pa.Table, keys: list[str]) -> Any:
    """A 64-bit hash of each row's key values (nulls hash alike), as a numpy uint64 array."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.uint64)
    expr = ", ".join(quote_ident(k) for k in keys)
    # The column names are quoted identifiers; nothing else in the text comes from a config.
    result = duck(f"SELECT hash({expr}) AS h FROM batch", {"batch": table.select(keys)})  # noqa: S608
    return result.column("h").to_numpy()
