"""The pipeline document and its validation.

A document is `{"nodes": [...], "edges": [{"from": id, "to": id}, ...]}` as DESIGN.md shows it. Validation
checks the graph (networkx), each node's own keys, the connectors it names (in the pipeline's workspace, of
the right kind), the streams and fields, and each transform step's config and input fields, propagating
stream schemas from the sources through the steps. Every problem is reported with the node or edge it is
about; validation never stops at the first one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from aggregator.dataplane import StreamSchema, SyncMode, WriteMode
from apps.transformations.quality import validate_rules
from apps.transformations.steps import StepError, get_step_type

NODE_KINDS = ("source", "transform", "destination")
MAX_NODES = 500
# Every kind may also carry `rules` (validation rules on its output) and `profile` (profile its output).
_QUALITY_KEYS = {"rules", "profile"}
_NODE_KEYS = {
    "source": {"id", "kind", "connector", "stream", "sync_mode", "cursor_field", "position", "label"}
    | _QUALITY_KEYS,
    "transform": {"id", "kind", "step", "config", "position", "label"} | _QUALITY_KEYS,
    "destination": {"id", "kind", "connector", "table", "write_mode", "primary_key", "position", "label"}
    | _QUALITY_KEYS,
}


# Problems that only say a document is unfinished downstream: they do not keep a node above them from
# being previewed (see `problems_blocking`).
UNFINISHED = "unfinished"
CYCLE = "cycle"


@dataclass
class Problem:
    message: str
    node: str | None = None
    edge: int | None = None
    field: str | None = None
    code: str | None = None

    @property
    def path(self) -> str:
        if self.node is not None:
            base = f"nodes.{self.node}"
        elif self.edge is not None:
            base = f"edges.{self.edge}"
        else:
            base = "definition"
        return f"{base}.{self.field}" if self.field else base

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "edge": self.edge, "field": self.field, "message": self.message}


class PipelineInvalid(Exception):
    """Every problem of a document, and the output schema of each node that could still be planned (its
    inputs known and its own config sound), so an editor can show fields beside a mistake elsewhere."""

    def __init__(self, problems: list[Problem], plan: Plan | None = None) -> None:
        super().__init__(problems[0].message if problems else "invalid pipeline")
        self.problems = problems
        # What planning found despite the problems: every node whose inputs were known has its schema,
        # every sound source and destination is resolved.
        self.plan = plan

    @property
    def schemas(self) -> dict[str, StreamSchema]:
        return self.plan.schemas if self.plan is not None else {}

    def as_fields(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for problem in self.problems:
            out.setdefault(problem.path, []).append(problem.message)
        return out


@dataclass
class ConnectorRef:
    """A connector as validation and the executor see it: the row and its registered type."""

    connector: Any
    connector_type: Any

    @property
    def id(self) -> int:
        return int(self.connector.id)

    @property
    def name(self) -> str:
        return str(self.connector.name)

    def is_source(self) -> bool:
        return bool(self.connector_type.is_source())

    def is_destination(self) -> bool:
        return bool(self.connector_type.is_destination())


@dataclass
class ResolvedSource:
    node_id: str
    connector: ConnectorRef
    stream: StreamSchema


@dataclass
class Plan:
    """A validated document ready to run: the graph, each node's dict, resolved connectors and schemas."""

    graph: nx.DiGraph
    nodes: dict[str, dict[str, Any]]
    order: list[str]
    sources: dict[str, ResolvedSource] = field(default_factory=dict)
    destinations: dict[str, ConnectorRef] = field(default_factory=dict)
    schemas: dict[str, StreamSchema] = field(default_factory=dict)  # node id -> output (or input) schema

    def downstream(self, node_id: str) -> list[str]:
        return list(self.graph.successors(node_id))

    def upstream(self, node_id: str) -> list[str]:
        return list(self.graph.predecessors(node_id))


def problems_blocking(problems: list[Problem], nodes: set[str]) -> list[Problem]:
    """The problems that keep the sub-plan made of `nodes` (a node and everything above it) from running:
    those of its nodes, a cycle anywhere, and the document-wide ones, except that the document is
    unfinished downstream (a node that feeds nothing yet, no destination yet). Another node's problem, or
    an edge's (a dropped edge into one of `nodes` shows as that node's arity), does not block."""
    blocking = []
    for problem in problems:
        if problem.code == CYCLE:
            blocking.append(problem)
        elif problem.code == UNFINISHED:
            continue
        elif problem.node is not None:
            if problem.node in nodes:
                blocking.append(problem)
        elif problem.edge is None:
            blocking.append(problem)
    return blocking


# How validation finds things outside the document: connectors by reference, and a stream's schema.
ConnectorLookup = Callable[[str | int], ConnectorRef]  # raises LookupError
StreamLookup = Callable[[ConnectorRef, str], StreamSchema | None]  # raises LookupError with a message


def _structure(
    definition: Any, problems: list[Problem]
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[tuple[str, str]] = []
    if not isinstance(definition, dict):
        problems.append(Problem("The definition must be an object with `nodes` and `edges`."))
        return nodes, edges
    unknown = set(definition) - {"nodes", "edges"}
    if unknown:
        problems.append(Problem(f"Unknown keys: {', '.join(sorted(unknown))}."))
    raw_nodes = definition.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.append(Problem("`nodes` must be a non-empty list.", field="nodes"))
        raw_nodes = []
    if len(raw_nodes) > MAX_NODES:
        problems.append(Problem(f"A pipeline has at most {MAX_NODES} nodes.", field="nodes"))
        raw_nodes = raw_nodes[:MAX_NODES]
    for index, node in enumerate(raw_nodes):
        if not isinstance(node, dict):
            problems.append(Problem(f"Node #{index + 1} must be an object.", field="nodes"))
            continue
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id.strip() or len(node_id) > 100:
            problems.append(
                Problem(f"Node #{index + 1} needs an `id` (a string of 1 to 100 characters).", field="nodes")
            )
            continue
        if node_id in nodes:
            problems.append(Problem(f"Node id '{node_id}' is used twice.", node=node_id, field="id"))
            continue
        kind = node.get("kind")
        if kind not in NODE_KINDS:
            problems.append(
                Problem(
                    f"`kind` must be one of {', '.join(NODE_KINDS)}, not {kind!r}.",
                    node=node_id,
                    field="kind",
                )
            )
            continue
        extra = set(node) - _NODE_KEYS[kind]
        if extra:
            problems.append(
                Problem(f"Unknown keys for a {kind} node: {', '.join(sorted(extra))}.", node=node_id)
            )
        nodes[node_id] = node

    raw_edges = definition.get("edges", [])
    if not isinstance(raw_edges, list):
        problems.append(Problem("`edges` must be a list.", field="edges"))
        raw_edges = []
    seen: set[tuple[str, str]] = set()
    for index, edge in enumerate(raw_edges):
        if (
            not isinstance(edge, dict)
            or set(edge) - {"from", "to", "id"}
            or not isinstance(edge.get("from"), str)
            or not isinstance(edge.get("to"), str)
        ):
            problems.append(Problem('An edge is `{"from": <node id>, "to": <node id>}`.', edge=index))
            continue
        src, dst = edge["from"], edge["to"]
        bad = False
        for end, name in ((src, "from"), (dst, "to")):
            if end not in nodes:
                problems.append(Problem(f"Edge {name} unknown node {end!r}.", edge=index, field=name))
                bad = True
        if bad:
            continue
        if src == dst:
            problems.append(Problem(f"Node '{src}' cannot feed itself.", edge=index))
            continue
        if (src, dst) in seen:
            problems.append(Problem(f"Edge {src} → {dst} is listed twice.", edge=index))
            continue
        seen.add((src, dst))
        edges.append((src, dst))
    return nodes, edges


def build_graph(definition: Any) -> tuple[nx.DiGraph, dict[str, dict[str, Any]], list[Problem]]:
    problems: list[Problem] = []
    nodes, edges = _structure(definition, problems)
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        path = " → ".join([a for a, _ in cycle] + [cycle[0][0]])
        problems.append(Problem(f"The graph has a cycle: {path}.", node=cycle[0][0], code=CYCLE))
    return graph, nodes, problems


def _arity(
    graph: nx.DiGraph,
    nodes: dict[str, dict[str, Any]],
    step_arity: Callable[[str], tuple[int, int | None]],
    problems: list[Problem],
) -> None:
    for node_id, node in nodes.items():
        ins, outs = graph.in_degree(node_id), graph.out_degree(node_id)
        kind = node["kind"]
        if kind == "source":
            if ins:
                problems.append(Problem("A source has no inputs.", node=node_id))
            if not outs:
                problems.append(
                    Problem("A source must feed at least one node.", node=node_id, code=UNFINISHED)
                )
        elif kind == "destination":
            if outs:
                problems.append(Problem("A destination has no outputs.", node=node_id))
            if ins != 1:
                problems.append(Problem(f"A destination takes exactly one input, not {ins}.", node=node_id))
        else:
            if not outs:
                problems.append(
                    Problem("A transform must feed at least one node.", node=node_id, code=UNFINISHED)
                )
            step = node.get("step")
            if isinstance(step, str):
                try:
                    low, high = step_arity(step)
                except LookupError:
                    continue  # reported with the step config
                if ins < low or (high is not None and ins > high):
                    if high == low:
                        wanted = f"{low}"
                    else:
                        wanted = f"{low} or more" if high is None else f"{low} to {high}"
                    problems.append(
                        Problem(f"Step '{step}' takes {wanted} input(s), not {ins}.", node=node_id)
                    )


def validate_definition(
    definition: Any,
    *,
    connector_lookup: ConnectorLookup,
    stream_lookup: StreamLookup,
) -> Plan:
    """The run plan of a valid document; raises PipelineInvalid listing every problem otherwise."""

    def step_arity(slug: str) -> tuple[int, int | None]:
        try:
            step_type = get_step_type(slug)
        except StepError as exc:
            raise LookupError(slug) from exc
        return step_type.min_inputs, step_type.max_inputs

    graph, nodes, problems = build_graph(definition)
    _arity(graph, nodes, step_arity, problems)
    acyclic = nx.is_directed_acyclic_graph(graph)
    order = list(nx.topological_sort(graph)) if acyclic else list(nodes)
    plan = Plan(graph=graph, nodes=nodes, order=order)

    for node_id in order:
        node = nodes[node_id]
        kind = node["kind"]
        if kind == "source":
            _check_source(node_id, node, plan, connector_lookup, stream_lookup, problems)
        elif kind == "transform":
            _check_transform(node_id, node, plan, problems)
        else:
            _check_destination(node_id, node, plan, connector_lookup, problems)
        _check_quality(node_id, node, plan, problems)

    if not any(n["kind"] == "source" for n in nodes.values()) and nodes:
        problems.append(Problem("A pipeline needs at least one source.", field="nodes"))
    if not any(n["kind"] == "destination" for n in nodes.values()) and nodes:
        problems.append(Problem("A pipeline needs at least one destination.", field="nodes", code=UNFINISHED))
    if problems:
        # Planning went on past each problem wherever a node's inputs were known: keep what it found.
        raise PipelineInvalid(problems, plan=plan)
    return plan


def _lookup_connector(
    node_id: str, ref: Any, lookup: ConnectorLookup, problems: list[Problem]
) -> ConnectorRef | None:
    if not isinstance(ref, (str, int)) or ref == "":
        problems.append(
            Problem("`connector` must name a connector of this workspace.", node=node_id, field="connector")
        )
        return None
    try:
        return lookup(ref)
    except LookupError:
        problems.append(Problem(f"No connector {ref!r} in this workspace.", node=node_id, field="connector"))
        return None


def _check_source(
    node_id: str,
    node: dict[str, Any],
    plan: Plan,
    connector_lookup: ConnectorLookup,
    stream_lookup: StreamLookup,
    problems: list[Problem],
) -> None:
    connector = _lookup_connector(node_id, node.get("connector"), connector_lookup, problems)
    stream_name = node.get("stream")
    if not isinstance(stream_name, str) or not stream_name:
        problems.append(
            Problem("`stream` must name one of the connector's streams.", node=node_id, field="stream")
        )
    sync_mode = node.get("sync_mode", SyncMode.FULL_REFRESH)
    if sync_mode not in {m.value for m in SyncMode}:
        problems.append(
            Problem(
                f"`sync_mode` must be full_refresh or incremental, not {sync_mode!r}.",
                node=node_id,
                field="sync_mode",
            )
        )
    if connector is None or not isinstance(stream_name, str) or not stream_name:
        return
    if not connector.is_source():
        problems.append(
            Problem(f"Connector '{connector.name}' is not a source.", node=node_id, field="connector")
        )
        return
    try:
        schema = stream_lookup(connector, stream_name)
    except LookupError as exc:
        problems.append(Problem(str(exc), node=node_id, field="connector"))
        return
    if schema is None:
        problems.append(
            Problem(
                f"Connector '{connector.name}' has no stream {stream_name!r}.", node=node_id, field="stream"
            )
        )
        return
    if sync_mode == SyncMode.INCREMENTAL:
        cursor = node.get("cursor_field") or schema.cursor_field
        if not cursor:
            problems.append(
                Problem("An incremental source needs a `cursor_field`.", node=node_id, field="cursor_field")
            )
        elif cursor not in schema.field_names:
            problems.append(
                Problem(
                    f"Stream '{stream_name}' has no field {cursor!r} to use as cursor.",
                    node=node_id,
                    field="cursor_field",
                )
            )
        elif SyncMode.INCREMENTAL not in schema.supported_sync_modes:
            problems.append(
                Problem(
                    f"Stream '{stream_name}' does not support incremental reads.",
                    node=node_id,
                    field="sync_mode",
                )
            )
    plan.sources[node_id] = ResolvedSource(node_id=node_id, connector=connector, stream=schema)
    plan.schemas[node_id] = schema


def _check_transform(node_id: str, node: dict[str, Any], plan: Plan, problems: list[Problem]) -> None:
    step_slug = node.get("step")
    if not isinstance(step_slug, str):
        problems.append(Problem("`step` must name a transform step.", node=node_id, field="step"))
        return
    try:
        step_type = get_step_type(step_slug)
    except StepError as exc:
        problems.append(Problem(str(exc), node=node_id, field="step"))
        return
    raw_config = node.get("config", {})
    if not isinstance(raw_config, dict):
        problems.append(Problem("`config` must be an object.", node=node_id, field="config"))
        return
    try:
        config = step_type.validate_config(raw_config)
    except StepError as exc:
        problems.append(Problem(str(exc), node=node_id, field=exc.field or "config"))
        return
    upstream = plan.upstream(node_id)
    inputs = {up: plan.schemas[up] for up in upstream if up in plan.schemas}
    if not inputs or len(inputs) != len(upstream):
        return  # an upstream problem is already reported
    try:
        plan.schemas[node_id] = step_type.output_schema_for(config, inputs)
    except StepError as exc:
        problems.append(Problem(str(exc), node=node_id, field=exc.field or "config"))


def _check_quality(node_id: str, node: dict[str, Any], plan: Plan, problems: list[Problem]) -> None:
    """The node's validation rules against its output schema, and its `profile` flag."""
    if "profile" in node and not isinstance(node["profile"], bool):
        problems.append(Problem("`profile` must be true or false.", node=node_id, field="profile"))
    if "rules" not in node:
        return
    # Without a schema (a problem upstream or in the node, already reported) only the configs are checked.
    _, found = validate_rules(node["rules"], plan.schemas.get(node_id))
    problems.extend(Problem(message, node=node_id, field=path) for path, message in found)


def _check_destination(
    node_id: str, node: dict[str, Any], plan: Plan, connector_lookup: ConnectorLookup, problems: list[Problem]
) -> None:
    connector = _lookup_connector(node_id, node.get("connector"), connector_lookup, problems)
    table = node.get("table")
    if not isinstance(table, str) or not table.strip():
        problems.append(
            Problem("`table` must name the table (or file set) to write.", node=node_id, field="table")
        )
    write_mode = node.get("write_mode", WriteMode.APPEND)
    if write_mode not in {m.value for m in WriteMode}:
        problems.append(
            Problem(
                f"`write_mode` must be append, overwrite or merge, not {write_mode!r}.",
                node=node_id,
                field="write_mode",
            )
        )
    primary_key = node.get("primary_key") or []
    if not isinstance(primary_key, list) or not all(isinstance(k, str) for k in primary_key):
        problems.append(
            Problem("`primary_key` must be a list of field names.", node=node_id, field="primary_key")
        )
        primary_key = []
    if write_mode == WriteMode.MERGE and not primary_key:
        problems.append(Problem("Merge needs a `primary_key`.", node=node_id, field="primary_key"))
    if connector is not None:
        if not connector.is_destination():
            problems.append(
                Problem(
                    f"Connector '{connector.name}' is not a destination.", node=node_id, field="connector"
                )
            )
        else:
            plan.destinations[node_id] = connector
    upstream = plan.upstream(node_id)
    incoming = plan.schemas.get(upstream[0]) if len(upstream) == 1 else None
    if incoming is not None:
        plan.schemas[node_id] = incoming
        missing = [k for k in primary_key if k not in incoming.field_names]
        if missing:
            problems.append(
                Problem(
                    f"Primary key field(s) {', '.join(missing)} do not reach this destination.",
                    node=node_id,
                    field="primary_key",
                )
            )
