"""Type checking: the type of every node against a stream schema (`typecheck`, `check`), where unknown
columns and type mistakes are reported with their position, the literal conversions compilation needs,
and the refusal of text that is too long whatever the data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
from dataclasses import dataclass
from fractions import Fraction

import pyarrow as pa

from aggregator.dataplane import FieldType, StreamSchema, arrow_type_for
from apps.transformations import limits
from apps.transformations.expressions.ast import (
    BOOLEAN_OPS,
    COMPARISON_OPS,
    Binary,
    Call,
    Case,
    Column,
    ExpressionError,
    ExpressionLimitError,
    InList,
    IsNull,
    Literal,
    Node,
    Position,
    Unary,
    _format_literal,
)
from apps.transformations.expressions.functions import _TEXT_BOUNDS, FUNCTIONS, _widest
from apps.transformations.expressions.types import (
    _MAX_STRING_SETTING,
    _NUMERIC,
    _TEMPORAL,
    _TEXTLIKE,
    _VALUE_TEXT_BYTES,
    _Bound,
    _describe_node,
    _Special,
    _Type,
)


def _parse_temporal(text: str, target: FieldType) -> dt.date | dt.datetime | None:
    try:
        if target == FieldType.DATE:
            return dt.date.fromisoformat(text)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    # Datetimes are UTC instants in the data plane; a naive literal is taken as UTC, like a naive value.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class _Checker:
    """Infers the type of every node (keyed by id: nodes compare by value) and the literal conversions
    that compilation needs (a string literal compared with a date column becomes a date)."""

    def __init__(self, schema: StreamSchema | None) -> None:
        self.schema = schema
        self.types: dict[int, _Type] = {}
        self.coerced: dict[int, pa.Scalar] = {}
        # For every node giving text: (a, b) such that no value it gives is longer than a * L + b bytes,
        # L being the longest text value among the columns it reads.
        self.bounds: dict[int, _Bound] = {}
        self.max_string = limits.current().expression_max_string

    def check(self, node: Node) -> _Type:
        t = self._check(node)
        self.types[id(node)] = t
        if t in _TEXTLIKE:
            self.bounds[id(node)] = bound = _text_bound(self, node)
            self._refuse_long(node, bound)
        return t

    def bound(self, node: Node) -> _Bound:
        return self.bounds.get(id(node), (Fraction(0), Fraction(_VALUE_TEXT_BYTES)))

    def _refuse_long(self, node: Node, bound: _Bound) -> None:
        """Refuse, before any data is read, text that is too long whatever the data: built from written-out
        texts alone, or from a value of a single character."""
        growth, base = bound
        longest = growth + base
        if longest <= self.max_string:
            return
        what = f"'{node.name}'" if isinstance(node, Call) else "this expression"
        source = "" if growth == 0 else " from a one-character value"
        raise ExpressionLimitError(
            f"{what} builds a text of up to {math.ceil(longest):,} bytes{source}, more than the limit of "
            f"{self.max_string:,} bytes for one value",
            node.pos,
            hint=f"the limit is set by {_MAX_STRING_SETTING}",
        )

    def _check(self, node: Node) -> _Type:
        if isinstance(node, Literal):
            return _Special.NULL if node.type is None else node.type
        if isinstance(node, Column):
            return self._column(node)
        if isinstance(node, Unary):
            t = self.check(node.operand)
            if node.op == "not":
                self._need_boolean(node.operand, t, "not")
                return FieldType.BOOLEAN
            if t not in (*_NUMERIC, _Special.NULL, _Special.ANY):
                raise ExpressionError(f"'-' needs a number, got {_describe_node(node.operand, t)}", node.pos)
            return t
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, InList):
            t = self.check(node.operand)
            for item in node.items:
                item_type = self.check(item)
                if item_type is not _Special.NULL:  # `x in (1, null)` is legal SQL (true or null)
                    self._comparable(node.operand, t, item, item_type, node.pos)
            return FieldType.BOOLEAN
        if isinstance(node, IsNull):
            self.check(node.operand)
            return FieldType.BOOLEAN
        if isinstance(node, Call):
            types = [self.check(arg) for arg in node.args]
            return FUNCTIONS[node.name].check(self, node, types)
        if isinstance(node, Case):
            values: list[tuple[Node, _Type]] = []
            for condition, value in node.whens:
                self._need_boolean(condition, self.check(condition), "when")
                values.append((value, self.check(value)))
            if node.default is not None:
                values.append((node.default, self.check(node.default)))
            return self.unify(values, node.pos, "case")
        raise TypeError(f"not an expression node: {node!r}")

    def unify(self, values: list[tuple[Node, _Type]], pos: Position, what: str) -> _Type:
        """The one type that values of these types share: integers and numbers mix (as numbers), null
        goes with anything; anything else must be alike."""
        types = [t for _, t in values if t is not _Special.NULL]
        if not types:
            return _Special.NULL
        if _Special.ANY in types:
            return _Special.ANY
        if all(t in _NUMERIC for t in types):
            return FieldType.NUMBER if FieldType.NUMBER in types else FieldType.INTEGER
        first_node, first = next((n, t) for n, t in values if t is not _Special.NULL)
        for other_node, other in values:
            if other is not _Special.NULL and other != first:
                raise ExpressionError(
                    f"'{what}' cannot mix {_describe_node(first_node, first)} with "
                    f"{_describe_node(other_node, other)}",
                    other_node.pos,
                )
        return first

    def _column(self, node: Column) -> _Type:
        if self.schema is None:
            return _Special.ANY
        try:
            return self.schema.field(node.name).type
        except KeyError:
            names = self.schema.field_names
            close = difflib.get_close_matches(node.name, names, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise ExpressionError(f"unknown column '{node.name}'", node.pos, hint=hint) from None

    def _need_boolean(self, operand: Node, t: _Type, op: str) -> None:
        if t not in (FieldType.BOOLEAN, _Special.NULL, _Special.ANY):
            raise ExpressionError(
                f"'{op}' needs a condition (true or false), got {_describe_node(operand, t)}", operand.pos
            )

    def _binary(self, node: Binary) -> _Type:
        lt = self.check(node.left)
        rt = self.check(node.right)
        if node.op in BOOLEAN_OPS:
            self._need_boolean(node.left, lt, node.op)
            self._need_boolean(node.right, rt, node.op)
            return FieldType.BOOLEAN
        if node.op in COMPARISON_OPS:
            if _Special.NULL in (lt, rt):
                raise ExpressionError(
                    f"'{node.op}' with null is never true",
                    node.pos,
                    hint="use 'is null' or 'is not null'",
                )
            self._comparable(node.left, lt, node.right, rt, node.pos)
            return FieldType.BOOLEAN
        # arithmetic
        for side, t in ((node.left, lt), (node.right, rt)):
            if t not in (*_NUMERIC, _Special.NULL, _Special.ANY):
                raise ExpressionError(f"'{node.op}' needs numbers, got {_describe_node(side, t)}", node.pos)
        if node.op == "/":
            return FieldType.NUMBER
        if _Special.ANY in (lt, rt):
            return _Special.ANY
        if lt is _Special.NULL and rt is _Special.NULL:
            return _Special.NULL
        if FieldType.NUMBER in (lt, rt):
            return FieldType.NUMBER
        return FieldType.INTEGER

    def _comparable(self, left: Node, lt: _Type, right: Node, rt: _Type, pos: Position) -> None:
        if _Special.ANY in (lt, rt):
            return
        if lt in _NUMERIC and rt in _NUMERIC:
            return
        if lt == rt and lt != FieldType.JSON:
            return
        # A date or datetime compared with a string literal: the literal is read as an ISO date/time.
        for tt, other, ot in ((lt, right, rt), (rt, left, lt)):
            if tt in _TEMPORAL and ot == FieldType.STRING and isinstance(other, Literal):
                assert isinstance(tt, FieldType) and isinstance(other.value, str)
                value = _parse_temporal(other.value, tt)
                if value is None:
                    example = "2013-01-31" if tt == FieldType.DATE else "2013-01-31 05:00:00"
                    raise ExpressionError(
                        f"{_format_literal(other)[0]} is not a valid {tt.value}",
                        other.pos,
                        hint=f"write it like '{example}'",
                    )
                self.coerced[id(other)] = pa.scalar(value, type=arrow_type_for(tt))
                return
        raise ExpressionError(
            f"cannot compare {_describe_node(left, lt)} with {_describe_node(right, rt)}", pos
        )


def _check_tree(node: Node, schema: StreamSchema | None) -> tuple[_Checker, _Type]:
    checker = _Checker(schema)
    return checker, checker.check(node)


def typecheck(node: Node, schema: StreamSchema) -> FieldType:
    """The type the expression produces for each row of a stream with this schema. Raises
    ExpressionError for an unknown column (with the closest name), a type mistake, or an expression
    that is always null."""
    _, t = _check_tree(node, schema)
    if t is _Special.NULL:
        raise ExpressionError("the expression is always null", node.pos)
    assert isinstance(t, FieldType)
    return t


def columns_used(node: Node) -> list[str]:
    """The columns an expression reads, in order of first use."""
    found: dict[str, None] = {}
    stack: list[object] = [node]
    while stack:  # iterative, and in source order: children are pushed reversed
        item = stack.pop()
        if isinstance(item, Column):
            found.setdefault(item.name, None)
        elif isinstance(item, Node):
            stack.extend(reversed([getattr(item, f.name) for f in dataclasses.fields(item)]))
        elif isinstance(item, tuple):
            stack.extend(reversed(item))
    return list(found)


@dataclass(frozen=True)
class Checked:
    """An expression that parses and type-checks: its tree, the columns it reads, and the type it gives
    (None when that depends on columns whose types were not given)."""

    node: Node
    columns: list[str]
    type: FieldType | None


def check(node: Node, schema: StreamSchema | None = None) -> Checked:
    """Type-check a parsed expression as a step would, for an editor checking as one types. Without a
    schema any column is accepted and only the literals' types are judged. Raises ExpressionError (with
    the position) at the first mistake."""
    _, t = _check_tree(node, schema)
    if t is _Special.NULL:
        raise ExpressionError("the expression is always null", node.pos)
    return Checked(node=node, columns=columns_used(node), type=t if isinstance(t, FieldType) else None)


def _text_bound(checker: _Checker, node: Node) -> _Bound:
    if isinstance(node, Literal):
        if node.value is None:
            return Fraction(0), Fraction(0)
        text = node.value if isinstance(node.value, str) else str(node.value)
        return Fraction(0), Fraction(len(text.encode()))
    if isinstance(node, Column):
        return Fraction(1), Fraction(0)
    if isinstance(node, Case):
        values = [value for _, value in node.whens]
        return _widest(checker, [*values, node.default] if node.default is not None else values)
    if isinstance(node, Call):
        bound = _TEXT_BOUNDS.get(node.name)
        # lower, upper, trim, coalesce, least, greatest: never longer than their longest argument.
        return bound(checker, node) if bound is not None else _widest(checker, list(node.args))
    # Arithmetic on nothing but nulls (`-null`), or an operator over columns of unknown type.
    return Fraction(0), Fraction(_VALUE_TEXT_BYTES)
