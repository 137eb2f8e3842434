"""What a step may make of one batch: a budget of bytes and time per batch, checked as outputs come out,
and refused before building by the steps whose output can outgrow their input by a factor."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pytest

from aggregator.dataplane import Batch, StreamSchema
from apps.transformations.steps import BudgetedRunner, StepBudgetExceeded, StepOutput, StepRunner

from ._helpers import apply, run_stream


class _Growing(StepRunner):
    def __init__(self, factor: int, pause: float = 0.0) -> None:
        self.factor = factor
        self.pause = pause

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        time.sleep(self.pause)
        yield StepOutput(Batch(pa.concat_tables([batch.table] * self.factor), stream=batch.stream))


def test_a_step_that_outgrows_its_budget_fails_with_the_budget(settings: Any) -> None:
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 1000
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 4
    batch = Batch(pa.table({"v": list(range(1000))}), stream="t")  # 8,000 bytes
    assert len(list(BudgetedRunner(_Growing(4)).feed("a", batch))) == 1
    with pytest.raises(StepBudgetExceeded) as caught:
        list(BudgetedRunner(_Growing(5)).feed("a", batch))
    assert caught.value.message == (
        "the step produced more than its budget of 31.2 KiB from a batch of 8,000 bytes (the larger of "
        "AGGREGATOR_STEP_OUTPUT_BYTES and AGGREGATOR_STEP_OUTPUT_GROWTH times what it was given)"
    )


def test_a_step_that_takes_too_long_over_a_batch_fails(settings: Any) -> None:
    settings.AGGREGATOR_STEP_BATCH_SECONDS = 0.05
    batch = Batch(pa.table({"v": [1]}), stream="t")
    with pytest.raises(StepBudgetExceeded) as caught:
        list(BudgetedRunner(_Growing(1, pause=0.1)).feed("a", batch))
    assert caught.value.message.startswith(
        "the step took 0.1 s over a batch of 8 bytes, more than its budget"
    )
    assert caught.value.message.endswith("of 0.05 s (AGGREGATOR_STEP_BATCH_SECONDS)")


def test_regex_replacement_matching_everywhere_is_refused_before_it_runs(settings: Any) -> None:
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 1_000_000
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 1
    table = pa.table({"s": ["abcdefghij" * 10] * 1000})  # 100 kB of text
    config = {"columns": ["s"], "pattern": "x*", "replacement": "y" * 20}  # a match at every boundary
    with pytest.raises(StepBudgetExceeded) as caught:
        apply("regex_replace", config, table)
    assert caught.value.field == "config.replacement"
    assert caught.value.message.startswith(
        "the replacement would make 2 MiB from a batch of 101.6 KiB, more than"
    )
    # Where it matches rarely, the same replacement is fine.
    out = apply("regex_replace", {**config, "pattern": "j$"}, table)
    assert out.batch.table.column("s")[0].as_py().endswith("i" + "y" * 20)


def test_redact_fill_nulls_and_join_refuse_what_would_not_fit(settings: Any) -> None:
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 100_000
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 1
    table = pa.table({"s": pa.array([None] * 1000, pa.string())})
    with pytest.raises(StepBudgetExceeded) as caught:
        apply("fill_nulls", {"values": {"s": "z" * 1000}}, table)
    assert (caught.value.field, caught.value.message.split(" would")[0]) == (
        "config.values.s",
        "filling the nulls of 's'",
    )
    words = pa.table({"s": ["word"] * 1000})
    with pytest.raises(StepBudgetExceeded) as caught:
        apply("redact", {"columns": ["s"], "replacement": "z" * 1000}, words)
    assert caught.value.field == "config.replacement"

    main = pa.table({"k": [1] * 2000, "v": list(range(2000))})
    lookup = pa.table({"k": [1] * 2000, "w": list(range(2000))})  # every main row matches 2,000 rows
    schemas = {
        "main": StreamSchema.from_arrow("main", main.schema),
        "lookup": StreamSchema.from_arrow("lookup", lookup.schema),
    }
    with pytest.raises(StepBudgetExceeded) as caught:
        run_stream("join", {"lookup": "lookup", "on": ["k"]}, [("lookup", lookup), ("main", main)], schemas)
    assert caught.value.field == "config.on"
    assert caught.value.message.startswith("joining this batch of 2,000 rows would make 4,000,000 rows")
    assert caught.value.message.endswith("a key is repeated up to 2,000 times in the lookup")
