"""Preview: a node's input and output rows on a sample, without writing anywhere.

The upstream subgraph of the node runs on the first N rows of each source it reaches (N capped at
PREVIEW_MAX_ROWS; each source stops being read as soon as it has given N rows), through the same step
runners the executor uses (`feed`/`end`, inputs in the order `input_order` asks for). Because every
intermediate result is at most a few sample batches, nodes are evaluated one after another in topological
order, each holding its output in memory, instead of the executor's push through bounded queues.
Destinations are never opened: a destination node's output is simply what would reach it. Validation
rules of the nodes on the way are applied as in a run (rejected rows are left out and shown), and a
failing `fail` rule is reported rather than stopping the preview.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import pyarrow as pa
from django.core.exceptions import ValidationError

from aggregator.dataplane import Batch, RejectedRow, RejectedRows, StreamSchema
from apps.connectors.base import ConnectorError
from apps.connectors.selectors import connector_runtime
from apps.schemas.contracts import json_safe
from apps.transformations.profiling import StreamProfiler
from apps.transformations.steps import StepError, get_step_type

from .definition import Plan

PREVIEW_DEFAULT_ROWS = 100
# A preview answers an HTTP request: 1,000 rows of a wide table is a few hundred kB of JSON per side.
PREVIEW_MAX_ROWS = 1000
PREVIEW_MAX_REJECTED = 200


def _rows(batches: list[Batch], limit: int) -> list[dict[str, Any]]:
    tables = [b.table for b in batches if b.num_rows]
    if not tables:
        return []
    table = pa.concat_tables(tables, promote_options="permissive").slice(0, limit)
    return [{k: json_safe(v) for k, v in row.items()} for row in table.to_pylist()]


def _reject_dicts(node_id: str, rows: list[RejectedRow] | tuple[RejectedRow, ...]) -> list[dict[str, Any]]:
    return [{"node": node_id, **json_safe(r.to_dict())} for r in rows]


class _Preview:
    def __init__(self, plan: Plan, limit: int) -> None:
        self.plan = plan
        self.limit = limit
        self.outputs: dict[str, list[Batch]] = {}
        self.rejected: list[dict[str, Any]] = []
        self.rule_results: list[dict[str, Any]] = []

    def _refuse(self, node_id: str, rows: Any) -> None:
        room = PREVIEW_MAX_REJECTED - len(self.rejected)
        if room > 0:
            self.rejected += _reject_dicts(node_id, list(rows)[:room])

    def read_source(self, node_id: str) -> None:
        source = self.plan.sources[node_id]
        connector_type, config = connector_runtime(source.connector.connector)
        if "chunk_size" in type(config).model_fields:
            # Sources read in chunks: a chunk of N rows means the first batch is all a preview needs.
            config = config.model_copy(update={"chunk_size": max(1, self.limit)})
        batches: list[Batch] = []
        read = 0
        reader = connector_type.read(config, source.stream, None)
        try:
            for item in reader:
                if isinstance(item, Batch):
                    batch = (
                        item
                        if read + item.num_rows <= self.limit
                        else Batch(item.table.slice(0, self.limit - read), stream=item.stream)
                    )
                    batches.append(batch)
                    read += batch.num_rows
                    if read >= self.limit:
                        break
                elif isinstance(item, RejectedRows):
                    self._refuse(node_id, item.rows)
        except ConnectorError as exc:
            raise ValidationError({f"nodes.{node_id}": [exc.message]}) from None
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        self.outputs[node_id] = self._checked(node_id, batches)

    def run_transform(self, node_id: str) -> None:
        node = self.plan.nodes[node_id]
        config = node.get("config", {})
        upstream = self.plan.upstream(node_id)
        step_type = get_step_type(node["step"])
        first = step_type.input_order(config, upstream)
        ordered = [*first, *(u for u in upstream if u not in first)]
        out: list[Batch] = []
        try:
            runner = step_type.runner(config, {up: self.plan.schemas[up] for up in upstream})
            for up in ordered:
                for batch in self.outputs[up]:
                    for output in runner.feed(up, batch):
                        out.append(output.batch)
                        self._refuse(node_id, output.rejected)
                for output in runner.end(up):
                    out.append(output.batch)
                    self._refuse(node_id, output.rejected)
        except StepError as exc:
            key = f"nodes.{node_id}.{exc.field}" if exc.field else f"nodes.{node_id}"
            raise ValidationError({key: [exc.message]}) from None
        self.outputs[node_id] = self._checked(node_id, out)

    def _checked(self, node_id: str, batches: list[Batch]) -> list[Batch]:
        """The node's validation rules over its sample output, as a run applies them."""
        raw_rules = self.plan.nodes[node_id].get("rules")
        if not raw_rules or node_id not in self.plan.schemas:
            return batches
        from apps.transformations.quality import NodeRules, RuleError, RuleFailed

        try:
            rules = NodeRules.from_node(node_id, raw_rules, self.plan.schemas[node_id])
        except RuleError as exc:
            raise ValidationError({f"nodes.{node_id}.rules": [exc.message]}) from None
        kept: list[Batch] = []
        failures: dict[str, str] = {}
        for batch in batches:
            try:
                result = rules.check(batch)
            except RuleFailed as exc:
                failures.setdefault(exc.rule, exc.message)
                kept.append(batch)
                continue
            self._refuse(node_id, [row for _, row in result.rejected])
            kept.append(result.batch)
        try:
            rules.finish()
        except RuleFailed as exc:
            failures.setdefault(exc.rule, exc.message)
        for outcome in rules.results():
            if outcome["status"] != "passed" or outcome["rule"] in failures:
                message = failures.get(outcome["rule"])
                self.rule_results.append({"node": node_id, **json_safe(outcome), "message": message})
        return kept


def pipeline_preview(*, plan: Plan, node_id: str, limit: int = PREVIEW_DEFAULT_ROWS) -> dict[str, Any]:
    """Run the upstream subgraph of `node_id` on the first `limit` rows of each source (a validated plan:
    see `pipeline_plan`). Raises ValidationError naming the node at fault."""
    if node_id not in plan.nodes:
        raise ValidationError({"node": [f"No node {node_id!r} in this pipeline."]})
    limit = max(1, min(int(limit), PREVIEW_MAX_ROWS))
    needed = nx.ancestors(plan.graph, node_id) | {node_id}
    preview = _Preview(plan, limit)
    for current in plan.order:
        if current not in needed:
            continue
        kind = plan.nodes[current]["kind"]
        if kind == "source":
            preview.read_source(current)
        elif kind == "transform":
            preview.run_transform(current)
        else:  # a destination: what would reach it (after its own rules, as in a run), never written
            (up,) = plan.upstream(current)
            preview.outputs[current] = preview._checked(current, preview.outputs[up])
    schema: StreamSchema | None = plan.schemas.get(node_id)
    # The profile of the node's output sample: the same column statistics and histograms a run keeps, so
    # a step's effect on the data shows before anything runs.
    profiler = StreamProfiler(schema)
    for batch in preview.outputs[node_id]:
        profiler.add(batch.table)
    return {
        "node": node_id,
        "limit": limit,
        "inputs": {up: _rows(preview.outputs[up], limit) for up in plan.upstream(node_id)},
        "output": _rows(preview.outputs[node_id], limit),
        "schema": schema.to_dict() if schema is not None else None,
        "rejected": preview.rejected,
        "rule_failures": preview.rule_results,
        "profile": json_safe(profiler.to_dict()),
    }
