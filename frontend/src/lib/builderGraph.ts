import { Graph as DagreGraph, layout as dagreLayout } from "@dagrejs/dagre";

import type { DocNode, PipelineDocument } from "@/lib/pipelineDoc";

// The visual builder's state: the pipeline document as a graph of positioned nodes and edges, with undo and
// redo. The document is the truth: each canvas node carries its document node (`doc`) untouched, and its
// canvas position is the document's `position`, so canvas -> document -> canvas is the identity and the
// YAML editor and the canvas are two views of one thing.

export interface Point {
  x: number;
  y: number;
}

export interface GraphNode {
  id: string;
  position: Point;
  /** The document node, every key kept (its `position` is the node's `position` above). */
  doc: DocNode;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
}

export interface BuilderGraph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Top-level keys of the document other than `nodes` and `edges`, kept for the round trip. */
  extra: Record<string, unknown>;
}

export const NODE_WIDTH = 220;
export const NODE_HEIGHT = 104;

export const edgeId = (source: string, target: string) => `${source}->${target}`;

const isPoint = (value: unknown): value is Point =>
  typeof value === "object" &&
  value !== null &&
  typeof (value as Point).x === "number" &&
  typeof (value as Point).y === "number" &&
  Number.isFinite((value as Point).x) &&
  Number.isFinite((value as Point).y);

/** Left-to-right layered positions (dagre) for every node: sources on the left, destinations on the right. */
export function autoLayout(nodes: readonly { id: string }[], edges: readonly { source: string; target: string }[]): Record<string, Point> {
  const g = new DagreGraph();
  g.setGraph({ rankdir: "LR", nodesep: 40, ranksep: 80, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of nodes) g.setNode(node.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const edge of edges) if (g.hasNode(edge.source) && g.hasNode(edge.target)) g.setEdge(edge.source, edge.target);
  dagreLayout(g);
  const out: Record<string, Point> = {};
  for (const node of nodes) {
    const laid = g.node(node.id) as { x: number; y: number } | undefined;
    // dagre gives centres; React Flow positions are top-left corners.
    out[node.id] = laid ? { x: Math.round(laid.x - NODE_WIDTH / 2), y: Math.round(laid.y - NODE_HEIGHT / 2) } : { x: 0, y: 0 };
  }
  return out;
}

/** The document as a graph; nodes without a `position` are laid out (the others keep theirs). */
export function docToGraph(document: PipelineDocument): BuilderGraph {
  const { nodes: rawNodes, edges: rawEdges, ...extra } = document;
  const docs: DocNode[] = (Array.isArray(rawNodes) ? rawNodes : []).map((n, i) => ({ ...n, id: String(n.id ?? `node_${i + 1}`) }));
  const edges: GraphEdge[] = (Array.isArray(rawEdges) ? rawEdges : []).map((e) => ({
    id: edgeId(String(e.from), String(e.to)),
    source: String(e.from),
    target: String(e.to),
  }));
  const missing = docs.some((n) => !isPoint(n.position));
  const laid = missing ? autoLayout(docs, edges) : {};
  const nodes = docs.map((doc) => {
    const position = isPoint(doc.position) ? { x: doc.position.x, y: doc.position.y } : (laid[doc.id] ?? { x: 0, y: 0 });
    return { id: doc.id, position, doc: { ...doc, position } };
  });
  return { nodes, edges, extra };
}

/** The graph as the document the API takes: each node's position written to its `position`. */
export function graphToDoc(graph: BuilderGraph): PipelineDocument {
  return {
    ...graph.extra,
    nodes: graph.nodes.map((n) => ({ ...n.doc, id: n.id, position: { x: Math.round(n.position.x), y: Math.round(n.position.y) } })),
    edges: graph.edges.map((e) => ({ from: e.source, to: e.target })),
  };
}

export const emptyGraph = (): BuilderGraph => ({ nodes: [], edges: [], extra: {} });

/** A node id for a new node: readable (from its stream, step or table), unique in the graph. */
export function uniqueId(graph: BuilderGraph, base: string): string {
  const clean = base.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "") || "node";
  const taken = new Set(graph.nodes.map((n) => n.id));
  if (!taken.has(clean)) return clean;
  let i = 2;
  while (taken.has(`${clean}_${i}`)) i++;
  return `${clean}_${i}`;
}

export function addNode(graph: BuilderGraph, doc: Omit<DocNode, "id"> & { id?: string }, position: Point, base = "node"): { graph: BuilderGraph; id: string } {
  const id = doc.id && !graph.nodes.some((n) => n.id === doc.id) ? doc.id : uniqueId(graph, base);
  const p = { x: Math.round(position.x), y: Math.round(position.y) };
  return { graph: { ...graph, nodes: [...graph.nodes, { id, position: p, doc: { ...doc, id, position: p } as DocNode }] }, id };
}

/** Why an edge cannot be drawn, or null when it can (the server checks arity and the rest). */
export function connectProblem(graph: BuilderGraph, source: string, target: string): string | null {
  if (source === target) return "A node cannot feed itself.";
  const from = graph.nodes.find((n) => n.id === source);
  const to = graph.nodes.find((n) => n.id === target);
  if (!from || !to) return "Both ends must be nodes.";
  if (from.doc.kind === "destination") return "A destination has no outputs.";
  if (to.doc.kind === "source") return "A source has no inputs.";
  if (graph.edges.some((e) => e.source === source && e.target === target)) return "These nodes are already connected.";
  // A path back from target to source would close a cycle.
  const seen = new Set<string>();
  const stack = [target];
  while (stack.length) {
    const id = stack.pop() as string;
    if (id === source) return "That edge would make a cycle.";
    if (seen.has(id)) continue;
    seen.add(id);
    for (const e of graph.edges) if (e.source === id) stack.push(e.target);
  }
  return null;
}

export function connect(graph: BuilderGraph, source: string, target: string): BuilderGraph {
  if (connectProblem(graph, source, target)) return graph;
  return { ...graph, edges: [...graph.edges, { id: edgeId(source, target), source, target }] };
}

export function removeElements(graph: BuilderGraph, nodeIds: readonly string[], edgeIds: readonly string[] = []): BuilderGraph {
  const nodes = new Set(nodeIds);
  const edges = new Set(edgeIds);
  return {
    ...graph,
    nodes: graph.nodes.filter((n) => !nodes.has(n.id)),
    edges: graph.edges.filter((e) => !edges.has(e.id) && !nodes.has(e.source) && !nodes.has(e.target)),
  };
}

export function moveNodes(graph: BuilderGraph, moves: Record<string, Point>): BuilderGraph {
  return {
    ...graph,
    nodes: graph.nodes.map((n) => {
      const p = moves[n.id];
      return p ? { ...n, position: { x: Math.round(p.x), y: Math.round(p.y) }, doc: { ...n.doc, position: { x: Math.round(p.x), y: Math.round(p.y) } } } : n;
    }),
  };
}

/** Replaces keys of a node's document (a key set to undefined is removed). */
export function updateNode(graph: BuilderGraph, id: string, patch: Record<string, unknown>): BuilderGraph {
  return {
    ...graph,
    nodes: graph.nodes.map((n) => {
      if (n.id !== id) return n;
      const doc: DocNode = { ...n.doc };
      for (const [key, value] of Object.entries(patch)) {
        if (key === "id" || key === "position") continue;
        if (value === undefined) delete doc[key];
        else doc[key] = value;
      }
      return { ...n, doc };
    }),
  };
}

export function layoutGraph(graph: BuilderGraph): BuilderGraph {
  return moveNodes(graph, autoLayout(graph.nodes, graph.edges));
}

// --- History ------------------------------------------------------------------------------------------

export interface History {
  past: BuilderGraph[];
  present: BuilderGraph;
  future: BuilderGraph[];
  /** Edits with the same key in a row (typing in one field) make one undo step. */
  lastKey: string | null;
}

const LIMIT = 100;

export const startHistory = (graph: BuilderGraph): History => ({ past: [], present: graph, future: [], lastKey: null });

/** A new graph, or a function of the present one (so changes dispatched in one tick compose). */
export type Update = BuilderGraph | ((present: BuilderGraph) => BuilderGraph);
const resolve = (update: Update, present: BuilderGraph) => (typeof update === "function" ? update(present) : update);

/** Same nodes (ids, positions, documents), edges and extra keys: an edit that changes nothing (a form
 * reporting the value it was given, a click on a node that moved it by nothing) is not an undo step, and
 * must not drop the redo steps either. */
export function sameGraph(a: BuilderGraph, b: BuilderGraph): boolean {
  if (a === b) return true;
  if (a.nodes.length !== b.nodes.length || a.edges.length !== b.edges.length) return false;
  return JSON.stringify([a.nodes, a.edges, a.extra]) === JSON.stringify([b.nodes, b.edges, b.extra]);
}

export type HistoryAction =
  | { type: "apply"; graph: Update; key?: string }
  /** Changes the present without an undo step (a drag in progress). */
  | { type: "replace"; graph: Update }
  /** Records `before` as the undo step of changes made with `replace` (a drag that ended). */
  | { type: "commit"; before: BuilderGraph }
  | { type: "undo" }
  | { type: "redo" }
  | { type: "reset"; graph: BuilderGraph };

export function historyReducer(state: History, action: HistoryAction): History {
  switch (action.type) {
    case "apply": {
      const graph = resolve(action.graph, state.present);
      if (sameGraph(graph, state.present)) return state;
      if (action.key && action.key === state.lastKey) return { ...state, present: graph, future: [] };
      return { past: [...state.past, state.present].slice(-LIMIT), present: graph, future: [], lastKey: action.key ?? null };
    }
    case "replace":
      return { ...state, present: resolve(action.graph, state.present) };
    case "commit":
      if (sameGraph(action.before, state.present)) return state;
      return { past: [...state.past, action.before].slice(-LIMIT), present: state.present, future: [], lastKey: null };
    case "undo": {
      const previous = state.past[state.past.length - 1];
      if (!previous) return state;
      return { past: state.past.slice(0, -1), present: previous, future: [state.present, ...state.future], lastKey: null };
    }
    case "redo": {
      const [next, ...rest] = state.future;
      if (!next) return state;
      return { past: [...state.past, state.present], present: next, future: rest, lastKey: null };
    }
    case "reset":
      return startHistory(action.graph);
  }
}

/** Server errors keyed `edges.<index>[.<end>]`, by edge id. */
export function edgeErrors(fields: Record<string, string[]>, graph: BuilderGraph): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [rawKey, messages] of Object.entries(fields)) {
    const match = /^(?:definition\.)?edges\.(\d+)(?:\.(.*))?$/.exec(rawKey);
    if (!match) continue;
    const edge = graph.edges[Number(match[1])];
    if (!edge) continue;
    (out[edge.id] ??= []).push(...messages.map((m) => (match[2] ? `${match[2]}: ${m}` : m)));
  }
  return out;
}

/** A document's identity whatever its key order (PostgreSQL's jsonb and the YAML view reorder keys). */
export function stableKey(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (!v || typeof v !== "object") return v;
    return Object.fromEntries(
      Object.keys(v as Record<string, unknown>)
        .sort()
        .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
    );
  };
  return JSON.stringify(sort(value));
}

export interface DocDiff {
  added: string[];
  removed: string[];
  /** node id -> the keys whose values differ (`position` is not a change) */
  changed: Record<string, string[]>;
  addedEdges: string[];
  removedEdges: string[];
}

/** What changed from `base` (a saved version) to `current` (the canvas), node by node. */
export function diffDocs(base: PipelineDocument, current: PipelineDocument): DocDiff {
  const index = (doc: PipelineDocument) => new Map((doc.nodes ?? []).map((n) => [String(n.id), n]));
  const edges = (doc: PipelineDocument) => new Set((doc.edges ?? []).map((e) => edgeId(String(e.from), String(e.to))));
  const before = index(base);
  const after = index(current);
  const changed: Record<string, string[]> = {};
  for (const [id, node] of after) {
    const old = before.get(id);
    if (!old) continue;
    const keys = [...new Set([...Object.keys(old), ...Object.keys(node)])].filter((k) => k !== "position" && stableKey(old[k]) !== stableKey(node[k]));
    if (keys.length) changed[id] = keys.sort();
  }
  const edgesBefore = edges(base);
  const edgesAfter = edges(current);
  return {
    added: [...after.keys()].filter((id) => !before.has(id)),
    removed: [...before.keys()].filter((id) => !after.has(id)),
    changed,
    addedEdges: [...edgesAfter].filter((e) => !edgesBefore.has(e)),
    removedEdges: [...edgesBefore].filter((e) => !edgesAfter.has(e)),
  };
}
