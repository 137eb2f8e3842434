"""Binding: a rule's config checked against the node's output schema (`bind`, `validate_rules`), giving
a `BoundRule` whose vectorised checks evaluate batches.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError as PydanticValidationError

from aggregator.dataplane import FieldType, StreamSchema, arrow_type_for
from aggregator.validation import pydantic_errors
from apps.transformations import expressions
from apps.transformations.casting import cast_values, json_safe
from apps.transformations.expressions import ExpressionError
from apps.transformations.quality.rules import (
    _ADAPTER,
    RULE_TYPES,
    RuleError,
)
from apps.transformations.steps import unknown_column

# --- binding: a config checked against the node's schema ------------------------------------------------


@dataclass
class RuleCounts:
    checked: int = 0
    failed: int = 0
    sample: list[Any] = field(default_factory=list)
    observed: Any = None  # stream rules: the row count, the latest timestamp
    violated: bool = False  # stream rules: judged at the end


@dataclass
class BoundRule:
    """A rule fitted to a schema; `fails(table)` is its per-batch mask (row rules only)."""

    config: Any
    describe: str  # "range on dep_delay"
    columns: list[str]
    counts: RuleCounts = field(default_factory=RuleCounts)

    @property
    def id(self) -> str:
        return str(self.config.id)

    @property
    def type(self) -> str:
        return str(self.config.type)

    @property
    def action(self) -> str:
        return str(self.config.action)

    @property
    def stream_level(self) -> bool:
        return self.type in ("row_count", "freshness")

    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def reason(self) -> str:
        return f"failed rule '{self.id}' ({self.describe})"

    def observe(self, table: pa.Table) -> None:
        """Stream rules fold the batch into their running value."""

    def judge(self) -> str | None:
        """Stream rules at the end: a message when violated."""
        return None


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a numpy mask, null as False."""
    filled = pc.fill_null(array, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name).combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column


class _NotNull(BoundRule):
    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        return _mask(pc.is_null(_column(table, self.columns[0])))

    def reason(self) -> str:
        return f"{self.columns[0]} is null (rule '{self.id}')"


class _Range(BoundRule):
    lower: pa.Scalar | None = None
    upper: pa.Scalar | None = None

    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        column = _column(table, self.columns[0])
        inside = pa.array(np.ones(len(column), dtype=bool))
        if self.lower is not None:
            op = pc.greater_equal if self.config.min_inclusive else pc.greater
            inside = pc.and_kleene(inside, op(column, self.lower))
        if self.upper is not None:
            op = pc.less_equal if self.config.max_inclusive else pc.less
            inside = pc.and_kleene(inside, op(column, self.upper))
        return _mask(pc.and_(pc.is_valid(column), pc.invert(pc.fill_null(inside, True))))

    def reason(self) -> str:
        low = "[" if self.config.min_inclusive else "("
        high = "]" if self.config.max_inclusive else ")"
        lower = "" if self.config.min is None else self.config.min
        upper = "" if self.config.max is None else self.config.max
        return f"{self.columns[0]} outside {low}{lower}, {upper}{high} (rule '{self.id}')"


class _Regex(BoundRule):
    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        column = _column(table, self.columns[0])
        if not pa.types.is_string(column.type):
            column = pc.cast(column, pa.string())
        matched = pc.match_substring_regex(column, self.config.pattern)
        return _mask(pc.and_(pc.is_valid(column), pc.invert(pc.fill_null(matched, True))))

    def reason(self) -> str:
        return f"{self.columns[0]} does not match /{self.config.pattern}/ (rule '{self.id}')"


class _Allowed(BoundRule):
    value_set: pa.Array | None = None

    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        column = _column(table, self.columns[0])
        found = pc.is_in(column, value_set=self.value_set)
        return _mask(pc.and_(pc.is_valid(column), pc.invert(found)))

    def reason(self) -> str:
        return f"{self.columns[0]} not one of the allowed values (rule '{self.id}')"


class _Type(BoundRule):
    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        compared, cast = cast_values(_column(table, self.columns[0]), FieldType(self.config.expected_type))
        return _mask(pc.and_(pc.is_valid(compared), pc.is_null(cast)))

    def reason(self) -> str:
        return f"{self.columns[0]} is not a valid {self.config.expected_type} (rule '{self.id}')"


class _Expression(BoundRule):
    node: expressions.Node | None = None
    schema: StreamSchema | None = None

    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        assert self.node is not None
        result = expressions.evaluate(self.node, table, self.schema)
        return ~_mask(result)  # only true passes: false and null fail

    def reason(self) -> str:
        return f"expression is not true: {self.config.expression} (rule '{self.id}')"


class HashSet:
    """A growing set of 64-bit hashes with vectorised membership: sorted numpy runs, merged when they
    pile up (an LSM in miniature), so adding a batch never re-sorts everything seen so far. 8 bytes a key:
    ten million distinct keys hold 80 MB."""

    MAX_RUNS = 8

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        # Sorted needles let searchsorted walk each run once instead of jumping around it (several times
        # faster on large runs); the answer is put back in the caller's order at the end.
        order = np.argsort(hashes)
        needles = hashes[order]
        found_sorted = np.zeros(len(hashes), dtype=bool)
        for run in self.runs:
            if len(run):
                pos = np.searchsorted(run, needles).clip(max=len(run) - 1)
                found_sorted |= run[pos] == needles
        found = np.empty(len(hashes), dtype=bool)
        found[order] = found_sorted
        return found

    def add(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        self.runs.append(np.unique(hashes))
        if len(self.runs) > self.MAX_RUNS:
            self.runs = [np.unique(np.concatenate(self.runs))]


def row_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in `columns` (pandas' vectorised hashing). Collisions are about
    n²/2⁶⁵: one in a few hundred million for a million keys."""
    frame = table.select(columns).to_pandas()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


class _Unique(BoundRule):
    seen: HashSet | None = None

    def fails(self, table: pa.Table, consider: np.ndarray | None = None) -> np.ndarray:
        if self.seen is None:
            self.seen = HashSet()
        n = table.num_rows
        complete = np.ones(n, dtype=bool)
        for name in self.columns:
            complete &= _mask(pc.is_valid(_column(table, name)))
        if consider is not None:
            complete &= consider  # rows another rule rejects take no key
        hashes = row_hashes(table, self.columns)
        fails = np.zeros(n, dtype=bool)
        checked = np.flatnonzero(complete)
        if len(checked):
            keys = hashes[checked]
            again = pd.Series(keys).duplicated(keep="first").to_numpy() | self.seen.contains(keys)
            fails[checked] = again
            self.seen.add(keys[~again])
        return fails

    def reason(self) -> str:
        return f"duplicate {', '.join(self.columns)} (rule '{self.id}')"


class _RowCount(BoundRule):
    def observe(self, table: pa.Table) -> None:
        self.counts.observed = (self.counts.observed or 0) + table.num_rows

    def judge(self) -> str | None:
        count = self.counts.observed or 0
        low, high = self.config.min, self.config.max
        if (low is not None and count < low) or (high is not None and count > high):
            bounds = f"[{'' if low is None else low}, {'' if high is None else high}]"
            return f"{count} row(s), outside {bounds}"
        return None


class _Freshness(BoundRule):
    latest: Any = None

    def observe(self, table: pa.Table) -> None:
        value = pc.max(_column(table, self.columns[0])).as_py()
        if value is not None and (self.latest is None or value > self.latest):
            self.latest = value
            self.counts.observed = json_safe(value)

    def judge(self) -> str | None:
        if self.latest is None:
            return f"no value in {self.columns[0]}"
        latest = self.latest
        if not isinstance(latest, dt.datetime):
            latest = dt.datetime.combine(latest, dt.time(), tzinfo=dt.UTC)
        elif latest.tzinfo is None:
            latest = latest.replace(tzinfo=dt.UTC)
        age = (dt.datetime.now(tz=dt.UTC) - latest).total_seconds()
        if age > self.config.max_age_s:
            limit = self.config.max_age_s
            return f"latest {self.columns[0]} {latest.isoformat()} is {age:.0f} s old (max {limit} s)"
        return None


def _need(schema: StreamSchema, name: str, field: str) -> FieldType:
    if name not in schema.field_names:
        error = unknown_column(name, schema.field_names, field=field)
        raise RuleError(error.message, field=field)
    return schema.field(name).type


def _scalar_for(value: Any, field_type: FieldType, field: str) -> pa.Scalar:
    target = arrow_type_for(field_type)
    if isinstance(value, bool) and field_type != FieldType.BOOLEAN:
        raise RuleError(f"{value!r} is not a valid {field_type}", field=field)
    try:
        return pa.scalar(value).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise RuleError(f"{value!r} is not a valid {field_type}", field=field) from None


def parse_rule(raw: Any) -> Any:
    """The config model of one raw rule; raises RuleError naming the key at fault."""
    try:
        return _ADAPTER.validate_python(raw)
    except PydanticValidationError as exc:
        errors = pydantic_errors(exc)
        path, messages = next(iter(errors.items()))
        # The discriminated union puts the type name first in the path (`range.min`); strip it.
        parts = path.split(".")
        if parts and parts[0] in RULE_TYPES and len(parts) > 1:
            path = ".".join(parts[1:])
        if path in ("non_field_errors", ""):
            path = ""
        return_field = path if path not in RULE_TYPES else ""
        message = messages[0].removeprefix("Value error, ")
        raise RuleError(message, field=return_field) from None


def bind(config: Any, schema: StreamSchema) -> BoundRule:
    """Fit a parsed rule to the node's output schema; raises RuleError naming the key at fault."""
    kind = config.type
    if kind == "not_null":
        _need(schema, config.column, "column")
        return _NotNull(config, f"not_null on {config.column}", [config.column])
    if kind == "unique":
        for i, name in enumerate(config.columns):
            _need(schema, name, f"columns.{i}")
        return _Unique(config, f"unique on {', '.join(config.columns)}", list(config.columns))
    if kind == "range":
        field_type = _need(schema, config.column, "column")
        if field_type in (FieldType.BOOLEAN, FieldType.JSON):
            raise RuleError(f"a range needs a number, text or date column, not {field_type}", field="column")
        rule = _Range(config, f"range on {config.column}", [config.column])
        rule.lower = None if config.min is None else _scalar_for(config.min, field_type, "min")
        rule.upper = None if config.max is None else _scalar_for(config.max, field_type, "max")
        if rule.lower is not None and rule.upper is not None and pc.greater(rule.lower, rule.upper).as_py():
            raise RuleError("`min` is above `max`", field="min")
        return rule
    if kind == "regex":
        _need(schema, config.column, "column")
        try:
            pc.match_substring_regex(pa.array([""], pa.string()), config.pattern)
        except pa.ArrowInvalid as exc:
            raise RuleError(f"not an RE2 pattern: {str(exc).split(': ', 1)[-1]}", field="pattern") from None
        return _Regex(config, f"regex on {config.column}", [config.column])
    if kind == "allowed_values":
        field_type = _need(schema, config.column, "column")
        allowed = _Allowed(config, f"allowed_values on {config.column}", [config.column])
        scalars = [_scalar_for(v, field_type, f"values.{i}") for i, v in enumerate(config.values)]
        allowed.value_set = pa.array([s.as_py() for s in scalars], type=arrow_type_for(field_type))
        return allowed
    if kind == "type":
        _need(schema, config.column, "column")
        return _Type(config, f"type {config.expected_type} on {config.column}", [config.column])
    if kind == "row_count":
        return _RowCount(config, "row_count", [])
    if kind == "freshness":
        field_type = _need(schema, config.column, "column")
        if field_type not in (FieldType.DATE, FieldType.DATETIME):
            raise RuleError(f"freshness needs a date or datetime column, not {field_type}", field="column")
        return _Freshness(config, f"freshness of {config.column}", [config.column])
    if kind == "expression":
        try:
            node = expressions.parse(config.expression)
            result = expressions.typecheck(node, schema)
        except ExpressionError as exc:
            raise RuleError(exc.message, field="expression") from None
        if result != FieldType.BOOLEAN:
            raise RuleError(f"the expression must be true or false, not {result}", field="expression")
        checked = _Expression(config, f"expression {config.expression}", sorted(_columns_of(node)))
        checked.node, checked.schema = node, schema
        return checked
    raise RuleError(f"unknown rule type {kind!r}", field="type")  # pragma: no cover - the union refuses it


def _columns_of(node: Any) -> set[str]:
    """Column names an expression tree reads (for the sample of failing rows)."""
    if isinstance(node, expressions.Column):
        return {node.name}
    found: set[str] = set()
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                if isinstance(item, expressions.Node):
                    found |= _columns_of(item)
    return found


def validate_rules(raw: Any, schema: StreamSchema | None) -> tuple[list[BoundRule], list[tuple[str, str]]]:
    """Every rule of a node, bound to its output schema (None: an upstream problem is already reported,
    so only the configs are checked). Returns the rules and the problems as (field, message), the field
    being `rules.<index>.<key>`."""
    problems: list[tuple[str, str]] = []
    rules: list[BoundRule] = []
    if not isinstance(raw, list):
        return [], [("rules", "`rules` must be a list of rule objects.")]
    ids: set[str] = set()
    for index, item in enumerate(raw):
        prefix = f"rules.{index}"
        try:
            config = parse_rule(item)
        except RuleError as exc:
            problems.append((f"{prefix}.{exc.field}" if exc.field else prefix, exc.message))
            continue
        if config.id in ids:
            problems.append((f"{prefix}.id", f"rule id '{config.id}' is used twice on this node"))
            continue
        ids.add(config.id)
        if schema is None:
            continue
        try:
            rules.append(bind(config, schema))
        except RuleError as exc:
            problems.append((f"{prefix}.{exc.field}" if exc.field else prefix, exc.message))
    return rules, problems
