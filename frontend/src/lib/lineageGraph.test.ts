import { describe, expect, it } from "vitest";

import { layoutLineage, nodeCaption, parseTableKey, pathOf, rankNodes, RANK_GAP, ROW_GAP, tableKey, type TableLineage } from "./lineageGraph";

const src = (column: string, columns: string[]) => ({ id: `source:1:flights:${column}`, kind: "source" as const, label: column, column, columns, connector: { id: 1, name: "flights-files" }, stream: "flights", type: "integer" });
const step = (node: string, columns: string[], kind = "filter") => ({ id: `step:7:${node}`, kind: "step" as const, label: node, node, step: kind, columns, pipeline: { id: 7, name: "late" } });
const col = (name: string) => ({ id: `column:${name}`, kind: "column" as const, label: name, column: name, columns: [name], type: "integer" });
const edge = (source: string, target: string, columns: string[]) => ({ id: `${source}->${target}`, source, target, columns, pipelines: [7] });

// flights.carrier ─┐                      ┌─> carrier
// flights.delay ───┼─> late ─> hours ─────┼─> delay_hours
//                  │                      └─> (carrier also passes hours)
// flights.flight ──┴──────────────────────────> flight (straight from the source)
const graph: Pick<TableLineage, "nodes" | "edges" | "columns"> = {
  nodes: [
    src("delay", ["delay_hours"]),
    src("carrier", ["carrier"]),
    src("flight", ["flight"]),
    step("late", ["carrier", "delay_hours"]),
    step("hours", ["carrier", "delay_hours"], "derive"),
    col("flight"),
    col("delay_hours"),
    col("carrier"),
  ],
  edges: [
    edge("source:1:flights:carrier", "step:7:late", ["carrier"]),
    edge("source:1:flights:delay", "step:7:late", ["delay_hours"]),
    edge("step:7:late", "step:7:hours", ["carrier", "delay_hours"]),
    edge("step:7:hours", "column:carrier", ["carrier"]),
    edge("step:7:hours", "column:delay_hours", ["delay_hours"]),
    edge("source:1:flights:flight", "column:flight", ["flight"]),
  ],
  columns: ["carrier", "delay_hours", "flight"].map((name) => ({ name, type: "integer", sources: [], pipelines: [7] })),
};

describe("rankNodes", () => {
  it("puts sources first, steps by their furthest input, every column last", () => {
    const rank = rankNodes(graph);
    expect(rank.get("source:1:flights:carrier")).toBe(0);
    expect(rank.get("step:7:late")).toBe(1);
    expect(rank.get("step:7:hours")).toBe(2);
    // A column fed straight by a source still sits with the other columns.
    expect(rank.get("column:flight")).toBe(3);
    expect(rank.get("column:carrier")).toBe(3);
  });

  it("gives a graph of sources and columns only two ranks", () => {
    const rank = rankNodes({ nodes: [src("a", ["a"]), col("a")], edges: [edge("source:1:flights:a", "column:a", ["a"])] });
    expect([rank.get("source:1:flights:a"), rank.get("column:a")]).toEqual([0, 1]);
  });
});

describe("layoutLineage", () => {
  const placed = new Map(layoutLineage(graph).map((p) => [p.node.id, p]));

  it("keeps the table's column order on the right", () => {
    const columns = ["carrier", "delay_hours", "flight"].map((c) => placed.get(`column:${c}`)!);
    expect(columns.map((p) => p.x)).toEqual([3 * RANK_GAP, 3 * RANK_GAP, 3 * RANK_GAP]);
    expect(columns.map((p) => p.y)).toEqual([0, ROW_GAP, 2 * ROW_GAP]);
  });

  it("orders sources by the nodes they feed, so edges cross less", () => {
    const ys = ["carrier", "delay", "flight"].map((c) => placed.get(`source:1:flights:${c}`)!.y);
    // carrier and delay feed `late` (ties by label), flight feeds the last column: it comes last.
    expect(ys[0]!).toBeLessThan(ys[1]!);
    expect(ys[1]!).toBeLessThan(ys[2]!);
  });

  it("centres a shorter rank against the tallest", () => {
    expect(placed.get("step:7:late")!.y).toBe(ROW_GAP);
    expect(placed.get("step:7:hours")!.x).toBe(2 * RANK_GAP);
  });

  it("places every node once", () => {
    expect(layoutLineage(graph)).toHaveLength(graph.nodes.length);
  });
});

describe("pathOf", () => {
  it("selects the nodes and edges a column passes through", () => {
    const path = pathOf(graph, "delay_hours");
    expect([...path.nodes].sort()).toEqual(["column:delay_hours", "source:1:flights:delay", "step:7:hours", "step:7:late"]);
    expect(path.edges.has("step:7:late->step:7:hours")).toBe(true);
    expect(path.edges.has("source:1:flights:carrier->step:7:late")).toBe(false);
    expect(pathOf(graph, null).nodes.size).toBe(0);
  });
});

describe("captions and keys", () => {
  it("describes each kind of node", () => {
    expect(nodeCaption(graph.nodes[0]!)).toBe("flights-files · flights");
    expect(nodeCaption(graph.nodes[4]!)).toBe("derive · late");
    expect(nodeCaption(graph.nodes[5]!)).toBe("integer");
  });

  it("round-trips a table key, slashes in the table name included", () => {
    const key = tableKey({ connector: { id: 4 }, table: "analytics/late" });
    expect(parseTableKey(key)).toEqual({ connector: 4, table: "analytics/late" });
    expect(parseTableKey("x")).toBeNull();
    expect(parseTableKey("/t")).toBeNull();
  });
});
