"""Shared helpers of the step-library tests: run a step's runner over batches, as the executor does."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from aggregator.dataplane import Batch, StreamSchema
from apps.transformations.steps import StepError, get_step_type


def batches(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def run_stream(
    slug: str,
    config: dict[str, Any],
    feeds: list[tuple[str, pa.Table]],
    inputs: dict[str, StreamSchema],
    *,
    rejected: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """Feed (input id, table) pairs in order through a fresh runner, ending each input after its last
    feed; returns the rows that came out."""
    step = get_step_type(slug)
    runner = step.runner(step.validate_config(config), inputs)
    last = {node: i for i, (node, _) in enumerate(feeds)}
    out: list[pa.Table] = []
    for i, (node, table) in enumerate(feeds):
        for output in runner.feed(node, Batch(table, stream=node)):
            out.append(output.batch.table)
            if rejected is not None:
                rejected.extend(output.rejected)
        if last[node] == i:
            for output in runner.end(node):
                out.append(output.batch.table)
    for node in inputs:
        if node not in last:
            for output in runner.end(node):
                out.append(output.batch.table)
    return [row for table in out for row in table.to_pylist()]


def apply(slug: str, config: dict[str, Any], table: pa.Table, schema: StreamSchema | None = None) -> Any:
    step = get_step_type(slug)
    schema = schema or StreamSchema.from_arrow("t", table.schema)
    return step.apply(step.validate_config(config), Batch(table, stream="t"), schema)


def config_error(slug: str, config: dict[str, Any]) -> StepError:
    try:
        get_step_type(slug).validate_config(config)
    except StepError as exc:
        return exc
    raise AssertionError("no error")
