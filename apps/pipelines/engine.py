"""The batch engine: runs a plan's graph over the dataplane's batches. No database: what a run keeps (node
runs, logs, quarantined rows, states) goes through a `Recorder`, and what the sources read and the
destinations write comes through callables its caller gives (`open_source`, `open_sink`).

A run (`executor.py`) and a preview (`preview.py`) both run their graph through it: the run on every
selected source with its destinations' writes and a recorder that stores, the preview on the sample of the
node's ancestors with no destination opened and a recorder that collects in memory.

Flow: for each source (in graph order, except that a step needing some inputs whole first — a join's
lookup side — has the sources behind them read first), read batches and push each one through the steps
below it and into a bounded queue per destination it reaches (fan-out); each destination consumes its queue
in its own thread through the connector's `write`, which commits once at the end. `run` returns each
destination's result and the sources' incremental states for the caller to commit after them, so a crash
leaves either the old state or the new one — never skipped or doubled rows.

Memory: a batch is at most the source's chunk size; each destination queue holds at most QUEUE_DEPTH
batches, so a run holds a handful of batches whatever the stream's size.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx

from aggregator.dataplane import Batch, RejectedRows, StateCheckpoint, StreamSchema, WriteMode
from apps.transformations.profiling import SOURCE_PROFILE_ROWS, StreamProfiler
from apps.transformations.quality import NodeRules, RuleFailed
from apps.transformations.steps import BudgetedRunner, StepError, StepOutput, StepRunner, get_step_type

from .definition import Plan

QUEUE_DEPTH = 2

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


class RunCancelled(Exception):
    """The run was cancelled while it ran."""


class ConfigurationError(Exception):
    """The pipeline or a connector is misconfigured: retrying cannot help."""


@dataclass
class NodeStats:
    """One node's counters while the graph runs; the recorder saves them (the heartbeat, the commit)."""

    kind: str
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    bytes: int = 0
    status: str = RUNNING
    # The node's own time (reading, transforming, writing), not the time it waited for others.
    seconds: float = 0.0


class Recorder(Protocol):
    """What the engine reports as the graph runs."""

    def working_on(self, node_id: str) -> None:
        """The engine is about to work on `node_id` (read from it, feed it, close it)."""

    def output(self, node_id: str, batch: Batch) -> None:
        """A node's output batch, after its rules (a destination's: what reaches it)."""

    def quarantine(self, node_id: str, rejected: RejectedRows, rules: list[str] | None) -> None:
        """Rows a node refused; `rules` gives, row by row, the id of the validation rule that refused it."""

    def node_failed(self, node_id: str, exc: StepError) -> None:
        """A step failed at `node_id`; the run fails with it."""


class NullRecorder:
    """A recorder that keeps nothing."""

    def working_on(self, node_id: str) -> None:
        pass

    def output(self, node_id: str, batch: Batch) -> None:
        pass

    def quarantine(self, node_id: str, rejected: RejectedRows, rules: list[str] | None) -> None:
        pass

    def node_failed(self, node_id: str, exc: StepError) -> None:
        pass


@dataclass
class SourceRead:
    """One source opened for reading: its connector's items (batches, rejected rows, checkpoints), what to do
    to each batch before the node's rules (a contract's conform, a backfill's upper bound: the batch kept and
    the rows refused), and whether its last checkpoint is a state to commit."""

    stream: StreamSchema
    items: Iterable[Any]
    prepare: Callable[[Batch], tuple[Batch, RejectedRows | None]] | None = None
    keep_state: bool = False


class Sink(Protocol):
    busy_s: float

    def start(self) -> None: ...

    def put(self, batch: Batch) -> None: ...

    def finish(self, *, abort: bool = False) -> Any: ...


@dataclass
class EngineResult:
    results: dict[str, Any]  # destination node -> its write's result
    states: dict[str, tuple[str, dict[str, Any]]]  # source node -> (stream, state) to commit after them


_END = object()
_ABORT = object()


class DestinationSink:
    """Feeds one destination's `write` from a bounded queue in its own thread."""

    def __init__(
        self,
        *,
        connector: tuple[Any, Any],
        node: dict[str, Any],
        schema: StreamSchema,
        run_id: str,
        stats: NodeStats,
        name: str,
    ):
        self.node = node
        self.schema = schema
        self.run_id = run_id
        self.stats = stats
        self.connector_type, self.config = connector
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiting_s = 0.0
        self.busy_s = 0.0
        self.thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _batches(self) -> Iterator[Batch]:
        while True:
            waited = time.monotonic()
            item = self.queue.get()
            self.waiting_s += time.monotonic() - waited
            if item is _END:
                return
            if item is _ABORT:
                # Raised inside the connector's write: it drops its staging and re-raises.
                raise RunCancelled()
            yield item

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self.connector_type.write(
                self.config,
                self.schema,
                self._batches(),
                WriteMode(self.node.get("write_mode", WriteMode.APPEND)),
                list(self.node.get("primary_key") or []),
                self.run_id,
                table=self.node["table"],
            )
        except BaseException as exc:  # handed to the run's thread, which decides what it means
            self.error = exc
            # Drain so a producer blocked on put() is released.
            while not self.queue.empty():
                self.queue.get_nowait()
        finally:
            # The destination's own time: its write, less the time it sat waiting for the next batch.
            self.busy_s = max(0.0, time.monotonic() - started - self.waiting_s)

    def put(self, batch: Batch) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(batch, timeout=0.5)
                self.stats.rows_in += batch.num_rows
                return
            except queue.Full:
                continue

    def finish(self, *, abort: bool = False) -> Any:
        if self.thread.is_alive():
            marker = _ABORT if abort else _END
            while self.thread.is_alive():
                try:
                    self.queue.put(marker, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self.thread.join()
        if self.error is not None and not abort:
            raise self.error
        return self.result


class WholeInputs(StepRunner):
    """A step with several inputs fed each input whole, in `order`, once every input has ended."""

    def __init__(self, runner: StepRunner, order: list[str]) -> None:
        self.runner = runner
        self.order = order
        self.held: dict[str, list[Batch]] = {up: [] for up in order}
        self.open = set(order)

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        self.held[input_id].append(batch)
        return ()

    def end(self, input_id: str) -> Iterator[StepOutput]:
        self.open.discard(input_id)
        if self.open:
            return
        for up in self.order:
            for batch in self.held.pop(up):
                yield from self.runner.feed(up, batch)
            yield from self.runner.end(up)


def run_quality(plan: Plan, active: set[str]) -> tuple[dict[str, NodeRules], dict[str, StreamProfiler]]:
    """A run's rules for every active node that declares them, and a profiler for every node with
    `profile: true` (its whole output) and for every source unless `profile: false` (its first rows)."""
    rules: dict[str, NodeRules] = {}
    profilers: dict[str, StreamProfiler] = {}
    for node_id in plan.order:
        if node_id not in active or node_id not in plan.schemas:
            continue
        node = plan.nodes[node_id]
        if node.get("rules"):
            rules[node_id] = NodeRules.from_node(node_id, node["rules"], plan.schemas[node_id])
        wanted = node.get("profile")
        if wanted is True:
            profilers[node_id] = StreamProfiler(plan.schemas[node_id])
        elif wanted is None and node["kind"] == "source":
            profilers[node_id] = StreamProfiler(plan.schemas[node_id], row_cap=SOURCE_PROFILE_ROWS)
    return rules, profilers


def source_order(plan: Plan, selected: list[str], active: set[str]) -> list[str]:
    """Sources in graph order, except that a step needing some inputs complete first (a join's lookup
    side) has the sources behind those inputs read before the sources behind its other inputs."""
    order = nx.DiGraph()
    order.add_nodes_from(selected)
    for node_id in plan.order:
        if node_id not in active or plan.nodes[node_id]["kind"] != "transform":
            continue
        node = plan.nodes[node_id]
        upstream = [up for up in plan.upstream(node_id) if up in active]
        first = get_step_type(node["step"]).input_order(node.get("config", {}), upstream)
        if not first:
            continue
        before = {s for up in first for s in ({up} | nx.ancestors(plan.graph, up)) if s in selected}
        after = {
            s
            for up in upstream
            if up not in first
            for s in ({up} | nx.ancestors(plan.graph, up))
            if s in selected
        }
        if before & after:
            raise ConfigurationError(
                f"Node '{node_id}': one source feeds both the inputs it needs first and the others."
            )
        order.add_edges_from((b, a) for b in before for a in after)
    if not nx.is_directed_acyclic_graph(order):
        raise ConfigurationError("The steps' input orders contradict each other.")
    rank = {node_id: i for i, node_id in enumerate(plan.order)}
    return list(nx.lexicographical_topological_sort(order, key=lambda n: rank[n]))


class Engine:
    """One pass of a plan's graph: `active` nodes only (a run: the selected sources and all below them; a
    preview: a node and all above it). `strict_rules=False` (the preview) notes a failing `fail` rule in
    `rule_failures` instead of stopping. `whole_inputs=True` (the preview, whose sample a step can hold)
    reads the sources in graph order and gives a step with several inputs each of them whole, one after
    another (those its `input_order` asks for first, then the document's order), where a run streams them
    as its sources are read."""

    def __init__(
        self,
        plan: Plan,
        *,
        active: set[str],
        open_source: Callable[[str], SourceRead | None],
        open_sink: Callable[[str, NodeStats], Sink] | None = None,
        recorder: Recorder | None = None,
        rules: dict[str, NodeRules] | None = None,
        profilers: dict[str, StreamProfiler] | None = None,
        check_cancel: Callable[[], None] = lambda: None,
        strict_rules: bool = True,
        whole_inputs: bool = False,
    ) -> None:
        self.plan = plan
        self.active = active
        self.open_source = open_source
        self.open_sink = open_sink
        self.recorder: Recorder = recorder or NullRecorder()
        self.rules = rules or {}
        self.profilers = profilers or {}
        self.check_cancel = check_cancel
        self.strict_rules = strict_rules
        self.whole_inputs = whole_inputs
        self.stats = {n: NodeStats(plan.nodes[n]["kind"]) for n in plan.order if n in active}
        self.lock = threading.Lock()  # held while the counters are read from another thread, or a status set
        self.rule_failures: dict[str, dict[str, str]] = {}  # node -> rule -> message (strict_rules=False)
        self.failed: tuple[str, StepError] | None = None  # the node a step failed at, and its own error
        self.runners: dict[str, StepRunner] = {}
        self.sinks: dict[str, Sink] = {}
        self.open_inputs: dict[str, set[str]] = {}

    def snapshot(self) -> dict[str, NodeStats]:
        with self.lock:
            return {n: NodeStats(**vars(s)) for n, s in self.stats.items()}

    def run(self) -> EngineResult:
        """Read every active source through the graph; finish the destinations' writes (each commits)."""
        plan, active = self.plan, self.active
        for node_id in plan.order:
            if node_id in active and plan.nodes[node_id]["kind"] == "transform":
                node = plan.nodes[node_id]
                inputs = {up: plan.schemas[up] for up in plan.upstream(node_id) if up in active}
                try:
                    step_type = get_step_type(node["step"])
                    runner: StepRunner = BudgetedRunner(step_type.runner(node.get("config", {}), inputs))
                    if self.whole_inputs and len(inputs) > 1:
                        first = step_type.input_order(node.get("config", {}), list(inputs))
                        runner = WholeInputs(runner, [*first, *(up for up in inputs if up not in first)])
                    self.runners[node_id] = runner
                except StepError as exc:
                    self.failed = (node_id, exc)
                    raise
        if self.open_sink is not None:
            self.sinks = {
                node_id: self.open_sink(node_id, self.stats[node_id])
                for node_id in plan.order
                if node_id in active and plan.nodes[node_id]["kind"] == "destination"
            }
        self.open_inputs = {
            node_id: {up for up in plan.upstream(node_id) if up in active} for node_id in self.runners
        }
        selected = [n for n in plan.order if n in active and n in plan.sources]
        for sink in self.sinks.values():
            sink.start()
        states: dict[str, tuple[str, dict[str, Any]]] = {}
        try:
            for source_id in selected if self.whole_inputs else source_order(plan, selected, active):
                state = self._read_source(source_id)
                if state is not None:
                    states[source_id] = state
                self._close(source_id)
            # Stream rules (row_count, freshness) judge now: a failure must stop the writes' commits.
            for node_id, node_rules in self.rules.items():
                self._rule_call(node_id, node_rules.finish)
            results = {node_id: sink.finish() for node_id, sink in self.sinks.items()}
            for node_id, sink in self.sinks.items():
                self.stats[node_id].seconds = sink.busy_s
        except BaseException:
            for sink in self.sinks.values():
                sink.finish(abort=True)
            raise
        return EngineResult(results=results, states=states)

    def _rule_call(self, node_id: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except RuleFailed as exc:
            if self.strict_rules:
                raise
            self.rule_failures.setdefault(node_id, {}).setdefault(exc.rule, exc.message)
            return None

    def _read_source(self, source_id: str) -> tuple[str, dict[str, Any]] | None:
        """Read one source through the graph. Returns (stream, state) to commit once the writes have."""
        read = self.open_source(source_id)
        if read is None:
            return None
        stats = self.stats[source_id]
        pending_state: dict[str, Any] | None = None
        try:
            for item in self._timed(source_id, read.items):
                self.check_cancel()
                if isinstance(item, Batch):
                    batch, refused = read.prepare(item) if read.prepare is not None else (item, None)
                    if refused:
                        self._quarantine(source_id, refused)
                    batch = self._check(source_id, batch)
                    stats.rows_in += item.num_rows
                    stats.rows_out += batch.num_rows
                    self._push(source_id, batch)
                elif isinstance(item, RejectedRows):
                    # Read but refused: counted in, so rows in = rows out + rejected at the source too.
                    stats.rows_in += len(item)
                    self._quarantine(source_id, item)
                elif isinstance(item, StateCheckpoint):
                    pending_state = item.state
        finally:
            close = getattr(read.items, "close", None)
            if close is not None:
                close()
        if read.keep_state and pending_state is not None:
            return read.stream.name, pending_state
        return None

    def _check(self, node_id: str, batch: Batch) -> Batch:
        """A node's output batch through its rules (rejected rows to quarantine) and its profiler."""
        node_rules = self.rules.get(node_id)
        if node_rules is not None:
            result = self._rule_call(node_id, lambda: node_rules.check(batch))
            if result is not None:
                if result.rejected:
                    self._quarantine(
                        node_id,
                        RejectedRows(stream=batch.stream, rows=tuple(row for _, row in result.rejected)),
                        rules=[rule for rule, _ in result.rejected],
                    )
                batch = result.batch
        profiler = self.profilers.get(node_id)
        if profiler is not None and not profiler.full:
            profiler.add(batch.table)
        self.recorder.output(node_id, batch)
        return batch

    def _quarantine(self, node_id: str, rejected: RejectedRows, *, rules: list[str] | None = None) -> None:
        self.recorder.quarantine(node_id, rejected, rules)
        self.stats[node_id].rows_rejected += len(rejected.rows)

    def _close(self, node_id: str) -> None:
        """`node_id` will send nothing more: tell the steps below it, and close them in turn once all their
        inputs are done (a buffering step emits then)."""
        for child in self.plan.downstream(node_id):
            if child not in self.runners:
                continue
            for output in self._timed(child, self.runners[child].end(node_id)):
                self._emit(child, output)
            self.open_inputs[child].discard(node_id)
            if not self.open_inputs[child]:
                self._close(child)

    def _push(self, node_id: str, batch: Batch) -> None:
        for child in self.plan.downstream(node_id):
            if child not in self.active:
                continue
            if self.plan.nodes[child]["kind"] == "destination":
                checked = self._check(child, batch)
                sink = self.sinks.get(child)
                if sink is not None:
                    # put() counts what it queues; the rows the destination's rules rejected came in too.
                    self.stats[child].rows_in += batch.num_rows - checked.num_rows
                    sink.put(checked)
                else:
                    self.stats[child].rows_in += batch.num_rows
            elif child in self.runners:
                self.stats[child].rows_in += batch.num_rows
                for output in self._timed(child, self.runners[child].feed(node_id, batch)):
                    self._emit(child, output)

    def _timed(self, node_id: str, items: Iterable[Any]) -> Iterator[Any]:
        """Iterate, adding the time spent producing each item (not consuming it) to the node's duration. A
        step's error is the node's: it is recorded on the node before the run fails with it."""
        iterator = iter(items)
        stats = self.stats[node_id]
        while True:
            self.recorder.working_on(node_id)
            started = time.monotonic()
            try:
                item = next(iterator)
            except StopIteration:
                stats.seconds += time.monotonic() - started
                return
            except StepError as exc:
                self.failed = (node_id, exc)
                with self.lock:
                    stats.status = FAILED
                self.recorder.node_failed(node_id, exc)
                raise StepError(f"Node '{node_id}': {exc.message}", field=exc.field) from exc
            stats.seconds += time.monotonic() - started
            yield item

    def _emit(self, node_id: str, output: StepOutput) -> None:
        if output.rejected:
            self._quarantine(node_id, RejectedRows(stream=output.batch.stream, rows=tuple(output.rejected)))
        batch = self._check(node_id, output.batch)
        self.stats[node_id].rows_out += batch.num_rows
        if batch.num_rows:
            self._push(node_id, batch)


def below(batch: Batch, cursor: str, upper: Any) -> Batch:
    """The rows of `batch` whose `cursor` is at most `upper` (a backfill's end)."""
    import pyarrow.compute as pc

    column = batch.table.column(cursor)
    bound = pc.cast(pc.scalar(upper), column.type) if not isinstance(upper, (int, float)) else upper
    mask = pc.less_equal(column, bound)
    return Batch(batch.table.filter(pc.fill_null(mask, False)), stream=batch.stream)
