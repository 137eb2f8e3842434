import { describe, expect, it } from "vitest";

import {
  addNode,
  connect,
  connectProblem,
  docToGraph,
  edgeErrors,
  emptyGraph,
  graphToDoc,
  historyReducer,
  moveNodes,
  removeElements,
  startHistory,
  updateNode,
} from "@/lib/builderGraph";
import { parse, serialize } from "@/lib/pipelineDoc";

const FLIGHTS = {
  nodes: [
    { id: "flights", kind: "source", connector: "flights-files", stream: "flights", sync_mode: "full_refresh", position: { x: 0, y: 0 } },
    { id: "late", kind: "transform", step: "filter", config: { expression: "dep_delay > 60" }, position: { x: 300, y: 0 } },
    { id: "warehouse", kind: "destination", connector: "warehouse-pg", table: "late_flights", write_mode: "append", position: { x: 600, y: 0 } },
  ],
  edges: [
    { from: "flights", to: "late" },
    { from: "late", to: "warehouse" },
  ],
};

function build() {
  let graph = emptyGraph();
  let r = addNode(graph, { kind: "source", connector: "flights-files", stream: "flights" }, { x: 0, y: 0 }, "flights");
  graph = r.graph;
  r = addNode(graph, { kind: "transform", step: "filter", config: {} }, { x: 300, y: 10.4 }, "filter");
  graph = r.graph;
  r = addNode(graph, { kind: "destination", connector: "warehouse-pg", table: "late" }, { x: 600, y: 0 }, "warehouse-pg");
  graph = connect(connect(r.graph, "flights", "filter"), "filter", "warehouse_pg");
  return graph;
}

describe("the builder's graph", () => {
  it("adds nodes with readable unique ids and connects them", () => {
    const graph = build();
    expect(graph.nodes.map((n) => n.id)).toEqual(["flights", "filter", "warehouse_pg"]);
    expect(graph.nodes[1]?.position).toEqual({ x: 300, y: 10 });
    expect(graph.edges.map((e) => [e.source, e.target])).toEqual([
      ["flights", "filter"],
      ["filter", "warehouse_pg"],
    ]);
    const again = addNode(graph, { kind: "transform", step: "filter" }, { x: 0, y: 0 }, "filter");
    expect(again.id).toBe("filter_2");
  });

  it("refuses edges into a source, out of a destination, duplicates and cycles", () => {
    const graph = build();
    expect(connectProblem(graph, "filter", "flights")).toMatch(/source has no inputs/);
    expect(connectProblem(graph, "warehouse_pg", "filter")).toMatch(/destination has no outputs/);
    expect(connectProblem(graph, "flights", "filter")).toMatch(/already/);
    const withSecond = addNode(graph, { kind: "transform", step: "limit" }, { x: 0, y: 0 }, "limit").graph;
    const chained = connect(connect(withSecond, "filter", "limit"), "flights", "limit");
    expect(connectProblem(chained, "limit", "filter")).toMatch(/cycle/);
    expect(connect(chained, "limit", "filter")).toBe(chained);
  });

  it("deletes a node with its edges, or an edge alone", () => {
    const graph = build();
    const noFilter = removeElements(graph, ["filter"]);
    expect(noFilter.nodes.map((n) => n.id)).toEqual(["flights", "warehouse_pg"]);
    expect(noFilter.edges).toEqual([]);
    const noEdge = removeElements(graph, [], ["flights->filter"]);
    expect(noEdge.nodes).toHaveLength(3);
    expect(noEdge.edges.map((e) => e.id)).toEqual(["filter->warehouse_pg"]);
  });

  it("undoes and redoes every step, typing in one field being one step", () => {
    let h = startHistory(emptyGraph());
    const steps = [] as ReturnType<typeof emptyGraph>[];
    let g = emptyGraph();
    g = addNode(g, { kind: "source" }, { x: 0, y: 0 }, "a").graph;
    h = historyReducer(h, { type: "apply", graph: g });
    steps.push(g);
    g = addNode(g, { kind: "transform", step: "filter" }, { x: 0, y: 0 }, "b").graph;
    h = historyReducer(h, { type: "apply", graph: g });
    g = connect(g, "a", "b");
    h = historyReducer(h, { type: "apply", graph: g });
    const connected = g;
    g = updateNode(g, "b", { config: { expression: "x" } });
    h = historyReducer(h, { type: "apply", graph: g, key: "config:b" });
    g = updateNode(g, "b", { config: { expression: "x > 1" } });
    h = historyReducer(h, { type: "apply", graph: g, key: "config:b" });
    expect(h.past).toHaveLength(4);
    h = historyReducer(h, { type: "undo" });
    expect(h.present).toBe(connected);
    h = historyReducer(h, { type: "undo" });
    expect(h.present.edges).toEqual([]);
    h = historyReducer(h, { type: "undo" });
    h = historyReducer(h, { type: "undo" });
    expect(h.present.nodes).toEqual([]);
    h = historyReducer(h, { type: "undo" });
    expect(h.present.nodes).toEqual([]);
    h = historyReducer(h, { type: "redo" });
    expect(h.present).toBe(steps[0]);
    h = historyReducer(h, { type: "redo" });
    h = historyReducer(h, { type: "redo" });
    h = historyReducer(h, { type: "redo" });
    expect(h.present.nodes[1]?.doc.config).toEqual({ expression: "x > 1" });
    // A new edit after an undo drops the redo steps.
    h = historyReducer(h, { type: "undo" });
    h = historyReducer(h, { type: "apply", graph: removeElements(h.present, ["a"]) });
    expect(h.future).toEqual([]);
  });

  it("keeps the redo steps when an edit or a drag changes nothing", () => {
    const start = build();
    let h = startHistory(start);
    h = historyReducer(h, { type: "apply", graph: removeElements(start, ["warehouse_pg"]) });
    h = historyReducer(h, { type: "undo" });
    expect(h.future).toHaveLength(1);
    // A form reporting the config it was given, and a click on a node (a drag of no distance).
    const config = h.present.nodes.find((n) => n.id === "filter")?.doc.config;
    h = historyReducer(h, { type: "apply", graph: (g) => updateNode(g, "filter", { config: structuredClone(config) }), key: "filter:config" });
    h = historyReducer(h, { type: "replace", graph: (g) => moveNodes(g, { filter: { ...g.nodes[1]!.position } }) });
    h = historyReducer(h, { type: "commit", before: structuredClone(h.present) });
    expect(h.past).toHaveLength(0);
    expect(h.future).toHaveLength(1);
    h = historyReducer(h, { type: "redo" });
    expect(h.present.nodes.map((n) => n.id)).not.toContain("warehouse_pg");
    // A real change still is a step.
    h = historyReducer(h, { type: "apply", graph: (g) => updateNode(g, "filter", { config: { expression: "x > 2" } }) });
    expect(h.past).toHaveLength(2);
  });

  it("makes a drag one undo step", () => {
    const start = build();
    let h = startHistory(start);
    h = historyReducer(h, { type: "replace", graph: moveNodes(start, { flights: { x: 5, y: 5 } }) });
    h = historyReducer(h, { type: "replace", graph: moveNodes(start, { flights: { x: 50, y: 60 } }) });
    h = historyReducer(h, { type: "commit", before: start });
    expect(h.present.nodes[0]?.position).toEqual({ x: 50, y: 60 });
    h = historyReducer(h, { type: "undo" });
    expect(h.present).toBe(start);
  });

  it("round-trips: canvas -> document -> canvas is the identity, through YAML too", () => {
    const graph = moveNodes(build(), { filter: { x: 310, y: 42 } });
    const doc = graphToDoc(graph);
    expect(doc.nodes[1]).toMatchObject({ id: "filter", position: { x: 310, y: 42 } });
    expect(docToGraph(doc)).toEqual(graph);
    const text = serialize(doc, "yaml");
    const parsed = parse(text, "yaml");
    if (!parsed.ok) throw new Error(parsed.message);
    expect(docToGraph(parsed.value)).toEqual(graph);
    const json = parse(serialize(doc, "json"), "json");
    if (!json.ok) throw new Error(json.message);
    expect(docToGraph(json.value)).toEqual(graph);
  });

  it("round-trips: document -> canvas -> document keeps every key", () => {
    const doc = { ...FLIGHTS, description: "kept" };
    expect(graphToDoc(docToGraph(doc as never))).toEqual(doc);
  });

  it("lays out nodes without a position left to right", () => {
    const doc = { nodes: FLIGHTS.nodes.map(({ position: _p, ...n }) => n), edges: FLIGHTS.edges };
    const graph = docToGraph(doc);
    const [a, b, c] = graph.nodes.map((n) => n.position.x);
    expect(a).toBeLessThan(b as number);
    expect(b).toBeLessThan(c as number);
    // The positions are now in the document.
    expect(graphToDoc(graph).nodes.every((n) => typeof (n.position as { x: number }).x === "number")).toBe(true);
  });

  it("places edge errors on the edge they name", () => {
    const graph = build();
    expect(edgeErrors({ "edges.1.to": ["no such node"], "nodes.filter.config": ["x"] }, graph)).toEqual({
      "filter->warehouse_pg": ["to: no such node"],
    });
  });
});

describe("stableKey", () => {
  it("ignores key order, as the YAML view and jsonb reorder keys", async () => {
    const { stableKey } = await import("@/lib/builderGraph");
    expect(stableKey({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe(stableKey({ a: { c: null, d: [1, { x: 1, y: 2 }] }, b: 1 }));
    expect(stableKey({ a: [1, 2] })).not.toBe(stableKey({ a: [2, 1] }));
  });
});

describe("diffDocs (comparing a saved version with the canvas)", () => {
  it("names added, removed and changed nodes and edges; a move is not a change", async () => {
    const { diffDocs } = await import("@/lib/builderGraph");
    const current = {
      nodes: [
        { ...FLIGHTS.nodes[0], position: { x: 99, y: 99 } },
        { ...FLIGHTS.nodes[1], config: { expression: "dep_delay > 90" } },
        { id: "wide", kind: "destination", connector: "warehouse-pg", table: "all" },
      ],
      edges: [{ from: "flights", to: "late" }, { from: "late", to: "wide" }],
    };
    expect(diffDocs(FLIGHTS as never, current as never)).toEqual({
      added: ["wide"],
      removed: ["warehouse"],
      changed: { late: ["config"] },
      addedEdges: ["late->wide"],
      removedEdges: ["late->warehouse"],
    });
  });
});
