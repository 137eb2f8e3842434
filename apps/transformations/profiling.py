"""Profiles of a stream or a node's output, computed incrementally over batches.

Each column keeps small partial statistics that a batch updates with vectorised numpy / Arrow kernels and
that two partials can `merge` (so a profile can be computed in pieces, by threads or workers, and joined):

- rows and nulls → the null share;
- distinct values: the set of 64-bit hashes of the values is kept exactly up to DISTINCT_EXACT_LIMIT
  values, then folded into a HyperLogLog sketch of 2^14 registers (16 KB a column, standard error
  1.04/√16384 ≈ 0.8 %); the profile says whether the count is exact;
- min / max (numbers, dates, datetimes), mean and sample standard deviation (ddof=1, as pandas) through
  Chan's parallel update of (count, mean, M2) — dates and datetimes in epoch seconds, the mean shown as a
  date/datetime and the deviation in seconds;
- top values: per batch `value_counts`, merged into at most TOP_CANDIDATES candidates; exact while the
  column has no more distinct values than that, otherwise the counts are lower bounds of the true ones
  (values cut early may be under-counted) and the profile says so;
- a histogram of numbers with up to HISTOGRAM_BINS equal-width bins, exact counts: the range starts at
  the first batch's (a power-of-two width, so every edge is exact) and doubles, merging neighbouring
  bins, whenever a value falls outside, so no pass over the data is needed to know the range first.
  Empty bins at either end are trimmed.

Memory per column is bounded (hashes up to the exact limit, the sketch, the candidates), so profiling a
stream of any length holds only the batch at hand.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import FieldType, StreamSchema, field_type_of

# 10,000 hashes are 80 KB a column: exact counts for the usual categorical and key-like columns of a sample.
DISTINCT_EXACT_LIMIT = 10_000
HLL_PRECISION = 14
TOP_CANDIDATES = 10_000
TOP_SHOWN = 10
HISTOGRAM_BINS = 20
# Sources are profiled by default on their first rows only: enough to describe a stream, and the cost of
# profiling (hashing every value) stays a small share of a large run.
SOURCE_PROFILE_ROWS = 100_000

_NUMERIC = (FieldType.INTEGER, FieldType.NUMBER)
_TEMPORAL = (FieldType.DATE, FieldType.DATETIME)


def _hash_values(values: pa.Array) -> np.ndarray:
    """64-bit hashes of non-null values (pandas' hashing: siphash for text, a mixer for numbers)."""
    if pa.types.is_date(values.type) or pa.types.is_timestamp(values.type):
        values = values.cast(pa.int32() if pa.types.is_date32(values.type) else pa.int64())
    array = values.to_numpy(zero_copy_only=False)
    if array.dtype == object:
        return pd.util.hash_array(array, categorize=False)
    return pd.util.hash_array(np.ascontiguousarray(array))


class Distinct:
    """Exact distinct count up to DISTINCT_EXACT_LIMIT, then a HyperLogLog estimate."""

    def __init__(self) -> None:
        self.exact: np.ndarray | None = np.empty(0, dtype=np.uint64)
        self.registers: np.ndarray | None = None

    def add_hashes(self, hashes: np.ndarray) -> None:
        if self.exact is not None:
            self.exact = np.union1d(self.exact, hashes)
            if len(self.exact) > DISTINCT_EXACT_LIMIT:
                self._to_sketch()
            return
        self._sketch(hashes)

    def _to_sketch(self) -> None:
        self.registers = np.zeros(1 << HLL_PRECISION, dtype=np.uint8)
        assert self.exact is not None
        self._sketch(self.exact)
        self.exact = None

    def _sketch(self, hashes: np.ndarray) -> None:
        assert self.registers is not None
        p = HLL_PRECISION
        index = (hashes >> np.uint64(64 - p)).astype(np.intp)
        rest = (hashes << np.uint64(p)) >> np.uint64(p)  # the low 64-p bits
        # rank = leading zeros of `rest` within 64-p bits, plus one (64-p+1 when rest is zero).
        bits = np.zeros(len(rest), dtype=np.int64)
        nonzero = rest > 0
        bits[nonzero] = np.floor(np.log2(rest[nonzero].astype(np.float64))).astype(np.int64) + 1
        rank = ((64 - p) - bits + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def merge(self, other: Distinct) -> None:
        if other.exact is not None:
            self.add_hashes(other.exact)
            return
        if self.registers is None:
            self._to_sketch()
        assert self.registers is not None and other.registers is not None
        np.maximum(self.registers, other.registers, out=self.registers)

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    def count(self) -> int:
        if self.exact is not None:
            return len(self.exact)
        assert self.registers is not None
        m = float(len(self.registers))
        alpha = 0.7213 / (1 + 1.079 / m)
        estimate = alpha * m * m / float(np.sum(np.power(2.0, -self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)  # linear counting for small cardinalities
        return round(estimate)


@dataclass
class Moments:
    """Count, mean and M2 (sum of squared deviations), merged by Chan et al.'s parallel formula."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        other = Moments(len(values), float(values.mean()), float(((values - values.mean()) ** 2).sum()))
        self.merge(other)

    def merge(self, other: Moments) -> None:
        if not other.n:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n

    @property
    def stddev(self) -> float | None:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None


class Histogram:
    """Equal-width bins whose range doubles as values outside it arrive; counts stay exact."""

    def __init__(self, bins: int = HISTOGRAM_BINS) -> None:
        self.bins = bins
        self.lo: float | None = None
        self.width = 1.0
        self.counts = np.zeros(bins, dtype=np.int64)

    def edges(self) -> np.ndarray:
        assert self.lo is not None
        return self.lo + np.arange(self.bins + 1) * self.width

    def _grow_right(self) -> None:
        self.counts = np.add.reduceat(self.counts, np.arange(0, self.bins, 2))
        self.counts = np.concatenate([self.counts, np.zeros(self.bins // 2, dtype=np.int64)])
        self.width *= 2

    def _grow_left(self) -> None:
        assert self.lo is not None
        merged = np.add.reduceat(self.counts, np.arange(0, self.bins, 2))
        self.counts = np.concatenate([np.zeros(self.bins // 2, dtype=np.int64), merged])
        self.lo -= self.bins * self.width
        self.width *= 2

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        if not len(values):
            return
        low, high = float(values.min()), float(values.max())
        if self.lo is None:
            # A power-of-two width and a start on a multiple of it make every edge an exact binary
            # fraction, before and after any doubling: a value on an edge always lands in the same bin.
            spread = (high - low) / self.bins
            self.width = 2.0 ** math.ceil(math.log2(spread)) if spread > 0 else 1.0
            self.lo = math.floor(low / self.width) * self.width
        while low < self.lo:
            self._grow_left()
        while high > self.lo + self.bins * self.width:
            self._grow_right()
        # The bin of each value as numpy.histogram finds it (the last bin closed on the right).
        index = np.searchsorted(self.edges(), values, side="right") - 1
        index = index.clip(0, self.bins - 1)
        self.counts += np.bincount(index, weights=weights, minlength=self.bins).astype(np.int64)

    def merge(self, other: Histogram) -> None:
        if other.lo is None:
            return
        centres = other.edges()[:-1] + other.width / 2
        nonzero = other.counts > 0
        self.add(centres[nonzero], other.counts[nonzero].astype(np.float64))

    def to_dict(self) -> dict[str, Any] | None:
        if self.lo is None:
            return None
        # Empty bins at either end only widen the picture; trim them.
        used = np.flatnonzero(self.counts)
        first, last = int(used[0]), int(used[-1])
        edges = self.edges()[first : last + 2]
        return {"edges": [float(e) for e in edges], "counts": [int(c) for c in self.counts[first : last + 1]]}


class TopValues:
    """The most frequent values, kept as an Arrow table of at most TOP_CANDIDATES candidates."""

    # Batch counts wait until this many (value, count) rows pile up before one merge: a group-by per batch
    # costs more than the counting itself on columns of a few thousand values. Bounded, so a column holds
    # at most this plus TOP_CANDIDATES rows of counts.
    PENDING_ROWS = 50_000

    def __init__(self) -> None:
        self.table: pa.Table | None = None
        self.exact = True
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def add(self, values: pa.Array) -> None:
        if len(values):
            self.add_counts(pc.value_counts(values))

    def add_counts(self, counts: pa.StructArray) -> None:
        """A batch's `value_counts` (computed once by the column, which also hashes its distinct values)."""
        part = pa.table({"value": counts.field("values"), "count": counts.field("counts").cast(pa.int64())})
        self.pending.append(part)
        self.pending_rows += part.num_rows
        if self.pending_rows >= self.PENDING_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            parts, self.pending, self.pending_rows = self.pending, [], 0
            # One batch's value_counts has each value once; several need summing.
            self._merge_table(pa.concat_tables(parts), grouped=len(parts) == 1)

    def _merge_table(self, part: pa.Table, *, grouped: bool = True) -> None:
        if self.table is not None:
            part = pa.concat_tables([self.table, part])
            grouped = False
        if not grouped:
            part = part.group_by("value").aggregate([("count", "sum")]).rename_columns(["value", "count"])
        if part.num_rows > TOP_CANDIDATES:
            self.exact = False
        part = part.sort_by([("count", "descending"), ("value", "ascending")])
        self.table = part.slice(0, TOP_CANDIDATES)

    def merge(self, other: TopValues) -> None:
        self.exact = self.exact and other.exact
        other._flush()
        self._flush()
        if other.table is not None:
            self._merge_table(other.table)

    def top(self, n: int = TOP_SHOWN) -> list[dict[str, Any]]:
        self._flush()
        if self.table is None:
            return []
        return [
            {"value": _plain(r["value"]), "count": r["count"]} for r in self.table.slice(0, n).to_pylist()
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@dataclass
class ColumnProfile:
    name: str
    type: FieldType
    rows: int = 0
    nulls: int = 0
    distinct: Distinct = field(default_factory=Distinct)
    moments: Moments = field(default_factory=Moments)
    histogram: Histogram = field(default_factory=Histogram)
    top: TopValues = field(default_factory=TopValues)
    min: Any = None
    max: Any = None

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        self.rows += len(column)
        self.nulls += column.null_count
        values = pc.drop_null(column)
        if not len(values):
            return
        # Arrow's hash table finds the batch's distinct values once: the counts feed the top values, and
        # only the distinct values are hashed for the distinct count (far fewer on most columns).
        counts = pc.value_counts(values)
        self.distinct.add_hashes(_hash_values(counts.field("values")))
        self.top.add_counts(counts)
        if self.type in _NUMERIC or self.type in _TEMPORAL:
            low_high = pc.min_max(values).as_py()
            self._bounds(low_high["min"], low_high["max"])
        if self.type in _NUMERIC:
            numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
            finite = numbers[np.isfinite(numbers)]
            self.moments.add(finite)
            self.histogram.add(finite)
        elif self.type in _TEMPORAL:
            self.moments.add(_epoch_seconds(values))

    def _bounds(self, low: Any, high: Any) -> None:
        if low is not None and (self.min is None or low < self.min):
            self.min = low
        if high is not None and (self.max is None or high > self.max):
            self.max = high

    def merge(self, other: ColumnProfile) -> None:
        self.rows += other.rows
        self.nulls += other.nulls
        self.distinct.merge(other.distinct)
        self.top.merge(other.top)
        self.moments.merge(other.moments)
        self.histogram.merge(other.histogram)
        self._bounds(other.min, other.max)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": str(self.type),
            "rows": self.rows,
            "nulls": self.nulls,
            "null_share": round(self.nulls / self.rows, 6) if self.rows else None,
            "distinct": self.distinct.count(),
            "distinct_exact": self.distinct.is_exact,
            "top_values": self.top.top(),
            "top_exact": self.top.exact,
        }
        if self.type in _NUMERIC or self.type in _TEMPORAL:
            mean = self.moments.mean if self.moments.n else None
            out["min"], out["max"] = _plain(self.min), _plain(self.max)
            if self.type in _TEMPORAL and mean is not None:
                mean_at = dt.datetime.fromtimestamp(mean, tz=dt.UTC)
                out["mean"] = (mean_at.date() if self.type == FieldType.DATE else mean_at).isoformat()
            else:
                out["mean"] = mean
            out["stddev"] = self.moments.stddev
            out["stddev_unit"] = "seconds" if self.type in _TEMPORAL else None
        if self.type in _NUMERIC:
            out["histogram"] = self.histogram.to_dict()
        return out


def _epoch_seconds(values: pa.Array) -> np.ndarray:
    if pa.types.is_date(values.type):
        return values.cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.float64) * 86400.0
    micros = values.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6


class StreamProfiler:
    """The profile of a stream's batches, of its first `row_cap` rows when a cap is given."""

    def __init__(self, schema: StreamSchema | None = None, *, row_cap: int | None = None) -> None:
        self.types = {f.name: f.type for f in schema.fields} if schema is not None else {}
        self.row_cap = row_cap
        self.rows = 0
        self.truncated = False
        self.columns: dict[str, ColumnProfile] = {}

    @property
    def full(self) -> bool:
        return self.row_cap is not None and self.rows >= self.row_cap

    def add(self, table: pa.Table) -> None:
        if self.full:
            self.truncated = self.truncated or table.num_rows > 0
            return
        if self.row_cap is not None and self.rows + table.num_rows > self.row_cap:
            table = table.slice(0, self.row_cap - self.rows)
            self.truncated = True
        self.rows += table.num_rows
        for name in table.column_names:
            column = table.column(name)
            if name not in self.columns:
                field_type = self.types.get(name) or field_type_of(column.type)
                # JSON travels as text: its values are profiled as text.
                self.columns[name] = ColumnProfile(name, field_type)
            self.columns[name].add(column)

    def merge(self, other: StreamProfiler) -> None:
        self.rows += other.rows
        self.truncated = self.truncated or other.truncated
        for name, column in other.columns.items():
            if name in self.columns:
                self.columns[name].merge(column)
            else:
                self.columns[name] = column

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "complete": not self.truncated,
            "row_cap": self.row_cap,
            "columns": [c.to_dict() for c in self.columns.values()],
        }


def profile_table(table: pa.Table, schema: StreamSchema | None = None) -> dict[str, Any]:
    profiler = StreamProfiler(schema)
    profiler.add(table)
    return profiler.to_dict()
