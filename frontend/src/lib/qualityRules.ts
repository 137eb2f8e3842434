// A node's validation rules (`rules` in the pipeline document, docs/quality.md) as the builder edits them:
// ids, the form schema of a rule type, and the values a form gives back.

import { simplifySchema, type JsonSchema } from "@/lib/configSchema";

export type Rule = Record<string, unknown> & { id?: string; type?: string; action?: string };

export interface RuleTypeInfo {
  type: string;
  description: string;
  stream_level: boolean;
  actions: string[];
  config_schema: unknown;
}

/** The server's pattern for a rule id (`_RULE_ID` in apps/transformations/quality.py). */
export const RULE_ID = /^[A-Za-z0-9_.-]{1,100}$/;

/** What is wrong with a rule id among the other rules' ids of the node, or null. */
export function ruleIdProblem(id: unknown, others: string[]): string | null {
  if (typeof id !== "string" || !id) return "Give the rule an id: it names the rule in reports and in the quarantine.";
  if (id.length > 100) return "An id has at most 100 characters.";
  if (!RULE_ID.test(id)) return "Use only letters, digits, underscores, dots and hyphens in an id.";
  if (others.includes(id)) return `Another rule of this node already has the id '${id}'.`;
  return null;
}

/** The columns a rule reads (`column`, or `columns` of a unique rule). */
export function ruleColumns(rule: Rule): string[] {
  if (typeof rule.column === "string" && rule.column) return [rule.column];
  return Array.isArray(rule.columns) ? rule.columns.filter((c): c is string => typeof c === "string") : [];
}

/** An id that says what the rule checks (`not_null_dep_delay`), unique among `taken`. */
export function suggestRuleId(type: string, columns: string[], taken: string[]): string {
  const base = [type, ...columns].join("_").replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 90) || "rule";
  let id = base;
  for (let n = 2; taken.includes(id); n++) id = `${base}_${n}`;
  return id;
}

/** The form of a rule type: its config schema without `type` (fixed once added), the actions the type
 * allows, and single inputs for what pydantic types as a union (range bounds, allowed values: text,
 * turned into numbers for a numeric column by the widgets). */
export function ruleFormSchema(ruleType: RuleTypeInfo): JsonSchema {
  const schema = simplifySchema(ruleType.config_schema as JsonSchema);
  const properties: Record<string, JsonSchema> = { ...(schema.properties ?? {}) };
  delete properties.type;
  for (const key of ["min", "max"]) {
    const prop = properties[key];
    if (prop?.anyOf) {
      const { anyOf: _anyOf, default: _default, ...rest } = prop;
      properties[key] = { ...rest, type: "string" };
    }
  }
  const values = properties.values;
  if (values?.items?.anyOf) properties.values = { ...values, items: { type: "string" } };
  const action = properties.action;
  if (action) properties.action = { ...action, enum: ruleType.actions, default: ruleType.actions.includes("fail") ? "fail" : ruleType.actions[0] };
  const { description: _description, ...rest } = schema;
  return { ...rest, properties, required: (schema.required ?? []).filter((k) => k !== "type") };
}

/** A rule as a new one is added: a suggested id, the type and its default action. */
export function newRule(ruleType: RuleTypeInfo, taken: string[]): Rule {
  const action = ruleType.actions.includes("fail") ? "fail" : (ruleType.actions[0] ?? "fail");
  return { id: suggestRuleId(ruleType.type, [], taken), type: ruleType.type, action };
}

/**
 * A rule turned into another type: what both types have in common is kept (description, the column or
 * columns where the new type reads them, the action when the new type allows it, else its default); an
 * id that was the one suggested for the old type follows the new one.
 */
export function changeRuleType(rule: Rule, ruleType: RuleTypeInfo, otherIds: string[]): Rule {
  const keys = Object.keys((ruleType.config_schema as JsonSchema).properties ?? {});
  const columns = ruleColumns(rule);
  const out: Rule = { id: rule.id, type: ruleType.type, action: newRule(ruleType, otherIds).action };
  if (typeof rule.action === "string" && ruleType.actions.includes(rule.action)) out.action = rule.action;
  if (typeof rule.description === "string" && rule.description) out.description = rule.description;
  if (columns.length && keys.includes("columns") && (ruleType.type === "unique" || !keys.includes("column"))) out.columns = columns;
  else if (columns.length && keys.includes("column")) out.column = columns[0];
  if (rule.id === suggestRuleId(String(rule.type), columns, otherIds)) out.id = suggestRuleId(ruleType.type, ruleColumns(out), otherIds);
  return out;
}

/** The defaults a form schema declares for its top-level keys. */
export function schemaDefaults(schema: JsonSchema): Record<string, unknown> {
  return Object.fromEntries(Object.entries(schema.properties ?? {}).filter(([, p]) => "default" in p).map(([k, p]) => [k, p.default]));
}

/** A form's values as the rule to store: the type kept, empty optional values left out, and so are the
 * defaults the form filled in for keys the rule does not have (the document stays as it was written, and
 * opening a rule changes nothing); a unique rule's `column` shorthand becomes `columns`. When the id was
 * the one suggested for the old columns, it follows the new ones. */
export function ruleFromForm(before: Rule, formData: Record<string, unknown>, otherIds: string[], defaults: Record<string, unknown> = {}): Rule {
  const out: Rule = { ...formData, type: before.type };
  for (const [key, value] of Object.entries(out)) {
    const filled = !(key in before) && key in defaults && JSON.stringify(defaults[key]) === JSON.stringify(value);
    if (value === undefined || (key === "description" && value === "") || filled) delete out[key];
  }
  if (before.type === "unique" && "columns" in out) delete out.column;
  const oldColumns = ruleColumns(before);
  const newColumns = ruleColumns(out);
  const suggested = suggestRuleId(String(before.type), oldColumns, otherIds);
  if (before.id === suggested && out.id === before.id && oldColumns.join() !== newColumns.join()) {
    out.id = suggestRuleId(String(before.type), newColumns, otherIds);
  }
  return out;
}

/** What the form shows of a stored rule (a unique rule written with `column` shows as `columns`). */
export function ruleToForm(rule: Rule): Record<string, unknown> {
  const { type: _type, ...rest } = rule;
  if (rule.type === "unique" && typeof rule.column === "string" && !Array.isArray(rule.columns)) {
    const { column, ...others } = rest;
    return { ...others, columns: [column] };
  }
  return rest;
}

/** The top-level key that differs between two objects (the field being typed in), for undo steps. */
export function changedKey(before: Record<string, unknown>, after: Record<string, unknown>): string {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  return keys.find((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])) ?? "";
}

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** A typed bound or allowed value: a number for a numeric column (when it reads as one), else the text
 * (dates, strings; the server casts it to the column's type). */
export function typedValue(text: string, columnType: string | undefined): string | number {
  const t = text.trim();
  if ((columnType === "integer" || columnType === "number") && NUMBER.test(t)) return Number(t);
  if (columnType === undefined && NUMBER.test(t)) return Number(t);
  return text;
}
