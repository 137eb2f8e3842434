"""The incremental-cursor policy every SQL source follows.

A source reads the rows whose cursor is above the state's value, in cursor order (`ORDER BY cursor`), and:

- after each batch it yields, checkpoints the highest cursor value that is *complete*: a batch can end in
  the middle of a run of rows sharing one cursor value, and a checkpoint at that value would make a resumed
  read (`cursor > value`) skip the rest of the run. So a batch's checkpoint is the last value strictly below
  its last value (or the previous batch's last value when this batch moved past it);
- at the end of the stream, checkpoints the very last value;
- yields no checkpoint when it read nothing new (the state stays as it was);
- ignores NULL cursors (a full refresh reads them; `cursor > value` never matches them), wherever the
  database sorts them.

A read that fails or is stopped after batch k resumes, from the last checkpoint, at the first row not yet
covered by it: nothing is skipped, and at most the rows of one run of equal values are read again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import StateCheckpoint


class CursorTracker:
    """Which cursor value is safe to checkpoint while rows arrive in cursor order (see the module)."""

    def __init__(self) -> None:
        self.last: Any = None
        self.safe: Any = None

    def add(self, values: Sequence[Any]) -> Any:
        """Feed one batch's cursor values (in order); returns a new safe value or None."""
        present = [v for v in values if v is not None]
        if not present:
            return None
        return self._advance(present[-1], next((v for v in reversed(present) if v != present[-1]), None))

    def add_arrow(self, column: pa.Array | pa.ChunkedArray) -> Any:
        """`add` for an Arrow column, without a Python object per row."""
        present = pc.drop_null(column)
        if len(present) == 0:
            return None
        last = present[len(present) - 1]
        below = pc.drop_null(pc.filter(present, pc.not_equal(present, last)))
        before = below[len(below) - 1].as_py() if len(below) else None
        return self._advance(last.as_py(), before)

    def _advance(self, last: Any, before: Any) -> Any:
        candidate = before
        if candidate is None and self.last is not None and self.last != last:
            candidate = self.last
        self.last = last
        if candidate is not None and candidate != self.safe:
            self.safe = candidate
            return candidate
        return None


def json_cursor(value: Any) -> Any:
    """A cursor value as it is kept in the state (JSON): dates and datetimes as ISO text, decimals as text."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class IncrementalCursor:
    """The policy for one stream read: feed each batch's cursor values after yielding the batch, yield the
    checkpoint it answers (if any), and `final()` at the end. `to_state` turns a raw cursor value into its
    JSON form in the state."""

    def __init__(self, stream: str, to_state: Callable[[Any], Any] = json_cursor) -> None:
        self.stream = stream
        self.to_state = to_state
        self.tracker = CursorTracker()

    def _checkpoint(self, value: Any) -> StateCheckpoint:
        return StateCheckpoint(stream=self.stream, state={"cursor": self.to_state(value)})

    def after_batch(self, values: Sequence[Any] | pa.Array | pa.ChunkedArray) -> Iterable[StateCheckpoint]:
        if isinstance(values, pa.Array | pa.ChunkedArray):
            safe = self.tracker.add_arrow(values)
        else:
            safe = self.tracker.add(values)
        if safe is not None:
            yield self._checkpoint(safe)

    def final(self) -> Iterable[StateCheckpoint]:
        if self.tracker.last is not None:
            yield self._checkpoint(self.tracker.last)
