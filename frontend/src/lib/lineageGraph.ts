// The lineage screen's graph: where each column of a destination table comes from (GET lineage/table/),
// laid out in columns: source columns on the left, pipeline steps in the middle (by their distance from
// the sources), the table's columns on the right.
import type { components } from "@/api/schema";

type S = components["schemas"];
export type TableLineage = S["TableLineage"];
export type LineageNode = S["LineageNode"];
export type LineageEdge = S["LineageEdge"];
export type LineageTable = S["LineageTable"];
export type LineageTableList = S["LineageTableList"];

export const NODE_WIDTH = 210;
export const NODE_HEIGHT = 48;
export const RANK_GAP = 290; // left edge to left edge of neighbouring ranks
export const ROW_GAP = 64; // top to top within a rank

export interface PlacedNode {
  node: LineageNode;
  rank: number;
  x: number;
  y: number;
}

/** Each node's rank: sources 0, a step one more than the furthest of its inputs, the table's columns last. */
export function rankNodes(graph: Pick<TableLineage, "nodes" | "edges">): Map<string, number> {
  const incoming = new Map<string, string[]>();
  for (const e of graph.edges) incoming.set(e.target, [...(incoming.get(e.target) ?? []), e.source]);
  const kinds = new Map(graph.nodes.map((n) => [n.id, n.kind]));
  const rank = new Map<string, number>();
  const visiting = new Set<string>();
  const rankOf = (id: string): number => {
    const known = rank.get(id);
    if (known !== undefined) return known;
    if (kinds.get(id) === "source" || visiting.has(id)) return 0; // a cycle cannot come from the API; never loop
    visiting.add(id);
    const r = Math.max(0, ...(incoming.get(id) ?? []).map((up) => rankOf(up) + 1));
    visiting.delete(id);
    rank.set(id, r);
    return r;
  };
  for (const n of graph.nodes) rankOf(n.id);
  // Every destination column in the last rank, however short its path.
  const last = Math.max(1, ...graph.nodes.filter((n) => n.kind !== "column").map((n) => (rank.get(n.id) ?? 0) + 1));
  for (const n of graph.nodes) if (n.kind === "column") rank.set(n.id, last);
  for (const n of graph.nodes) if (n.kind === "source") rank.set(n.id, 0);
  return rank;
}

/** Positions for every node. The table's columns keep the table's order; each rank to their left is ordered
 * by the mean position of the nodes it feeds (fewer crossings), ties by label. Ranks are centred vertically. */
export function layoutLineage(graph: Pick<TableLineage, "nodes" | "edges" | "columns">): PlacedNode[] {
  const rank = rankNodes(graph);
  const outgoing = new Map<string, string[]>();
  for (const e of graph.edges) outgoing.set(e.source, [...(outgoing.get(e.source) ?? []), e.target]);
  const byRank = new Map<number, LineageNode[]>();
  for (const n of graph.nodes) {
    const r = rank.get(n.id) ?? 0;
    byRank.set(r, [...(byRank.get(r) ?? []), n]);
  }
  const maxRank = Math.max(0, ...byRank.keys());
  const order = new Map<string, number>();
  const tableOrder = new Map(graph.columns.map((c, i) => [c.name, i]));
  for (let r = maxRank; r >= 0; r--) {
    const nodes = byRank.get(r) ?? [];
    const key = (n: LineageNode) => {
      if (n.kind === "column") return tableOrder.get(n.column ?? n.label) ?? Number.MAX_SAFE_INTEGER;
      const placed = (outgoing.get(n.id) ?? []).map((t) => order.get(t)).filter((v): v is number => v !== undefined);
      return placed.length ? placed.reduce((a, b) => a + b, 0) / placed.length : Number.MAX_SAFE_INTEGER;
    };
    const sorted = [...nodes].sort((a, b) => key(a) - key(b) || a.label.localeCompare(b.label) || a.id.localeCompare(b.id));
    sorted.forEach((n, i) => order.set(n.id, i));
    byRank.set(r, sorted);
  }
  const tallest = Math.max(1, ...[...byRank.values()].map((nodes) => nodes.length));
  const placed: PlacedNode[] = [];
  for (const [r, nodes] of [...byRank.entries()].sort((a, b) => a[0] - b[0])) {
    const offset = ((tallest - nodes.length) * ROW_GAP) / 2;
    nodes.forEach((node, i) => placed.push({ node, rank: r, x: r * RANK_GAP, y: offset + i * ROW_GAP }));
  }
  return placed;
}

/** The nodes and edges on a destination column's path (every node and edge lists the columns it serves). */
export function pathOf(graph: Pick<TableLineage, "nodes" | "edges">, column: string | null): { nodes: Set<string>; edges: Set<string> } {
  if (column === null) return { nodes: new Set(), edges: new Set() };
  return {
    nodes: new Set(graph.nodes.filter((n) => n.columns.includes(column)).map((n) => n.id)),
    edges: new Set(graph.edges.filter((e) => e.columns.includes(column)).map((e) => e.id)),
  };
}

/** What a node is, in a few words under its label: a source's connector and stream, a step's type and
 * pipeline, a column's type. */
export function nodeCaption(node: LineageNode): string {
  const named = (v: unknown) => String((v as { name?: unknown } | undefined)?.name ?? "?");
  if (node.kind === "source") return `${named(node.connector)} · ${node.stream ?? "?"}`;
  if (node.kind === "step") return `${node.step || "source"} · ${named(node.pipeline)}`;
  return node.type ?? "";
}

/** A source column in words: "flights-files · flights · carrier". */
export function sourceText(source: S["LineageSourceRef"]): string {
  return `${String((source.connector as { name?: unknown }).name ?? "?")} · ${source.stream} · ${source.column}`;
}

/** The `<select>` value of a table, and back. */
export const tableKey = (t: { connector: { id: number }; table: string }) => `${t.connector.id}/${t.table}`;
export function parseTableKey(key: string): { connector: number; table: string } | null {
  const slash = key.indexOf("/");
  if (slash < 1) return null;
  const connector = Number(key.slice(0, slash));
  const table = key.slice(slash + 1);
  return Number.isInteger(connector) && table ? { connector, table } : null;
}
