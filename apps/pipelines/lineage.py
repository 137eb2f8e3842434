"""Column lineage: for each destination column, the source columns it is computed from and the nodes it
passes through, derived from the graph and what each step does to columns.

A column passes through a step unchanged unless the step renames, derives or drops it. What each step
does is a small rule per step slug (`RULES`): given the node's config, its inputs' schemas and its output
schema, the rule says which input columns each output column comes from. A step without a rule is taken
to compute every output column from every input column (never claiming less than may be true), and `sql`
is opaque by nature. Filters and other row-level steps keep columns as they are but still appear in the
column's path: they decided which values arrived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aggregator.dataplane import StreamSchema
from apps.connectors.selectors import connector_get_for_user, connector_list_for_user
from apps.transformations.expressions import Column, ExpressionError, Node, parse

from .definition import Plan

Origin = tuple[str, str]  # (input node id, column)
Rule = Callable[[dict[str, Any], dict[str, StreamSchema], StreamSchema], dict[str, list[Origin]]]


def expression_columns(text: str) -> list[str]:
    """The columns an expression reads, in order of first use (walks the parsed tree; parses, never runs)."""
    try:
        tree = parse(text)
    except ExpressionError:
        return []
    found: list[str] = []

    def walk(value: Any) -> Iterator[Any]:
        if isinstance(value, Column):
            yield value.name
        elif isinstance(value, Node):
            for f in dataclasses.fields(value):
                yield from walk(getattr(value, f.name))
        elif isinstance(value, tuple | list):
            for item in value:
                yield from walk(item)

    for name in walk(tree):
        if name not in found:
            found.append(name)
    return found


def _all(inputs: dict[str, StreamSchema]) -> list[Origin]:
    return [(node, name) for node, schema in inputs.items() for name in schema.field_names]


def _same_name(name: str, inputs: dict[str, StreamSchema]) -> list[Origin]:
    return [(node, name) for node, schema in inputs.items() if name in schema.field_names]


def _by_name(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    """Columns keep their names (select, drop, reorder, cast, filter, sort, …); a column no input has is
    made from the step's `column` when it names one (extract, split, parse into a target), else from all."""
    source = config.get("column")
    out = {}
    for name in output.field_names:
        origins = _same_name(name, inputs)
        if not origins and isinstance(source, str):
            origins = _same_name(source, inputs)
        out[name] = origins or _all(inputs)
    return out


def _rename(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    (node,) = inputs
    back = {new: old for old, new in (config.get("columns") or {}).items()}
    return {name: [(node, back.get(name, name))] for name in output.field_names}


def _derive(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    (node,) = inputs
    target = config.get("column")
    used = [
        (node, c)
        for c in expression_columns(str(config.get("expression", "")))
        if c in inputs[node].field_names
    ]
    return {name: used if name == target else [(node, name)] for name in output.field_names}


def _map_fields(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    (node,) = inputs
    return {
        m["to"]: [(node, m["from"])]
        for m in config.get("mappings") or []
        if m.get("to") in output.field_names
    }


def _aggregate(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    (node,) = inputs
    keys = list(config.get("group_by") or [])
    out: dict[str, list[Origin]] = {k: [(node, k)] for k in keys}
    for agg in config.get("aggregations") or []:
        column = agg.get("column")
        name = agg.get("name") or (
            agg.get("function") if column is None else f"{agg.get('function')}_{column}"
        )
        # A row count is computed from no column's values (only from which rows share the keys).
        out[name] = [(node, column)] if column else []
    return {name: out.get(name, _all(inputs)) for name in output.field_names}


def _pivot(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    (node,) = inputs
    index = list(config.get("index") or [])
    made = [(node, c) for c in (config.get("column"), config.get("value")) if c]
    return {name: [(node, name)] if name in index else made for name in output.field_names}


def _join(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    lookup = config.get("lookup")
    main = {k: v for k, v in inputs.items() if k != lookup}
    side = {k: v for k, v in inputs.items() if k == lookup}
    suffix = str(config.get("suffix", "_lookup"))
    out = {}
    for name in output.field_names:
        origins = _same_name(name, main) or _same_name(name, side)
        if not origins and suffix and name.endswith(suffix):
            origins = _same_name(name[: -len(suffix)], side)
        out[name] = origins or _all(inputs)
    return out


def _union(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    # The optional source column says which input a row came from: it is made from no input column.
    return {name: _same_name(name, inputs) for name in output.field_names}


def _opaque(
    config: dict[str, Any], inputs: dict[str, StreamSchema], output: StreamSchema
) -> dict[str, list[Origin]]:
    return {name: _all(inputs) for name in output.field_names}


_BY_NAME = [
    "select",
    "drop",
    "reorder",
    "cast",
    "filter",
    "sort",
    "limit",
    "deduplicate",
    "fill_nulls",
    "trim",
    "change_case",
    "normalize",
    "regex_replace",
    "regex_extract",
    "split",
    "hash",
    "mask",
    "redact",
    "parse_datetime",
    "convert_timezone",
    "truncate_datetime",
    "extract_date_parts",
    "flatten_json",
    "explode",
]
RULES: dict[str, Rule] = {
    **dict.fromkeys(_BY_NAME, _by_name),
    "rename": _rename,
    "derive": _derive,
    "map_fields": _map_fields,
    "aggregate": _aggregate,
    "pivot": _pivot,
    "join": _join,
    "union": _union,
    "sql": _opaque,
}


def pipeline_lineage(*, plan: Plan) -> dict[str, Any]:
    """`{"<destination>": {"<column>": [{"node": source node, "column": source column}, …]}, …,
    "paths": {"<destination>": {"<column>": [node ids from the sources to the destination]}}}`."""
    origins: dict[str, dict[str, set[Origin]]] = {}
    through: dict[str, dict[str, set[str]]] = {}
    for node_id in plan.order:
        node = plan.nodes[node_id]
        schema = plan.schemas.get(node_id)
        if schema is None:
            continue
        upstream = [up for up in plan.upstream(node_id) if up in plan.schemas]
        if node["kind"] == "source":
            origins[node_id] = {name: {(node_id, name)} for name in schema.field_names}
            through[node_id] = {name: {node_id} for name in schema.field_names}
            continue
        if node["kind"] == "destination":
            (up,) = upstream
            mapping = {name: [(up, name)] for name in schema.field_names}
        else:
            inputs = {up: plan.schemas[up] for up in upstream}
            rule = RULES.get(str(node.get("step")), _opaque)
            mapping = rule(node.get("config") or {}, inputs, schema)
        origins[node_id], through[node_id] = {}, {}
        for name in schema.field_names:
            found: set[Origin] = set()
            path = {node_id}
            for up, column in mapping.get(name, []):
                found |= origins.get(up, {}).get(column, set())
                path |= through.get(up, {}).get(column, set())
            origins[node_id][name] = found
            through[node_id][name] = path
    rank = {node_id: i for i, node_id in enumerate(plan.order)}
    result: dict[str, Any] = {}
    paths: dict[str, dict[str, list[str]]] = {}
    for node_id in plan.order:
        if plan.nodes[node_id]["kind"] != "destination" or node_id not in origins:
            continue
        result[node_id] = {
            name: [
                {"node": n, "column": c}
                for n, c in sorted(origins[node_id][name], key=lambda o: (rank[o[0]], o[1]))
            ]
            for name in plan.schemas[node_id].field_names
        }
        paths[node_id] = {
            name: sorted(through[node_id][name], key=rank.__getitem__)
            for name in plan.schemas[node_id].field_names
        }
    result["paths"] = paths
    return result


# --- Lineage of the workspace's destination tables ---------------------------------------------------------
#
# A destination table is a (destination connector, table name) pair that one or more pipelines write. Its
# lineage is drawn as one graph: source columns (connector, stream, column) on the left, the steps of every
# pipeline writing the table in the middle, the table's columns on the right. Every node and edge lists the
# destination columns whose path it is on, so a client highlights a column's path without walking the graph.


def _destinations(pipeline: Any, refs: dict[str, Any]) -> Iterator[tuple[Any, str, str]]:
    """(connector, table, node id) for each destination node of a pipeline's saved document whose connector
    is in `refs` (keyed by id and by name: a document may name it either way)."""
    definition = pipeline.definition if isinstance(pipeline.definition, dict) else {}
    for node in definition.get("nodes") or []:
        if not isinstance(node, dict) or node.get("kind") != "destination":
            continue
        connector = refs.get(str(node.get("connector")))
        table = node.get("table")
        if connector is not None and isinstance(table, str) and table:
            yield connector, table, str(node.get("id"))


def _refs_by_workspace(connectors: Iterable[Any]) -> dict[int, dict[str, Any]]:
    """Per workspace, its connectors by name and by id; an id wins over a name that looks like one, as in
    `connector_get_by_ref`."""
    refs: dict[int, dict[str, Any]] = {}
    listed = list(connectors)
    for c in listed:
        refs.setdefault(c.workspace_id, {}).setdefault(c.name, c)
    for c in listed:
        refs[c.workspace_id][str(c.id)] = c
    return refs


def _connector_brief(connector: Any) -> dict[str, Any]:
    return {"id": connector.id, "name": connector.name, "connector_type": connector.connector_type}


def lineage_tables_for_user(*, user: Any, workspace_id: int | None = None) -> list[dict[str, Any]]:
    """The destination tables the caller's pipelines write, each with the pipelines (and nodes) writing it,
    ordered by connector name and table. Read from the saved documents only: two queries, nothing planned."""
    from .selectors import pipeline_list_for_user

    pipelines = pipeline_list_for_user(user=user)
    connectors = connector_list_for_user(user=user)
    if workspace_id is not None:
        pipelines = pipelines.filter(workspace_id=workspace_id)
        connectors = connectors.filter(workspace_id=workspace_id)
    refs = _refs_by_workspace(connectors)
    tables: dict[tuple[int, str], dict[str, Any]] = {}
    # The list selector's prefetch of dependencies and last-run annotations are not needed here.
    plain = pipelines.prefetch_related(None).only("id", "name", "workspace_id", "definition")
    for pipeline in plain:
        for connector, table, node_id in _destinations(pipeline, refs.get(pipeline.workspace_id, {})):
            entry = tables.setdefault(
                (connector.id, table),
                {
                    "workspace": connector.workspace_id,
                    "connector": _connector_brief(connector),
                    "table": table,
                    "pipelines": [],
                },
            )
            entry["pipelines"].append({"id": pipeline.id, "name": pipeline.name, "node": node_id})
    return sorted(tables.values(), key=lambda t: (t["connector"]["name"], t["connector"]["id"], t["table"]))


class _Graph:
    """Nodes and edges collected across pipelines, each remembering the destination columns it serves."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[tuple[str, str], dict[str, Any]] = {}

    def node(self, node_id: str, for_column: str, /, **attrs: Any) -> str:
        node = self.nodes.setdefault(node_id, {"id": node_id, **attrs, "columns": []})
        if for_column not in node["columns"]:
            node["columns"].append(for_column)
        return node_id

    def edge(self, source: str, target: str, column: str, pipeline_id: int) -> None:
        edge = self.edges.setdefault(
            (source, target),
            {"id": f"{source}->{target}", "source": source, "target": target, "columns": [], "pipelines": []},
        )
        if column not in edge["columns"]:
            edge["columns"].append(column)
        if pipeline_id not in edge["pipelines"]:
            edge["pipelines"].append(pipeline_id)


def _plan_error(exc: Exception) -> str:
    messages = getattr(exc, "message_dict", None)
    if messages:
        return "; ".join(f"{key}: {' '.join(values)}" for key, values in messages.items())
    return "; ".join(getattr(exc, "messages", [str(exc)]))


def table_lineage_for_user(
    *, user: Any, connector_id: int | str, table: str, workspace_id: int | None = None
) -> dict[str, Any]:
    """The lineage graph of one destination table (see above). The connector must be the caller's (else
    Http404, also when `workspace_id` names another workspace); a table nothing writes is a 404 too.

    Each pipeline is planned from its saved document as a run would plan it (schemas of its sources as last
    recorded); a pipeline that no longer validates is listed with its `error` and left out of the graph."""
    from django.core.exceptions import ValidationError
    from django.http import Http404

    from .selectors import pipeline_list_for_user
    from .services import pipeline_plan

    connector = connector_get_for_user(user=user, connector_id=connector_id)
    if workspace_id is not None and connector.workspace_id != workspace_id:
        raise Http404("No such connector.")
    refs = _refs_by_workspace(connector_list_for_user(user=user).filter(workspace_id=connector.workspace_id))
    writers: list[tuple[Any, list[str]]] = []
    for pipeline in pipeline_list_for_user(user=user).filter(workspace_id=connector.workspace_id):
        nodes = [
            node_id
            for c, t, node_id in _destinations(pipeline, refs.get(connector.workspace_id, {}))
            if c.id == connector.id and t == table
        ]
        if nodes:
            writers.append((pipeline, nodes))
    if not writers:
        raise Http404("No pipeline writes this table.")

    graph = _Graph()
    columns: dict[str, dict[str, Any]] = {}
    pipelines: list[dict[str, Any]] = []
    for pipeline, destination_ids in writers:
        entry: dict[str, Any] = {
            "id": pipeline.id,
            "name": pipeline.name,
            "version": pipeline.version,
            "nodes": destination_ids,
            "error": None,
        }
        pipelines.append(entry)
        try:
            plan = pipeline_plan(workspace_id=pipeline.workspace_id, definition=pipeline.definition)
        except ValidationError as exc:
            entry["error"] = _plan_error(exc)
            continue
        lineage = pipeline_lineage(plan=plan)
        for destination in destination_ids:
            if destination not in lineage:
                continue
            _add_destination(graph, columns, plan, pipeline, destination, lineage)
    return {
        "workspace": connector.workspace_id,
        "connector": _connector_brief(connector),
        "table": table,
        "pipelines": pipelines,
        "columns": list(columns.values()),
        "nodes": list(graph.nodes.values()),
        "edges": list(graph.edges.values()),
    }


def _add_destination(
    graph: _Graph,
    columns: dict[str, dict[str, Any]],
    plan: Plan,
    pipeline: Any,
    destination: str,
    lineage: dict[str, Any],
) -> None:
    """Add one destination node's columns, their source columns and the steps between them to `graph`."""
    schema = plan.schemas[destination]

    def source_column(node_id: str, column: str, for_column: str) -> str:
        resolved = plan.sources[node_id]
        stream = str(plan.nodes[node_id].get("stream"))
        known = plan.schemas[node_id]
        field_type = str(known.field(column).type) if column in known.field_names else ""
        return graph.node(
            f"source:{resolved.connector.id}:{stream}:{column}",
            for_column,
            kind="source",
            label=column,
            connector={"id": resolved.connector.id, "name": resolved.connector.name},
            stream=stream,
            column=column,
            type=field_type,
        )

    def step(node_id: str, for_column: str) -> str:
        node = plan.nodes[node_id]
        return graph.node(
            f"step:{pipeline.id}:{node_id}",
            for_column,
            kind="step",
            label=str(node.get("label") or node_id),
            pipeline={"id": pipeline.id, "name": pipeline.name},
            node=node_id,
            step=str(node.get("step") or ""),
        )

    for name in schema.field_names:
        field_type = str(schema.field(name).type)
        column = columns.setdefault(name, {"name": name, "type": field_type, "sources": [], "pipelines": []})
        if pipeline.id not in column["pipelines"]:
            column["pipelines"].append(pipeline.id)
        target = graph.node(f"column:{name}", name, kind="column", label=name, column=name, type=field_type)
        origins = lineage[destination][name]
        for origin in origins:
            resolved = plan.sources[origin["node"]]
            source = {
                "connector": {"id": resolved.connector.id, "name": resolved.connector.name},
                "stream": str(plan.nodes[origin["node"]].get("stream")),
                "column": origin["column"],
            }
            if source not in column["sources"]:
                column["sources"].append(source)
        path = set(lineage["paths"][destination][name])

        for up, down in plan.graph.edges:
            if up not in path or down not in path:
                continue
            end = target if down == destination else step(down, name)
            if plan.nodes[up]["kind"] == "source":
                for origin in origins:
                    if origin["node"] == up:
                        graph.edge(source_column(up, origin["column"], name), end, name, pipeline.id)
            else:
                graph.edge(step(up, name), end, name, pipeline.id)
