"""A node's rules during a run (`NodeRules`): each batch checked, failing rows rejected, warned about or
failing the run, the stream rules judged when the node's stream ends, and the results a run records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from aggregator.dataplane import Batch, RejectedRow, StreamSchema
from apps.transformations.casting import json_safe
from apps.transformations.quality.binding import BoundRule, validate_rules
from apps.transformations.quality.rules import RuleError, RuleFailed

# How many failing values a fail message and a report show. Enough to recognise the problem, small
# enough for a run's error field and an event payload.
SAMPLE_SIZE = 5


# --- a node's rules during a run ------------------------------------------------------------------------


@dataclass
class CheckResult:
    batch: Batch
    rejected: list[tuple[str, RejectedRow]]  # (rule id, row)


def _sample(table: pa.Table, rule: BoundRule, rows: np.ndarray) -> list[Any]:
    if not rule.columns or not len(rows):
        return []
    picked = table.select(rule.columns).take(pa.array(rows[:SAMPLE_SIZE]))
    if len(rule.columns) == 1:
        return [json_safe(v) for v in picked.column(0).to_pylist()]
    return [json_safe(r) for r in picked.to_pylist()]


class NodeRules:
    """The rules of one node during one run: `check` each batch of its output, `finish` when it ends."""

    def __init__(self, node_id: str, rules: list[BoundRule]) -> None:
        self.node_id = node_id
        self.rules = rules
        self.row_rules = [r for r in rules if not r.stream_level]
        self.stream_rules = [r for r in rules if r.stream_level]
        self.finished = False

    @classmethod
    def from_node(cls, node_id: str, raw: Any, schema: StreamSchema) -> NodeRules:
        rules, problems = validate_rules(raw or [], schema)
        if problems:
            field_name, message = problems[0]
            raise RuleError(f"node '{node_id}' {field_name}: {message}", field=field_name)
        return cls(node_id, rules)

    def _failure(self, rule: BoundRule, what: str) -> RuleFailed:
        sample = [] if rule.stream_level else rule.counts.sample
        shown = f"; failing values: {', '.join(repr(v) for v in sample)}" if sample else ""
        message = f"Rule '{rule.id}' ({rule.describe}) failed at node '{self.node_id}': {what}{shown}"
        return RuleFailed(message, node=self.node_id, rule=rule.id, counts=self.result(rule))

    def check(self, batch: Batch) -> CheckResult:
        table = batch.table
        n = table.num_rows
        for rule in self.stream_rules:
            rule.observe(table)
            rule.counts.checked += n
        if not self.row_rules or not n:
            for rule in self.row_rules:
                rule.counts.checked += n
            return CheckResult(batch, [])
        masks: dict[str, np.ndarray] = {}
        rejected_rows = np.zeros(n, dtype=bool)
        # Unique last: a row another rule rejects never lands, so its key must not shadow a later row.
        ordered = sorted(self.row_rules, key=lambda r: r.type == "unique")
        for rule in ordered:
            consider = ~rejected_rows if rule.type == "unique" else None
            fails = rule.fails(table, consider)
            masks[rule.id] = fails
            failed = np.flatnonzero(fails)
            rule.counts.checked += n
            rule.counts.failed += len(failed)
            if len(failed) and len(rule.counts.sample) < SAMPLE_SIZE:
                rule.counts.sample.extend(
                    _sample(table, rule, failed)[: SAMPLE_SIZE - len(rule.counts.sample)]
                )
            if len(failed) and rule.action == "fail":
                raise self._failure(rule, f"{len(failed)} row(s) in this batch")
            if rule.action == "reject":
                rejected_rows |= fails
        if not rejected_rows.any():
            return CheckResult(batch, [])
        reject_rules = [r for r in self.rules if r.action == "reject" and r.id in masks]
        positions = np.flatnonzero(rejected_rows)
        raw_rows = table.take(pa.array(positions)).to_pylist()
        # Python touches only the rejected rows, to word their reasons.
        hit = {r.id: masks[r.id][positions] for r in reject_rules}
        rejected: list[tuple[str, RejectedRow]] = []
        for i, raw in enumerate(raw_rows):
            failing = [r for r in reject_rules if hit[r.id][i]]
            reason = "; ".join(r.reason() for r in failing)
            rejected.append(
                (
                    failing[0].id,
                    RejectedRow(reason=reason, raw=json_safe(raw), source=f"rule:{failing[0].id}"),
                )
            )
        kept = table.filter(pa.array(~rejected_rows))
        return CheckResult(Batch(kept, stream=batch.stream), rejected)

    def finish(self) -> None:
        """The node's stream has ended: judge the stream rules (raises RuleFailed for a fail action)."""
        if self.finished:
            return
        self.finished = True
        for rule in self.stream_rules:
            problem = rule.judge()
            if problem is None:
                continue
            rule.counts.violated = True
            rule.counts.sample = [problem]
            if rule.action == "fail":
                raise self._failure(rule, problem)

    def result(self, rule: BoundRule) -> dict[str, Any]:
        counts = rule.counts
        if rule.stream_level:
            failed_rows = 0
            passed = counts.checked if not counts.violated else 0
            status = "passed" if not counts.violated else ("failed" if rule.action == "fail" else "warned")
        else:
            failed_rows = counts.failed
            passed = counts.checked - counts.failed
            status = (
                "passed"
                if not counts.failed
                else {"fail": "failed", "reject": "rejected", "warn": "warned"}[rule.action]
            )
        return {
            "rule": rule.id,
            "type": rule.type,
            "action": rule.action,
            "columns": list(rule.columns),
            "status": status,
            "checked": counts.checked,
            "passed": passed,
            "failed": failed_rows,
            "rejected": failed_rows if rule.action == "reject" else 0,
            "warned": failed_rows if rule.action == "warn" else 0,
            "observed": counts.observed,
            "sample": list(counts.sample),
        }

    def results(self) -> Iterator[dict[str, Any]]:
        for rule in self.rules:
            yield self.result(rule)
