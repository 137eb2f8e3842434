"""The SQL step: a SELECT over the incoming batch, run by DuckDB in process.

Safety: the text must parse (with DuckDB's own parser) as exactly one SELECT (WITH … SELECT included); it
runs in an in-memory connection that cannot touch files or the network, cannot install or load extensions
and whose configuration is locked (sandbox() in _util), against nothing but the registered inputs; a timer
thread interrupts a query that runs past its time limit. No Python runs on the query's behalf.

Per batch: the main input arrives batch by batch and the query runs once per batch, so an aggregate or
ORDER BY in it sees one batch, not the stream (use the aggregate and sort steps for the stream). Other
inputs are read whole before the main one and are visible to every batch's query under their node id.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import Field as PydanticField
from pydantic import field_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema
from apps.transformations import limits
from apps.transformations.steps import (
    StepBudgetExceeded,
    StepConfig,
    StepError,
    StepOutput,
    StepRunner,
    StepType,
    register,
)

from ._util import conform, empty_table, quote_ident, sandbox, shared_sandbox

MAX_QUERY_LENGTH = 20_000
INPUT_TABLE = "input"
# Rows of the result fetched at a time: the budget is checked between slices, so a slice is the most a
# query can overshoot it by.
RESULT_SLICE_ROWS = 8192

_INTEGERS = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "HUGEINT",
    "UHUGEINT",
}
_NUMBERS = {"FLOAT", "DOUBLE", "REAL"}


# --- what a query may use ------------------------------------------------------------------------------
#
# The connection is sandboxed already (sandbox() in _util): no files, no network, no extensions, settings
# locked. On top of that the query is read with DuckDB's own parser, before it ever runs, and refused if it
# is not one SELECT or if it names a function or table that describes the server rather than the batch:
# duckdb_settings() and current_setting() show the engine's directories, duckdb_extensions() its
# extension path, the read_* functions would name files (refused by the sandbox, but in an error that
# names the path). Table functions are allowed from a short list; scalar functions are refused from one.

# Why a statement other than SELECT is refused, by its first keyword.
_ONE_SELECT = "it runs one SELECT over the batch"
_NO_EXTENSIONS = f"{_ONE_SELECT} and cannot add extensions"
_NO_DATABASES = f"{_ONE_SELECT} and cannot open other databases"
_NO_FILES = f"{_ONE_SELECT} and cannot read or write files"
_FIXED = "its settings are fixed"
_STATEMENT_REASONS = {
    "INSTALL": _NO_EXTENSIONS,
    "LOAD": _NO_EXTENSIONS,
    "FORCE": _NO_EXTENSIONS,
    "ATTACH": _NO_DATABASES,
    "DETACH": _NO_DATABASES,
    "USE": _NO_DATABASES,
    "COPY": _NO_FILES,
    "EXPORT": _NO_FILES,
    "IMPORT": _NO_FILES,
    "SET": _FIXED,
    "RESET": _FIXED,
    "PRAGMA": _FIXED,
    "CALL": _ONE_SELECT,
}
_CHANGES_NOTHING = f"{_ONE_SELECT} and changes nothing"

# Table functions that make rows from their arguments; any other (read_csv, glob, duckdb_settings(),
# pragma_*, query(), …) reads files, describes the server or runs SQL text that was never checked.
_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
_SCALAR_REASONS = {
    "current_setting": "the engine's settings are not shown",
    "getenv": "it reads the server's environment",
    "getvariable": "the engine's variables are not shown",
    "write_log": "it writes to the engine's log",
}


def _first_keyword(query: str) -> str:
    text = query.strip()
    for offset, kind in duckdb.tokenize(text):
        if kind == duckdb.token_type.comment:
            continue
        word = re.match(r"[A-Za-z_]+", text[offset:])
        return word.group().upper() if word else ""
    return ""


def _statement_refusal(statement: Any) -> str:
    keyword = _first_keyword(statement.query)
    if keyword in ("WITH", ""):
        keyword = str(statement.type).rsplit(".", 1)[-1]
    return f"{keyword} is not allowed in the sql step: {_STATEMENT_REASONS.get(keyword, _CHANGES_NOTHING)}"


def _table_function_refusal(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith(("read_", "parquet_", "sniff_")) or lowered in ("glob", "seq_scan", "arrow_scan"):
        why = "it reads files, and the step reads only its inputs"
    elif lowered in ("query", "query_table", "json_execute_serialized_sql"):
        why = "it runs SQL text that the step cannot check"
    elif lowered.startswith(("duckdb_", "pragma_")) or lowered in ("which_secret", "pg_timezone_names"):
        why = "it describes the server, not the batch"
    else:
        why = f"the tables it can read are its inputs and {', '.join(sorted(_TABLE_FUNCTIONS))}"
    return f"{name}() is not allowed in the sql step: {why}"


@dataclass
class _References:
    tables: list[str] = dataclass_field(default_factory=list)
    ctes: set[str] = dataclass_field(default_factory=set)
    refusal: str | None = None


def _walk(node: Any, found: _References) -> None:
    if found.refusal is not None:
        return
    if isinstance(node, list):
        for item in node:
            _walk(item, found)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "SHOW_REF":
        found.refusal = f"DESCRIBE, SHOW and SUMMARIZE are not allowed in the sql step: {_ONE_SELECT}"
        return
    if kind == "TABLE_FUNCTION":
        function = node.get("function") or {}
        name = str(function.get("function_name", ""))
        if name.lower() not in _TABLE_FUNCTIONS:
            found.refusal = _table_function_refusal(name)
            return
        _walk(function.get("arguments"), found)
        return
    if kind == "BASE_TABLE":
        found.tables.append(str(node.get("table_name", "")))
        return
    if node.get("class") == "FUNCTION":
        name = str(node.get("function_name", ""))
        reason = _SCALAR_REASONS.get(name.lower())
        if reason is None and name.lower().startswith(("duckdb_", "pragma_")):
            reason = "it describes the server, not the batch"
        if reason is not None:
            found.refusal = f"{name}() is not allowed in the sql step: {reason}"
            return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        found.ctes.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map") or [])
    for value in node.values():
        _walk(value, found)


def _references(query: str) -> _References:
    """The tables a SELECT reads and the first thing in it that is refused, from DuckDB's own syntax tree
    (`json_serialize_sql`): nothing is bound or run."""
    con = shared_sandbox()
    # fetchall: a result left unread would keep the shared connection busy for the steps' own queries.
    rows = con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
    tree = json.loads(rows[0][0]) if rows else {"error": True}
    found = _References()
    if tree.get("error"):
        found.refusal = str(tree.get("error_message") or "the query cannot be read")
        return found
    _walk(tree.get("statements"), found)
    return found


def check_select(query: str) -> str:
    """A pydantic validator body: one SELECT statement, as DuckDB's parser sees it, using nothing that
    reads files or describes the server."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise PydanticCustomError("invalid_sql", "{error}", {"error": str(exc).splitlines()[0]}) from None
    if len(statements) != 1:
        raise PydanticCustomError(
            "one_statement", "write exactly one SELECT statement (found {n})", {"n": len(statements)}
        )
    if statements[0].type != duckdb.StatementType.SELECT:
        raise PydanticCustomError("not_select", "{reason}", {"reason": _statement_refusal(statements[0])})
    refusal = _references(query.strip().rstrip(";")).refusal
    if refusal is not None:
        raise PydanticCustomError("not_allowed", "{reason}", {"reason": refusal})
    return query


def _unknown_tables(query: str, inputs: set[str]) -> str | None:
    found = _references(query)
    for name in found.tables:
        if name.lower() in found.ctes or name.lower() in inputs:
            continue
        if re.search(r"[/\\.:]", name):
            return f"'{name}' is a file: the sql step reads only its inputs"
        known = ", ".join(sorted(inputs))
        return (
            f"'{name}' is not a table of this step: the query can read {known} and what its own WITH defines"
        )
    return None


class SqlConfig(StepConfig):
    query: str = PydanticField(
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        title="Query",
        description=(
            "A DuckDB SELECT. The current batch is the table `input`; other inputs of the node are tables "
            'named by their node id (quote ids that are not plain names: "airline-codes").'
        ),
        examples=["SELECT carrier, dep_delay / 60.0 AS delay_hours FROM input WHERE dep_delay > 0"],
    )
    main: str | None = PydanticField(
        default=None,
        title="Main input",
        description=(
            "With several inputs: the node id of the one that streams through as `input` "
            "(default: the first)."
        ),
    )
    timeout_s: float = PydanticField(
        default=30.0, gt=0, le=600, title="Time limit (s)", description="Per batch; the run fails past it."
    )

    _query = field_validator("query")(check_select)


def _field_type(duck_type: str) -> FieldType:
    base = duck_type.split("(", 1)[0].strip().upper()
    if duck_type.endswith("]") or base in ("STRUCT", "MAP", "LIST", "UNION"):
        return FieldType.JSON
    if base == "BOOLEAN":
        return FieldType.BOOLEAN
    if base in _INTEGERS:
        return FieldType.INTEGER
    if base in _NUMBERS or base == "DECIMAL":
        return FieldType.NUMBER
    if base == "DATE":
        return FieldType.DATE
    if base.startswith("TIMESTAMP"):
        return FieldType.DATETIME
    if base == "JSON":
        return FieldType.JSON
    return FieldType.STRING


def _converted(name: str, duck_type: str, field_type: FieldType) -> str:
    """The select-list item that turns a result column into what the data plane carries."""
    ident = quote_ident(name)
    if field_type == FieldType.JSON:
        return (
            f"CAST(to_json({ident}) AS VARCHAR) AS {ident}"
            if duck_type.upper() != "JSON"
            else f"CAST({ident} AS VARCHAR) AS {ident}"
        )
    if field_type == FieldType.INTEGER and duck_type.upper() in ("UBIGINT", "HUGEINT", "UHUGEINT"):
        return f"CAST({ident} AS BIGINT) AS {ident}"
    if field_type == FieldType.NUMBER:
        return f"CAST({ident} AS DOUBLE) AS {ident}"
    if field_type == FieldType.DATETIME:
        # Microsecond instants in UTC (the session's zone: a naive TIMESTAMP is taken as UTC), so a
        # TIMESTAMP_NS cannot fail the cast to the data plane's type.
        return f"CAST({ident} AS TIMESTAMPTZ) AS {ident}"
    if field_type == FieldType.STRING and duck_type.upper() not in ("VARCHAR",):
        return f"CAST({ident} AS VARCHAR) AS {ident}"
    return ident


class _Session:
    """One sandboxed connection for one node in one run, with the buffered inputs registered."""

    def __init__(self, config: SqlConfig, main: StreamSchema, others: dict[str, StreamSchema]) -> None:
        self.config = config
        query = config.query.strip().rstrip(";")
        unknown = _unknown_tables(query, {INPUT_TABLE, *(name.lower() for name in others)})
        if unknown is not None:
            raise StepError(unknown, field="config.query")
        self.con = sandbox()
        self.con.register(INPUT_TABLE, empty_table(main))
        for node_id, schema in others.items():
            self.con.register(node_id, empty_table(schema))
        # The bytes of the inputs read whole: every batch's query can read them, so they count towards
        # what a batch's result may be (limits.Limits.output_budget).
        self.held = 0
        try:
            relation = self.con.sql(query)
            names, types = relation.columns, [str(t) for t in relation.types]
        except duckdb.Error as exc:
            raise StepError(str(exc).splitlines()[0], field="config.query") from None
        seen: set[str] = set()
        fields = []
        for name, duck_type in zip(names, types, strict=True):
            if name in seen:
                raise StepError(
                    f"the query returns two columns named '{name}': give them aliases", field="config.query"
                )
            seen.add(name)
            fields.append(Field(name, _field_type(duck_type)))
        self.schema = StreamSchema(name=main.name, fields=tuple(fields))
        items = ", ".join(_converted(f.name, t, f.type) for f, t in zip(fields, types, strict=True))
        self.wrapped = f"SELECT {items} FROM ({query}) AS q"  # noqa: S608 - the user's query, validated as one SELECT

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)
        self.held += table.nbytes

    def run(self, table: pa.Table) -> pa.Table:
        self.con.register(INPUT_TABLE, table)
        budget = limits.current().output_budget(table.nbytes + self.held)
        timer = threading.Timer(self.config.timeout_s, self.con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            # Read the result in slices and stop once it is past the budget: a query can make any number
            # of rows from one batch (a cross join, range()), and DuckDB's own memory limit does not count
            # the Arrow copy handed back.
            reader = self.con.sql(self.wrapped).to_arrow_reader(RESULT_SLICE_ROWS)
            slices, produced = [], 0
            for record_batch in reader:
                produced += record_batch.nbytes
                if produced > budget:
                    reader.close()
                    raise StepBudgetExceeded(
                        f"the query's result passed {limits.size(budget)} for a batch of "
                        f"{limits.size(table.nbytes)}, more than the step's budget for it "
                        f"({limits.BUDGET_SETTINGS})",
                        field="config.query",
                    )
                slices.append(record_batch)
            result = pa.Table.from_batches(slices, schema=reader.schema)
        except duckdb.InterruptException:
            raise StepError(
                f"the query ran longer than its time limit of {self.config.timeout_s:g} s",
                field="config.timeout_s",
            ) from None
        except duckdb.Error as exc:
            raise StepError(str(exc).splitlines()[0], field="config.query") from None
        finally:
            timer.cancel()
        return conform(result, self.schema)

    def close(self) -> None:
        self.con.close()


@register
class SqlStep(StepType[SqlConfig]):
    slug = "sql"
    title = "SQL"
    description = (
        "Runs a DuckDB SELECT over each batch (the table `input`) and passes its result on; other inputs of "
        "the node are read whole first (held in memory) and visible by their node id. Read-only: one "
        "SELECT, no file, "
        "network or extension access, a time limit per batch. The query sees one batch at a time. "
        'Example: {"query": "SELECT carrier, avg(dep_delay) AS mean_delay FROM input GROUP BY carrier"}.'
    )
    category = "sql"
    config_model = SqlConfig
    max_inputs = None
    buffers = True  # the inputs other than the main one are held whole

    def _split(
        self, config: SqlConfig, inputs: dict[str, StreamSchema]
    ) -> tuple[str, dict[str, StreamSchema]]:
        main = config.main if config.main is not None else next(iter(inputs))
        if main not in inputs:
            raise StepError(
                f"'{main}' is not an input of this node (its inputs: {', '.join(inputs)})",
                field="config.main",
            )
        return main, {k: v for k, v in inputs.items() if k != main}

    def _output_schema(self, config: SqlConfig, inputs: list[StreamSchema]) -> StreamSchema:
        return self.output_schema_for(
            config, {INPUT_TABLE: inputs[0], **{f"input{i}": s for i, s in enumerate(inputs[1:], 1)}}
        )

    def output_schema_for(
        self, config: SqlConfig | dict[str, Any], inputs: dict[str, StreamSchema]
    ) -> StreamSchema:
        config = self._config(config)
        main, others = self._split(config, inputs)
        session = _Session(config, inputs[main], others)
        try:
            return session.schema
        finally:
            session.close()

    def input_order(self, config: SqlConfig | dict[str, Any], input_ids: list[str]) -> list[str]:
        config = self._config(config)
        if len(input_ids) < 2:
            return []
        main = config.main if config.main is not None else input_ids[0]
        return [i for i in input_ids if i != main]

    def _apply(self, config: SqlConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        session = _Session(config, schema, {})
        try:
            return StepOutput(Batch(session.run(batch.table), stream=batch.stream))
        finally:
            session.close()

    def runner(self, config: SqlConfig | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        config = self._config(config)
        main, others = self._split(config, inputs)
        return _SqlRunner(_Session(config, inputs[main], others), main, set(others))


class _SqlRunner(StepRunner):
    def __init__(self, session: _Session, main: str, others: set[str]) -> None:
        self.session = session
        self.main = main
        self.open = set(others)
        self.buffered: dict[str, list[pa.Table]] = {name: [] for name in others}
        self.waiting: list[Batch] = []

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        if input_id != self.main:
            self.buffered[input_id].append(batch.table)
            return
        if self.open:
            self.waiting.append(batch)
            return
        yield StepOutput(Batch(self.session.run(batch.table), stream=batch.stream))

    def end(self, input_id: str) -> Iterable[StepOutput]:
        if input_id != self.main and input_id in self.open:
            self.open.discard(input_id)
            tables = self.buffered.pop(input_id)
            if tables:
                self.session.register(input_id, pa.concat_tables(tables, promote_options="permissive"))
            if not self.open:
                waiting, self.waiting = self.waiting, []
                for batch in waiting:
                    yield StepOutput(Batch(self.session.run(batch.table), stream=batch.stream))
        if input_id == self.main and not self.open:
            self.session.close()
