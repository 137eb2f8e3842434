"""What an expression may build: text capped per value and per batch, refused at check time when the
written-out texts prove it and before the kernel runs when the data does, at the expression's position."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from aggregator.dataplane import StreamSchema
from apps.transformations import expressions
from apps.transformations.expressions import ExpressionError, ExpressionLimitError, evaluate, parse
from apps.transformations.steps import StepError

from ._helpers import apply


def x(n: int) -> str:
    return "'" + "x" * n + "'"


# The expression of the report: each replace() with an empty pattern put its text between every two
# characters, and Arrow's kernel never stopped doing so.
REPORTED = f"replace(replace(replace(replace(carrier,'',{x(62)}),'',{x(48)}),'',{x(39)}),'',{x(36)})"
FLIGHTS = StreamSchema.from_arrow("flights", pa.schema([("carrier", pa.string()), ("n", pa.int64())]))


def check_error(text: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        expressions.check(parse(text), FLIGHTS)
    return caught.value


# --- at check time: what the written-out texts alone prove -------------------------------------------


def test_the_reported_expression_is_refused_at_its_empty_pattern() -> None:
    error = check_error(REPORTED)
    assert error.reason == "the text to replace is empty"
    assert (error.position.line, error.position.col) == (1, 41)  # the first ''
    assert error.hint == "replace(text, 'from', 'to') needs a 'from' to look for"


def test_nested_replacements_that_multiply_every_value_are_refused_at_check_time() -> None:
    text = f"replace(replace(replace(replace(carrier,'x',{x(62)}),'x',{x(48)}),'x',{x(39)}),'x',{x(36)})"
    error = check_error(text)
    assert isinstance(error, ExpressionLimitError)
    assert error.message == (
        "'replace' builds a text of up to 4,178,304 bytes from a one-character value, more than the limit "
        "of 1,048,576 bytes for one value at 1:1, the limit is set by AGGREGATOR_EXPRESSION_MAX_STRING"
    )
    # One level less stays under the limit: each value can still grow, and is checked as it does.
    expressions.check(parse(text.split("(", 1)[1].rsplit(",'x'", 1)[0]), FLIGHTS)


def test_text_built_from_literals_alone_is_refused_where_it_passes_the_limit() -> None:
    text = f"replace(replace(replace({x(10)}, 'x', {x(1000)}), 'x', {x(1000)}), 'x', {x(1000)})"
    error = check_error(text)
    assert error.reason == (
        "'replace' builds a text of up to 10,000,000 bytes, more than the limit of 1,048,576 bytes for one "
        "value"
    )
    assert (error.position.line, error.position.col) == (1, 9)  # the second replace: 10 * 1000 * 1000


def test_concat_adds_up_what_it_joins() -> None:
    grown = f"replace(replace(carrier, 'x', {x(1000)}), 'x', {x(1000)})"  # up to 1,000,000 bytes a character
    expressions.check(parse(grown), FLIGHTS)
    error = check_error(f"concat({grown}, '-', {grown})")
    assert error.reason == (
        "'concat' builds a text of up to 2,000,001 bytes from a one-character value, more than the limit "
        "of 1,048,576 bytes for one value"
    )
    assert (error.position.line, error.position.col) == (1, 1)


@pytest.mark.parametrize(
    "text",
    [
        "concat(carrier, '-', n)",
        "replace(carrier, 'U', 'United ')",
        f"substr(replace(carrier, 'x', {x(2000)}), 1, 100)",
        "if(n > 1, upper(carrier), lower(carrier))",
    ],
)
def test_ordinary_text_functions_are_not_refused(text: str) -> None:
    assert expressions.check(parse(text), FLIGHTS).type is not None


def test_the_limit_is_a_setting(settings: Any) -> None:
    settings.AGGREGATOR_EXPRESSION_MAX_STRING = 1000
    error = check_error(f"concat({x(600)}, {x(600)})")
    assert (
        error.reason
        == "'concat' builds a text of up to 1,200 bytes, more than the limit of 1,000 bytes for one value"
    )


# --- at evaluation: what the data makes of it, refused before the kernel runs --------------------------


def test_a_value_that_would_grow_past_the_limit_is_refused_with_its_row() -> None:
    table = pa.table({"carrier": ["UA", "x" * 200_000, None], "n": [1, 2, 3]})
    with pytest.raises(ExpressionLimitError) as caught:
        evaluate(parse(f"replace(carrier, 'x', {x(10)})"), table)
    assert caught.value.reason == (
        "'replace' would build a text of 2,000,000 bytes (row index 1 of the batch), more than the limit of "
        "1,048,576 bytes for one value"
    )
    with pytest.raises(ExpressionLimitError) as caught:
        evaluate(parse("concat(carrier, carrier, carrier, carrier, carrier, carrier)"), table)
    assert "'concat' would build a text of 1,200,000 bytes (row index 1 of the batch)" in caught.value.reason


def test_text_under_the_limits_is_built_as_before() -> None:
    table = pa.table({"carrier": ["UA", "x" * 200_000, None], "n": [1, 2, 3]})
    values = evaluate(parse("replace(carrier, 'x', 'yy')"), table).to_pylist()
    assert values == ["UA", "y" * 400_000, None]
    assert evaluate(parse("concat(carrier, '-', n)"), table.slice(0, 1)).to_pylist() == ["UA-1"]


def test_a_batch_of_text_past_the_step_budget_is_refused(settings: Any) -> None:
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 100_000
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 1
    table = pa.table({"n": list(range(1000)), "carrier": ["UA"] * 1000})
    for text, name in [
        (x(5000), "the expression"),  # a constant, repeated on every row
        (f"if(n > 1, {x(500)}, carrier)", "'if'"),
        (f"case when n > 1 then {x(500)} else carrier end", "'case'"),
        (f"coalesce(null, {x(500)})", "'coalesce'"),
        (f"concat({x(500)}, n)", "'concat'"),
        (f"replace(carrier, 'U', {x(500)})", "'replace'"),
    ]:
        with pytest.raises(ExpressionLimitError) as caught:
            evaluate(parse(text), table)
        assert caught.value.reason.startswith(f"{name} would build "), caught.value.reason
        assert "of text from this batch of 1,000 rows, more than the step's budget of 97.7 KiB" in (
            caught.value.reason
        )
        assert caught.value.hint == (
            "the budget is set by AGGREGATOR_STEP_OUTPUT_BYTES, AGGREGATOR_STEP_OUTPUT_GROWTH"
        )


def test_derive_reports_a_limit_at_its_expression() -> None:
    table = pa.table({"carrier": ["x" * 300_000]})
    with pytest.raises(StepError) as caught:
        apply("derive", {"column": "z", "expression": f"replace(carrier, 'x', {x(4)})"}, table)
    assert caught.value.field == "config.expression"
    assert "more than the limit of 1,048,576 bytes for one value" in caught.value.message


# --- the editors' check and pipeline validation refuse the same, at the expression -----------------------


@pytest.mark.django_db
def test_expression_check_refuses_amplification_at_its_position(personas: Any, client_for: Any) -> None:
    client = client_for(personas.viewer)
    columns = [{"name": "carrier", "type": "string"}]
    literal = f"replace(replace(replace({x(10)}, 'x', {x(1000)}), 'x', {x(1000)}), 'x', {x(1000)})"
    body = client.post("/api/v1/expressions/check/", {"expression": literal}, format="json").json()
    assert body["valid"] is False
    assert body["error"] == {
        "message": (
            "'replace' builds a text of up to 10,000,000 bytes, more than the limit of 1,048,576 bytes for "
            "one value at 1:9, the limit is set by AGGREGATOR_EXPRESSION_MAX_STRING"
        ),
        "reason": "'replace' builds a text of up to 10,000,000 bytes, more than the limit of 1,048,576 bytes "
        "for one value",
        "hint": "the limit is set by AGGREGATOR_EXPRESSION_MAX_STRING",
        "position": {"line": 1, "column": 9},
    }
    body = client.post(
        "/api/v1/expressions/check/", {"expression": REPORTED, "columns": columns}, format="json"
    ).json()
    assert (body["valid"], body["error"]["reason"], body["error"]["position"]) == (
        False,
        "the text to replace is empty",
        {"line": 1, "column": 41},
    )
