"""Text to tree: a hand-written tokenizer and a precedence-climbing (Pratt) parser (`parse`).

Nothing is ever handed to `eval`, `exec` or a template engine, and the tokenizer knows no character that
could reach Python (no `.`, `[`, `{`, `;`); a call names one of the built-in FUNCTIONS, whose arity is
checked here.
"""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

from aggregator.dataplane import FieldType
from apps.transformations.expressions.ast import (
    _BINARY_OPS,
    _CMP,
    _NOT,
    _UNARY,
    INT64_MAX,
    INT64_MIN,
    KEYWORDS,
    MAX_DEPTH,
    MAX_LENGTH,
    Binary,
    Call,
    Case,
    Column,
    ExpressionError,
    InList,
    IsNull,
    Literal,
    Node,
    Position,
    Unary,
)
from apps.transformations.expressions.functions import FUNCTIONS

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
