"""Row steps with values: derive, fill_nulls, deduplicate, sort, limit — runners across batches."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.transformations import expressions
from apps.transformations.library.rows import _HashSet
from apps.transformations.steps import StepError, get_step_type

from ._helpers import apply, batches, config_error, run_stream

T = pa.table(
    {
        "k": pa.array(["a", "b", "a", None, "b", None, "c", "a"]),
        "n": pa.array([1, 2, 3, 4, None, 6, 7, 8], pa.int64()),
        "x": pa.array([None, 1.5, None, None, 2.5, None, None, 3.0]),
    }
)
S = StreamSchema.from_arrow("t", T.schema)


def test_derive_adds_or_replaces_a_column_with_the_expression_type() -> None:
    out = apply("derive", {"column": "label", "expression": "if(n > 4, 'big', 'small')"}, T).batch.table
    assert out.column_names == ["k", "n", "x", "label"]
    assert out.column("label").to_pylist() == [
        "small",
        "small",
        "small",
        "small",
        "small",
        "big",
        "big",
        "big",
    ]
    out = apply("derive", {"column": "n", "expression": "n * 1.5"}, T).batch.table
    assert out.column_names == ["k", "n", "x"]
    assert out.column("n").type == pa.float64()
    schema = get_step_type("derive").output_schema({"column": "n", "expression": "n * 1.5"}, [S])
    assert schema.field("n") == Field("n", FieldType.NUMBER)


def test_derive_refuses_reserved_names_and_bad_expressions() -> None:
    assert config_error("derive", {"column": "_ag_run_id", "expression": "1"}).field == "config.column"
    error = config_error("derive", {"column": "y", "expression": "lowr(k)"})
    assert error.field == "config.expression"
    assert "unknown function 'lowr' at 1:1, did you mean 'lower'?" in error.message


def test_derive_now_is_the_runner_start_in_every_batch() -> None:
    step = get_step_type("derive")
    config = step.validate_config({"column": "at", "expression": "now()"})
    runner = step.runner(config, {"t": S})
    from aggregator.dataplane import Batch

    values = [
        row["at"]
        for piece in batches(T, 3)
        for out in runner.feed("t", Batch(piece))
        for row in out.batch.table.to_pylist()
    ]
    assert len(set(values)) == 1
    with expressions.run_clock(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)):
        out = step.apply(config, Batch(T), S).batch.table
    assert set(out.column("at").to_pylist()) == {dt.datetime(2000, 1, 1, tzinfo=dt.UTC)}


def test_fill_nulls_constant_forward_across_batches_and_backward_within_a_batch() -> None:
    config = {"values": {"n": 0}, "forward": ["x"], "backward": ["k"]}
    rows = run_stream("fill_nulls", config, [("t", b) for b in batches(T, 3)], {"t": S})
    assert [r["n"] for r in rows] == [1, 2, 3, 4, 0, 6, 7, 8]
    # forward: the batch [None, None, 2.5] starts with nulls that take 1.5 from the batch before
    assert [r["x"] for r in rows] == [None, 1.5, 1.5, 1.5, 2.5, 2.5, 2.5, 3.0]
    # backward: within each batch of three; the null at the end of batch 2 stays null
    assert [r["k"] for r in rows] == ["a", "b", "a", "b", "b", None, "c", "a"]
    declared = get_step_type("fill_nulls").output_schema(config, [S])
    assert declared.field("n").nullable is False


def test_fill_nulls_config_errors() -> None:
    assert "name at least one column" in config_error("fill_nulls", {}).message
    error = config_error("fill_nulls", {"values": {"x": 0}, "forward": ["x"]})
    assert "column 'x' is in both values and forward" in error.message
    with pytest.raises(StepError) as caught:
        get_step_type("fill_nulls").output_schema({"values": {"n": True}}, [S])
    assert (caught.value.field, caught.value.message) == (
        "config.values.n",
        "True is not a valid integer value for this column",
    )


def test_deduplicate_first_across_batches_keeps_the_first_row_of_each_key() -> None:
    rows = run_stream("deduplicate", {"keys": ["k"]}, [("t", b) for b in batches(T, 2)], {"t": S})
    assert [(r["k"], r["n"]) for r in rows] == [("a", 1), ("b", 2), (None, 4), ("c", 7)]


def test_deduplicate_on_several_keys_and_keep_last() -> None:
    table = pa.table({"a": [1, 1, 2, 1, 2], "b": ["x", "y", "x", "x", None], "v": [1, 2, 3, 4, 5]})
    schema = StreamSchema.from_arrow("t", table.schema)
    first = run_stream(
        "deduplicate", {"keys": ["a", "b"]}, [("t", b) for b in batches(table, 1)], {"t": schema}
    )
    assert [r["v"] for r in first] == [1, 2, 3, 5]
    last = run_stream(
        "deduplicate",
        {"keys": ["a", "b"], "keep": "last"},
        [("t", b) for b in batches(table, 2)],
        {"t": schema},
    )
    assert [r["v"] for r in last] == [2, 3, 4, 5]  # in the order of each key's last row


def test_hash_set_finds_what_was_added_across_levels() -> None:
    import numpy as np

    seen = _HashSet()
    rng = np.random.default_rng(7)
    added = []
    for _ in range(20):
        chunk = np.unique(rng.integers(0, 2**63, 500, dtype=np.uint64))
        chunk = chunk[~seen.contains(chunk)]
        seen.add(chunk)
        added.append(chunk)
    every = np.concatenate(added)
    assert seen.contains(every).all()
    assert len(seen) == len(np.unique(every))
    assert len(seen.levels) < 10  # levels merge as they fill
    assert not seen.contains(np.array([1, 2, 3], dtype=np.uint64)).any()


def test_sort_buffers_the_stream_and_is_stable_with_nulls_last() -> None:
    config = {"keys": [{"column": "x", "descending": True}]}
    rows = run_stream("sort", config, [("t", b) for b in batches(T, 3)], {"t": S})
    assert [r["n"] for r in rows] == [8, None, 2, 1, 3, 4, 6, 7]
    first = run_stream("sort", {**config, "nulls": "first"}, [("t", b) for b in batches(T, 3)], {"t": S})
    assert [r["n"] for r in first] == [1, 3, 4, 6, 7, 8, None, 2]


def test_limit_counts_across_batches() -> None:
    rows = run_stream("limit", {"count": 3, "offset": 2}, [("t", b) for b in batches(T, 2)], {"t": S})
    assert [r["n"] for r in rows] == [3, 4, None]
    assert run_stream("limit", {"count": 0}, [("t", T)], {"t": S}) == []
    assert config_error("limit", {"count": -1}).field == "config.count"
