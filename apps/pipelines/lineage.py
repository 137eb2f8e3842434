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
from collections.abc import Callable, Iterator
from typing import Any

from aggregator.dataplane import StreamSchema

from .definition import Plan

Origin = tuple[str, str]  # (input node id, column)
Rule = Callable[[dict[str, Any], dict[str, StreamSchema], StreamSchema], dict[str, list[Origin]]]


def expression_columns(text: str) -> list[str]:
    """The columns an expression reads, in order of first use (walks the parsed tree; parses, never runs)."""
    from apps.transformations.expressions import Column, ExpressionError, Node, parse

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
