"""The expression language's functions: typing, values (nulls included), errors with position and hint."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.dataplane import FieldType, StreamSchema
from apps.transformations.expressions import (
    FUNCTIONS,
    Call,
    Case,
    Column,
    ExpressionError,
    Literal,
    evaluate,
    filter_table,
    format_expr,
    parse,
    typecheck,
)

UTC = dt.UTC
RUN_START = dt.datetime(2014, 1, 1, 12, tzinfo=UTC)
TABLE = pa.table(
    {
        "s": pa.array([" Abc ", None, "héllo", ""], pa.string()),
        "i": pa.array([7, -2, None, 0], pa.int64()),
        "f": pa.array([2.5, None, -2.5, 16.0], pa.float64()),
        "b": pa.array([True, None, False, True]),
        "d": pa.array([dt.date(2013, 1, 31), None, dt.date(2013, 3, 1), dt.date(2012, 12, 31)]),
        "ts": pa.array(
            [
                dt.datetime(2013, 1, 1, 5, 30, tzinfo=UTC),
                None,
                dt.datetime(2013, 2, 1, 23, tzinfo=UTC),
                dt.datetime(2013, 12, 31, 23, 59, tzinfo=UTC),
            ],
            pa.timestamp("us", tz="UTC"),
        ),
    }
)
SCHEMA = StreamSchema.from_arrow("t", TABLE.schema)


def values(text: str) -> list[Any]:
    return evaluate(parse(text), TABLE, SCHEMA, now=RUN_START).to_pylist()


CASES: list[tuple[str, FieldType, list[Any]]] = [
    # text
    ("lower(s)", FieldType.STRING, [" abc ", None, "héllo", ""]),
    ("upper(s)", FieldType.STRING, [" ABC ", None, "HÉLLO", ""]),
    ("length(s)", FieldType.INTEGER, [5, None, 5, 0]),
    ("trim(s)", FieldType.STRING, ["Abc", None, "héllo", ""]),
    ("substr(s, 2, 3)", FieldType.STRING, ["Abc", None, "éll", ""]),
    ("substr(s, 4)", FieldType.STRING, ["c ", None, "lo", ""]),
    ("concat(trim(s), '#', i)", FieldType.STRING, ["Abc#7", "#-2", "héllo#", "#0"]),
    ("contains(s, 'll')", FieldType.BOOLEAN, [False, None, True, False]),
    ("starts_with(s, 'hé')", FieldType.BOOLEAN, [False, None, True, False]),
    ("ends_with(trim(s), 'c')", FieldType.BOOLEAN, [True, None, False, False]),
    ("replace(s, 'l', 'L')", FieldType.STRING, [" Abc ", None, "héLLo", ""]),
    # math
    ("abs(i)", FieldType.INTEGER, [7, 2, None, 0]),
    ("abs(f)", FieldType.NUMBER, [2.5, None, 2.5, 16.0]),
    ("round(f)", FieldType.NUMBER, [3.0, None, -3.0, 16.0]),  # half away from zero, as SQL
    ("round(f / 3, 2)", FieldType.NUMBER, [0.83, None, -0.83, 5.33]),
    ("round(i, -1)", FieldType.INTEGER, [10, 0, None, 0]),
    ("floor(f)", FieldType.NUMBER, [2.0, None, -3.0, 16.0]),
    ("ceil(f)", FieldType.NUMBER, [3.0, None, -2.0, 16.0]),
    ("floor(i)", FieldType.INTEGER, [7, -2, None, 0]),
    ("sqrt(f)", FieldType.NUMBER, [2.5**0.5, None, None, 4.0]),  # negative → null
    ("pow(i, 2)", FieldType.NUMBER, [49.0, 4.0, None, 0.0]),
    ("least(i, f)", FieldType.NUMBER, [2.5, -2.0, -2.5, 0.0]),  # nulls skipped
    ("greatest(i, 3)", FieldType.INTEGER, [7, 3, 3, 3]),
    # dates
    ("year(d)", FieldType.INTEGER, [2013, None, 2013, 2012]),
    ("month(ts)", FieldType.INTEGER, [1, None, 2, 12]),
    ("day(d)", FieldType.INTEGER, [31, None, 1, 31]),
    ("hour(ts)", FieldType.INTEGER, [5, None, 23, 23]),
    (
        "date_trunc('month', d)",
        FieldType.DATE,
        [dt.date(2013, 1, 1), None, dt.date(2013, 3, 1), dt.date(2012, 12, 1)],
    ),
    (
        "date_trunc('hour', ts)",
        FieldType.DATETIME,
        [
            dt.datetime(2013, 1, 1, 5, tzinfo=UTC),
            None,
            dt.datetime(2013, 2, 1, 23, tzinfo=UTC),
            dt.datetime(2013, 12, 31, 23, tzinfo=UTC),
        ],
    ),
    ("date_diff('day', d, date_trunc('year', d))", FieldType.INTEGER, [-30, None, -59, -365]),
    ("date_diff('month', ts, now())", FieldType.INTEGER, [12, None, 11, 1]),
    ("date_diff('hour', ts, now())", FieldType.INTEGER, [8767, None, 8005, 13]),
    ("now() > ts", FieldType.BOOLEAN, [True, None, True, True]),
    # nulls
    ("coalesce(i, 0)", FieldType.INTEGER, [7, -2, 0, 0]),
    ("coalesce(f, i, 1)", FieldType.NUMBER, [2.5, -2.0, -2.5, 16.0]),
    ("is_null(s)", FieldType.BOOLEAN, [False, True, False, False]),
    ("nullif(s, '')", FieldType.STRING, [" Abc ", None, "héllo", None]),
    ("nullif(i, 0)", FieldType.INTEGER, [7, -2, None, None]),
    # conditions: a null condition is false, as in SQL
    ("if(i > 0, 'pos', 'not')", FieldType.STRING, ["pos", "not", "not", "not"]),
    ("if(b, i, f)", FieldType.NUMBER, [7.0, None, -2.5, 0.0]),
    ("if(b, null, 1)", FieldType.INTEGER, [None, 1, 1, None]),
    (
        "case when i > 0 then 'pos' when i < 0 then 'neg' else 'zero or null' end",
        FieldType.STRING,
        ["pos", "neg", "zero or null", "zero or null"],
    ),
    ("case when b then f end", FieldType.NUMBER, [2.5, None, None, 16.0]),
    # functions compose with the rest of the language
    ("length(trim(s)) > 3 and not is_null(i)", FieldType.BOOLEAN, [False, None, False, False]),
    ("upper(substr(trim(s), 1, 1)) in ('A', 'H')", FieldType.BOOLEAN, [True, None, True, False]),
]


@pytest.mark.parametrize(("text", "expected_type", "expected"), CASES)
def test_function_types_and_values(text: str, expected_type: FieldType, expected: list[Any]) -> None:
    node = parse(text)
    assert typecheck(node, SCHEMA) == expected_type
    got = values(text)
    if expected_type == FieldType.NUMBER:
        assert [None if v is None else round(v, 6) for v in got] == [
            None if v is None else round(v, 6) for v in expected
        ]
    else:
        assert got == expected
    assert parse(format_expr(node)) == node


def test_every_function_is_covered() -> None:
    used = {n for text, _, _ in CASES for n in FUNCTIONS if f"{n}(" in text}
    assert used == set(FUNCTIONS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lowr(s)", "unknown function 'lowr' at 1:1, did you mean 'lower'?"),
        ("s = uper(s)", "unknown function 'uper' at 1:5, did you mean 'upper'?"),
        ("frobnicate(s)", "unknown function 'frobnicate' at 1:1"),
        ("lower(i)", "argument 1 of 'lower' must be text, got integer column 'i' at 1:7, usage: lower(text)"),
        ("substr(s, 0)", "substr counts characters from 1 at 1:11"),
        ("substr(s, i)", "argument 2 of 'substr' must be a whole number written out (a literal) at 1:11"),
        ("contains(s, s)", "argument 2 of 'contains' must be text written out (a literal) at 1:13"),
        ("abs(s)", "argument 1 of 'abs' must be a number, got string column 's' at 1:5"),
        ("least(s, 1)", "'least' cannot mix string column 's' with integer 1 at 1:10"),
        (
            "greatest(d, '2013-02-01')",
            "'greatest' cannot mix date column 'd' with string '2013-02-01' at 1:13",
        ),
        ("hour(d)", "argument 1 of 'hour' must be a datetime, got date column 'd' at 1:6"),
        ("date_trunc('mnth', d)", "unknown unit 'mnth' for 'date_trunc' at 1:12, did you mean 'month'?"),
        ("date_trunc('hour', d)", "a date has no hours at 1:12"),
        ("date_diff('day', d, ts)", "date_diff needs two dates or two datetimes at 1:1"),
        ("if(i, 1, 2)", "'if' needs a condition (true or false), got integer column 'i' at 1:4"),
        ("if(b, 's', 1)", "'if' cannot mix string 's' with integer 1 at 1:12"),
        (
            "case when i then 1 end",
            "'when' needs a condition (true or false), got integer column 'i' at 1:11",
        ),
        ("case when b then 1 else 'x' end", "'case' cannot mix integer 1 with string 'x' at 1:25"),
        ("now(1)", "'now' takes 0 argument(s), got 1 at 1:1"),
        ("nullif(s, 1)", "cannot compare string column 's' with integer 1 at 1:1"),
        ("coalesce(null)", "the expression is always null at 1:1"),
    ],
)
def test_function_errors_give_position_and_reason(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        typecheck(parse(text), SCHEMA)
    assert str(caught.value).startswith(message)


def test_now_is_the_run_start_for_every_batch() -> None:
    node = parse("date_diff('day', ts, now())")
    first = evaluate(node, TABLE, SCHEMA, now=RUN_START).to_pylist()
    again = evaluate(node, TABLE.slice(2), SCHEMA, now=RUN_START).to_pylist()
    assert first[2:] == again == [334, 1]


def test_filter_with_functions_keeps_true_rows_only() -> None:
    kept = filter_table(parse("coalesce(i, 0) >= 0 and length(trim(s)) >= 0"), TABLE, SCHEMA)
    assert kept.column("i").to_pylist() == [7, None, 0]


# Row-by-row reference for a few functions on random rows (the compiled form must agree).

_ROWS = st.lists(
    st.tuples(
        st.none() | st.integers(-50, 50),
        st.none() | st.sampled_from([-2.5, -0.5, 0.0, 0.5, 1.5, 2.5, 10.25]),
        st.none() | st.sampled_from(["", "a", " b ", "Ab", "héllo"]),
    ),
    max_size=10,
)
_FSCHEMA = pa.schema([("i", pa.int64()), ("f", pa.float64()), ("s", pa.string())])


def _ref(name: str, row: dict[str, Any]) -> Any:
    i, f, s = row["i"], row["f"], row["s"]
    if name == "coalesce(i, 0)":
        return 0 if i is None else i
    if name == "abs(i)":
        return None if i is None else abs(i)
    if name == "greatest(i, f)":
        present = [v for v in (i, f) if v is not None]
        return float(max(present)) if present else None
    if name == "length(trim(s))":
        return None if s is None else len(s.strip())
    if name == "if(i > 0, s, 'none')":
        return s if i is not None and i > 0 else "none"
    if name == "case when f < 0 then -1 when f > 0 then 1 else 0 end":
        return -1 if f is not None and f < 0 else (1 if f is not None and f > 0 else 0)
    if name == "nullif(upper(s), 'AB')":
        return None if s is None or s.upper() == "AB" else s.upper()
    raise AssertionError(name)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(
        [
            "coalesce(i, 0)",
            "abs(i)",
            "greatest(i, f)",
            "length(trim(s))",
            "if(i > 0, s, 'none')",
            "case when f < 0 then -1 when f > 0 then 1 else 0 end",
            "nullif(upper(s), 'AB')",
        ]
    ),
    _ROWS,
)
def test_functions_match_a_row_by_row_reference(text: str, rows: list[tuple[Any, ...]]) -> None:
    table = pa.Table.from_pylist([dict(zip(_FSCHEMA.names, r, strict=True)) for r in rows], schema=_FSCHEMA)
    got = evaluate(parse(text), table, StreamSchema.from_arrow("t", _FSCHEMA)).to_pylist()
    assert got == [_ref(text, row) for row in table.to_pylist()]


def test_call_and_case_nodes_round_trip() -> None:
    tree = Case(((Call("is_null", (Column("a"),)), Literal(1, FieldType.INTEGER)),), Column("b"))
    assert parse(format_expr(tree)) == tree
    assert format_expr(tree) == "case when is_null(a) then 1 else b end"
