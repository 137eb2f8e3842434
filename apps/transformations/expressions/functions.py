"""The built-in functions of the language (`FUNCTIONS`): for each, its arity and usage, how it types its
arguments at check time and how it compiles to Arrow compute kernels, and for those giving text, how long
that text can get.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import FieldType
from apps.transformations.expressions.ast import Call, ExpressionError, Literal, Node
from apps.transformations.expressions.types import (
    _NUMERIC,
    _TEMPORAL,
    _arrow_type,
    _Bound,
    _const,
    _describe_node,
    _Special,
    _Type,
)

if TYPE_CHECKING:
    from apps.transformations.expressions.checker import _Checker
    from apps.transformations.expressions.compiler import _Compiler

# --- functions -----------------------------------------------------------------------------------------
#
# Each function types its arguments at check time (so a mistake is reported with its position before a
# run) and compiles to Arrow compute kernels. Arguments that configure a kernel rather than flow through
# it (a substring's bounds, a search text, a date unit) must be literals: Arrow takes them as options.

# The checker and the compiler call these; they are named as strings because they import this module.
_Check = Callable[["_Checker", Call, list[_Type]], _Type]
_Compile = Callable[["_Compiler", Call, _Type], pc.Expression]


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
