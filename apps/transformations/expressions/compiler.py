"""Compilation of a checked tree to Arrow compute kernels: a `pyarrow.compute.Expression`
(`compile_expr`), or the kernels called at once on a batch's columns (`evaluate`, `filter_table`), where
the limits on the text an expression builds are checked before each kernel that builds it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import FieldType, StreamSchema, arrow_type_for
from apps.transformations import limits
from apps.transformations.expressions.ast import (
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
    Unary,
)
from apps.transformations.expressions.checker import _check_tree, _Checker
from apps.transformations.expressions.functions import FUNCTIONS
from apps.transformations.expressions.types import (
    _EAGER,
    _MAX_STRING_SETTING,
    _NUMERIC,
    _TEXTLIKE,
    _arrow_type,
    _const,
    _Special,
    _Type,
)

_COMPARE_FUNCS = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_ARITHMETIC_FUNCS = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}


def _text_bytes(value: pa.Scalar) -> int:
    if not value.is_valid or not (pa.types.is_string(value.type) or pa.types.is_large_string(value.type)):
        return 0
    buffer = value.as_buffer()
    return buffer.size if buffer is not None else 0


def _named(node: Node) -> str:
    if isinstance(node, Call):
        return f"'{node.name}'"
    return "'case'" if isinstance(node, Case) else "the expression"


class _Compiler:
    def __init__(
        self, checker: _Checker, now: dt.datetime | None = None, table: pa.Table | None = None
    ) -> None:
        self.types = checker.types
        self.coerced = checker.coerced
        self.table = table  # eager: columns are this table's
        # `now()` is one instant for the whole run (its start), so every batch sees the same value.
        self.now = now or dt.datetime.now(tz=dt.UTC)
        if table is not None:
            bounds = limits.current()
            self.max_string = bounds.expression_max_string
            self.budget = bounds.output_budget(table.nbytes)
            self.rows = table.num_rows

    def compile(self, node: Node, want: pa.DataType | None = None) -> pc.Expression:
        """`want` is the Arrow type the parent needs; it types the nulls (Arrow's boolean kernels have
        no null-typed variant)."""
        t = self.types[id(node)]
        if t is _Special.NULL:  # `null`, `-null`, `null + null`: fold to a typed null
            return _const(None, want or pa.null())
        if isinstance(node, Literal):
            if id(node) in self.coerced:
                coerced = self.coerced[id(node)]
                return coerced if self.table is not None else pc.scalar(coerced)
            return _const(node.value, _arrow_type(t))
        if isinstance(node, Column):
            if self.table is not None:
                return self.table.column(node.name)
            return pc.field(node.name)
        if isinstance(node, Unary):
            if node.op == "not":
                return pc.invert(self.compile(node.operand, pa.bool_()))
            return pc.negate_checked(self._as(node.operand, _arrow_type(t)))
        if isinstance(node, Binary):
            return self._binary(node, t)
        if isinstance(node, InList):
            return self._in_list(node)
        if isinstance(node, IsNull):
            operand = self.compile(node.operand)
            return pc.is_valid(operand) if node.negated else pc.is_null(operand)
        if isinstance(node, Call):
            return FUNCTIONS[node.name].compile(self, node, t)
        if isinstance(node, Case):
            arrow_type = _arrow_type(t)
            result = (
                self._as(node.default, arrow_type) if node.default is not None else _const(None, arrow_type)
            )
            for condition, value in reversed(node.whens):
                test = pc.coalesce(self.compile(condition, pa.bool_()), _const(False))
                then = self._as(value, arrow_type)
                self.spread(node, t, [then, result])
                result = pc.if_else(test, then, result)
            return result
        raise TypeError(f"not an expression node: {node!r}")

    # --- the limits, checked before a kernel builds text (eager evaluation only) -------------------------
    #
    # The kernels allocate their whole output at once, so a value or a batch that would be too long is
    # refused from lengths computed beforehand, never found after the memory is gone. Each check starts
    # with a sum that costs nothing: when even that bound fits, the exact lengths are not computed.

    def guard_built(self, node: Node, lengths: pa.Array | pa.ChunkedArray | int) -> None:
        """`lengths`: the bytes of each value a kernel is about to build (an int for a single value)."""
        if isinstance(lengths, int):
            longest = total = lengths
        else:
            longest = pc.max(lengths).as_py() or 0
            total = pc.sum(lengths).as_py() or 0
        if longest > self.max_string:
            where = (
                ""
                if isinstance(lengths, int)
                else f" (row index {pc.index(lengths, longest).as_py()} of the batch)"
            )
            raise ExpressionLimitError(
                f"{_named(node)} would build a text of {longest:,} bytes{where}, more than the limit of "
                f"{self.max_string:,} bytes for one value",
                node.pos,
                hint=f"the limit is set by {_MAX_STRING_SETTING}",
            )
        self.guard_total(node, total)

    def guard_total(self, node: Node, total: int) -> None:
        if total > self.budget:
            raise ExpressionLimitError(
                f"{_named(node)} would build {limits.size(total)} of text from this batch of {self.rows:,} "
                f"rows, more than the step's budget of {limits.size(self.budget)} for it",
                node.pos,
                hint=f"the budget is set by {limits.BUDGET_SETTINGS}",
            )

    def _small(self, upper: float) -> bool:
        return upper <= min(self.max_string, self.budget)

    def guard_replace(self, call: Call, value: pc.Expression, old: str, new: str) -> None:
        old_bytes, new_bytes = len(old.encode()), len(new.encode())
        if isinstance(value, pa.Scalar):
            if value.is_valid:
                text = value.as_py()
                self.guard_built(call, len(text.encode()) + text.count(old) * (new_bytes - old_bytes))
            return
        ratio = new_bytes / old_bytes
        if self._small(value.nbytes * ratio):
            return
        lengths = pc.cast(pc.binary_length(value), pa.int64())
        # Still cheap (the lengths come from the offsets): every value and the batch fit even if the
        # whole text were occurrences. Only otherwise are the occurrences counted, a pass like the kernel's.
        longest = pc.max(lengths).as_py() or 0
        if longest * ratio <= self.max_string and value.nbytes * ratio <= self.budget:
            return
        counts = pc.cast(pc.count_substring(value, old), pa.int64())
        self.guard_built(call, pc.add(lengths, pc.multiply(counts, new_bytes - old_bytes)))

    def guard_concat(self, call: Call, parts: list[pc.Expression]) -> None:
        constant = sum(_text_bytes(p) for p in parts if isinstance(p, pa.Scalar))
        arrays = [p for p in parts if not isinstance(p, pa.Scalar)]
        if not arrays:
            self.guard_built(call, constant)
            return
        total = sum(a.nbytes for a in arrays) + constant * self.rows
        if self._small(total):
            return
        part_lengths = [pc.fill_null(pc.cast(pc.binary_length(part), pa.int64()), 0) for part in arrays]
        longest = sum(pc.max(part).as_py() or 0 for part in part_lengths) + constant
        if longest <= self.max_string and total <= self.budget:
            return
        lengths = part_lengths[0]
        for part in part_lengths[1:]:
            lengths = pc.add(lengths, part)
        self.guard_built(call, pc.add(lengths, constant))

    def spread(self, node: Node, t: _Type, values: list[pc.Expression]) -> None:
        """A kernel that picks among its arguments row by row (if, case, coalesce, …) copies a constant's
        text into every row it picks it for: a long constant over many rows is a lot of text."""
        if self.table is None or t not in _TEXTLIKE or not any(isinstance(v, pa.Scalar) for v in values):
            return
        self.guard_total(
            node, sum(_text_bytes(v) * self.rows if isinstance(v, pa.Scalar) else v.nbytes for v in values)
        )

    def _as(self, node: Node, arrow_type: pa.DataType | None) -> pc.Expression:
        """A numeric operand in the type of the result: an int32 column plus a large literal must not
        overflow in int32, and int / int must not be integer division."""
        expr = self.compile(node, arrow_type)
        if arrow_type is None or self.types[id(node)] is _Special.NULL:
            return expr
        return expr.cast(arrow_type)

    def _binary(self, node: Binary, t: _Type) -> pc.Expression:
        if node.op == "and":
            return pc.and_kleene(self.compile(node.left, pa.bool_()), self.compile(node.right, pa.bool_()))
        if node.op == "or":
            return pc.or_kleene(self.compile(node.left, pa.bool_()), self.compile(node.right, pa.bool_()))
        if node.op in COMPARISON_OPS:
            return _COMPARE_FUNCS[node.op](self.compile(node.left), self.compile(node.right))
        arrow_type = _arrow_type(t)
        left = self._as(node.left, arrow_type)
        right = self._as(node.right, arrow_type)
        if node.op in _ARITHMETIC_FUNCS:
            return _ARITHMETIC_FUNCS[node.op](left, right)
        # Division and modulo by zero give null: the divisor is replaced by null where it is zero.
        divisor = pc.if_else(pc.equal(right, _const(0, arrow_type)), _const(None, arrow_type), right)
        if node.op == "/":
            return pc.divide(left, divisor)
        return pc.modulo(left, divisor)

    def _in_list(self, node: InList) -> pc.Expression:
        operand_type = self.types[id(node.operand)]
        items = [item for item in node.items if self.types[id(item)] is not _Special.NULL]
        has_null = len(items) < len(node.items)
        if not items:  # `x in (null)`: never true
            result = _const(None, pa.bool_())
        elif all(isinstance(item, Literal) for item in items):
            result = self._in_values(node.operand, operand_type, items, has_null)
        else:  # SQL's definition: x = a or x = b or ..., which is also exactly its null semantics
            operand = self.compile(node.operand)
            result = _COMPARE_FUNCS["="](operand, self.compile(items[0]))
            for item in items[1:]:
                result = pc.or_kleene(result, _COMPARE_FUNCS["="](operand, self.compile(item)))
            if has_null:
                result = pc.if_else(result, _const(True), _const(None, pa.bool_()))
        return pc.invert(result) if node.negated else result

    def _in_values(
        self, operand_node: Node, operand_type: _Type, items: list[Node], has_null: bool
    ) -> pc.Expression:
        item_types = [self.types[id(item)] for item in items]
        operand = self.compile(operand_node)
        value_type: pa.DataType | None = None
        if operand_type in _NUMERIC or all(t in _NUMERIC for t in item_types):
            # Compare numbers in one type, so 1 (integer) finds 1.0 in a number column.
            numeric = (
                FieldType.NUMBER if FieldType.NUMBER in (operand_type, *item_types) else FieldType.INTEGER
            )
            value_type = arrow_type_for(numeric)
            operand = operand.cast(value_type)
            if numeric == FieldType.NUMBER:
                # is_in hashes, and -0.0 hashes apart from 0.0 though they are equal; x + 0.0 is +0.0.
                operand = pc.add(operand, _const(0.0, value_type))
        values = []
        for item in items:
            assert isinstance(item, Literal)
            values.append(self.coerced[id(item)] if id(item) in self.coerced else pa.scalar(item.value))
        if value_type is None:
            value_type = values[0].type
        plain = [v.as_py() for v in values]
        if value_type == pa.float64():
            plain = [v + 0.0 for v in plain]
        value_set = pa.array(plain, type=value_type)
        found = pc.is_in(operand, value_set=value_set)
        if has_null:  # true where found, otherwise unknown
            return pc.if_else(found, _const(True), _const(None, pa.bool_()))
        return pc.if_else(pc.is_null(operand), _const(None, pa.bool_()), found)


def compile_expr(
    node: Node, schema: StreamSchema | None = None, *, now: dt.datetime | None = None
) -> pc.Expression:
    """A vectorised Arrow expression for the tree. With a schema the tree is type-checked first (raising
    ExpressionError) and string literals compared with date/datetime columns become dates; without one,
    column types are whatever the table holds and Arrow reports mismatches when it runs."""
    checker, _ = _check_tree(node, schema)
    return _Compiler(checker, now).compile(node)


# The run's start, for `now()`: set by the step runners around each batch, so every batch of a run (and
# every step in it) sees one instant. Outside a run, `now()` is the time of the call.
RUN_CLOCK: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar("run_clock", default=None)


@contextlib.contextmanager
def run_clock(now: dt.datetime) -> Iterator[None]:
    token = RUN_CLOCK.set(now)
    try:
        yield
    finally:
        RUN_CLOCK.reset(token)


def _eager(node: Node, table: pa.Table, schema: StreamSchema | None, now: dt.datetime | None) -> pa.Array:
    if schema is None:
        schema = StreamSchema.from_arrow("expression", table.schema)
    checker, _ = _check_tree(node, schema)
    token = _EAGER.set(True)
    try:
        compiler = _Compiler(checker, now or RUN_CLOCK.get(), table)
        value = compiler.compile(node)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowCapacityError) as exc:
        raise ExpressionError(f"cannot evaluate the expression: {exc}", node.pos) from None
    finally:
        _EAGER.reset(token)
    if isinstance(value, pa.ChunkedArray):
        return value.combine_chunks()
    if isinstance(value, pa.Scalar):  # a constant expression: one value for every row
        if not value.is_valid:
            return pa.nulls(table.num_rows, value.type)
        compiler.guard_total(node, _text_bytes(value) * table.num_rows)
        return pa.repeat(value, table.num_rows)
    return value


def evaluate(
    node: Node, table: pa.Table, schema: StreamSchema | None = None, *, now: dt.datetime | None = None
) -> pa.Array:
    """The expression's value for every row of the table, as one Arrow array in row order. The schema
    defaults to the one the table's Arrow types map to."""
    return _eager(node, table, schema, now)


def filter_table(
    node: Node, table: pa.Table, schema: StreamSchema | None = None, *, now: dt.datetime | None = None
) -> pa.Table:
    """The rows of the table where the condition is true (false and null are dropped), in order."""
    mask = _eager(node, table, schema, now)
    if not pa.types.is_boolean(mask.type):
        if pa.types.is_null(mask.type):
            return table.slice(0, 0)
        raise ExpressionError(f"a filter needs a condition, but this gives {mask.type} values", node.pos)
    return table.filter(mask, null_selection_behavior="drop")
