"""The types an expression's values can have (the data plane's field types, plus null and any), how an
error names them, the bound on a text's length the checker keeps, and the constants compilation makes.
"""

from __future__ import annotations

import contextvars
import enum
from fractions import Fraction

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import FieldType, arrow_type_for
from apps.transformations.expressions.ast import Column, Literal, Node, _format_literal


class _Special(enum.Enum):
    NULL = "null"  # the type of `null` and of arithmetic on nothing but nulls: always null
    ANY = "any"  # a column when no schema is given: anything goes, Arrow decides at run time


_Type = FieldType | _Special
_NUMERIC = frozenset({FieldType.INTEGER, FieldType.NUMBER})
_TEMPORAL = frozenset({FieldType.DATE, FieldType.DATETIME})
_TEXTLIKE = frozenset({FieldType.STRING, FieldType.JSON, _Special.ANY, _Special.NULL})

# A bound on the length of text values, see _Checker.bounds.
_Bound = tuple[Fraction, Fraction]
# The longest text a number, date, datetime or boolean becomes in `concat` (a datetime with its zone).
_VALUE_TEXT_BYTES = 32
_MAX_STRING_SETTING = "AGGREGATOR_EXPRESSION_MAX_STRING"


def _type_name(t: _Type) -> str:
    return t.value


def _describe_node(node: Node, t: _Type) -> str:
    if isinstance(node, Column):
        return f"{_type_name(t)} column '{node.name}'"
    if isinstance(node, Literal):
        return f"{_type_name(t)} {_format_literal(node)[0]}"
    return f"a {_type_name(t)} value"


# Compilation has two targets. `compile_expr` builds a `pyarrow.compute.Expression` (for callers that hand
# it to Arrow themselves). `evaluate` and `filter_table` call the same kernels directly on the batch's
# columns ("eager"): an Acero plan costs about a millisecond per batch to set up, more than the kernels of
# a typical expression, and constant parts (a literal divisor's zero test) fold to scalars for free.
_EAGER: contextvars.ContextVar[bool] = contextvars.ContextVar("expression_eager", default=False)


def _const(value: object, arrow_type: pa.DataType | None = None) -> pc.Expression:
    scalar = pa.scalar(value, type=arrow_type)
    if _EAGER.get():
        return scalar  # type: ignore[return-value]
    # An Expression: pc functions called on nothing but pa.Scalars would compute at once instead.
    return pc.scalar(scalar)


def _arrow_type(t: _Type) -> pa.DataType | None:
    return arrow_type_for(t) if isinstance(t, FieldType) else None
