// Connector config schemas come from pydantic (GET /api/v1/connector-types/). Before @rjsf renders them:
// `$ref`s into `$defs` are inlined, `anyOf: [X, {type: null}]` (pydantic's Optional) becomes X, so the form
// shows one input and not a choice between "Option 1" and "Option 2"; secret fields (`secret: true` or
// `writeOnly`) become password inputs.

export type JsonSchema = Record<string, unknown> & {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  required?: string[];
};

const MAX_DEPTH = 20;

export function simplifySchema(schema: JsonSchema): JsonSchema {
  const defs = schema.$defs ?? {};
  const walk = (node: JsonSchema, depth: number): JsonSchema => {
    if (depth > MAX_DEPTH) return {};
    let out: JsonSchema = { ...node };
    if (typeof out.$ref === "string" && out.$ref.startsWith("#/$defs/")) {
      const target = defs[out.$ref.slice("#/$defs/".length)] ?? {};
      const { $ref: _ref, ...rest } = out;
      out = { ...walk(target, depth + 1), ...rest };
    }
    if (Array.isArray(out.anyOf)) {
      const options = out.anyOf.filter((o) => o.type !== "null");
      if (options.length === 1 && options[0]) {
        const { anyOf: _anyOf, ...rest } = out;
        out = { ...walk(options[0], depth + 1), ...rest };
        if (out.default === null) delete out.default;
      }
    }
    if (out.properties) {
      out.properties = Object.fromEntries(Object.entries(out.properties).map(([k, v]) => [k, walk(v, depth + 1)]));
    }
    if (out.items && typeof out.items === "object") out.items = walk(out.items, depth + 1);
    if (out.additionalProperties && typeof out.additionalProperties === "object") {
      out.additionalProperties = walk(out.additionalProperties as JsonSchema, depth + 1);
    }
    delete out.$defs;
    return out;
  };
  const result = walk(schema, 0);
  delete result.title; // the page has its own heading
  return result;
}

export function secretFields(schema: JsonSchema, declared: readonly string[] = []): string[] {
  const props = schema.properties ?? {};
  const marked = Object.entries(props)
    .filter(([, p]) => p.secret === true || p.writeOnly === true || p.format === "password")
    .map(([k]) => k);
  return [...new Set([...declared, ...marked])];
}

export const isSetMarker = (v: unknown): v is { is_set: boolean } =>
  typeof v === "object" && v !== null && !Array.isArray(v) && "is_set" in v && Object.keys(v).length === 1;

/**
 * Splits a stored config (as the API shows it) into form data without the `{"is_set": …}` markers, and
 * the list of secrets that are set (the form says "set" and leaving them empty keeps them).
 */
export function fromStored(config: Record<string, unknown>): { formData: Record<string, unknown>; setSecrets: string[] } {
  const formData: Record<string, unknown> = {};
  const setSecrets: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (isSetMarker(value)) {
      if (value.is_set) setSecrets.push(key);
    } else if (value !== null) formData[key] = value;
  }
  return { formData, setSecrets };
}

/** What to send: an empty secret that is set is left out, so the server keeps it (PATCH merges). */
export function toSubmit(formData: Record<string, unknown>, secrets: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(formData)) {
    if (secrets.includes(key) && (value === undefined || value === "")) continue;
    if (value === undefined) continue;
    out[key] = value;
  }
  return out;
}

/** API errors keyed `config.<dotted path>` in rjsf's `extraErrors` shape: `{path: {__errors: [...]}}`. */
export function toExtraErrors(fields: Record<string, string[]>, prefix = "config"): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, messages] of Object.entries(fields)) {
    if (key !== prefix && !key.startsWith(`${prefix}.`)) continue;
    // Keeps the prefix: the form's root has `name` and `config`.
    const path = key.split(".");
    let node = out as Record<string, unknown>;
    for (const part of path) node = (node[part] ??= {}) as Record<string, unknown>;
    node.__errors = [...((node.__errors as string[] | undefined) ?? []), ...messages];
  }
  return out;
}

/** File sources read a `path` under the import directory: an upload can fill it in. */
export function takesFiles(type: { kind: string; config_schema: unknown }): boolean {
  const props = (type.config_schema as { properties?: Record<string, unknown> }).properties ?? {};
  return type.kind !== "destination" && "path" in props;
}
