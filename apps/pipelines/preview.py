"""Preview: a node's input and output rows on a sample, without writing anywhere.

The upstream subgraph of the node runs on the first N rows of each source it reaches (N capped at
PREVIEW_MAX_ROWS; each source stops being read as soon as it has given N rows) through the engine a run
uses (`engine.py`: the same traversal, step runners and budgets, sources in the order the steps'
`input_order` asks for), with a recorder that keeps the outputs of the node and its inputs in memory and
records nothing. Destinations are never opened: a destination node's output is simply what would reach
it. Validation rules of the nodes on the way are applied as in a run (rejected rows are left out and
shown), and a failing `fail` rule is reported rather than stopping the preview.

Isolation: a preview runs whatever the document says on whatever the source holds, inside the web
server. So it runs in a child process forked for it (copy-on-write: the code and the plan are already
there). The web process watches the memory it uses of its own (private pages) and kills it past
AGGREGATOR_PREVIEW_MEMORY_BYTES, or after AGGREGATOR_PREVIEW_TIMEOUT_S; its address space is capped too, at
a few times that budget, for what grows faster than the watch looks. The answer comes back through a
pipe. Whatever the preview does to its memory, the web server's stays as it was, and a preview past
either limit is a 400 naming the node it was working on.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import signal
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import pyarrow as pa
from django.conf import settings
from django.core.exceptions import ValidationError

from aggregator.dataplane import Batch, RejectedRow, RejectedRows, StreamSchema
from aggregator.logging import get_logger
from apps.connectors.base import ConnectorError
from apps.connectors.selectors import connector_runtime
from apps.schemas.contracts import json_safe
from apps.transformations.library import forget_inherited_connections
from apps.transformations.limits import size
from apps.transformations.profiling import StreamProfiler
from apps.transformations.quality import NodeRules, RuleError
from apps.transformations.steps import StepError

from .definition import Plan
from .engine import Engine, SourceRead

logger = get_logger(__name__)

PREVIEW_DEFAULT_ROWS = 100
# A preview answers an HTTP request: 1,000 rows of a wide table is a few hundred kB of JSON per side.
PREVIEW_MAX_ROWS = 1000
PREVIEW_MAX_REJECTED = 200
# A thousand rows through a dozen steps needs tens of MB; this is room for wide rows and DuckDB's arenas.
PREVIEW_MEMORY_BYTES = 1024 * 1024 * 1024
PREVIEW_TIMEOUT_S = 30.0
# How often the web process looks at a preview's memory: an allocation faster than this overshoots by what
# it grows in this time, and the address-space cap (MEMORY_CAP_FACTOR) stops whatever outruns the watch.
MEMORY_POLL_S = 0.05
# The address-space cap is this many times the memory budget above what the child inherited: the budget
# itself is kept on the pages the child really uses, as address space also counts what the allocators and
# thread pools merely reserve (tens of MB per thread), which made a 1 GiB cap refuse a 100-row preview.
MEMORY_CAP_FACTOR = 4


def _rows(batches: list[Batch], limit: int) -> list[dict[str, Any]]:
    tables = [b.table for b in batches if b.num_rows]
    if not tables:
        return []
    table = pa.concat_tables(tables, promote_options="permissive").slice(0, limit)
    return [{k: json_safe(v) for k, v in row.items()} for row in table.to_pylist()]


class _SampleRecorder:
    """The engine's recorder for a preview: keeps the outputs of the node and its inputs and the rows
    refused on the way, in memory, and reports each node the engine starts working on (`progress`)."""

    def __init__(self, plan: Plan, keep: set[str], progress: Callable[[str], None]) -> None:
        self.plan = plan
        self.progress = progress
        self.current: str | None = None
        self.outputs: dict[str, list[Batch]] = {node_id: [] for node_id in keep}
        # (node, by its rules?) -> refused rows, each list held to what the answer can show.
        self.refused: dict[tuple[str, bool], list[RejectedRow]] = {}

    def working_on(self, node_id: str) -> None:
        if node_id != self.current:
            self.current = node_id
            self.progress(node_id)

    def output(self, node_id: str, batch: Batch) -> None:
        kept = self.outputs.get(node_id)
        if kept is not None:
            kept.append(batch)

    def quarantine(self, node_id: str, rejected: RejectedRows, rules: list[str] | None) -> None:
        bucket = self.refused.setdefault((node_id, rules is not None), [])
        bucket += rejected.rows[: max(0, PREVIEW_MAX_REJECTED - len(bucket))]

    def node_failed(self, node_id: str, exc: StepError) -> None:
        pass

    def rejected(self) -> list[dict[str, Any]]:
        """The refused rows node by node in graph order, those a step or the source refused before those
        its rules did, PREVIEW_MAX_REJECTED at most."""
        rows = [
            {"node": node_id, **json_safe(r.to_dict())}
            for node_id in self.plan.order
            for by_rules in (False, True)
            for r in self.refused.get((node_id, by_rules), [])
        ]
        return rows[:PREVIEW_MAX_REJECTED]


def _sample_rules(plan: Plan, needed: set[str]) -> dict[str, NodeRules]:
    """The validation rules of the nodes on the way, as a run applies them."""
    rules: dict[str, NodeRules] = {}
    for node_id in plan.order:
        raw_rules = plan.nodes[node_id].get("rules")
        if node_id not in needed or not raw_rules or node_id not in plan.schemas:
            continue
        try:
            rules[node_id] = NodeRules.from_node(node_id, raw_rules, plan.schemas[node_id])
        except RuleError as exc:
            raise ValidationError({f"nodes.{node_id}.rules": [exc.message]}) from None
    return rules


def _sample_source(plan: Plan, node_id: str, limit: int) -> SourceRead:
    """A source's first `limit` rows: read in chunks of `limit` rows, so the first batch is all a preview
    needs, and stopped as soon as it has given them. No state: a preview always reads from the start."""
    source = plan.sources[node_id]
    connector_type, config = connector_runtime(source.connector.connector)
    if "chunk_size" in type(config).model_fields:
        config = config.model_copy(update={"chunk_size": max(1, limit)})

    def items() -> Iterator[Batch | RejectedRows]:
        read = 0
        reader = connector_type.read(config, source.stream, None)
        try:
            for item in reader:
                if isinstance(item, Batch):
                    batch = (
                        item
                        if read + item.num_rows <= limit
                        else Batch(item.table.slice(0, limit - read), stream=item.stream)
                    )
                    yield batch
                    read += batch.num_rows
                    if read >= limit:
                        return
                elif isinstance(item, RejectedRows):
                    yield item
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

    return SourceRead(stream=source.stream, items=items())


def pipeline_preview(*, plan: Plan, node_id: str, limit: int = PREVIEW_DEFAULT_ROWS) -> dict[str, Any]:
    """Run the upstream subgraph of `node_id` on the first `limit` rows of each source (a validated plan:
    see `pipeline_plan`), in a child process held to the preview's memory and time limits. Raises
    ValidationError naming the node at fault."""
    if node_id not in plan.nodes:
        raise ValidationError({"node": [f"No node {node_id!r} in this pipeline."]})
    limit = max(1, min(int(limit), PREVIEW_MAX_ROWS))
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: no fork, no isolation
        return _preview(plan, node_id, limit, lambda node: None)
    return _isolated(lambda progress: _preview(plan, node_id, limit, progress))


def _preview(plan: Plan, node_id: str, limit: int, progress: Callable[[str], None]) -> dict[str, Any]:
    needed = nx.ancestors(plan.graph, node_id) | {node_id}
    recorder = _SampleRecorder(plan, {node_id, *plan.upstream(node_id)}, progress)
    rules = _sample_rules(plan, needed)
    # No destination is opened: a destination node's output is what would reach it, after its own rules.
    engine = Engine(
        plan,
        active=needed,
        open_source=lambda source_id: _sample_source(plan, source_id, limit),
        recorder=recorder,
        rules=rules,
        strict_rules=False,
        whole_inputs=True,
    )
    try:
        engine.run()
    except StepError as exc:
        failed_node, cause = engine.failed or (recorder.current or node_id, exc)
        key = f"nodes.{failed_node}.{cause.field}" if cause.field else f"nodes.{failed_node}"
        raise ValidationError({key: [cause.message]}) from None
    except ConnectorError as exc:
        raise ValidationError({f"nodes.{recorder.current or node_id}": [exc.message]}) from None
    progress(node_id)
    rule_results = [
        {
            "node": rule_node,
            **json_safe(outcome),
            "message": engine.rule_failures.get(rule_node, {}).get(outcome["rule"]),
        }
        for rule_node in plan.order
        if rule_node in rules
        for outcome in rules[rule_node].results()
        if outcome["status"] != "passed" or outcome["rule"] in engine.rule_failures.get(rule_node, {})
    ]
    schema: StreamSchema | None = plan.schemas.get(node_id)
    # The profile of the node's output sample: the same column statistics and histograms a run keeps, so
    # a step's effect on the data shows before anything runs.
    profiler = StreamProfiler(schema)
    for batch in recorder.outputs[node_id]:
        profiler.add(batch.table)
    return {
        "node": node_id,
        "limit": limit,
        "inputs": {up: _rows(recorder.outputs[up], limit) for up in plan.upstream(node_id)},
        "output": _rows(recorder.outputs[node_id], limit),
        "schema": schema.to_dict() if schema is not None else None,
        "rejected": recorder.rejected(),
        "rule_failures": rule_results,
        "profile": json_safe(profiler.to_dict()),
    }


# --- the child process ----------------------------------------------------------------------------------
#
# Messages from the child are length-prefixed pickles (the child is this same code, so pickle is as safe as
# a function call): ("node", id) as it starts each node, so a preview stopped from outside can be blamed
# on a node, then one of ("done", result), ("invalid", fields), ("memory", None), ("crash", type name).

_FRAME = struct.Struct("!I")
# What the child inherited and must neither use nor close (see _forget_parent).
_inherited: list[Any] = []


def _limits() -> tuple[int, float]:
    memory = int(getattr(settings, "AGGREGATOR_PREVIEW_MEMORY_BYTES", PREVIEW_MEMORY_BYTES))
    return memory, float(getattr(settings, "AGGREGATOR_PREVIEW_TIMEOUT_S", PREVIEW_TIMEOUT_S))


def _isolated(work: Callable[[Callable[[str], None]], dict[str, Any]]) -> dict[str, Any]:
    memory, timeout = _limits()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(work, read_fd, write_fd, memory, timeout)  # never returns
    os.close(write_fd)
    started = time.monotonic()
    try:
        node, outcome, timed_out = _collect(pid, read_fd, timeout, memory)
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    key = f"nodes.{node}" if node else "node"
    if timed_out:
        logger.warning("pipeline_preview_timed_out", node=node, timeout_s=timeout)
        raise ValidationError(
            {
                key: [
                    f"the preview took longer than {timeout:g} s and was stopped "
                    "(AGGREGATOR_PREVIEW_TIMEOUT_S)"
                ]
            }
        )
    kind: str = ""
    payload: Any = None
    if outcome is not None:
        kind, payload = outcome
    if kind == "done":
        logger.debug("pipeline_preview_done", seconds=round(time.monotonic() - started, 3))
        return dict(payload)
    if kind == "invalid":
        raise ValidationError(payload)
    if kind == "crash":
        raise RuntimeError(f"the preview failed in its process ({payload})")
    # Out of memory: reported by the child, or the child died of it (a C++ allocation failure aborts).
    how = "" if kind == "memory" else f" (its process ended: {_ending(status)})"
    logger.warning("pipeline_preview_out_of_memory", node=node, memory=memory, status=status)
    raise ValidationError(
        {
            key: [
                f"the preview used more than {size(memory)} of memory and was stopped{how} "
                "(AGGREGATOR_PREVIEW_MEMORY_BYTES)"
            ]
        }
    )


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return signal.Signals(number).name
        return f"signal {number}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _private_bytes(pid: int) -> int | None:
    """Memory the child holds of its own: its private pages (what it allocated, and the parent's pages it
    wrote to). The pages it still shares with the web server are not its cost."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


def _collect(
    pid: int, fd: int, timeout: float, memory: int
) -> tuple[str | None, tuple[str, Any] | None, bool]:
    """Read the child's messages until it closes the pipe or the time is up (then kill it), watching its
    memory every MEMORY_POLL_S (past `memory`, it is killed). Returns the node it last started, its final
    message, and whether it was stopped for time."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    buffer = bytearray()
    node: str | None = None
    outcome: tuple[str, Any] | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return node, None, True
        used = _private_bytes(pid)
        if used is not None and used > memory:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return node, ("memory", None), False
        if not poller.poll(min(remaining, MEMORY_POLL_S) * 1000):
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return node, outcome, False
        buffer += chunk
        while len(buffer) >= _FRAME.size:
            (length,) = _FRAME.unpack_from(buffer)
            if len(buffer) < _FRAME.size + length:
                break
            kind, payload = pickle.loads(bytes(buffer[_FRAME.size : _FRAME.size + length]))  # noqa: S301 - from our own child
            del buffer[: _FRAME.size + length]
            if kind == "node":
                node = payload
            else:
                outcome = (kind, payload)


def _child(
    work: Callable[[Callable[[str], None]], dict[str, Any]],
    read_fd: int,
    write_fd: int,
    memory: int,
    timeout: float,
) -> None:
    try:
        os.close(read_fd)
        _forget_parent()
        _hold_to(memory, timeout)

        def send(kind: str, payload: Any) -> None:
            data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
            view = memoryview(_FRAME.pack(len(data)) + data)
            while view:
                view = view[os.write(write_fd, view) :]

        try:
            send("done", work(lambda node: send("node", node)))
        except ValidationError as exc:
            send("invalid", exc.message_dict if hasattr(exc, "error_dict") else {"node": exc.messages})
        except MemoryError:
            send("memory", None)
        except BaseException as exc:
            logger.exception("pipeline_preview_crashed")
            send("crash", type(exc).__name__)
    finally:
        # Never return into the caller's stack (the request, the test runner) and run none of its exit
        # handlers or finalisers: they belong to the parent.
        os._exit(0)


def _forget_parent() -> None:
    """The database connections this process inherited share their sockets with the parent's: using one
    would interleave two conversations on it, and closing one (even by garbage collection) would end the
    parent's session. They stay referenced until os._exit, and Django opens fresh ones if a source needs
    the database (a push stream)."""
    import gc

    from asgiref.local import Local
    from django.db import connections

    # The inherited objects are never collected here; freezing them keeps the collector from touching
    # (and so copying) every page of them.
    gc.freeze()
    # Django keeps a handler's connections in one Local (django.utils.connection.BaseConnectionHandler):
    # a fresh one makes every alias connect anew on first use.
    handler: Any = connections
    _inherited.append(handler._connections)
    handler._connections = Local(handler.thread_critical)
    forget_inherited_connections()
    # The web server's handlers (graceful shutdown on SIGTERM/SIGINT) are the parent's business, and its
    # event loop's wake-up socket is shared with the parent: a signal here must not write to it.
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(number, signal.SIG_DFL)


def _hold_to(memory: int, timeout: float) -> None:
    """Cap the address space at what the fork inherited plus MEMORY_CAP_FACTOR times `memory`: a backstop for
    an allocation that outruns the parent's watch on the pages used (allocations past it fail: Arrow and
    Python raise MemoryError) instead of growing into the machine's memory. The alarm ends the child even
    if its parent is gone and nobody is left to kill it."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        inherited = pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux: no address-space accounting to build on
        inherited = None
    if inherited is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = inherited + memory * MEMORY_CAP_FACTOR
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    signal.alarm(int(timeout) + 5)
