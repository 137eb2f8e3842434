"""The expression language: parsing, canonical formatting, type checking, vectorised evaluation, and
property tests against a row-by-row reference evaluation."""

from __future__ import annotations

import datetime as dt
import operator
import sys
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.dataplane import FieldType, StreamSchema
from apps.transformations.expressions import (
    FUNCTIONS,
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
    Unary,
    compile_expr,
    evaluate,
    filter_table,
    format_expr,
    parse,
    typecheck,
)

FLIGHTS = pa.table(
    {
        "dep_delay": pa.array([100, 5, None, 70, -3], pa.int64()),
        "carrier": ["UA", "AA", "UA", "B6", None],
        "distance": [1400.5, 1089.0, None, 0.0, 200.25],
        "cancelled": [False, None, True, False, False],
        "day": pa.array([dt.date(2013, 1, d) for d in (1, 2, 3, 4, 5)], pa.date32()),
        "time_hour": pa.array(
            [dt.datetime(2013, 1, 1, h, tzinfo=dt.UTC) for h in (5, 6, 7, 8, 9)],
            pa.timestamp("us", tz="UTC"),
        ),
        "my col": [1, 2, 3, 4, 5],
    }
)
SCHEMA = StreamSchema.from_arrow("flights", FLIGHTS.schema)


def values(text: str) -> list[Any]:
    return evaluate(parse(text), FLIGHTS, SCHEMA).to_pylist()


# --- parsing and formatting ----------------------------------------------------------------------------

ROUND_TRIPS = [
    # (as written, canonical)
    ("dep_delay > 60", "dep_delay > 60"),
    ("dep_delay>60 AND carrier IN ('UA','AA')", "dep_delay > 60 and carrier in ('UA', 'AA')"),
    ("a == 1 or b <> 2", "a = 1 or b != 2"),
    ("(a = 1 or b = 2) and c = 3", "(a = 1 or b = 2) and c = 3"),
    ("a = 1 or (b = 2 and c = 3)", "a = 1 or b = 2 and c = 3"),
    ("a or (b or c)", "a or (b or c)"),
    ("((a))", "a"),
    ("NOT (a > 1)", "not a > 1"),
    ("(not a) = b", "(not a) = b"),
    ("not not a", "not not a"),
    ("a + b * c", "a + b * c"),
    ("(a + b) * c", "(a + b) * c"),
    ("a - (b - c)", "a - (b - c)"),
    ("a - b - c", "a - b - c"),
    ("a / b % c", "a / b % c"),
    ("-a * -2", "-a * -2"),
    ("- 5", "-5"),
    ("-(5)", "-(5)"),
    ("--a", "--a"),
    ("a - -1.5", "a - -1.5"),
    ("1e3 + 2.50 + 7", "1000.0 + 2.5 + 7"),
    ("x IS NULL", "x is null"),
    ("x is  not  null", "x is not null"),
    ("x NOT IN (1, 2.5, null)", "x not in (1, 2.5, null)"),
    ("x in (a + 1, b)", "x in (a + 1, b)"),
    ("(x is null) = true", "(x is null) = true"),
    ("`my col` >= 3", "`my col` >= 3"),
    ("`and` = `a``b`", "`and` = `a``b`"),
    ("`plain` = TRUE", "plain = true"),
    ('s = "it\'s"', "s = 'it\\'s'"),
    ("s = 'a\\nb\\t\\\\'", "s = 'a\\nb\\t\\\\'"),
    ("s = '\\u00e9t\\u00E9'", "s = 'été'"),
    ("s = 'line\nbreak'", "s = 'line\\nbreak'"),
    ("s != ''", "s != ''"),
    ("a = 1\n  and b = 2", "a = 1 and b = 2"),
    ("x = -9223372036854775808", "x = -9223372036854775808"),
    ("LOWER( carrier )='ua'", "lower(carrier) = 'ua'"),
    ("concat(a,'-',b)", "concat(a, '-', b)"),
    ("now()", "now()"),
    ("IF(a>1,'x','y')", "if(a > 1, 'x', 'y')"),
    ("CASE WHEN a THEN 1 WHEN b THEN 2 ELSE 3 END + 1", "case when a then 1 when b then 2 else 3 end + 1"),
    ("case when a then b end", "case when a then b end"),
    ("`case` = `end`", "`case` = `end`"),
]


@pytest.mark.parametrize(("text", "canonical"), ROUND_TRIPS)
def test_parse_format_round_trip(text: str, canonical: str) -> None:
    tree = parse(text)
    assert format_expr(tree) == canonical
    assert parse(canonical) == tree
    assert format_expr(parse(canonical)) == canonical


def test_parse_builds_the_expected_tree() -> None:
    tree = parse("dep_delay > 60 and carrier in ('UA', 'AA')")
    assert tree == Binary(
        "and",
        Binary(">", Column("dep_delay"), Literal(60, FieldType.INTEGER)),
        InList(Column("carrier"), (Literal("UA", FieldType.STRING), Literal("AA", FieldType.STRING))),
    )
    assert parse("1") != parse("1.0") != parse("true")
    assert parse("-a") == Unary("-", Column("a"))
    assert parse("a is not null") == IsNull(Column("a"), negated=True)


def test_positions_count_lines_and_columns() -> None:
    tree = parse("a = 1\n  and b")
    assert isinstance(tree, Binary)
    assert tuple(tree.pos) == (2, 3)
    assert tuple(tree.right.pos) == (2, 7)


PARSE_ERRORS = [
    ("", "the expression is empty"),
    ("   ", "the expression is empty"),
    ("a >", "unexpected end of the expression at 1:4, expected a value"),
    ("a > > 1", "expected a value, found '>' at 1:5"),
    ("(a = 1", "expected ')', found the end of the expression at 1:7"),
    ("a = 1)", "unexpected ')' at 1:6"),
    ("a b", "unexpected 'b' at 1:3"),
    ("a < b < c", "comparisons cannot be chained at 1:7, combine them with 'and'"),
    ("a = b is null", "comparisons cannot be chained at 1:7"),
    ("'abc", "unterminated string at 1:1"),
    ("`abc", "unterminated quoted column name at 1:1"),
    ("``", "empty quoted column name at 1:1"),
    ("s = 'a\\qb'", "invalid escape '\\q' at 1:7"),
    ("s = '\\ud800'", "invalid escape '\\ud800' (a surrogate) at 1:6"),
    ("1abc", "invalid number '1abc' at 1:1"),
    ("1.2.3", "invalid number '1.2.3' at 1:1"),
    ("x in ()", "expected a value, found ')' at 1:7"),
    ("x in 1", "expected '(', found '1' at 1:6"),
    ("x is 1", "expected 'null', found '1' at 1:6"),
    ("x = 9223372036854775808", "integer '9223372036854775808' is out of range (64-bit) at 1:5"),
    ("x = 1e999", "number '1e999' is out of range at 1:5"),
    ("__import__('os')", "unknown function '__import__' at 1:1"),
    ("lowr(carrier) = 'ua'", "unknown function 'lowr' at 1:1, did you mean 'lower'?"),
    ("(a)(b)", "only a function name can be called at 1:4"),
    ("`lower`(a)", "only a function name can be called, not the column 'lower' at 1:1"),
    ("lower(a, b)", "'lower' takes 1 argument(s), got 2 at 1:1, usage: lower(text)"),
    ("case a end", "expected 'when', found 'a' at 1:6"),
    ("case when a then 1", "expected 'end', found the end of the expression at 1:19"),
    ("a.b", "unexpected character '.' at 1:2"),
    ("os.system('ls')", "unexpected character '.' at 1:3"),
    ("x[0]", "unexpected character '[' at 1:2"),
    ("{{ 7*7 }}", "unexpected character '{' at 1:1"),
    ("{% if x %}", "unexpected character '{' at 1:1"),
    ("${x}", "unexpected character '$' at 1:1"),
    ("a = 1; drop table x", "unexpected character ';' at 1:6"),
    ("lambda: 1", "unexpected character ':' at 1:7"),
    ("a = 1\n  and b = @", "unexpected character '@' at 2:11"),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors_give_position_and_reason(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert str(caught.value).startswith(message)


def _rejected_within(text: str) -> ExpressionError:
    """Parse `text`, which must be refused, and hold that the refusal took work linear in its length: the
    Python calls made while parsing are counted (deterministic, unlike a clock on a loaded machine); a
    parser that backtracks or recurses per character would make many times more."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        with pytest.raises(ExpressionError) as caught:
            parse(text)
    finally:
        sys.setprofile(None)
    assert calls <= 1000 + 10 * len(text), (calls, text[:50])
    return caught.value


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "().__class__.__bases__[0].__subclasses__()",
        "getattr(x, 'y')",
        "{{ 7*7 }}",
        "{{ config.items() }}",
        "x[0]",
        "a.b",
        "eval('1')",
        "exec('import os')",
        "f'{x}'",
        "x if y else z",
        "\\x00",
    ],
)
def test_hostile_input_is_rejected_quickly(text: str) -> None:
    _rejected_within(text)


def test_long_and_deep_input_is_rejected_quickly() -> None:
    too_long = _rejected_within("a = 1 and " * (MAX_LENGTH // 10) + "b")
    assert str(too_long).startswith("expression is too long")
    too_deep = _rejected_within("(" * 4000 + "1" + ")" * 4000)
    assert f"nested too deeply (more than {MAX_DEPTH} levels)" in str(too_deep)
    negations = _rejected_within("not " * 2000 + "a")
    assert "nested too deeply" in str(negations)
    minus = _rejected_within("-" * 3000 + "a")
    assert "nested too deeply" in str(minus)
    chain = _rejected_within(" or ".join(f"a = {i}" for i in range(MAX_DEPTH + 5)))
    assert "use 'in (...)' instead of a long chain of 'or'" in str(chain)
    # Just inside the limits parses fine.
    assert parse("(" * 50 + "a" + ")" * 50) == Column("a")
    assert parse(" or ".join(f"a = {i}" for i in range(MAX_DEPTH - 2)))


# --- type checking -------------------------------------------------------------------------------------


def test_unknown_column_names_the_closest_one() -> None:
    with pytest.raises(ExpressionError) as caught:
        typecheck(parse("dep_dely > 60"), SCHEMA)
    assert str(caught.value) == "unknown column 'dep_dely' at 1:1, did you mean 'dep_delay'?"
    with pytest.raises(ExpressionError) as caught:
        typecheck(parse("cancelled and zzz"), SCHEMA)
    assert str(caught.value) == "unknown column 'zzz' at 1:15"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dep_delay", FieldType.INTEGER),
        ("dep_delay + 1", FieldType.INTEGER),
        ("dep_delay % 7", FieldType.INTEGER),
        ("dep_delay + 1.5", FieldType.NUMBER),
        ("dep_delay / 2", FieldType.NUMBER),
        ("-distance", FieldType.NUMBER),
        ("dep_delay + null", FieldType.INTEGER),
        ("carrier", FieldType.STRING),
        ("dep_delay > 60", FieldType.BOOLEAN),
        ("dep_delay > distance", FieldType.BOOLEAN),
        ("cancelled and not cancelled", FieldType.BOOLEAN),
        ("cancelled or null", FieldType.BOOLEAN),
        ("carrier in ('UA', null)", FieldType.BOOLEAN),
        ("day >= '2013-01-03'", FieldType.BOOLEAN),
        ("'2013-01-01 06:00' < time_hour", FieldType.BOOLEAN),
        ("day in ('2013-01-01', '2013-01-05')", FieldType.BOOLEAN),
        ("null is null", FieldType.BOOLEAN),
    ],
)
def test_typecheck_infers_the_result_type(text: str, expected: FieldType) -> None:
    assert typecheck(parse(text), SCHEMA) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("carrier > 5", "cannot compare string column 'carrier' with integer 5 at 1:9"),
        ("5 = carrier", "cannot compare integer 5 with string column 'carrier' at 1:3"),
        ("carrier in ('UA', 1)", "cannot compare string column 'carrier' with integer 1 at 1:9"),
        ("cancelled = 1", "cannot compare boolean column 'cancelled' with integer 1 at 1:11"),
        ("day = time_hour", "cannot compare date column 'day' with datetime column 'time_hour' at 1:5"),
        ("day = carrier", "cannot compare date column 'day' with string column 'carrier' at 1:5"),
        ("day > '2013-13-01'", "'2013-13-01' is not a valid date at 1:7, write it like '2013-01-31'"),
        ("time_hour > 'soon'", "'soon' is not a valid datetime at 1:13"),
        ("carrier + 1", "'+' needs numbers, got string column 'carrier' at 1:9"),
        ("-carrier", "'-' needs a number, got string column 'carrier' at 1:1"),
        (
            "dep_delay and cancelled",
            "'and' needs a condition (true or false), got integer column 'dep_delay'",
        ),
        ("not carrier", "'not' needs a condition (true or false), got string column 'carrier' at 1:5"),
        ("dep_delay = null", "'=' with null is never true at 1:11, use 'is null' or 'is not null'"),
        ("null", "the expression is always null at 1:1"),
        ("null + null", "the expression is always null"),
    ],
)
def test_type_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        typecheck(parse(text), SCHEMA)
    assert str(caught.value).startswith(message)


# --- evaluation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dep_delay > 60", [True, False, None, True, False]),
        ("dep_delay > 60 and carrier in ('UA', 'AA')", [True, False, None, False, False]),
        ("dep_delay > 60 or carrier = 'UA'", [True, False, True, True, None]),
        ("not dep_delay > 60", [False, True, None, False, True]),
        ("carrier not in ('UA', 'AA')", [False, False, False, True, None]),
        ("carrier in ('UA', null)", [True, None, True, None, None]),
        ("carrier not in ('UA', null)", [False, None, False, None, None]),
        ("dep_delay in (100, 5.0)", [True, True, None, False, False]),
        ("distance in (0, 200.25)", [False, False, None, True, True]),
        ("distance * -1 in (0)", [False, False, None, True, False]),  # -0.0 is 0
        ("dep_delay in (dep_delay, 1)", [True, True, None, True, True]),
        ("dep_delay is null", [False, False, True, False, False]),
        ("carrier is not null", [True, True, True, True, False]),
        ("cancelled", [False, None, True, False, False]),
        ("cancelled = false", [True, None, False, True, True]),
        ("cancelled or true", [True, True, True, True, True]),
        ("cancelled and false", [False, False, False, False, False]),
        ("cancelled and null", [False, None, None, False, False]),
        ("dep_delay * 2 - 1", [199, 9, None, 139, -7]),
        ("-dep_delay", [-100, -5, None, -70, 3]),
        ("dep_delay / 2", [50.0, 2.5, None, 35.0, -1.5]),
        ("dep_delay / 0", [None, None, None, None, None]),
        ("distance / distance", [1.0, 1.0, None, None, 1.0]),
        ("dep_delay % 7", [2, 5, None, 0, 4]),
        ("dep_delay % (dep_delay - 5)", [100 % 95, None, None, 70 % 65, -3 % -8]),
        ("dep_delay + distance", [1500.5, 1094.0, None, 70.0, 197.25]),
        ("`my col` * 10", [10, 20, 30, 40, 50]),
        ("day >= '2013-01-03'", [False, False, True, True, True]),
        ("day in ('2013-01-01', '2013-01-05')", [True, False, False, False, True]),
        ("time_hour < '2013-01-01T07:00:00+01:00'", [True, False, False, False, False]),
        ("time_hour = '2013-01-01 07:00'", [False, False, True, False, False]),
        ("1 = 1", [True] * 5),
        ("dep_delay + null", [None] * 5),
    ],
)
def test_evaluate_follows_three_valued_logic(text: str, expected: list[Any]) -> None:
    assert values(text) == expected


def test_filter_keeps_true_rows_in_order_and_drops_nulls() -> None:
    kept = filter_table(parse("dep_delay > 0 or carrier = 'UA'"), FLIGHTS, SCHEMA)
    assert kept.column("dep_delay").to_pylist() == [100, 5, None, 70]
    assert kept.schema == FLIGHTS.schema
    assert filter_table(parse("dep_delay > 1000"), FLIGHTS).num_rows == 0
    assert filter_table(parse("dep_delay > 1"), FLIGHTS.slice(0, 0)).num_rows == 0


def test_compiled_expression_works_with_arrow_directly() -> None:
    expr = compile_expr(parse("dep_delay > 60 and carrier = 'UA'"), SCHEMA)
    assert FLIGHTS.filter(expr).column("dep_delay").to_pylist() == [100]
    # Without a schema the tree compiles as written; Arrow checks the types when it runs.
    loose = compile_expr(parse("dep_delay >= 70"))
    assert FLIGHTS.filter(loose).column("dep_delay").to_pylist() == [100, 70]


def test_arithmetic_in_a_narrow_column_does_not_overflow_in_its_own_width() -> None:
    table = pa.table({"n": pa.array([2_000_000_000, None], pa.int32())})
    assert evaluate(parse("n + 2000000000"), table).to_pylist() == [4_000_000_000, None]


def test_overflow_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(parse("dep_delay * 9223372036854775807"), FLIGHTS, SCHEMA)
    assert "cannot evaluate the expression" in str(caught.value)
    assert "overflow" in str(caught.value)


# --- property tests ------------------------------------------------------------------------------------

_names = st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s) | st.sampled_from(
    ["a", "dep_delay", "and", "Null", "my col", "x`y"]
)
_literals = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: Literal(v, FieldType.INTEGER)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: Literal(v, FieldType.NUMBER)),
    st.text(max_size=10).map(lambda v: Literal(v, FieldType.STRING)),
    st.booleans().map(lambda v: Literal(v, FieldType.BOOLEAN)),
    st.just(Literal(None, None)),
)
_leaves = _literals | _names.map(Column)
_OPS = ["or", "and", "=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(Unary, st.sampled_from(["not", "-"]), children),
        st.builds(Binary, st.sampled_from(_OPS), children, children),
        st.builds(InList, children, st.lists(children, min_size=1, max_size=3).map(tuple), st.booleans()),
        st.builds(IsNull, children, st.booleans()),
        st.sampled_from(sorted(FUNCTIONS)).flatmap(lambda name: _calls(name, children)),
        st.builds(
            Case,
            st.lists(st.tuples(children, children), min_size=1, max_size=3).map(tuple),
            st.none() | children,
        ),
    )


def _calls(name: str, children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    """Calls with a number of arguments the function takes (the parser checks arity)."""
    low, high = FUNCTIONS[name].arity
    count = st.integers(min_value=low, max_value=high if high is not None else low + 3)
    return count.flatmap(
        lambda n: st.lists(children, min_size=n, max_size=n).map(lambda a: Call(name, tuple(a)))
    )


any_tree = st.recursive(_leaves, _extend, max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(any_tree)
def test_format_then_parse_gives_back_any_tree(tree: Node) -> None:
    text = format_expr(tree)
    assert parse(text) == tree
    assert format_expr(parse(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="ab01=<>!()'\"`-+*/% ,.nulltrueisnotandor", max_size=60))
def test_any_text_parses_or_fails_with_an_expression_error(text: str) -> None:
    try:
        tree = parse(text)
    except ExpressionError:
        return
    assert parse(format_expr(tree)) == tree


# A small random table and random well-typed conditions over it; the compiled filter must agree with a
# plain Python evaluation of the same tree, row by row, in SQL's three-valued logic.

_TABLE_SCHEMA = pa.schema(
    [("i", pa.int64()), ("j", pa.int64()), ("f", pa.float64()), ("s", pa.string()), ("b", pa.bool_())]
)
_small_int = st.integers(min_value=-5, max_value=5)
_small_float = st.sampled_from([-2.5, -1.0, 0.0, 0.5, 1.0, 3.25])
_rows = st.lists(
    st.tuples(
        st.none() | _small_int,
        st.none() | _small_int,
        st.none() | _small_float,
        st.none() | st.sampled_from(["", "a", "b", "ab"]),
        st.none() | st.booleans(),
    ),
    max_size=8,
)
NULL = Literal(None, None)


def _int_expr(depth: int) -> st.SearchStrategy[Node]:
    leaf = st.sampled_from([Column("i"), Column("j")]) | _small_int.map(
        lambda v: Literal(v, FieldType.INTEGER)
    )
    if depth == 0:
        return leaf
    sub = _int_expr(depth - 1)
    return st.one_of(
        leaf,
        st.builds(Binary, st.sampled_from(["+", "-", "*", "%"]), sub, sub),
        st.builds(Binary, st.sampled_from(["+", "*"]), sub, st.just(NULL)),
        st.builds(Unary, st.just("-"), sub),
    )


def _num_expr(depth: int) -> st.SearchStrategy[Node]:
    leaf = st.just(Column("f")) | _small_float.map(lambda v: Literal(v, FieldType.NUMBER))
    ints = _int_expr(depth)
    if depth == 0:
        return leaf | ints
    sub = _num_expr(depth - 1)
    return st.one_of(
        leaf,
        ints,
        st.builds(Binary, st.sampled_from(["+", "-", "*", "/"]), sub, sub),
        st.builds(Unary, st.just("-"), sub),
    )


def _str_expr() -> st.SearchStrategy[Node]:
    return st.just(Column("s")) | st.sampled_from(["", "a", "b", "c"]).map(
        lambda v: Literal(v, FieldType.STRING)
    )


def _comparison() -> st.SearchStrategy[Node]:
    cmp_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    num_items = st.lists(
        _small_int.map(lambda v: Literal(v, FieldType.INTEGER))
        | _small_float.map(lambda v: Literal(v, FieldType.NUMBER))
        | st.just(NULL),
        min_size=1,
        max_size=4,
    ).map(tuple)
    str_items = st.lists(
        st.sampled_from(["", "a", "b"]).map(lambda v: Literal(v, FieldType.STRING)) | st.just(NULL),
        min_size=1,
        max_size=3,
    ).map(tuple)
    return st.one_of(
        st.builds(Binary, cmp_ops, _num_expr(2), _num_expr(2)),
        st.builds(Binary, cmp_ops, _str_expr(), _str_expr()),
        st.builds(
            Binary,
            st.sampled_from(["=", "!="]),
            st.just(Column("b")),
            st.booleans().map(lambda v: Literal(v, FieldType.BOOLEAN)),
        ),
        st.builds(InList, _num_expr(1), num_items, st.booleans()),
        st.builds(
            InList,
            st.just(Column("i")),
            st.lists(_int_expr(1), min_size=1, max_size=3).map(tuple),
            st.booleans(),
        ),
        st.builds(InList, _str_expr(), str_items, st.booleans()),
        st.builds(IsNull, _num_expr(1) | _str_expr() | st.just(Column("b")), st.booleans()),
        st.just(Column("b")),
    )


conditions = st.recursive(
    _comparison(),
    lambda children: st.one_of(
        st.builds(Binary, st.sampled_from(["and", "or"]), children, children),
        st.builds(
            Binary,
            st.sampled_from(["and", "or"]),
            children,
            st.sampled_from([NULL, Literal(True, FieldType.BOOLEAN), Literal(False, FieldType.BOOLEAN)]),
        ),
        st.builds(Unary, st.just("not"), children),
    ),
    max_leaves=6,
)

_COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def reference(node: Node, row: dict[str, Any]) -> Any:
    """The obvious row-at-a-time meaning of a tree, with None as SQL's null."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Column):
        return row[node.name]
    if isinstance(node, Unary):
        v = reference(node.operand, row)
        if v is None:
            return None
        return (not v) if node.op == "not" else -v
    if isinstance(node, IsNull):
        v = reference(node.operand, row)
        return (v is not None) if node.negated else (v is None)
    if isinstance(node, InList):
        v = reference(node.operand, row)
        items = [reference(item, row) for item in node.items]
        if v is None:
            found = None
        elif any(item is not None and item == v for item in items):
            found = True
        elif any(item is None for item in items):
            found = None
        else:
            found = False
        return found if found is None or not node.negated else not found
    assert isinstance(node, Binary)
    left, right = reference(node.left, row), reference(node.right, row)
    if node.op == "and":
        if left is False or right is False:
            return False
        return None if left is None or right is None else True
    if node.op == "or":
        if left is True or right is True:
            return True
        return None if left is None or right is None else False
    if left is None or right is None:
        return None
    if node.op in _COMPARE:
        return _COMPARE[node.op](left, right)
    if node.op == "/":
        return None if right == 0 else float(left) / float(right)
    if node.op == "%":
        return None if right == 0 else left % right
    return {"+": operator.add, "-": operator.sub, "*": operator.mul}[node.op](left, right)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditions, _rows)
def test_compiled_filter_matches_row_by_row_reference(condition: Node, rows: list[tuple[Any, ...]]) -> None:
    table = pa.Table.from_pylist(
        [dict(zip(_TABLE_SCHEMA.names, r, strict=True)) for r in rows], schema=_TABLE_SCHEMA
    )
    schema = StreamSchema.from_arrow("t", _TABLE_SCHEMA)
    assert typecheck(condition, schema) == FieldType.BOOLEAN
    expected = [reference(condition, row) for row in table.to_pylist()]
    assert evaluate(condition, table, schema).to_pylist() == expected, format_expr(condition)
    kept = filter_table(condition, table, schema).to_pylist()
    assert kept == [row for row, keep in zip(table.to_pylist(), expected, strict=True) if keep is True]
    # The same condition written as text and parsed again means the same.
    assert evaluate(parse(format_expr(condition)), table, schema).to_pylist() == expected
