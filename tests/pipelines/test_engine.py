"""The engine runs a plan's graph with an in-memory recorder and no database (no `db` fixture: any query
would fail the test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import networkx as nx
import pyarrow as pa
import pytest

from aggregator.dataplane import (
    Batch,
    Field,
    FieldType,
    RejectedRow,
    RejectedRows,
    StateCheckpoint,
    StreamSchema,
)
from apps.pipelines.definition import Plan
from apps.pipelines.engine import (
    ConfigurationError,
    Engine,
    NodeStats,
    RunCancelled,
    SourceRead,
    run_quality,
)
from apps.transformations.quality import NodeRules, RuleFailed
from apps.transformations.steps import StepError

SCHEMA = StreamSchema("numbers", (Field("n", FieldType.INTEGER), Field("tag", FieldType.STRING)))


class MemoryRecorder:
    def __init__(self) -> None:
        self.outputs: dict[str, list[Batch]] = {}
        self.rejected: list[tuple[str, str, list[str] | None]] = []
        self.failed: list[tuple[str, str]] = []
        self.worked_on: list[str] = []

    def working_on(self, node_id: str) -> None:
        if not self.worked_on or self.worked_on[-1] != node_id:
            self.worked_on.append(node_id)

    def output(self, node_id: str, batch: Batch) -> None:
        self.outputs.setdefault(node_id, []).append(batch)

    def quarantine(self, node_id: str, rejected: RejectedRows, rules: list[str] | None) -> None:
        self.rejected += [(node_id, row.reason, rules) for row in rejected.rows]

    def node_failed(self, node_id: str, exc: StepError) -> None:
        self.failed.append((node_id, exc.message))


class MemorySink:
    """A destination that keeps what it was given; `finish` is its commit."""

    def __init__(self, stats: NodeStats) -> None:
        self.stats = stats
        self.busy_s = 0.0
        self.rows: list[dict[str, Any]] = []
        self.committed = False
        self.aborted = False

    def start(self) -> None:
        pass

    def put(self, batch: Batch) -> None:
        self.stats.rows_in += batch.num_rows
        self.rows += batch.table.to_pylist()

    def finish(self, *, abort: bool = False) -> Any:
        if abort:
            self.aborted = True
            return None
        self.committed = True
        return None


def plan_of(nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> Plan:
    graph = nx.DiGraph()
    graph.add_nodes_from(n["id"] for n in nodes)
    graph.add_edges_from(edges)
    plan = Plan(graph=graph, nodes={n["id"]: n for n in nodes}, order=list(nx.topological_sort(graph)))
    for node in nodes:
        plan.schemas[node["id"]] = SCHEMA
        if node["kind"] == "source":
            plan.sources[node["id"]] = None  # type: ignore[assignment]  # the engine only needs the key
    return plan


def batch(*values: int) -> Batch:
    return Batch(
        pa.table({"n": pa.array(values, pa.int64()), "tag": [f"t{v}" for v in values]}), stream="numbers"
    )


def source(items: list[Any]) -> SourceRead:
    def read() -> Iterator[Any]:
        yield from items

    return SourceRead(stream=SCHEMA, items=read(), keep_state=True)


def chain(rules: list[dict[str, Any]] | None = None) -> Plan:
    return plan_of(
        [
            {"id": "src", "kind": "source"},
            {"id": "big", "kind": "transform", "step": "filter", "config": {"expression": "n > 1"}},
            {"id": "out", "kind": "destination", "table": "t", "rules": rules or []},
        ],
        [("src", "big"), ("big", "out")],
    )


def test_the_engine_runs_a_graph_into_its_destination_with_an_in_memory_recorder() -> None:
    plan = chain(rules=[{"id": "small", "type": "range", "column": "n", "max": 4, "action": "reject"}])
    items = [
        batch(1, 2, 3),
        RejectedRows(stream="numbers", rows=(RejectedRow(reason="not a number", raw="x", line=4),)),
        batch(4, 5),
        StateCheckpoint(stream="numbers", state={"cursor": 5}),
    ]
    recorder, sinks = MemoryRecorder(), {}

    def open_sink(node_id: str, stats: NodeStats) -> MemorySink:
        sinks[node_id] = MemorySink(stats)
        return sinks[node_id]

    rules, profilers = run_quality(plan, set(plan.nodes))
    engine = Engine(
        plan,
        active=set(plan.nodes),
        open_source=lambda node_id: source(items),
        open_sink=open_sink,
        recorder=recorder,
        rules=rules,
        profilers=profilers,
    )
    outcome = engine.run()

    assert sinks["out"].committed and [r["n"] for r in sinks["out"].rows] == [2, 3, 4]
    # The state is handed back for the caller to commit after the destinations, never stored here.
    assert outcome.states == {"src": ("numbers", {"cursor": 5})}
    assert [(node, rules) for node, _, rules in recorder.rejected] == [("src", None), ("out", ["small"])]
    stats = engine.stats
    assert (stats["src"].rows_in, stats["src"].rows_out, stats["src"].rows_rejected) == (6, 5, 1)
    assert (stats["big"].rows_in, stats["big"].rows_out) == (5, 4)
    assert (stats["out"].rows_in, stats["out"].rows_rejected) == (4, 1)
    assert [b.num_rows for b in recorder.outputs["big"]] == [2, 2]
    assert recorder.worked_on[:2] == ["src", "big"]
    (result,) = rules["out"].results()
    assert (result["status"], result["rejected"]) == ("rejected", 1)
    assert profilers["src"].to_dict()["rows"] == 5


def test_a_fail_rule_stops_a_run_before_any_commit_and_is_only_noted_in_a_preview() -> None:
    plan = chain(rules=[{"id": "small", "type": "range", "column": "n", "max": 2, "action": "fail"}])
    sink = MemorySink(NodeStats("destination"))
    strict = Engine(
        plan,
        active=set(plan.nodes),
        open_source=lambda node_id: source([batch(1, 2, 3)]),
        open_sink=lambda node_id, stats: sink,
        rules=run_quality(plan, set(plan.nodes))[0],
    )
    with pytest.raises(RuleFailed):
        strict.run()
    assert sink.aborted and not sink.committed

    rules = {"out": NodeRules.from_node("out", plan.nodes["out"]["rules"], SCHEMA)}
    recorder = MemoryRecorder()
    lenient = Engine(
        plan,
        active=set(plan.nodes),
        open_source=lambda node_id: source([batch(1, 2, 3)]),
        recorder=recorder,
        rules=rules,
        strict_rules=False,
    )
    lenient.run()
    assert list(lenient.rule_failures) == ["out"] and "small" in lenient.rule_failures["out"]
    # No destination opened: what would reach it is reported, as it was (the failing rule keeps the batch).
    assert [r["n"] for b in recorder.outputs["out"] for r in b.table.to_pylist()] == [2, 3]


def test_a_step_error_is_the_nodes_and_cancellation_stops_the_read(settings: Any) -> None:
    settings.AGGREGATOR_STEP_OUTPUT_BYTES = 10
    settings.AGGREGATOR_STEP_OUTPUT_GROWTH = 1
    plan = plan_of(
        [
            {"id": "src", "kind": "source"},
            {
                "id": "wide",
                "kind": "transform",
                "step": "derive",
                "config": {"column": "z", "expression": "concat(tag, tag, tag, tag)"},
            },
        ],
        [("src", "wide")],
    )
    recorder = MemoryRecorder()
    engine = Engine(
        plan, active=set(plan.nodes), open_source=lambda node_id: source([batch(1, 2, 3)]), recorder=recorder
    )
    with pytest.raises(StepError) as raised:
        engine.run()
    assert str(raised.value).startswith("Node 'wide': ")
    assert engine.failed is not None and engine.failed[0] == "wide"
    assert recorder.failed and recorder.failed[0][0] == "wide"
    assert engine.stats["wide"].status == "failed"

    def cancel() -> None:
        raise RunCancelled()

    closed: list[bool] = []

    def endless() -> Iterator[Batch]:
        try:
            while True:
                yield batch(1)
        finally:
            closed.append(True)

    stopped = Engine(
        chain(),
        active={"src", "big", "out"},
        open_source=lambda node_id: SourceRead(stream=SCHEMA, items=endless()),
        check_cancel=cancel,
    )
    with pytest.raises(RunCancelled):
        stopped.run()
    assert closed == [True]


def test_only_the_active_nodes_run() -> None:
    plan = plan_of(
        [
            {"id": "a", "kind": "source"},
            {"id": "b", "kind": "source"},
            {"id": "both", "kind": "transform", "step": "union", "config": {}},
            {"id": "out", "kind": "destination", "table": "t"},
        ],
        [("a", "both"), ("b", "both"), ("both", "out")],
    )
    read: list[str] = []

    def open_source(node_id: str) -> SourceRead:
        read.append(node_id)
        return source([batch(1 if node_id == "a" else 2)])

    recorder = MemoryRecorder()
    Engine(plan, active={"a", "b", "both"}, open_source=open_source, recorder=recorder).run()
    # The destination is not active (a preview of `both`): nothing reaches it.
    assert read == ["a", "b"] and "out" not in recorder.outputs
    assert [r["n"] for b in recorder.outputs["both"] for r in b.table.to_pylist()] == [1, 2]


def test_a_source_feeding_both_sides_of_an_ordered_step_is_a_configuration_error() -> None:
    plan = plan_of(
        [
            {"id": "src", "kind": "source"},
            {"id": "left", "kind": "transform", "step": "filter", "config": {"expression": "n > 1"}},
            {"id": "right", "kind": "transform", "step": "filter", "config": {"expression": "n > 2"}},
            {
                "id": "joined",
                "kind": "transform",
                "step": "join",
                "config": {"lookup": "right", "on": ["n"]},
            },
        ],
        [("src", "left"), ("src", "right"), ("left", "joined"), ("right", "joined")],
    )
    with pytest.raises(ConfigurationError, match="one source feeds both"):
        Engine(plan, active=set(plan.nodes), open_source=lambda node_id: source([batch(1)])).run()


def test_whole_inputs_feed_a_step_each_input_whole_in_the_documents_order() -> None:
    # The preview's order: a union's inputs one after the other as the document lists its edges, where a
    # run streams them as its sources are read (graph order).
    plan = plan_of(
        [
            {"id": "a", "kind": "source"},
            {"id": "b", "kind": "source"},
            {"id": "both", "kind": "transform", "step": "union", "config": {}},
        ],
        [("b", "both"), ("a", "both")],
    )

    def open_source(node_id: str) -> SourceRead:
        return source([batch(1, 2) if node_id == "a" else batch(3)])

    def union_rows(**options: Any) -> list[int]:
        recorder = MemoryRecorder()
        Engine(plan, active=set(plan.nodes), open_source=open_source, recorder=recorder, **options).run()
        return [r["n"] for b in recorder.outputs["both"] for r in b.table.to_pylist()]

    assert sorted(union_rows()) == sorted(union_rows(whole_inputs=True)) == [1, 2, 3]
    assert union_rows(whole_inputs=True) == [3, 1, 2]
