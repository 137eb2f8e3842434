"""The expression tree: its nodes, the errors, the limits on a text's size and depth, the operators and
keywords of the grammar (see the package's docstring), and the canonical text of a tree (`format_expr`;
`parse(format_expr(n)) == n`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from aggregator.dataplane import FieldType

# Both limits are far above any expression a person writes, and low enough that a hostile or generated
# input is refused in microseconds and every recursive pass over the tree stays well inside Python's
# recursion limit (the parser spends about three frames per level).
MAX_LENGTH = 10_000
MAX_DEPTH = 100

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Position(NamedTuple):
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


class ExpressionError(ValueError):
    """An expression that cannot be parsed, type-checked or evaluated. `str()` reads
    `<reason> at <line>:<col>[, <hint>]`."""

    def __init__(self, reason: str, position: Position | None = None, *, hint: str | None = None) -> None:
        self.reason = reason
        self.position = position
        self.hint = hint
        text = reason if position is None else f"{reason} at {position}"
        if hint:
            text = f"{text}, {hint}"
        super().__init__(text)
        self.message = text


class ExpressionLimitError(ExpressionError):
    """An expression that would build more text than the limits allow (`apps/transformations/limits.py`):
    refused at check time when its written-out texts alone prove it, at evaluation before the kernel
    that would build it runs otherwise."""


# --- the tree ------------------------------------------------------------------------------------------

_NOWHERE = Position(0, 0)


@dataclass(frozen=True, slots=True)
class Node:
    """Base of every tree node. Positions point into the parsed text and take no part in equality, so a
    tree re-parsed from its formatted text compares equal to the original."""

    pos: Position = field(default=_NOWHERE, compare=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Column(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A constant. `type` is None for `null`; it is part of equality so that `1`, `1.0` and `true` differ."""

    value: int | float | str | bool | None
    type: FieldType | None


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "not" | "-"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str  # "or" "and" "=" "!=" "<" "<=" ">" ">=" "+" "-" "*" "/" "%"
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class InList(Node):
    operand: Node
    items: tuple[Node, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull(Node):
    operand: Node
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A call of one of the built-in FUNCTIONS (the name is lower-case; nothing else can be called)."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Case(Node):
    """`case when c1 then v1 [when ...] [else d] end`; a null condition counts as false, as in SQL."""

    whens: tuple[tuple[Node, Node], ...]
    default: Node | None = None


# Binding strength. Comparisons (including `in` and `is null`) share one level and do not chain.
_OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _UNARY, _ATOM = range(1, 9)

_BINARY_OPS: dict[str, tuple[int, str]] = {
    "or": (_OR, "or"),
    "and": (_AND, "and"),
    "=": (_CMP, "="),
    "==": (_CMP, "="),
    "!=": (_CMP, "!="),
    "<>": (_CMP, "!="),
    "<": (_CMP, "<"),
    "<=": (_CMP, "<="),
    ">": (_CMP, ">"),
    ">=": (_CMP, ">="),
    "+": (_SUM, "+"),
    "-": (_SUM, "-"),
    "*": (_PRODUCT, "*"),
    "/": (_PRODUCT, "/"),
    "%": (_PRODUCT, "%"),
}
COMPARISON_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%"})
BOOLEAN_OPS = frozenset({"and", "or"})
KEYWORDS = frozenset(
    {"and", "or", "not", "in", "is", "null", "true", "false", "case", "when", "then", "else", "end"}
)


# --- formatting ----------------------------------------------------------------------------------------

_PLAIN_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote_string(value: str) -> str:
    out = []
    for char in value:
        if char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def format_column(name: str) -> str:
    if _PLAIN_IDENT_RE.fullmatch(name) and name.lower() not in KEYWORDS:
        return name
    return "`" + name.replace("`", "``") + "`"


def _format_literal(node: Literal) -> tuple[str, int]:
    value = node.value
    if value is None:
        return "null", _ATOM
    if isinstance(value, bool):
        return ("true" if value else "false"), _ATOM
    if isinstance(value, str):
        return _quote_string(value), _ATOM
    text = repr(float(value)) if node.type == FieldType.NUMBER else str(int(value))
    return text, (_UNARY if text.startswith("-") else _ATOM)


def _format(node: Node) -> tuple[str, int]:
    """The canonical text of a node and how tightly it binds, so parents add only needed parentheses."""

    def wrap(child: Node, min_prec: int) -> str:
        text, prec = _format(child)
        return text if prec >= min_prec else f"({text})"

    if isinstance(node, Literal):
        return _format_literal(node)
    if isinstance(node, Column):
        return format_column(node.name), _ATOM
    if isinstance(node, Unary):
        if node.op == "not":
            return f"not {wrap(node.operand, _NOT)}", _NOT
        if isinstance(node.operand, Literal) and node.operand.type in (FieldType.INTEGER, FieldType.NUMBER):
            # `-5` parses as the literal -5, so negation of a literal keeps its parentheses.
            return f"-({_format(node.operand)[0]})", _UNARY
        return f"-{wrap(node.operand, _UNARY)}", _UNARY
    if isinstance(node, Binary):
        prec = _BINARY_OPS[node.op][0]
        left_min = prec + 1 if prec == _CMP else prec  # comparisons do not chain
        return f"{wrap(node.left, left_min)} {node.op} {wrap(node.right, prec + 1)}", prec
    if isinstance(node, InList):
        items = ", ".join(_format(item)[0] for item in node.items)
        keyword = "not in" if node.negated else "in"
        return f"{wrap(node.operand, _CMP + 1)} {keyword} ({items})", _CMP
    if isinstance(node, IsNull):
        keyword = "is not null" if node.negated else "is null"
        return f"{wrap(node.operand, _CMP + 1)} {keyword}", _CMP
    if isinstance(node, Call):
        return f"{node.name}({', '.join(_format(arg)[0] for arg in node.args)})", _ATOM
    if isinstance(node, Case):
        parts = ["case"]
        for condition, value in node.whens:
            parts += ["when", _format(condition)[0], "then", _format(value)[0]]
        if node.default is not None:
            parts += ["else", _format(node.default)[0]]
        parts.append("end")
        return " ".join(parts), _ATOM
    raise TypeError(f"not an expression node: {node!r}")


def format_expr(node: Node) -> str:
    """Canonical text: lower-case keywords, `=` and `!=`, single-quoted strings, only the parentheses
    that precedence needs. `parse(format_expr(node)) == node`."""
    return _format(node)[0]
