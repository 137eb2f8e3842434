"""Validation rules on a node's output: their configs, their checks against the node's schema, and their
vectorised evaluation over the batches of one run.

A node of a pipeline document may carry `"rules": [{"id": …, "type": …, "action": …, …}, …]`. Each rule is
a pydantic model (unknown keys forbidden) chosen by `type`; `bind` checks it against the node's output
schema (columns exist, bounds and values fit the column's type, the regex compiles in RE2, the expression
type-checks as a boolean) and returns a `BoundRule` that evaluates batches.

Row rules (not_null, unique, range, regex, allowed_values, type, expression) compute a boolean "fails" mask
per batch with `pyarrow.compute`; stream rules (row_count, freshness) fold each batch into a running
value and are judged when the node's stream ends. Nulls pass every row rule except not_null (and fail an
expression rule, whose row passes only when the expression is true), as a SQL constraint would treat them —
missing values are not_null's business.

Actions: `fail` stops the run (`RuleFailed`, a configuration-type failure: a retry would fail the same way),
`reject` sends the row to the run's quarantine with the rule id and reason, `warn` keeps it and counts it.
A row failing several reject rules is quarantined once, under the first of them, with every reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, TypeAdapter, model_validator
from pydantic import Field as PydanticField
from pydantic import ValidationError as PydanticValidationError

from aggregator.dataplane import Batch, FieldType, RejectedRow, StreamSchema, arrow_type_for
from aggregator.validation import pydantic_errors
from apps.transformations import expressions
from apps.transformations.casting import cast_values, json_safe
from apps.transformations.expressions import ExpressionError
from apps.transformations.steps import unknown_column

# How many failing values a fail message and a report show. Enough to recognise the problem, small
# enough for a run's error field and an event payload.
SAMPLE_SIZE = 5
Action = Literal["fail", "reject", "warn"]
_RULE_ID = r"^[A-Za-z0-9_.\-]{1,100}$"


class RuleError(Exception):
    """A rule config that does not fit the node: `field` is the key of the rule at fault."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class RuleFailed(Exception):
    """A fail-action rule failed: the run stops. Retrying cannot help, so the executor treats it like a
    configuration error."""

    def __init__(self, message: str, *, node: str, rule: str, counts: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.rule = rule
        self.counts = counts


# --- configs -------------------------------------------------------------------------------------------


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = PydanticField(pattern=_RULE_ID, description="Names the rule in reports and quarantine.")
    action: Action = PydanticField(
        default="fail",
        description="fail the run, reject the row to quarantine, or warn (count and keep the row).",
    )
    description: str = PydanticField(default="", max_length=500)


class NotNullRule(RuleBase):
    """The value is not null."""

    type: Literal["not_null"]
    column: str


class UniqueRule(RuleBase):
    """Unique within the run: the first row with a key passes, later ones fail. Rows with a null in the key
    are not checked (as a SQL unique constraint)."""

    type: Literal["unique"]
    columns: list[str] = PydanticField(min_length=1, max_length=20)

    @model_validator(mode="before")
    @classmethod
    def _one_column(cls, data: Any) -> Any:
        # `"column": "x"` is accepted for the common single-column key.
        if isinstance(data, dict) and "column" in data and "columns" not in data:
            data = {**data, "columns": [data["column"]]}
            del data["column"]
        return data


class RangeRule(RuleBase):
    """The value lies between `min` and `max` (each optional, inclusive unless said otherwise); bounds
    are cast to the column's type, so a date column takes `"2013-01-01"`."""

    type: Literal["range"]
    column: str
    min: float | int | str | None = None
    max: float | int | str | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    @model_validator(mode="after")
    def _a_bound(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        return self


class RegexRule(RuleBase):
    """The value must contain a match (RE2 syntax; anchor with ^…$ to match the whole value)."""

    type: Literal["regex"]
    column: str
    pattern: str = PydanticField(min_length=1, max_length=1000)


class AllowedValuesRule(RuleBase):
    """The value is one of `values`."""

    type: Literal["allowed_values"]
    column: str
    values: list[str | int | float | bool] = PydanticField(min_length=1, max_length=10_000)


class TypeRule(RuleBase):
    """The value (typically text) can be cast to `expected_type` as the cast step would."""

    type: Literal["type"]
    column: str
    expected_type: FieldType


class RowCountRule(RuleBase):
    """The node's total row count lies within `min`/`max`. Judged when the node's stream ends; there is
    no row to reject, so the action is fail or warn."""

    type: Literal["row_count"]
    min: int | None = PydanticField(default=None, ge=0)
    max: int | None = PydanticField(default=None, ge=0)
    action: Literal["fail", "warn"] = "fail"

    @model_validator(mode="after")
    def _a_bound(self) -> RowCountRule:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("`min` is above `max`")
        return self


class FreshnessRule(RuleBase):
    """The latest value of a date or datetime column is at most `max_age_s` old when the stream ends."""

    type: Literal["freshness"]
    column: str
    max_age_s: int = PydanticField(gt=0)
    action: Literal["fail", "warn"] = "fail"


class ExpressionRule(RuleBase):
    """A boolean expression of the expression language; a row passes where it is true."""

    type: Literal["expression"]
    expression: str = PydanticField(min_length=1, max_length=expressions.MAX_LENGTH)


RuleConfig = Annotated[
    NotNullRule
    | UniqueRule
    | RangeRule
    | RegexRule
    | AllowedValuesRule
    | TypeRule
    | RowCountRule
    | FreshnessRule
    | ExpressionRule,
    PydanticField(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(RuleConfig)
RULE_TYPES = (
    "not_null",
    "unique",
    "range",
    "regex",
    "allowed_values",
    "type",
    "row_count",
    "freshness",
    "expression",
)


def rule_json_schema() -> dict[str, Any]:
    return _ADAPTER.json_schema()


_MODELS: dict[str, type[RuleBase]] = {
    "not_null": NotNullRule,
    "unique": UniqueRule,
    "range": RangeRule,
    "regex": RegexRule,
    "allowed_values": AllowedValuesRule,
    "type": TypeRule,
    "row_count": RowCountRule,
    "freshness": FreshnessRule,
    "expression": ExpressionRule,
}


def rule_types() -> list[dict[str, Any]]:
    """Each rule type with the JSON Schema of its config (the builder's forms are drawn from it)."""
    out = []
    for name in RULE_TYPES:
        model = _MODELS[name]
        schema = model.model_json_schema()
        actions = schema["properties"]["action"].get("enum") or list(typing.get_args(Action))
        out.append(
            {
                "type": name,
                "description": " ".join((model.__doc__ or "").split()),
                "stream_level": name in ("row_count", "freshness"),
                "actions": actions,
                "config_schema": schema,
            }
        )
    return out


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


# --- a node's rules during a run ------------------------------------------------------------------------


@dataclass
class CheckResult:
    batch: Batch
    rejected: list[tuple[str, RejectedRow]]  # (rule id, row)


def _sample(table: pa.Table, rule: BoundRule, rows: np.ndarray) -> list[Any]:
    if not rule.columns or not len(rows):
        return []
    picked = table.select(rule.columns).take(pa.array(rows[:SAMPLE_SIZE]))
    if len(rule.columns) == 1:
        return [json_safe(v) for v in picked.column(0).to_pylist()]
    return [json_safe(r) for r in picked.to_pylist()]


class NodeRules:
    """The rules of one node during one run: `check` each batch of its output, `finish` when it ends."""

    def __init__(self, node_id: str, rules: list[BoundRule]) -> None:
        self.node_id = node_id
        self.rules = rules
        self.row_rules = [r for r in rules if not r.stream_level]
        self.stream_rules = [r for r in rules if r.stream_level]
        self.finished = False

    @classmethod
    def from_node(cls, node_id: str, raw: Any, schema: StreamSchema) -> NodeRules:
        rules, problems = validate_rules(raw or [], schema)
        if problems:
            field_name, message = problems[0]
            raise RuleError(f"node '{node_id}' {field_name}: {message}", field=field_name)
        return cls(node_id, rules)

    def _failure(self, rule: BoundRule, what: str) -> RuleFailed:
        sample = [] if rule.stream_level else rule.counts.sample
        shown = f"; failing values: {', '.join(repr(v) for v in sample)}" if sample else ""
        message = f"Rule '{rule.id}' ({rule.describe}) failed at node '{self.node_id}': {what}{shown}"
        return RuleFailed(message, node=self.node_id, rule=rule.id, counts=self.result(rule))

    def check(self, batch: Batch) -> CheckResult:
        table = batch.table
        n = table.num_rows
        for rule in self.stream_rules:
            rule.observe(table)
            rule.counts.checked += n
        if not self.row_rules or not n:
            for rule in self.row_rules:
                rule.counts.checked += n
            return CheckResult(batch, [])
        masks: dict[str, np.ndarray] = {}
        rejected_rows = np.zeros(n, dtype=bool)
        # Unique last: a row another rule rejects never lands, so its key must not shadow a later row.
        ordered = sorted(self.row_rules, key=lambda r: r.type == "unique")
        for rule in ordered:
            consider = ~rejected_rows if rule.type == "unique" else None
            fails = rule.fails(table, consider)
            masks[rule.id] = fails
            failed = np.flatnonzero(fails)
            rule.counts.checked += n
            rule.counts.failed += len(failed)
            if len(failed) and len(rule.counts.sample) < SAMPLE_SIZE:
                rule.counts.sample.extend(
                    _sample(table, rule, failed)[: SAMPLE_SIZE - len(rule.counts.sample)]
                )
            if len(failed) and rule.action == "fail":
                raise self._failure(rule, f"{len(failed)} row(s) in this batch")
            if rule.action == "reject":
                rejected_rows |= fails
        if not rejected_rows.any():
            return CheckResult(batch, [])
        reject_rules = [r for r in self.rules if r.action == "reject" and r.id in masks]
        positions = np.flatnonzero(rejected_rows)
        raw_rows = table.take(pa.array(positions)).to_pylist()
        # Python touches only the rejected rows, to word their reasons.
        hit = {r.id: masks[r.id][positions] for r in reject_rules}
        rejected: list[tuple[str, RejectedRow]] = []
        for i, raw in enumerate(raw_rows):
            failing = [r for r in reject_rules if hit[r.id][i]]
            reason = "; ".join(r.reason() for r in failing)
            rejected.append(
                (
                    failing[0].id,
                    RejectedRow(reason=reason, raw=json_safe(raw), source=f"rule:{failing[0].id}"),
                )
            )
        kept = table.filter(pa.array(~rejected_rows))
        return CheckResult(Batch(kept, stream=batch.stream), rejected)

    def finish(self) -> None:
        """The node's stream has ended: judge the stream rules (raises RuleFailed for a fail action)."""
        if self.finished:
            return
        self.finished = True
        for rule in self.stream_rules:
            problem = rule.judge()
            if problem is None:
                continue
            rule.counts.violated = True
            rule.counts.sample = [problem]
            if rule.action == "fail":
                raise self._failure(rule, problem)

    def result(self, rule: BoundRule) -> dict[str, Any]:
        counts = rule.counts
        if rule.stream_level:
            failed_rows = 0
            passed = counts.checked if not counts.violated else 0
            status = "passed" if not counts.violated else ("failed" if rule.action == "fail" else "warned")
        else:
            failed_rows = counts.failed
            passed = counts.checked - counts.failed
            status = (
                "passed"
                if not counts.failed
                else {"fail": "failed", "reject": "rejected", "warn": "warned"}[rule.action]
            )
        return {
            "rule": rule.id,
            "type": rule.type,
            "action": rule.action,
            "columns": list(rule.columns),
            "status": status,
            "checked": counts.checked,
            "passed": passed,
            "failed": failed_rows,
            "rejected": failed_rows if rule.action == "reject" else 0,
            "warned": failed_rows if rule.action == "warn" else 0,
            "observed": counts.observed,
            "sample": list(counts.sample),
        }

    def results(self) -> Iterator[dict[str, Any]]:
        for rule in self.rules:
            yield self.result(rule)
