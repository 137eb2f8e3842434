// The `map_fields` step's config (docs/schemas.md "Field mapping") as the builder's mapper edits it.
import type { components } from "@/api/schema";

/** A column of an existing destination table (`GET connectors/{id}/tables/{table}/`). */
export type TableColumn = components["schemas"]["TableColumn"];
/** An existing destination table with its columns. */
export type DestinationTable = components["schemas"]["Table"];

export interface Mapping {
  from: string;
  to: string;
  cast?: string | null;
  default?: unknown;
}

export interface DestinationField {
  name: string;
  type?: string;
  nullable?: boolean;
}

export interface MapFieldsConfig {
  mappings?: Mapping[];
  destination_schema?: DestinationField[] | null;
  on_error?: string;
  [key: string]: unknown;
}

/** Maps `from` to `to`: a mapping already giving `to` is replaced (keeping its cast and default). */
export function setMapping(config: MapFieldsConfig, from: string, to: string): MapFieldsConfig {
  const mappings = [...(config.mappings ?? [])];
  const index = mappings.findIndex((m) => m.to === to);
  if (index === -1) mappings.push({ from, to });
  else mappings[index] = { ...mappings[index], from, to } as Mapping;
  return { ...config, mappings };
}

export function updateMapping(config: MapFieldsConfig, index: number, patch: Partial<Mapping>): MapFieldsConfig {
  const mappings = (config.mappings ?? []).map((m, i) => {
    if (i !== index) return m;
    const next: Mapping = { ...m, ...patch };
    // An empty cast or default is no cast or default (the step's config is strict about types).
    if (next.cast === "" || next.cast === null) delete next.cast;
    if (next.default === "" || next.default === undefined) delete next.default;
    return next;
  });
  return { ...config, mappings };
}

export function removeMapping(config: MapFieldsConfig, index: number): MapFieldsConfig {
  return { ...config, mappings: (config.mappings ?? []).filter((_, i) => i !== index) };
}

/** Destination fields that must be filled (not nullable) and no mapping gives: of `fields` when given (the
 * destination table's), else of the step's `destination_schema`. */
export function unmappedRequired(config: MapFieldsConfig, fields?: DestinationField[]): string[] {
  const mapped = new Set((config.mappings ?? []).map((m) => m.to));
  return (fields ?? config.destination_schema ?? []).filter((f) => f.nullable === false && !mapped.has(f.name)).map((f) => f.name);
}

/** Columns every destination adds to every row itself (`_ag_run_id`, `_ag_loaded_at`): never mapped. */
export const RUN_COLUMNS = new Set(["_ag_run_id", "_ag_loaded_at"]);

/** A table's columns as destination fields. `nullable` here means "may be left unmapped", as in the step's
 * `destination_schema`: a NOT NULL column with a default (or an identity) is not required. */
export function tableFields(columns: readonly TableColumn[]): DestinationField[] {
  return columns.filter((c) => !RUN_COLUMNS.has(c.name)).map((c) => ({ name: c.name, type: c.type, nullable: !c.required }));
}

/** The destination fields the mapper shows: the table's columns when the table exists, then the fields of
 * `destination_schema` it lacks (new columns the load will add); without a table, `destination_schema`. */
export function destinationFields(config: MapFieldsConfig, columns: readonly TableColumn[] | null): DestinationField[] {
  const own = config.destination_schema ?? [];
  if (!columns) return own;
  const fromTable = tableFields(columns);
  const names = new Set(fromTable.map((f) => f.name));
  return [...fromTable, ...own.filter((f) => !names.has(f.name))];
}

/** Whether `destination_schema` already says what the table says (so the server validates against it). */
export function schemaMatchesTable(config: MapFieldsConfig, columns: readonly TableColumn[]): boolean {
  const own = new Map((config.destination_schema ?? []).map((f) => [f.name, f]));
  return tableFields(columns).every((f) => {
    const mine = own.get(f.name);
    return mine !== undefined && (mine.type ?? "string") === f.type && (mine.nullable ?? true) === f.nullable;
  });
}

interface GraphNodeLike {
  id: string;
  data?: { doc?: { kind?: unknown; connector?: unknown; table?: unknown } };
}

/** The destination a node feeds directly (connector reference and table, both set), or null. */
export function downstreamDestination(nodes: readonly GraphNodeLike[], edges: readonly { source: string; target: string }[], nodeId: string): { connector: string; table: string } | null {
  for (const edge of edges) {
    if (edge.source !== nodeId) continue;
    const doc = nodes.find((n) => n.id === edge.target)?.data?.doc;
    if (doc?.kind !== "destination") continue;
    const connector = doc.connector === undefined || doc.connector === null ? "" : String(doc.connector);
    const table = typeof doc.table === "string" ? doc.table.trim() : "";
    if (connector && table) return { connector, table };
  }
  return null;
}

/** A default as typed: JSON when it parses (0, true, "x"), else the text itself. */
export function parseDefault(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
