"""The expression language of filter (and, later, derive, validation rules and conditions).

Text is parsed by a hand-written tokenizer and a precedence-climbing (Pratt) parser into a small tree of
frozen dataclasses; nothing is ever handed to `eval`, `exec` or a template engine, and the tokenizer knows
no character that could reach Python (no `.`, `[`, `{`, `;`, no function calls yet). The tree is then

- formatted back to canonical text (`format_expr`; `parse(format_expr(n)) == n`),
- type-checked against a stream schema (`typecheck`), which is where unknown columns and type mistakes
  are reported with their position, and
- compiled to a `pyarrow.compute.Expression` (`compile_expr`), so evaluation is vectorised by Arrow.

Semantics are SQL's three-valued logic: a comparison with a null is null, `and`/`or` are Kleene, a
filter keeps the rows where the condition is true (null is dropped). Division is true division and gives
null (not an error, not infinity) for a zero divisor; `%` takes the sign of the divisor, as in Python.

Grammar, loosest binding first (every binary operator is left-associative except comparisons, which do
not chain):

    expr        := expr "or" expr | expr "and" expr | "not" expr
                 | sum ( cmp_op sum | ["not"] "in" "(" expr ("," expr)* ")" | "is" ["not"] "null" )?
                 | sum
    cmp_op      := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    sum         := sum ("+" | "-") product | product
    product     := product ("*" | "/" | "%") unary | unary
    unary       := "-" unary | primary
    primary     := NUMBER | STRING | "true" | "false" | "null" | IDENT | `QUOTED IDENT` | "(" expr ")"

Keywords are case-insensitive; column names are case-sensitive. A column whose name is a keyword or is
not a plain identifier is written in backquotes (`` `my col` ``, a backquote inside doubled).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import difflib
import enum
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import FieldType, StreamSchema, arrow_type_for
from apps.transformations import limits

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

# --- tokenizer -----------------------------------------------------------------------------------------


class _Tok(NamedTuple):
    kind: str  # "number" "string" "ident" "kw" "op" "eof"
    value: str
    pos: Position
    offset: int


_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>==|!=|<>|<=|>=|[=<>+\-*/%(),])"
)
_STRING_RE = {
    "'": re.compile(r"'(?:[^'\\]|\\.)*'", re.DOTALL),
    '"': re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL),
}
_QUOTED_IDENT_RE = re.compile(r"`(?:[^`]|``)*`")
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_PLAIN_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Source:
    """The text being parsed, with offset → line:col."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def position(self, offset: int) -> Position:
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:  # the last line start at or before offset
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return Position(lo + 1, offset - self._line_starts[lo] + 1)


def _decode_string(src: _Source, start: int, body: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] == "u" and len(code) == 5:
            char = chr(int(code[1:], 16))
            if 0xD800 <= ord(char) <= 0xDFFF:
                raise ExpressionError(
                    f"invalid escape '\\{code}' (a surrogate)", src.position(start + 1 + match.start())
                )
            return char
        if code in _ESCAPES:
            return _ESCAPES[code]
        raise ExpressionError(f"invalid escape '\\{code}'", src.position(start + 1 + match.start()))

    return _ESCAPE_RE.sub(replace, body)


def _tokenize(src: _Source) -> list[_Tok]:
    text = src.text
    tokens: list[_Tok] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char in _STRING_RE:
            m = _STRING_RE[char].match(text, i)
            if m is None:
                raise ExpressionError("unterminated string", src.position(i))
            tokens.append(_Tok("string", _decode_string(src, i, m.group()[1:-1]), src.position(i), i))
            i = m.end()
            continue
        if char == "`":
            m = _QUOTED_IDENT_RE.match(text, i)
            if m is None:
                raise ExpressionError("unterminated quoted column name", src.position(i))
            name = m.group()[1:-1].replace("``", "`")
            if not name:
                raise ExpressionError("empty quoted column name", src.position(i))
            tokens.append(_Tok("ident", name, src.position(i), i))
            i = m.end()
            continue
        m = _TOKEN_RE.match(text, i)
        if m is None:
            raise ExpressionError(f"unexpected character {char!r}", src.position(i))
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "number" and m.end() < n and (text[m.end()].isalnum() or text[m.end()] in "._"):
            junk = re.match(r"[\w.]*", text[m.end() : m.end() + 40])
            raise ExpressionError(f"invalid number '{value}{junk.group() if junk else ''}'", src.position(i))
        if kind == "ident" and value.lower() in KEYWORDS:
            kind, value = "kw", value.lower()
        if kind != "ws":
            tokens.append(_Tok(kind, value, src.position(i), i))
        i = m.end()
    tokens.append(_Tok("eof", "", src.position(n), n))
    return tokens


# --- parser --------------------------------------------------------------------------------------------


def _describe(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "the end of the expression"
    if tok.kind == "string":
        return "a string"
    return f"'{tok.value}'"


class _Parser:
    def __init__(self, text: str) -> None:
        self.src = _Source(text)
        self.tokens = _tokenize(self.src)
        self.i = 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, value: str) -> _Tok:
        tok = self.peek()
        if tok.kind != kind or tok.value != value:
            raise ExpressionError(f"expected '{value}', found {_describe(tok)}", tok.pos)
        return self.advance()

    def too_deep(self, tok: _Tok, *, chain: bool = False) -> ExpressionError:
        return ExpressionError(
            f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
            tok.pos,
            hint="use 'in (...)' instead of a long chain of 'or'" if chain else None,
        )

    def parse(self) -> Node:
        node, _ = self.expr(0, 0)
        tok = self.peek()
        if tok.kind != "eof":
            if tok.kind == "op" and tok.value == "(":
                raise ExpressionError("only a function name can be called", tok.pos)
            raise ExpressionError(f"unexpected {_describe(tok)}", tok.pos)
        return node

    def _infix(self) -> tuple[int, str] | None:
        """The binding strength and canonical name of the infix operator at the cursor, if any."""
        tok = self.peek()
        if tok.kind == "kw":
            if tok.value == "not" and self.peek(1).kind == "kw" and self.peek(1).value == "in":
                return _CMP, "not in"
            if tok.value in ("in", "is"):
                return _CMP, tok.value
        if tok.kind in ("kw", "op") and tok.value in _BINARY_OPS:
            return _BINARY_OPS[tok.value]
        return None

    def expr(self, min_prec: int, depth: int) -> tuple[Node, int]:
        """Parse operators binding at least `min_prec`; returns the node and its height in the tree."""
        if depth > MAX_DEPTH:
            raise self.too_deep(self.peek())
        left, height = self.prefix(depth)
        while True:
            infix = self._infix()
            if infix is None or infix[0] < min_prec:
                return left, height
            prec, op = infix
            tok = self.advance()
            if op == "not in":
                self.advance()
            if op in ("in", "not in"):
                left, height = self.in_list(left, height, op == "not in", tok, depth)
            elif op == "is":
                negated = self.peek().kind == "kw" and self.peek().value == "not"
                if negated:
                    self.advance()
                self.expect("kw", "null")
                left, height = IsNull(left, negated, pos=tok.pos), height + 1
            else:
                right, right_height = self.expr(prec + 1, depth + 1)
                left, height = Binary(op, left, right, pos=tok.pos), max(height, right_height) + 1
            if height > MAX_DEPTH:
                raise self.too_deep(tok, chain=True)
            if prec == _CMP:
                following = self._infix()
                if following is not None and following[0] == _CMP:
                    raise ExpressionError(
                        "comparisons cannot be chained", self.peek().pos, hint="combine them with 'and'"
                    )

    def in_list(self, operand: Node, height: int, negated: bool, tok: _Tok, depth: int) -> tuple[Node, int]:
        self.expect("op", "(")
        items: list[Node] = []
        while True:
            item, item_height = self.expr(0, depth + 1)
            items.append(item)
            height = max(height, item_height)
            if self.peek().kind == "op" and self.peek().value == ",":
                self.advance()
                continue
            self.expect("op", ")")
            return InList(operand, tuple(items), negated, pos=tok.pos), height + 1

    def prefix(self, depth: int) -> tuple[Node, int]:
        tok = self.advance()
        if tok.kind == "number":
            return self.number(tok, negative=False), 1
        if tok.kind == "string":
            return Literal(tok.value, FieldType.STRING, pos=tok.pos), 1
        if tok.kind == "ident":
            if self.peek().kind == "op" and self.peek().value == "(":
                return self.call(tok, depth)
            return Column(tok.value, pos=tok.pos), 1
        if tok.kind == "kw":
            if tok.value == "true" or tok.value == "false":
                return Literal(tok.value == "true", FieldType.BOOLEAN, pos=tok.pos), 1
            if tok.value == "null":
                return Literal(None, None, pos=tok.pos), 1
            if tok.value == "not":
                operand, height = self.expr(_NOT, depth + 1)
                return Unary("not", operand, pos=tok.pos), height + 1
            if tok.value == "case":
                return self.case(tok, depth)
        if tok.kind == "op":
            if tok.value == "(":
                node, height = self.expr(0, depth + 1)
                self.expect("op", ")")
                return node, height
            if tok.value == "-":
                if self.peek().kind == "number":  # a negative literal, not negation of a positive one
                    return self.number(self.advance(), negative=True, pos=tok.pos), 1
                operand, height = self.expr(_UNARY, depth + 1)
                return Unary("-", operand, pos=tok.pos), height + 1
        if tok.kind == "eof":
            raise ExpressionError("unexpected end of the expression", tok.pos, hint="expected a value")
        raise ExpressionError(f"expected a value, found {_describe(tok)}", tok.pos)

    def call(self, tok: _Tok, depth: int) -> tuple[Node, int]:
        if self.src.text[tok.offset] == "`":
            raise ExpressionError(
                f"only a function name can be called, not the column '{tok.value}'", tok.pos
            )
        name = tok.value.lower()
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise ExpressionError(f"unknown function '{tok.value}'", tok.pos, hint=hint)
        self.expect("op", "(")
        args: list[Node] = []
        height = 0
        if not (self.peek().kind == "op" and self.peek().value == ")"):
            while True:
                arg, arg_height = self.expr(0, depth + 1)
                args.append(arg)
                height = max(height, arg_height)
                if self.peek().kind == "op" and self.peek().value == ",":
                    self.advance()
                    continue
                break
        self.expect("op", ")")
        low, high = FUNCTIONS[name].arity
        if len(args) < low or (high is not None and len(args) > high):
            wanted = f"{low}" if low == high else (f"{low} or more" if high is None else f"{low} to {high}")
            raise ExpressionError(
                f"'{name}' takes {wanted} argument(s), got {len(args)}",
                tok.pos,
                hint=f"usage: {FUNCTIONS[name].usage}",
            )
        return Call(name, tuple(args), pos=tok.pos), height + 1

    def case(self, tok: _Tok, depth: int) -> tuple[Node, int]:
        whens: list[tuple[Node, Node]] = []
        height = 0
        while self.peek().kind == "kw" and self.peek().value == "when":
            self.advance()
            condition, h1 = self.expr(0, depth + 1)
            self.expect("kw", "then")
            value, h2 = self.expr(0, depth + 1)
            whens.append((condition, value))
            height = max(height, h1, h2)
        if not whens:
            raise ExpressionError(f"expected 'when', found {_describe(self.peek())}", self.peek().pos)
        default: Node | None = None
        if self.peek().kind == "kw" and self.peek().value == "else":
            self.advance()
            default, h3 = self.expr(0, depth + 1)
            height = max(height, h3)
        self.expect("kw", "end")
        return Case(tuple(whens), default, pos=tok.pos), height + 1

    def number(self, tok: _Tok, *, negative: bool, pos: Position | None = None) -> Literal:
        text = tok.value
        sign = -1 if negative else 1
        if "." in text or "e" in text or "E" in text:
            value = sign * float(text)
            if value in (float("inf"), float("-inf")):
                raise ExpressionError(f"number '{text}' is out of range", tok.pos)
            return Literal(value, FieldType.NUMBER, pos=pos or tok.pos)
        integer = sign * int(text)
        if not INT64_MIN <= integer <= INT64_MAX:
            raise ExpressionError(f"integer '{text}' is out of range (64-bit)", tok.pos)
        return Literal(integer, FieldType.INTEGER, pos=pos or tok.pos)


def parse(text: str) -> Node:
    """Parse an expression; raises ExpressionError with the position and the reason."""
    if not isinstance(text, str):
        raise ExpressionError("the expression must be text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is too long ({len(text)} characters, at most {MAX_LENGTH})")
    if not text.strip():
        raise ExpressionError("the expression is empty")
    return _Parser(text).parse()


# --- formatting ----------------------------------------------------------------------------------------

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


# --- type checking -------------------------------------------------------------------------------------


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


# --- compilation ---------------------------------------------------------------------------------------

_COMPARE_FUNCS = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_ARITHMETIC_FUNCS = {"+": pc.add_checked, "-": pc.subtract_checked, "*": pc.multiply_checked}


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


def _text_bytes(value: pa.Scalar) -> int:
    if not value.is_valid or not (pa.types.is_string(value.type) or pa.types.is_large_string(value.type)):
        return 0
    buffer = value.as_buffer()
    return buffer.size if buffer is not None else 0


def _named(node: Node) -> str:
    if isinstance(node, Call):
        return f"'{node.name}'"
    return "'case'" if isinstance(node, Case) else "the expression"


def _arrow_type(t: _Type) -> pa.DataType | None:
    return arrow_type_for(t) if isinstance(t, FieldType) else None


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


# --- functions -----------------------------------------------------------------------------------------
#
# Each function types its arguments at check time (so a mistake is reported with its position before a
# run) and compiles to Arrow compute kernels. Arguments that configure a kernel rather than flow through
# it (a substring's bounds, a search text, a date unit) must be literals: Arrow takes them as options.

_Check = Callable[[_Checker, Call, list[_Type]], _Type]
_Compile = Callable[[_Compiler, Call, _Type], pc.Expression]


@dataclass(frozen=True)
class Function:
    arity: tuple[int, int | None]
    usage: str
    check: _Check
    compile: _Compile


_TEXT = frozenset({FieldType.STRING, FieldType.JSON})
_DATE_UNITS = ("year", "quarter", "month", "week", "day", "hour", "minute", "second")
_DIFF_UNITS = {
    "year": pc.years_between,
    "quarter": pc.quarters_between,
    "month": pc.month_interval_between,  # not used: see _diff
    "week": pc.weeks_between,
    "day": pc.days_between,
    "hour": pc.hours_between,
    "minute": pc.minutes_between,
    "second": pc.seconds_between,
}
_TIME_OF_DAY_UNITS = frozenset({"hour", "minute", "second"})


def _arg_error(call: Call, index: int, wants: str, t: _Type) -> ExpressionError:
    arg = call.args[index]
    return ExpressionError(
        f"argument {index + 1} of '{call.name}' must be {wants}, got {_describe_node(arg, t)}",
        arg.pos,
        hint=f"usage: {FUNCTIONS[call.name].usage}",
    )


def _want(call: Call, types: list[_Type], index: int, allowed: frozenset[FieldType], wants: str) -> None:
    t = types[index]
    if t in (_Special.NULL, _Special.ANY) or t in allowed:
        return
    raise _arg_error(call, index, wants, t)


def _literal(call: Call, index: int, kind: type, wants: str) -> object:
    arg = call.args[index]
    if (
        not isinstance(arg, Literal)
        or not isinstance(arg.value, kind)
        or isinstance(arg.value, bool) != (kind is bool)
    ):
        raise ExpressionError(
            f"argument {index + 1} of '{call.name}' must be {wants} written out (a literal)",
            arg.pos,
            hint=f"usage: {FUNCTIONS[call.name].usage}",
        )
    return arg.value


def _unit(call: Call, index: int, units: tuple[str, ...] | list[str]) -> str:
    value = str(_literal(call, index, str, "a unit"))
    if value.lower() not in units:
        close = difflib.get_close_matches(value.lower(), list(units), n=1, cutoff=0.6)
        raise ExpressionError(
            f"unknown unit '{value}' for '{call.name}'",
            call.args[index].pos,
            hint=f"did you mean '{close[0]}'?" if close else f"one of {', '.join(units)}",
        )
    return value.lower()


def _string_fn(result: FieldType, *literals: tuple[int, type, str]) -> _Check:
    def check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
        _want(call, types, 0, _TEXT, "text")
        for index, kind, wants in literals:
            if index < len(call.args):
                _literal(call, index, kind, wants)
        return result

    return check


def _arg(compiler: _Compiler, call: Call, index: int) -> pc.Expression:
    return compiler.compile(
        call.args[index], pa.string() if compiler.types[id(call.args[index])] is _Special.NULL else None
    )


def _lit(call: Call, index: int) -> object:
    arg = call.args[index]
    assert isinstance(arg, Literal)
    return arg.value


def _substr_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    _want(call, types, 0, _TEXT, "text")
    start = _literal(call, 1, int, "a whole number")
    if isinstance(start, int) and start < 1:
        raise ExpressionError("substr counts characters from 1", call.args[1].pos)
    if len(call.args) > 2:
        length = _literal(call, 2, int, "a whole number")
        if isinstance(length, int) and length < 0:
            raise ExpressionError("a substring's length cannot be negative", call.args[2].pos)
    return FieldType.STRING


def _substr(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    start = int(_lit(call, 1)) - 1  # type: ignore[call-overload]
    stop = start + int(_lit(call, 2)) if len(call.args) > 2 else None  # type: ignore[call-overload]
    return pc.utf8_slice_codeunits(_arg(compiler, call, 0), start=start, stop=stop)


def _concat_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    for i, t in enumerate(types):
        if t == FieldType.JSON:
            raise _arg_error(call, i, "a plain value", t)
    return FieldType.STRING


def _concat(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    # Like PostgreSQL's concat(): a null argument counts as empty text rather than nulling the result.
    parts = [compiler.compile(arg, pa.string()).cast(pa.string()) for arg in call.args]
    if compiler.table is not None:
        compiler.guard_concat(call, parts)
    return pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="")


def _replace_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    _string_fn(FieldType.STRING, (1, str, "text"), (2, str, "text"))(checker, call, types)
    if _lit(call, 1) == "":
        # Arrow's kernel never finishes on an empty pattern: it inserts the replacement without end.
        raise ExpressionError(
            "the text to replace is empty",
            call.args[1].pos,
            hint="replace(text, 'from', 'to') needs a 'from' to look for",
        )
    return FieldType.STRING


def _replace(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    value = _arg(compiler, call, 0)
    old, new = str(_lit(call, 1)), str(_lit(call, 2))
    if compiler.table is not None and len(new.encode()) > len(old.encode()):
        compiler.guard_replace(call, value, old, new)
    return pc.replace_substring(value, pattern=old, replacement=new)


def _numeric_check(result: FieldType | None) -> _Check:
    def check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
        for i in range(len(types)):
            _want(call, types, i, _NUMERIC, "a number")
        if result is not None:
            return result
        return types[0] if types[0] is not _Special.NULL else FieldType.NUMBER

    return check


def _round_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    _want(call, types, 0, _NUMERIC, "a number")
    if len(call.args) > 1:
        _literal(call, 1, int, "a whole number of digits")
    return types[0] if types[0] is not _Special.NULL else FieldType.NUMBER


def _num(compiler: _Compiler, call: Call, index: int, t: _Type) -> pc.Expression:
    return compiler._as(call.args[index], _arrow_type(t) or pa.float64())


def _round(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    digits = int(_lit(call, 1)) if len(call.args) > 1 else 0  # type: ignore[call-overload]
    # Half away from zero, as SQL rounds (Arrow's default is half to even).
    if t == FieldType.INTEGER:
        if digits >= 0:
            return _num(compiler, call, 0, t)
        value = compiler._as(call.args[0], pa.float64())
        return pc.round(value, ndigits=digits, round_mode="half_towards_infinity").cast(pa.int64())
    return pc.round(_num(compiler, call, 0, t), ndigits=digits, round_mode="half_towards_infinity")


def _floor_ceil(kernel: Callable[..., pc.Expression]) -> _Compile:
    def compile_(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
        value = _num(compiler, call, 0, t)
        return value if t == FieldType.INTEGER else kernel(value)

    return compile_


def _sqrt(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    value = compiler._as(call.args[0], pa.float64())
    # The square root of a negative number is null (as division by zero is), not NaN.
    return pc.sqrt(pc.if_else(pc.less(value, _const(0.0)), _const(None, pa.float64()), value))


def _pow(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    return pc.power(compiler._as(call.args[0], pa.float64()), compiler._as(call.args[1], pa.float64()))


def _unify_check(what: str, *, comparable: bool = False) -> _Check:
    def check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
        t = checker.unify(list(zip(call.args, types, strict=True)), call.pos, what)
        if comparable and t in (FieldType.JSON, FieldType.BOOLEAN):
            raise _arg_error(call, 0, "comparable (a number, text, date or datetime)", t)
        return t

    return check


def _all_as(compiler: _Compiler, call: Call, t: _Type) -> list[pc.Expression]:
    arrow_type = _arrow_type(t)
    return [compiler._as(arg, arrow_type) for arg in call.args]


def _spread_all(compiler: _Compiler, call: Call, t: _Type) -> list[pc.Expression]:
    values = _all_as(compiler, call, t)
    compiler.spread(call, t, values)
    return values


def _least(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    return pc.min_element_wise(*_spread_all(compiler, call, t), skip_nulls=True)


def _greatest(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    return pc.max_element_wise(*_spread_all(compiler, call, t), skip_nulls=True)


def _part_check(datetime_only: bool) -> _Check:
    def check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
        if datetime_only:
            _want(call, types, 0, frozenset({FieldType.DATETIME}), "a datetime")
        else:
            _want(call, types, 0, _TEMPORAL, "a date or datetime")
        return FieldType.INTEGER

    return check


def _part(kernel: Callable[..., pc.Expression]) -> _Compile:
    def compile_(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
        return kernel(compiler.compile(call.args[0], pa.timestamp("us", tz="UTC"))).cast(pa.int64())

    return compile_


def _trunc_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    unit = _unit(call, 0, _DATE_UNITS)
    _want(call, types, 1, _TEMPORAL, "a date or datetime")
    if types[1] == FieldType.DATE and unit in _TIME_OF_DAY_UNITS:
        raise ExpressionError(f"a date has no {unit}s", call.args[0].pos)
    return types[1] if types[1] is not _Special.NULL else FieldType.DATETIME


def _trunc(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    unit = str(_lit(call, 0)).lower()
    value = compiler.compile(call.args[1], _arrow_type(t))
    return pc.floor_temporal(value, unit=unit, week_starts_monday=True)


def _diff_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    unit = _unit(call, 0, list(_DIFF_UNITS))
    for i in (1, 2):
        _want(call, types, i, _TEMPORAL, "a date or datetime")
    known = {t for t in types[1:] if t in _TEMPORAL}
    if len(known) > 1:
        raise ExpressionError("date_diff needs two dates or two datetimes", call.pos)
    if FieldType.DATE in known and unit in _TIME_OF_DAY_UNITS:
        raise ExpressionError(f"dates have no {unit}s between them", call.args[0].pos)
    return FieldType.INTEGER


def _diff(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    unit = str(_lit(call, 0)).lower()
    known = [compiler.types[id(a)] for a in call.args[1:] if compiler.types[id(a)] in _TEMPORAL]
    arrow_type = _arrow_type(known[0]) if known else pa.timestamp("us", tz="UTC")
    start = compiler.compile(call.args[1], arrow_type)
    end = compiler.compile(call.args[2], arrow_type)
    if unit == "month":  # month boundaries crossed, like the other units (Arrow's gives an interval)
        years = pc.subtract(pc.year(end), pc.year(start))
        return pc.add(pc.multiply(years, _const(12)), pc.subtract(pc.month(end), pc.month(start)))
    return _DIFF_UNITS[unit](start, end).cast(pa.int64())


def _now_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    return FieldType.DATETIME


def _now(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    return _const(compiler.now.astimezone(dt.UTC), pa.timestamp("us", tz="UTC"))


def _coalesce(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    return pc.coalesce(*_spread_all(compiler, call, t))


def _is_null_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    return FieldType.BOOLEAN


def _is_null(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    return pc.is_null(compiler.compile(call.args[0]))


def _nullif_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    checker._comparable(call.args[0], types[0], call.args[1], types[1], call.pos)
    return types[0]


def _nullif(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    value = compiler.compile(call.args[0], _arrow_type(t))
    compiler.spread(call, t, [value])
    same = pc.coalesce(pc.equal(value, compiler.compile(call.args[1])), _const(False))
    return pc.if_else(same, _const(None, _arrow_type(t)), value)


def _if_check(checker: _Checker, call: Call, types: list[_Type]) -> _Type:
    checker._need_boolean(call.args[0], types[0], "if")
    return checker.unify([(call.args[1], types[1]), (call.args[2], types[2])], call.pos, "if")


def _if(compiler: _Compiler, call: Call, t: _Type) -> pc.Expression:
    arrow_type = _arrow_type(t)
    test = pc.coalesce(compiler.compile(call.args[0], pa.bool_()), _const(False))
    values = [compiler._as(call.args[1], arrow_type), compiler._as(call.args[2], arrow_type)]
    compiler.spread(call, t, values)
    return pc.if_else(test, *values)


def _unary_text(kernel: Callable[..., pc.Expression]) -> _Compile:
    return lambda compiler, call, t: kernel(_arg(compiler, call, 0))


FUNCTIONS: dict[str, Function] = {
    # text
    "lower": Function((1, 1), "lower(text)", _string_fn(FieldType.STRING), _unary_text(pc.utf8_lower)),
    "upper": Function((1, 1), "upper(text)", _string_fn(FieldType.STRING), _unary_text(pc.utf8_upper)),
    "length": Function(
        (1, 1),
        "length(text)",
        _string_fn(FieldType.INTEGER),
        lambda c, call, t: pc.utf8_length(_arg(c, call, 0)).cast(pa.int64()),
    ),
    "trim": Function(
        (1, 1), "trim(text)", _string_fn(FieldType.STRING), _unary_text(pc.utf8_trim_whitespace)
    ),
    "substr": Function((2, 3), "substr(text, start, [length]) — start counts from 1", _substr_check, _substr),
    "concat": Function((1, None), "concat(value, value, ...)", _concat_check, _concat),
    "contains": Function(
        (2, 2),
        "contains(text, 'part')",
        _string_fn(FieldType.BOOLEAN, (1, str, "text")),
        lambda c, call, t: pc.match_substring(_arg(c, call, 0), pattern=_lit(call, 1)),
    ),
    "starts_with": Function(
        (2, 2),
        "starts_with(text, 'prefix')",
        _string_fn(FieldType.BOOLEAN, (1, str, "text")),
        lambda c, call, t: pc.starts_with(_arg(c, call, 0), pattern=_lit(call, 1)),
    ),
    "ends_with": Function(
        (2, 2),
        "ends_with(text, 'suffix')",
        _string_fn(FieldType.BOOLEAN, (1, str, "text")),
        lambda c, call, t: pc.ends_with(_arg(c, call, 0), pattern=_lit(call, 1)),
    ),
    "replace": Function((3, 3), "replace(text, 'from', 'to')", _replace_check, _replace),
    # math
    "abs": Function(
        (1, 1), "abs(number)", _numeric_check(None), lambda c, call, t: pc.abs_checked(_num(c, call, 0, t))
    ),
    "round": Function((1, 2), "round(number, [digits])", _round_check, _round),
    "floor": Function((1, 1), "floor(number)", _numeric_check(None), _floor_ceil(pc.floor)),
    "ceil": Function((1, 1), "ceil(number)", _numeric_check(None), _floor_ceil(pc.ceil)),
    "sqrt": Function((1, 1), "sqrt(number)", _numeric_check(FieldType.NUMBER), _sqrt),
    "pow": Function((2, 2), "pow(base, exponent)", _numeric_check(FieldType.NUMBER), _pow),
    "least": Function((1, None), "least(value, value, ...)", _unify_check("least", comparable=True), _least),
    "greatest": Function(
        (1, None), "greatest(value, value, ...)", _unify_check("greatest", comparable=True), _greatest
    ),
    # dates (datetimes are UTC instants, so their parts are UTC parts)
    "year": Function((1, 1), "year(date)", _part_check(False), _part(pc.year)),
    "month": Function((1, 1), "month(date)", _part_check(False), _part(pc.month)),
    "day": Function((1, 1), "day(date)", _part_check(False), _part(pc.day)),
    "hour": Function((1, 1), "hour(datetime)", _part_check(True), _part(pc.hour)),
    "date_trunc": Function((2, 2), "date_trunc('month', date)", _trunc_check, _trunc),
    "date_diff": Function((3, 3), "date_diff('day', start, end) — end minus start", _diff_check, _diff),
    "now": Function((0, 0), "now() — the run's start", _now_check, _now),
    # nulls
    "coalesce": Function((1, None), "coalesce(value, value, ...)", _unify_check("coalesce"), _coalesce),
    "is_null": Function((1, 1), "is_null(value)", _is_null_check, _is_null),
    "nullif": Function((2, 2), "nullif(value, value)", _nullif_check, _nullif),
    # conditions
    "if": Function((3, 3), "if(condition, then, else)", _if_check, _if),
}


# --- how long the text of a function can get ------------------------------------------------------------
#
# Every function that gives text has an entry: how long its result can be, from the bounds of its
# arguments. Only `concat` and `replace` can give text longer than what goes into them (the case mappings
# of lower and upper change a character's bytes by at most a little, and never compound), so only they can
# be refused for length. A new function that can build longer text must say how much longer here.


def _widest(checker: _Checker, nodes: list[Node]) -> _Bound:
    bounds = [checker.bound(n) for n in nodes] or [(Fraction(0), Fraction(0))]
    return max(b[0] for b in bounds), max(b[1] for b in bounds)


def _concat_bound(checker: _Checker, call: Call) -> _Bound:
    bounds = [checker.bound(arg) for arg in call.args]
    return sum((b[0] for b in bounds), Fraction(0)), sum((b[1] for b in bounds), Fraction(0))


def _replace_bound(checker: _Checker, call: Call) -> _Bound:
    growth, base = checker.bound(call.args[0])
    old, new = (len(str(_lit(call, i)).encode()) for i in (1, 2))
    # Each occurrence of `old` (at least len(old) bytes, never overlapping) becomes len(new) bytes.
    ratio = max(Fraction(1), Fraction(new, old))
    return growth * ratio, base * ratio


def _substr_bound(checker: _Checker, call: Call) -> _Bound:
    growth, base = checker.bound(call.args[0])
    if len(call.args) < 3:
        return growth, base
    most = Fraction(4 * int(_lit(call, 2)))  # type: ignore[call-overload]  # UTF-8: at most 4 bytes a character
    return (Fraction(0), most) if growth > 0 or base > most else (growth, base)


_TEXT_BOUNDS: dict[str, Callable[[_Checker, Call], _Bound]] = {
    "concat": _concat_bound,
    "replace": _replace_bound,
    "substr": _substr_bound,
    "if": lambda checker, call: _widest(checker, list(call.args[1:])),
    "nullif": lambda checker, call: checker.bound(call.args[0]),
}


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
