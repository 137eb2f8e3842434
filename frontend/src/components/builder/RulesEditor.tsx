"use client";

import Form from "@rjsf/core";
import type { RJSFSchema, UiSchema, WidgetProps } from "@rjsf/utils";
import validator from "@rjsf/validator-ajv8";
import { AlertTriangle, ArrowDown, ArrowUp, Plus, Trash2 } from "lucide-react";
import { useEffect, useMemo, useState } from "react";

import { ExpressionWidget } from "@/components/builder/ExpressionWidget";
import type { SchemaField } from "@/components/builder/NodePanel";
import { Button, Field, inputClass } from "@/components/ui";
import { toExtraErrors } from "@/lib/configSchema";
import {
  changedKey,
  newRule,
  changeRuleType,
  ruleColumns,
  ruleFormSchema,
  ruleFromForm,
  ruleIdProblem,
  ruleToForm,
  schemaDefaults,
  typedValue,
  type Rule,
  type RuleTypeInfo,
} from "@/lib/qualityRules";

const ACTION_NAMES: Record<string, string> = {
  fail: "fail — stop the run",
  reject: "reject — quarantine the row",
  warn: "warn — count it, keep the row",
};

const fieldLabel = (f: SchemaField) => `${f.name} (${f.type}${f.nullable ? ", nullable" : ""})`;

/** `column`: one of the node's output fields (the list the validation gave); free text while none is known. */
function ColumnWidget({ id, value, onChange, onBlur, onFocus, readonly, disabled, options }: WidgetProps) {
  const fields = (options.fields as SchemaField[] | undefined) ?? [];
  const current = typeof value === "string" ? value : "";
  if (!fields.length) {
    return (
      <input id={id} value={current} readOnly={readonly} disabled={disabled} onChange={(e) => onChange(e.target.value || undefined)} onBlur={() => onBlur(id, current)} onFocus={() => onFocus(id, current)} className={`${inputClass} font-mono`} />
    );
  }
  return (
    <select id={id} value={current} disabled={readonly || disabled} onChange={(e) => onChange(e.target.value || undefined)} onBlur={() => onBlur(id, current)} onFocus={() => onFocus(id, current)} className={inputClass}>
      {!current ? <option value="">choose a column</option> : null}
      {current && !fields.some((f) => f.name === current) ? <option value={current}>{current} (not at this node)</option> : null}
      {fields.map((f) => (
        <option key={f.name} value={f.name}>{fieldLabel(f)}</option>
      ))}
    </select>
  );
}

/** `columns` (a unique rule's key): several of the node's output fields. */
function ColumnsWidget({ id, value, onChange, readonly, disabled, options }: WidgetProps) {
  const fields = (options.fields as SchemaField[] | undefined) ?? [];
  const chosen: string[] = Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
  const names = [...chosen.filter((c) => !fields.some((f) => f.name === c)), ...fields.map((f) => f.name)];
  const labelOf = (name: string) => {
    const f = fields.find((x) => x.name === name);
    return f ? fieldLabel(f) : `${name} (not at this node)`;
  };
  return (
    <select
      id={id}
      multiple
      size={Math.min(6, Math.max(2, names.length))}
      value={chosen}
      disabled={readonly || disabled}
      onChange={(e) => onChange([...e.target.selectedOptions].map((o) => o.value))}
      className={inputClass}
    >
      {names.map((n) => (
        <option key={n} value={n}>{labelOf(n)}</option>
      ))}
    </select>
  );
}

/** Text kept as typed while it reads as the same value, so "1.0" or "-" can be typed on the way to "1.05". */
function useTyped(value: unknown, format: (v: unknown) => string, same: (text: string) => string) {
  const [text, setText] = useState(() => format(value));
  useEffect(() => {
    if (format(value) !== same(text)) setText(format(value));
    // `format` and `same` are pure: the value alone decides
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [value]);
  return [text, setText] as const;
}

/** A range bound: a number for a numeric column, else text (a date: "2013-01-01"). */
function BoundWidget({ id, value, onChange, readonly, disabled, options }: WidgetProps) {
  const columnType = options.columnType as string | undefined;
  const format = (v: unknown) => (v === undefined || v === null ? "" : String(v));
  const [text, setText] = useTyped(value, format, (t) => format(t.trim() ? typedValue(t, columnType) : undefined));
  return (
    <input
      id={id}
      value={text}
      readOnly={readonly}
      disabled={disabled}
      onChange={(e) => {
        setText(e.target.value);
        onChange(e.target.value.trim() ? typedValue(e.target.value, columnType) : undefined);
      }}
      className={`${inputClass} font-mono`}
    />
  );
}

/** Allowed values, separated by commas (numbers for a numeric column). */
function ValuesWidget({ id, value, onChange, readonly, disabled, options }: WidgetProps) {
  const columnType = options.columnType as string | undefined;
  const parse = (t: string) => t.split(",").map((s) => s.trim()).filter(Boolean).map((s) => typedValue(s, columnType));
  const format = (v: unknown) => (Array.isArray(v) ? v.map(String).join(", ") : "");
  const [text, setText] = useTyped(value, format, (t) => format(parse(t)));
  return (
    <input
      id={id}
      value={text}
      readOnly={readonly}
      disabled={disabled}
      onChange={(e) => {
        setText(e.target.value);
        const values = parse(e.target.value);
        onChange(values.length ? values : undefined);
      }}
      className={`${inputClass} font-mono`}
    />
  );
}

function RuleForm({
  nodeId,
  index,
  rule,
  ruleType,
  fields,
  otherIds,
  errors,
  readOnly,
  onChange,
}: {
  nodeId: string;
  index: number;
  rule: Rule;
  ruleType: RuleTypeInfo;
  fields: SchemaField[];
  otherIds: string[];
  errors: Record<string, string[]>;
  readOnly: boolean;
  onChange: (rule: Rule, field: string) => void;
}) {
  const schema = useMemo(() => ruleFormSchema(ruleType), [ruleType]);
  const defaults = useMemo(() => schemaDefaults(schema), [schema]);
  const formData = useMemo(() => ruleToForm(rule), [rule]);
  const columnType = fields.find((f) => f.name === rule.column)?.type;
  const uiSchema = useMemo(() => {
    const props = schema.properties ?? {};
    // Freshness judges the latest date or datetime: only those columns are offered.
    const columnFields = ruleType.type === "freshness" ? fields.filter((f) => f.type === "date" || f.type === "datetime") : fields;
    const ui: UiSchema = {
      "ui:submitButtonOptions": { norender: true },
      "ui:order": ["id", "action", "*", "description"],
      id: { "ui:title": "Rule id" },
    };
    if (props.action) ui.action = { "ui:enumNames": ruleType.actions.map((a) => ACTION_NAMES[a] ?? a), "ui:help": ruleType.stream_level ? "Judged when the stream ends: there is no row to reject." : undefined };
    if (props.column) ui.column = { "ui:widget": ColumnWidget, "ui:options": { fields: columnFields } };
    if (props.columns) ui.columns = { "ui:widget": ColumnsWidget, "ui:options": { fields }, "ui:help": "Choose one or more (Ctrl or Shift to add to the choice)." };
    if (props.expression) {
      ui.expression = { "ui:widget": ExpressionWidget, "ui:options": { fields: fields.map(({ name, type }) => ({ name, type })) }, "ui:hideError": true, "ui:help": "Rows pass where it is true." };
    }
    for (const key of ["min", "max"]) if (props[key]) ui[key] = { "ui:widget": BoundWidget, "ui:options": { columnType } };
    if (props.values) ui.values = { "ui:widget": ValuesWidget, "ui:options": { columnType }, "ui:help": "Separated by commas." };
    return ui;
  }, [schema, ruleType, fields, columnType]);

  const idProblem = ruleIdProblem(rule.id, otherIds);
  const extraErrors = useMemo(() => {
    const mine = ((toExtraErrors(errors, `rules.${index}`).rules as Record<string, Record<string, unknown>> | undefined)?.[index] ?? {}) as Record<string, unknown>;
    delete mine.__errors; // shown above the form
    return (idProblem ? { ...mine, id: { __errors: [idProblem] } } : mine) as never;
  }, [errors, index, idProblem]);

  return (
    <Form
      className="rjsf space-y-2 text-sm"
      schema={schema as RJSFSchema}
      uiSchema={uiSchema}
      formData={formData}
      validator={validator}
      extraErrors={extraErrors}
      showErrorList={false}
      noHtml5Validate
      liveValidate={false}
      readonly={readOnly}
      idPrefix={`rule-${nodeId}-${index}`}
      onChange={(e) => {
        // The form also reports the defaults it fills in when it opens: those change nothing.
        const next = ruleFromForm(rule, (e.formData ?? {}) as Record<string, unknown>, otherIds, defaults);
        // The field edited names the undo step; an id that followed a new column is part of that edit.
        const [was, now] = [ruleToForm(rule), ruleToForm(next)];
        const field = changedKey({ ...was, id: null }, { ...now, id: null }) || changedKey(was, now);
        if (field) onChange(next, field);
      }}
    />
  );
}

/**
 * The selected node's validation rules (`rules`, docs/quality.md): add one of the types
 * `GET /rule-types/` lists, edit it in a form generated from the type's JSON Schema (columns chosen from
 * the node's output fields, an expression completed and checked as typed), reorder, remove. Each change
 * goes through `onChange` with a key per rule field, so typing in one field is one undo step.
 */
export function RulesEditor({
  nodeId,
  rules,
  ruleTypes,
  fields,
  errors,
  readOnly,
  onChange,
}: {
  nodeId: string;
  rules: Rule[];
  ruleTypes: RuleTypeInfo[];
  /** The node's output fields (what its rules check). */
  fields: SchemaField[];
  /** The node's errors keyed inside it (`rules.0.column`). */
  errors: Record<string, string[]>;
  readOnly: boolean;
  onChange: (patch: Record<string, unknown>, key?: string) => void;
}) {
  const [adding, setAdding] = useState("not_null");
  const chosen = ruleTypes.find((t) => t.type === adding) ?? ruleTypes[0];
  const ids = rules.map((r) => String(r.id ?? ""));
  const write = (next: Rule[], key?: string) => onChange({ rules: next.length ? next : undefined }, key);
  const move = (from: number, to: number) => {
    const next = [...rules];
    const [item] = next.splice(from, 1);
    if (item) next.splice(to, 0, item);
    write(next);
  };
  const listErrors = errors.rules ?? [];

  return (
    <section aria-labelledby={`rules-${nodeId}`} data-testid="rules" className="space-y-2 border-t border-slate-200 pt-3 dark:border-slate-700">
      <h3 id={`rules-${nodeId}`} className="text-sm font-semibold">Quality rules</h3>
      <p className="text-xs text-slate-700 dark:text-slate-300">
        Checked on every row this node gives (stream rules once it ends). Preview the node to see what fails on a sample.
      </p>
      {listErrors.length ? (
        <p role="alert" className="text-sm text-red-700 dark:text-red-400">{listErrors.join(" ")}</p>
      ) : null}
      {rules.length === 0 ? <p className="text-sm" data-testid="no-rules">No rules on this node.</p> : null}
      <ol className="space-y-2">
        {rules.map((rule, index) => {
          const ruleType = ruleTypes.find((t) => t.type === rule.type);
          const name = String(rule.id || `rule ${index + 1}`);
          const otherIds = ids.filter((_, i) => i !== index);
          const formKeys = Object.keys((ruleType?.config_schema as { properties?: object } | undefined)?.properties ?? {}).filter((k) => k !== "type");
          // Errors about the rule as a whole, or a key the form has no field for (its type, a stray key).
          const ruleErrors = Object.entries(errors).flatMap(([key, messages]) => {
            const m = new RegExp(`^rules\\.${index}(?:\\.(.+))?$`).exec(key);
            if (!m) return [];
            const field = m[1];
            if (field && formKeys.includes(field.split(".")[0] ?? "")) return [];
            return messages.map((msg) => (field ? `${field}: ${msg}` : msg));
          });
          return (
            <li key={index} data-testid={`rule-${index}`} data-rule-id={String(rule.id ?? "")} className="space-y-1 rounded-md border border-slate-200 p-2 dark:border-slate-700">
              <div className="flex items-start justify-between gap-1">
                <h4 className="text-sm font-semibold">
                  <span className="font-mono">{name}</span>{" "}
                  <span className="font-normal text-slate-700 dark:text-slate-300">
                    {String(rule.type)}
                    {ruleColumns(rule).length ? ` on ${ruleColumns(rule).join(", ")}` : ""}
                  </span>
                </h4>
                {!readOnly ? (
                  <div className="flex shrink-0 gap-0.5">
                    <Button variant="ghost" onClick={() => move(index, index - 1)} disabled={index === 0} aria-label={`Move rule ${name} up`}>
                      <ArrowUp aria-hidden className="size-4" />
                    </Button>
                    <Button variant="ghost" onClick={() => move(index, index + 1)} disabled={index === rules.length - 1} aria-label={`Move rule ${name} down`}>
                      <ArrowDown aria-hidden className="size-4" />
                    </Button>
                    <Button variant="danger" onClick={() => write(rules.filter((_, i) => i !== index))} aria-label={`Remove rule ${name}`}>
                      <Trash2 aria-hidden className="size-4" />
                    </Button>
                  </div>
                ) : null}
              </div>
              {ruleType ? <p className="text-xs text-slate-700 dark:text-slate-300">{ruleType.description}</p> : null}
              {!readOnly && ruleType ? (
                <Field label={`Type of rule ${name}`}>
                  {(p) => (
                    <select
                      {...p}
                      value={ruleType.type}
                      onChange={(e) => {
                        const next = ruleTypes.find((t) => t.type === e.target.value);
                        if (next) write(rules.map((r, i) => (i === index ? changeRuleType(r, next, otherIds) : r)));
                      }}
                      className={inputClass}
                    >
                      {ruleTypes.map((t) => (
                        <option key={t.type} value={t.type}>
                          {t.type}{t.stream_level ? " (whole stream)" : ""}
                        </option>
                      ))}
                    </select>
                  )}
                </Field>
              ) : null}
              {ruleErrors.length ? (
                <ul role="alert" data-testid="rule-errors" className="text-sm text-red-700 dark:text-red-400">
                  {ruleErrors.map((m, i) => (
                    <li key={i} className="flex gap-1">
                      <AlertTriangle aria-hidden className="mt-0.5 size-3.5 shrink-0" /> {m}
                    </li>
                  ))}
                </ul>
              ) : null}
              {ruleType ? (
                <RuleForm
                  key={String(rule.type)}
                  nodeId={nodeId}
                  index={index}
                  rule={rule}
                  ruleType={ruleType}
                  fields={fields}
                  otherIds={otherIds}
                  errors={errors}
                  readOnly={readOnly}
                  onChange={(next, field) => write(rules.map((r, i) => (i === index ? next : r)), `${nodeId}:rules.${index}.${field}`)}
                />
              ) : (
                <p className="text-sm">
                  A rule of type <span className="font-mono">{String(rule.type)}</span>, which the builder does not know: edit it in the Document view.
                </p>
              )}
            </li>
          );
        })}
      </ol>
      {!readOnly && chosen ? (
        <div className="space-y-1">
          <div className="flex items-end gap-2">
            <div className="min-w-0 flex-1">
              <Field label="Rule type" hint={chosen.description}>
                {(p) => (
                  <select {...p} value={chosen.type} onChange={(e) => setAdding(e.target.value)} className={inputClass}>
                    {ruleTypes.map((t) => (
                      <option key={t.type} value={t.type}>
                        {t.type}{t.stream_level ? " (whole stream)" : ""}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
            </div>
          </div>
          <Button onClick={() => write([...rules, newRule(chosen, ids)])}>
            <Plus aria-hidden className="size-4" /> Add rule
          </Button>
        </div>
      ) : null}
    </section>
  );
}
