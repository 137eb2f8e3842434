"use client";

import Form from "@rjsf/core";
import type { RJSFSchema, UiSchema } from "@rjsf/utils";
import { customizeValidator } from "@rjsf/validator-ajv8";
import { useQuery } from "@tanstack/react-query";
import { AlertTriangle, Eye, Trash2 } from "lucide-react";
import { useMemo } from "react";

import { api, ok } from "@/api/client";
import type { Connector, StepType } from "@/api/types";
import { ExpressionWidget } from "@/components/builder/ExpressionWidget";
import { FieldMapper } from "@/components/builder/FieldMapper";
import { RulesEditor } from "@/components/builder/RulesEditor";
import { Button, Field, inputClass } from "@/components/ui";
import { simplifySchema, toExtraErrors, type JsonSchema } from "@/lib/configSchema";
import type { DocNode } from "@/lib/pipelineDoc";
import type { Rule, RuleTypeInfo } from "@/lib/qualityRules";

// The same ajv setup as the connector forms (ConnectorForm): pydantic's `format: password` is known.
const validator = customizeValidator({ customFormats: { password: /.*/s } });

export interface SchemaField {
  name: string;
  type: string;
  nullable?: boolean;
}

/** Errors of one node keyed by field inside it (`config.expression`), from the server's `nodes.<id>.…`. */
export function fieldsOfNode(fields: Record<string, string[]>, nodeId: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [key, messages] of Object.entries(fields)) {
    const k = key.replace(/^definition\./, "");
    const prefix = `nodes.${nodeId}.`;
    if (k.startsWith(prefix)) out[k.slice(prefix.length)] = messages;
    else if (k === `nodes.${nodeId}`) out[""] = messages;
  }
  return out;
}

/** One field per name (a step with several inputs gets the first input's), for completion and checks. */
function uniqueFields(fields: SchemaField[]): SchemaField[] {
  const seen = new Map<string, SchemaField>();
  for (const f of fields) if (!seen.has(f.name)) seen.set(f.name, f);
  return [...seen.values()];
}

function StepConfigForm({ step, config, onChange, readOnly, errors, fields }: { step: StepType; config: Record<string, unknown>; onChange: (c: Record<string, unknown>) => void; readOnly: boolean; errors: Record<string, string[]>; fields: SchemaField[] }) {
  const schema = useMemo(() => ({ ...simplifySchema(step.config_schema as JsonSchema), title: `${step.title} settings` }) as RJSFSchema, [step]);
  const extraErrors = useMemo(() => (toExtraErrors(errors, "config").config ?? {}) as never, [errors]);
  const uiSchema = useMemo(() => {
    // Top-level string fields named like an expression complete column names from the node's input and
    // are checked by the server as they are typed; the widget shows the field's errors itself.
    const ui: UiSchema = { "ui:submitButtonOptions": { norender: true } };
    const props = (schema as JsonSchema).properties ?? {};
    const expressionFields = fields.map(({ name, type }) => ({ name, type }));
    for (const [key, prop] of Object.entries(props)) {
      if (prop.type === "string" && /expression|condition|predicate/i.test(key)) {
        ui[key] = { "ui:widget": ExpressionWidget, "ui:options": { fields: expressionFields }, "ui:hideError": true };
      }
    }
    return ui;
  }, [schema, fields]);
  return (
    <Form
      className="rjsf space-y-3 text-sm"
      schema={schema}
      uiSchema={uiSchema}
      formData={config}
      validator={validator}
      extraErrors={extraErrors}
      showErrorList={false}
      noHtml5Validate
      liveValidate={false}
      readonly={readOnly}
      onChange={(e) => onChange((e.formData ?? {}) as Record<string, unknown>)}
    />
  );
}

function StreamSelect({ connector, value, onChange, readOnly, errors }: { connector: Connector | undefined; value: string; onChange: (v: string) => void; readOnly: boolean; errors?: string[] }) {
  const streams = useQuery({
    queryKey: ["connector-streams", connector?.id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/schemas/connectors/{id}/streams/", { params: { path: { id: connector!.id } }, signal })),
    enabled: Boolean(connector),
  });
  const names = (streams.data?.streams ?? []).map((s) => s.stream);
  return (
    <Field label="Stream" errors={errors}>
      {(p) => (
        <select {...p} value={value} disabled={readOnly} onChange={(e) => onChange(e.target.value)} className={inputClass}>
          {!names.includes(value) ? <option value={value}>{value || "choose a stream"}</option> : null}
          {names.map((n) => (
            <option key={n} value={n}>{n}</option>
          ))}
        </select>
      )}
    </Field>
  );
}

/** The selected node: its settings (a form from the step's JSON Schema), its problems and its fields. */
export function NodePanel({
  doc,
  steps,
  connectors,
  sources,
  destinations,
  errors,
  fields,
  upstreamFields = [],
  outputFields,
  ruleTypes = [],
  readOnly,
  onChange,
  onConfigChange,
  onDelete,
  onPreview,
  canPreview,
  lineage,
  traced,
  onTrace,
}: {
  doc: DocNode;
  steps: StepType[];
  connectors: Connector[];
  sources: Connector[];
  destinations: Connector[];
  errors: Record<string, string[]>;
  fields: SchemaField[] | null;
  /** The fields arriving at the node (its inputs' outputs), for completing column names. */
  upstreamFields?: SchemaField[];
  /** The last fields known at the node's output (kept while a mistake hides them), for its rules. */
  outputFields?: SchemaField[];
  /** `GET /rule-types/`: the validation rules a node may carry. */
  ruleTypes?: RuleTypeInfo[];
  readOnly: boolean;
  onChange: (patch: Record<string, unknown>, key?: string) => void;
  onConfigChange: (config: Record<string, unknown>) => void;
  onDelete: () => void;
  onPreview: () => void;
  canPreview: boolean;
  /** A destination's column lineage (saved version): column -> the source columns it comes from. */
  lineage?: Record<string, { node: string; column: string }[]> | null;
  traced?: string | null;
  onTrace?: (column: string | null) => void;
}) {
  const step = steps.find((s) => s.slug === doc.step);
  const connector = connectors.find((c) => c.name === doc.connector || String(c.id) === String(doc.connector));
  const all = Object.entries(errors).flatMap(([k, v]) => v.map((m) => (k ? `${k}: ${m}` : m)));
  const at = (key: string) => errors[key];
  const text = (key: string, label: string, hint?: string) => (
    <Field label={label} hint={hint} errors={at(key)}>
      {(p) => <input {...p} value={String(doc[key] ?? "")} readOnly={readOnly} onChange={(e) => onChange({ [key]: e.target.value }, `${doc.id}:${key}`)} className={inputClass} />}
    </Field>
  );
  const connectorSelect = (options: Connector[]) => (
    <Field label="Connector" errors={at("connector")}>
      {(p) => (
        <select {...p} value={String(doc.connector ?? "")} disabled={readOnly} onChange={(e) => onChange({ connector: e.target.value })} className={inputClass}>
          {!options.some((c) => c.name === doc.connector) ? <option value={String(doc.connector ?? "")}>{String(doc.connector ?? "choose")}</option> : null}
          {options.map((c) => (
            <option key={c.id} value={c.name}>{c.name}</option>
          ))}
        </select>
      )}
    </Field>
  );

  return (
    <div className="space-y-3" data-testid="node-panel">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h2 className="text-base font-semibold">
          <span className="font-mono">{doc.id}</span> <span className="text-sm font-normal text-slate-700 dark:text-slate-300">{String(doc.kind)}</span>
        </h2>
        <div className="flex gap-1">
          <Button onClick={onPreview} disabled={!canPreview}>
            <Eye aria-hidden className="size-4" /> Preview
          </Button>
          {!readOnly ? (
            <Button variant="danger" onClick={onDelete} aria-label={`Delete node ${doc.id}`}>
              <Trash2 aria-hidden className="size-4" />
            </Button>
          ) : null}
        </div>
      </div>
      {all.length ? (
        // The list inside the alert: a list given role=alert is no list any more, and its items dangle.
        <div role="alert" data-testid="node-errors" className="rounded-md border border-red-300 bg-red-50 p-2 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
          <ul className="space-y-0.5">
            {all.map((m, i) => (
              <li key={i} className="flex gap-1">
                <AlertTriangle aria-hidden className="mt-0.5 size-3.5 shrink-0" /> {m}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      {doc.kind === "source" ? (
        <>
          {connectorSelect(sources)}
          <StreamSelect connector={connector} value={String(doc.stream ?? "")} onChange={(v) => onChange({ stream: v })} readOnly={readOnly} errors={at("stream")} />
          <Field label="Sync mode" errors={at("sync_mode")}>
            {(p) => (
              <select {...p} value={String(doc.sync_mode ?? "full_refresh")} disabled={readOnly} onChange={(e) => onChange({ sync_mode: e.target.value, cursor_field: e.target.value === "incremental" ? doc.cursor_field ?? "" : undefined })} className={inputClass}>
                <option value="full_refresh">full refresh</option>
                <option value="incremental">incremental</option>
              </select>
            )}
          </Field>
          {doc.sync_mode === "incremental" ? text("cursor_field", "Cursor field") : null}
        </>
      ) : null}
      {doc.kind === "destination" ? (
        <>
          {connectorSelect(destinations)}
          {text("table", "Table")}
          <Field label="Write mode" errors={at("write_mode")}>
            {(p) => (
              <select {...p} value={String(doc.write_mode ?? "append")} disabled={readOnly} onChange={(e) => onChange({ write_mode: e.target.value, primary_key: e.target.value === "merge" ? doc.primary_key ?? [] : undefined })} className={inputClass}>
                <option value="append">append</option>
                <option value="overwrite">overwrite</option>
                <option value="merge">merge</option>
              </select>
            )}
          </Field>
          {doc.write_mode === "merge" ? (
            <Field label="Primary key" hint="Columns, separated by commas." errors={at("primary_key")}>
              {(p) => (
                <input
                  {...p}
                  value={Array.isArray(doc.primary_key) ? doc.primary_key.join(", ") : ""}
                  readOnly={readOnly}
                  onChange={(e) => onChange({ primary_key: e.target.value.split(",").map((s) => s.trim()).filter(Boolean) }, `${doc.id}:primary_key`)}
                  className={inputClass}
                />
              )}
            </Field>
          ) : null}
        </>
      ) : null}
      {doc.kind === "transform" && doc.step === "map_fields" ? (
        <FieldMapper config={(doc.config as Record<string, unknown> | undefined) ?? {}} onChange={onConfigChange} sourceFields={upstreamFields} readOnly={readOnly} errors={errors} nodeId={String(doc.id)} connectors={connectors} />
      ) : doc.kind === "transform" ? (
        step ? (
          <StepConfigForm step={step} config={(doc.config as Record<string, unknown> | undefined) ?? {}} onChange={onConfigChange} readOnly={readOnly} errors={errors} fields={uniqueFields(upstreamFields)} />
        ) : (
          <p className="text-sm">Unknown step {String(doc.step)}.</p>
        )
      ) : null}
      {ruleTypes.length ? (
        <RulesEditor
          nodeId={String(doc.id)}
          rules={Array.isArray(doc.rules) ? (doc.rules as Rule[]) : []}
          ruleTypes={ruleTypes}
          fields={fields ?? outputFields ?? []}
          errors={errors}
          readOnly={readOnly}
          onChange={onChange}
        />
      ) : null}
      {lineage ? (
        <section aria-label={`Lineage of ${doc.id}`} data-testid="lineage">
          <h3 className="text-sm font-semibold">Where each column comes from</h3>
          <p className="text-xs text-slate-700 dark:text-slate-300">Of the saved version. Trace a column to see its path on the canvas.</p>
          <table className="mt-1 w-full text-xs">
            <caption className="sr-only">Column lineage of {doc.id}</caption>
            <thead>
              <tr className="text-left">
                <th scope="col" className="py-0.5 pr-2">Column</th>
                <th scope="col" className="py-0.5 pr-2">From</th>
                <th scope="col" className="py-0.5"><span className="sr-only">Trace</span></th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(lineage).map(([column, from]) => (
                <tr key={column} data-column={column} className={`border-t border-slate-100 dark:border-slate-700 ${traced === column ? "bg-sky-50 dark:bg-sky-950" : ""}`}>
                  <td className="py-0.5 pr-2 font-mono">{column}</td>
                  <td className="py-0.5 pr-2 font-mono">{from.map((f) => `${f.node}.${f.column}`).join(", ") || "—"}</td>
                  <td className="py-0.5 text-right">
                    <button
                      type="button"
                      aria-pressed={traced === column}
                      aria-label={`Trace ${column}`}
                      onClick={() => onTrace?.(traced === column ? null : column)}
                      className="rounded px-1.5 text-indigo-700 underline dark:text-indigo-300"
                    >
                      trace
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ) : null}
      <section aria-label={`Fields at ${doc.id}`}>
        <h3 className="text-sm font-semibold">Fields at this node</h3>
        {fields ? (
          <ul data-testid="node-fields" className="mt-1 flex flex-wrap gap-1 text-xs">
            {fields.map((f) => (
              <li key={f.name} className="rounded bg-slate-100 px-1.5 py-0.5 font-mono text-slate-900 dark:bg-slate-700 dark:text-slate-50">
                {f.name} <span className="text-slate-700 dark:text-slate-300">{f.type}{f.nullable ? "?" : ""}</span>
              </li>
            ))}
          </ul>
        ) : (
          <p className="text-xs text-slate-700 dark:text-slate-300">Shown once the pipeline validates.</p>
        )}
      </section>
    </div>
  );
}
