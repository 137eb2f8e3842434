import YAML from "yaml";
import type { PipelineDefinition } from "@/api/types";

// The pipeline document (DESIGN.md "Pipelines") as the editor handles it: text in YAML or JSON, parsed
// locally for syntax, validated by the server, whose errors are keyed `nodes.<id>.<field>`.

export type DocFormat = "yaml" | "json";

export interface DocNode {
  id: string;
  kind?: string;
  [key: string]: unknown;
}

export interface PipelineDocument {
  nodes: DocNode[];
  edges: { from: string; to: string }[];
}

// PostgreSQL's jsonb gives keys back in its own order (shortest first); authors read `nodes` before
// `edges`, `id` and `kind` first in a node and `from` before `to`.
const FIRST_KEYS = ["nodes", "edges", "id", "kind", "label", "from", "to", "connector", "stream", "step", "table"];

function ordered(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(ordered);
  if (!value || typeof value !== "object") return value;
  const entries = Object.entries(value as Record<string, unknown>);
  const rank = (key: string) => {
    const index = FIRST_KEYS.indexOf(key);
    return index === -1 ? FIRST_KEYS.length : index;
  };
  entries.sort(([a], [b]) => rank(a) - rank(b));
  return Object.fromEntries(entries.map(([k, v]) => [k, k === "config" ? v : ordered(v)]));
}

export function serialize(definition: unknown, format: DocFormat): string {
  const value = ordered(definition ?? { nodes: [], edges: [] });
  return format === "json" ? `${JSON.stringify(value, null, 2)}\n` : YAML.stringify(value, { indent: 2 });
}

export type Parsed = { ok: true; value: PipelineDocument } | { ok: false; message: string };

export function parse(text: string, format: DocFormat): Parsed {
  try {
    const value: unknown = format === "json" ? JSON.parse(text) : YAML.parse(text);
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      return { ok: false, message: "The document must be an object with `nodes` and `edges`." };
    }
    const doc = value as Partial<PipelineDocument>;
    return { ok: true, value: { nodes: doc.nodes ?? [], edges: doc.edges ?? [], ...doc } as PipelineDocument };
  } catch (error) {
    return { ok: false, message: `Not valid ${format.toUpperCase()}: ${(error as Error).message}` };
  }
}

export interface SortedErrors {
  /** node id -> messages, each prefixed with the field it concerns */
  nodes: Record<string, string[]>;
  /** edges, the graph as a whole, and anything else */
  general: string[];
}

/**
 * Sorts server validation errors by where they belong. Keys come as `nodes.<id>.<field>` from the validate
 * action, or `definition.nodes.<id>.<field>` from a save; `edges.<n>` and `definition` are graph-wide.
 */
export function sortErrors(fields: Record<string, string[]>, nodeIds: readonly string[] = []): SortedErrors {
  const out: SortedErrors = { nodes: {}, general: [] };
  for (const [rawKey, messages] of Object.entries(fields)) {
    const key = rawKey.replace(/^definition\./, "");
    if (key.startsWith("nodes.")) {
      const rest = key.slice("nodes.".length);
      // Node ids may contain dots only if the document has such an id: prefer the longest known id.
      const known = [...nodeIds].sort((a, b) => b.length - a.length).find((id) => rest === id || rest.startsWith(`${id}.`));
      const nodeId = known ?? rest.split(".")[0] ?? rest;
      const field = rest.slice(nodeId.length + 1);
      (out.nodes[nodeId] ??= []).push(...messages.map((m) => (field ? `${field}: ${m}` : m)));
    } else {
      out.general.push(...messages.map((m) => (key === "definition" || key === "non_field_errors" ? m : `${key}: ${m}`)));
    }
  }
  return out;
}

/** The 1-based line where a node's `id` is declared in the text, to point the author at it. */
export function nodeLine(text: string, nodeId: string): number | null {
  const escaped = nodeId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = new RegExp(`(^|[\\s{,-])"?id"?\\s*:\\s*["']?${escaped}["']?\\s*(,|}|$)`);
  const lines = text.split("\n");
  const index = lines.findIndex((line) => pattern.test(line));
  return index === -1 ? null : index + 1;
}

/**
 * The document as the API's request types want it. The editor's document is whatever was typed (a node's
 * `kind` may be missing or wrong); the server validates it and answers with errors at the node.
 */
export function asDefinition(doc: PipelineDocument): PipelineDefinition {
  return doc as unknown as PipelineDefinition;
}
