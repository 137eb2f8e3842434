"""aggregate and pivot: values, across batches (partials combined), nulls, empty input."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aggregator.dataplane import StreamSchema
from apps.transformations.library import aggregate as aggregate_module

from ._helpers import batches, run_stream

T = pa.table(
    {
        "carrier": pa.array(["UA", "AA", "UA", None, "AA", "UA", None]),
        "origin": pa.array(["EWR", "JFK", "EWR", "LGA", None, "JFK", "LGA"]),
        "delay": pa.array([10.0, None, 20.0, 5.0, 7.0, 30.0, None]),
        "n": pa.array([1, 2, 3, 4, 5, 6, 7], pa.int64()),
    }
)
S = StreamSchema.from_arrow("t", T.schema)
AGGS = [
    {"function": "count"},
    {"function": "count", "column": "delay"},
    {"function": "count_distinct", "column": "origin"},
    {"function": "sum", "column": "n"},
    {"function": "mean", "column": "delay"},
    {"function": "min", "column": "origin"},
    {"function": "max", "column": "delay"},
    {"function": "first", "column": "n"},
    {"function": "last", "column": "origin", "name": "last_origin"},
]


@pytest.mark.parametrize("size", [1, 2, 7])
def test_aggregate_by_group_across_batches(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregate_module, "COMPACT_ROWS", 2)  # compact often: combining must be exact
    rows = run_stream(
        "aggregate",
        {"group_by": ["carrier"], "aggregations": AGGS},
        [("t", b) for b in batches(T, size)],
        {"t": S},
    )
    assert rows == [
        {
            "carrier": "UA", "count": 3, "count_delay": 3, "count_distinct_origin": 2, "sum_n": 10,
            "mean_delay": 20.0, "min_origin": "EWR", "max_delay": 30.0, "first_n": 1, "last_origin": "JFK",
        },
        {
            "carrier": "AA", "count": 2, "count_delay": 1, "count_distinct_origin": 1, "sum_n": 7,
            "mean_delay": 7.0, "min_origin": "JFK", "max_delay": 7.0, "first_n": 2, "last_origin": "JFK",
        },
        {
            "carrier": None, "count": 2, "count_delay": 1, "count_distinct_origin": 1, "sum_n": 11,
            "mean_delay": 5.0, "min_origin": "LGA", "max_delay": 5.0, "first_n": 4, "last_origin": "LGA",
        },
    ]  # fmt: skip


def test_global_aggregate_of_nothing_is_one_row() -> None:
    rows = run_stream("aggregate", {"aggregations": AGGS[:5]}, [("t", T.slice(0, 0))], {"t": S})
    assert rows == [
        {"count": 0, "count_delay": 0, "count_distinct_origin": 0, "sum_n": None, "mean_delay": None}
    ]
    rows = run_stream("aggregate", {"aggregations": AGGS[:2]}, [("t", b) for b in batches(T, 3)], {"t": S})
    assert rows == [{"count": 7, "count_delay": 5}]
    grouped = run_stream(
        "aggregate", {"group_by": ["carrier"], "aggregations": AGGS[:1]}, [("t", T.slice(0, 0))], {"t": S}
    )
    assert grouped == []


def test_aggregate_config_errors() -> None:
    from ._helpers import config_error

    assert "sum needs a column" in config_error("aggregate", {"aggregations": [{"function": "sum"}]}).message
    error = config_error("aggregate", {"group_by": ["count"], "aggregations": [{"function": "count"}]})
    assert "two output columns are named 'count'" in error.message


@pytest.mark.parametrize("size", [1, 3, 7])
def test_pivot_makes_a_column_per_value(size: int) -> None:
    config = {
        "index": ["carrier"],
        "column": "origin",
        "values": ["EWR", "JFK", "LGA"],
        "function": "sum",
        "value": "n",
    }
    rows = run_stream("pivot", config, [("t", b) for b in batches(T, size)], {"t": S})
    assert rows == [
        {"carrier": "UA", "EWR": 4, "JFK": 6, "LGA": None},
        {"carrier": "AA", "EWR": None, "JFK": 2, "LGA": None},
        {"carrier": None, "EWR": None, "JFK": None, "LGA": 11},
    ]
    counts = run_stream(
        "pivot", {**config, "function": "count", "value": None, "prefix": "n_"}, [("t", T)], {"t": S}
    )
    assert counts[1] == {"carrier": "AA", "n_EWR": 0, "n_JFK": 1, "n_LGA": 0}
