// The `map_fields` step's config (docs/schemas.md "Field mapping") as the builder's mapper edits it.

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

/** Destination fields that must be filled (not nullable) and no mapping gives. */
export function unmappedRequired(config: MapFieldsConfig): string[] {
  const mapped = new Set((config.mappings ?? []).map((m) => m.to));
  return (config.destination_schema ?? []).filter((f) => f.nullable === false && !mapped.has(f.name)).map((f) => f.name);
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
