"""Profiles checked against pandas on the same data, computed over several batches and merged."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.transformations.profiling import DISTINCT_EXACT_LIMIT, Distinct, StreamProfiler, profile_table

SCHEMA = StreamSchema(
    name="flights",
    fields=(
        Field("dep_delay", FieldType.NUMBER),
        Field("flight", FieldType.INTEGER),
        Field("carrier", FieldType.STRING),
        Field("day", FieldType.DATE),
        Field("at", FieldType.DATETIME),
        Field("cancelled", FieldType.BOOLEAN),
    ),
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 24_000
    delay = rng.normal(12, 40, n).round(1)
    delay[rng.random(n) < 0.1] = np.nan
    carriers = rng.choice(["UA", "AA", "B6", "DL", "WN"], n, p=[0.4, 0.25, 0.2, 0.1, 0.05]).astype(object)
    carriers[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "dep_delay": delay,
            "flight": rng.integers(1, 3000, n),
            "carrier": carriers,
            "day": pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "at": pd.Timestamp("2013-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
            "cancelled": rng.random(n) < 0.02,
        }
    )


@pytest.fixture(scope="module")
def table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=SCHEMA.arrow_schema(), preserve_index=False)


def profiled(table: pa.Table, batch_rows: int = 5_000) -> dict[str, dict]:
    profiler = StreamProfiler(SCHEMA)
    for offset in range(0, table.num_rows, batch_rows):
        profiler.add(table.slice(offset, batch_rows))
    result = profiler.to_dict()
    assert (result["rows"], result["complete"]) == (table.num_rows, True)
    return {c["name"]: c for c in result["columns"]}


def test_numbers_match_pandas(frame: pd.DataFrame, table: pa.Table) -> None:
    columns = profiled(table)
    for name in ("dep_delay", "flight"):
        got, series = columns[name], frame[name]
        assert got["rows"] == len(series)
        assert got["nulls"] == series.isna().sum()
        assert got["null_share"] == pytest.approx(series.isna().mean(), abs=1e-6)
        assert got["distinct"] == series.nunique()
        assert got["distinct_exact"] is True
        assert got["min"] == series.min() and got["max"] == series.max()
        assert got["mean"] == pytest.approx(series.mean(), rel=1e-12)
        assert got["stddev"] == pytest.approx(series.std(), rel=1e-9)  # sample deviation, as pandas
        edges, counts = got["histogram"]["edges"], got["histogram"]["counts"]
        assert len(counts) == len(edges) - 1 <= 20
        widths = np.diff(edges)
        assert np.allclose(widths, widths[0])  # equal width
        assert counts == np.histogram(series.dropna(), bins=edges)[0].tolist()
        assert sum(counts) == series.notna().sum()


def test_top_values_text_and_booleans_match_pandas(frame: pd.DataFrame, table: pa.Table) -> None:
    columns = profiled(table)
    carrier = columns["carrier"]
    expected = frame["carrier"].value_counts()
    assert carrier["top_values"] == [{"value": k, "count": int(v)} for k, v in expected.items()]
    assert carrier["top_exact"] is True
    assert carrier["distinct"] == 5
    assert carrier["null_share"] == pytest.approx(frame["carrier"].isna().mean(), abs=1e-6)
    assert "min" not in carrier and "histogram" not in carrier
    flags = columns["cancelled"]
    assert flags["top_values"] == [
        {"value": k, "count": int(v)} for k, v in frame["cancelled"].value_counts().items()
    ]
    flight_top = columns["flight"]["top_values"]
    counts = frame["flight"].value_counts()
    assert [t["count"] for t in flight_top] == counts.head(10).tolist()
    assert columns["flight"]["top_exact"] is True


def test_top_values_say_when_they_are_approximate() -> None:
    # More distinct values than candidates kept: the heavy hitters still come first, flagged inexact.
    values = np.concatenate([np.arange(30_000), np.full(500, 7), np.full(300, 8)])
    profiler = StreamProfiler()
    for chunk in np.array_split(values, 6):
        profiler.add(pa.table({"k": chunk}))
    (column,) = profiler.to_dict()["columns"]
    assert column["top_exact"] is False
    assert column["top_values"][:2] == [{"value": 7, "count": 501}, {"value": 8, "count": 301}]


def test_dates_and_datetimes_have_bounds_mean_and_deviation(frame: pd.DataFrame, table: pa.Table) -> None:
    columns = profiled(table)
    day, at = columns["day"], columns["at"]
    assert day["min"] == frame["day"].min().date().isoformat()
    assert day["max"] == frame["day"].max().date().isoformat()
    assert day["distinct"] == frame["day"].nunique()
    seconds = (frame["day"] - pd.Timestamp("1970-01-01")).dt.total_seconds()
    assert day["mean"] == dt.datetime.fromtimestamp(seconds.mean(), tz=dt.UTC).date().isoformat()
    assert day["stddev"] == pytest.approx(seconds.std(), rel=1e-9)
    assert day["stddev_unit"] == "seconds"
    assert at["min"] == frame["at"].min().isoformat() and at["max"] == frame["at"].max().isoformat()
    at_seconds = (frame["at"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    assert at["stddev"] == pytest.approx(at_seconds.std(), rel=1e-9)
    assert "histogram" not in at


def test_merged_partials_equal_one_pass(table: pa.Table) -> None:
    whole = StreamProfiler(SCHEMA)
    whole.add(table)
    left, right = StreamProfiler(SCHEMA), StreamProfiler(SCHEMA)
    left.add(table.slice(0, 9_000))
    right.add(table.slice(9_000))
    left.merge(right)
    one, two = whole.to_dict(), left.to_dict()
    for a, b in zip(one["columns"], two["columns"], strict=True):
        for key in ("rows", "nulls", "distinct", "top_values", "min", "max", "histogram"):
            assert a.get(key) == b.get(key), (a["name"], key)
        if a.get("mean") is not None and isinstance(a["mean"], float):
            assert a["mean"] == pytest.approx(b["mean"], rel=1e-12)
            assert a["stddev"] == pytest.approx(b["stddev"], rel=1e-9)


def test_a_row_cap_profiles_the_first_rows_and_says_so(table: pa.Table) -> None:
    profiler = StreamProfiler(SCHEMA, row_cap=7_000)
    for offset in range(0, table.num_rows, 5_000):
        profiler.add(table.slice(offset, 5_000))
    result = profiler.to_dict()
    assert (result["rows"], result["complete"], result["row_cap"]) == (7_000, False, 7_000)
    assert result["columns"][1]["rows"] == 7_000
    capped_mean = result["columns"][1]["mean"]
    assert capped_mean == pytest.approx(table.slice(0, 7_000).column("flight").to_pandas().mean())


def test_distinct_turns_approximate_past_the_exact_limit() -> None:
    exact = Distinct()
    exact.add_hashes(pd.util.hash_array(np.arange(DISTINCT_EXACT_LIMIT)))
    assert (exact.count(), exact.is_exact) == (DISTINCT_EXACT_LIMIT, True)

    sketch = Distinct()
    for start in range(0, 400_000, 50_000):
        values = np.arange(start, start + 50_000)
        sketch.add_hashes(pd.util.hash_array(np.concatenate([values, values[:1000]])))  # repeats too
    assert not sketch.is_exact
    assert sketch.count() == pytest.approx(400_000, rel=0.03)  # 2^14 registers: ~0.8 % standard error

    other = Distinct()
    other.add_hashes(pd.util.hash_array(np.arange(300_000, 500_000)))
    sketch.merge(other)
    assert sketch.count() == pytest.approx(500_000, rel=0.03)


def test_empty_and_all_null_columns() -> None:
    empty = profile_table(SCHEMA.arrow_schema().empty_table(), SCHEMA)
    assert empty["rows"] == 0
    nulls = pa.table({"x": pa.array([None, None], pa.float64())})
    (column,) = profile_table(nulls)["columns"]
    assert column == {
        "name": "x",
        "type": "number",
        "rows": 2,
        "nulls": 2,
        "null_share": 1.0,
        "distinct": 0,
        "distinct_exact": True,
        "top_values": [],
        "top_exact": True,
        "min": None,
        "max": None,
        "mean": None,
        "stddev": None,
        "stddev_unit": None,
        "histogram": None,
    }
