"""Text and date steps with values, nulls and config errors (RE2 patterns, formats, zones)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from aggregator.dataplane import StreamSchema
from apps.transformations.steps import StepError

from ._helpers import apply, config_error

UTC = dt.UTC
TEXT = pa.table(
    {"s": pa.array(["  Héllo\u00a0 World ", None, "ﬁne\tline", ""]), "j": pa.array(['"x"', None, "1", "[]"])}
)


def values(slug: str, config: dict, table: pa.Table = TEXT, column: str = "s") -> list:
    return apply(slug, config, table).batch.table.column(column).to_pylist()


def test_trim_case_normalize() -> None:
    assert values("trim", {"columns": ["s"]}) == ["Héllo\u00a0 World", None, "ﬁne\tline", ""]
    assert values("trim", {"columns": ["s"], "side": "right", "characters": " e"}) == [
        "  Héllo\u00a0 World",
        None,
        "ﬁne\tlin",
        "",
    ]
    assert values("change_case", {"columns": ["s"], "case": "upper"})[0] == "  HÉLLO\u00a0 WORLD "
    assert values("change_case", {"columns": ["s"], "case": "title"})[2] == "ﬁne\tLine"
    assert values("normalize", {"columns": ["s"], "unicode": "NFKC", "empty_as_null": True}) == [
        "Héllo World",
        None,
        "fine line",
        None,
    ]
    decomposed = pa.table({"s": ["e\u0301"]})
    assert values("normalize", {"columns": ["s"], "whitespace": False}, decomposed) == ["é"]


def test_regex_patterns_are_checked_at_config_time_in_re2_terms() -> None:
    error = config_error("regex_replace", {"columns": ["s"], "pattern": "(?<=a)b", "replacement": ""})
    assert error.field == "config.pattern"
    assert "look-around is not supported" in error.message
    error = config_error("regex_replace", {"columns": ["s"], "pattern": r"(a)\1", "replacement": ""})
    assert "back-references are not supported" in error.message
    assert (
        "missing )"
        in config_error("regex_replace", {"columns": ["s"], "pattern": "(a", "replacement": ""}).message
    )
    error = config_error("regex_extract", {"column": "s", "pattern": r"(\w+)"})
    assert "needs named groups" in error.message


def test_regex_replace_and_extract() -> None:
    config = {"columns": ["s"], "pattern": r"l+", "replacement": "L", "ignore_case": True}
    assert values("regex_replace", config) == ["  HéLo\u00a0 WorLd ", None, "ﬁne\tLine", ""]
    names = pa.table({"s": ["Ada Lovelace", None, "Émile\tZola", "Plato"]})
    config = {"column": "s", "pattern": r"(?P<first>\pL+)\s+(?P<second>\pL+)"}
    out = apply("regex_extract", config, names).batch.table
    assert out.column_names == ["s", "first", "second"]
    assert out.column("first").to_pylist() == ["Ada", None, "Émile", None]
    assert out.column("second").to_pylist() == ["Lovelace", None, "Zola", None]


def test_split_into_columns_and_into_a_json_list() -> None:
    table = pa.table({"route": ["EWR-LAX", "JFK", None, 'a"b-c\\d-e']})
    out = apply("split", {"column": "route", "separator": "-", "into": ["origin", "dest"]}, table).batch.table
    assert out.column("origin").to_pylist() == ["EWR", "JFK", None, 'a"b']
    assert out.column("dest").to_pylist() == ["LAX", None, None, "c\\d"]
    out = apply("split", {"column": "route", "separator": "-", "target": "parts"}, table).batch.table
    assert out.column("parts").to_pylist() == ['["EWR","LAX"]', '["JFK"]', None, '["a\\"b","c\\\\d","e"]']
    import json

    assert json.loads(out.column("parts")[3].as_py()) == ['a"b', "c\\d", "e"]


DATES = pa.table(
    {
        "text": ["01/03/2013 01:30", "10/03/2013 02:30", "bad", None],
        "ts": pa.array(
            [
                dt.datetime(2013, 1, 1, 3, tzinfo=UTC),
                dt.datetime(2013, 7, 15, 22, 45, tzinfo=UTC),
                None,
                None,
            ],
            pa.timestamp("us", tz="UTC"),
        ),
    }
)


def test_parse_datetime_with_format_and_zone() -> None:
    config = {"column": "text", "format": "%d/%m/%Y %H:%M", "timezone": "America/New_York"}
    assert values("parse_datetime", config, DATES, "text") == [
        dt.datetime(2013, 3, 1, 6, 30, tzinfo=UTC),
        dt.datetime(2013, 3, 10, 7, 0, tzinfo=UTC),  # 02:30 does not exist that day: the first instant after
        None,
        None,
    ]
    dates = values("parse_datetime", {**config, "output": "date", "target": "day"}, DATES, "day")
    assert dates == [dt.date(2013, 3, 1), dt.date(2013, 3, 10), None, None]
    with pytest.raises(StepError) as caught:
        apply("parse_datetime", {**config, "on_error": "fail"}, DATES)
    assert (
        caught.value.message == "'bad' does not match the format '%d/%m/%Y %H:%M' (row index 2 of the batch)"
    )
    assert (
        "unknown time zone 'Mars/Olympus'"
        in config_error("parse_datetime", {**config, "timezone": "Mars/Olympus"}).message
    )


def test_convert_truncate_extract() -> None:
    text = values("convert_timezone", {"column": "ts", "timezone": "America/New_York"}, DATES, "ts")
    assert text == ["2012-12-31T22:00:00-05:00", "2013-07-15T18:45:00-04:00", None, None]
    wall = values(
        "convert_timezone", {"column": "ts", "timezone": "Asia/Tokyo", "output": "wall_clock"}, DATES, "ts"
    )
    assert wall[0] == dt.datetime(2013, 1, 1, 12, tzinfo=UTC)
    days = values(
        "truncate_datetime", {"columns": ["ts"], "unit": "day", "timezone": "America/New_York"}, DATES, "ts"
    )
    assert days[:2] == [dt.datetime(2012, 12, 31, 5, tzinfo=UTC), dt.datetime(2013, 7, 15, 4, tzinfo=UTC)]
    weeks = values("truncate_datetime", {"columns": ["ts"], "unit": "week"}, DATES, "ts")
    assert weeks[1] == dt.datetime(2013, 7, 15, tzinfo=UTC)  # a Monday
    out = apply(
        "extract_date_parts",
        {
            "column": "ts",
            "parts": ["year", "quarter", "day_of_week", "hour"],
            "prefix": "",
            "timezone": "Asia/Tokyo",
        },
        DATES,
    ).batch.table
    assert out.select(["year", "quarter", "day_of_week", "hour"]).to_pylist()[:2] == [
        {"year": 2013, "quarter": 1, "day_of_week": 2, "hour": 12},
        {"year": 2013, "quarter": 3, "day_of_week": 2, "hour": 7},
    ]


def test_extract_parts_refuses_to_overwrite() -> None:
    from apps.transformations.steps import get_step_type

    step = get_step_type("extract_date_parts")
    config = {"column": "ts", "parts": ["year", "hour"], "prefix": "te"}
    taken = StreamSchema.from_arrow("t", DATES.append_column("tehour", pa.array([1, 2, 3, 4])).schema)
    with pytest.raises(StepError) as caught:
        step.output_schema(config, [taken])
    assert (caught.value.field, caught.value.message) == (
        "config.parts.1",
        "the column 'tehour' exists already",
    )
    schema = StreamSchema.from_arrow("t", DATES.schema)
    assert step.output_schema(config, [schema]).field_names[-2:] == ["teyear", "tehour"]
