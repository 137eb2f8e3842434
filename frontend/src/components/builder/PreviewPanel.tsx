"use client";

import type { PipelinePreview } from "@/api/types";
import type { SchemaField } from "@/components/builder/NodePanel";
import { ColumnProfiles, type ColumnProfile } from "@/components/RunQuality";
import { count } from "@/lib/format";

type Row = Record<string, unknown>;

const cell = (v: unknown) => (v === null || v === undefined ? "∅" : typeof v === "object" ? JSON.stringify(v) : String(v));

function Rows({ rows, caption, testId, changed }: { rows: Row[]; caption: string; testId: string; changed?: (row: number, column: string) => boolean }) {
  const columns = [...new Set(rows.slice(0, 50).flatMap((r) => Object.keys(r)))];
  return (
    <div className="max-h-80 overflow-auto rounded border border-slate-200 dark:border-slate-700" tabIndex={0} role="region" aria-label={caption}>
      <table className="min-w-full text-xs" data-testid={testId}>
        <caption className="sr-only">{caption}</caption>
        <thead className="sticky top-0 bg-slate-100 dark:bg-slate-700">
          <tr>
            {columns.map((c) => (
              <th key={c} scope="col" className="px-2 py-1 text-left font-mono">{c}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.slice(0, 100).map((row, i) => (
            <tr key={i} className="border-t border-slate-100 dark:border-slate-700">
              {columns.map((c) => (
                <td key={c} className={`px-2 py-0.5 font-mono whitespace-nowrap ${changed?.(i, c) ? "bg-amber-100 dark:bg-amber-900" : ""}`}>{cell(row[c])}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A node's sample input and output side by side, its output schema, rejected rows and rule failures. */
export function PreviewPanel({ preview }: { preview: PipelinePreview }) {
  const inputs = Object.entries(preview.inputs);
  const rowsIn = inputs.reduce((n, [, rows]) => n + rows.length, 0);
  const schemaFields = (((preview.schema as { fields?: SchemaField[] } | null)?.fields) ?? []) as SchemaField[];
  const profile = preview.profile as { rows: number; columns: ColumnProfile[] } | null | undefined;
  // With one input of as many rows as the output (a row-wise step), a cell that differs is marked.
  const only = inputs.length === 1 ? inputs[0]?.[1] : undefined;
  const aligned = only && only.length === preview.output.length;
  const changed = aligned ? (i: number, c: string) => cell(only[i]?.[c]) !== cell(preview.output[i]?.[c]) : undefined;
  return (
    <section aria-label={`Preview of ${preview.node}`} data-testid="preview" className="space-y-2">
      <p className="text-sm">
        <span data-testid="preview-rows-in" data-count={rowsIn}>{count(rowsIn)} rows in</span> ·{" "}
        <span data-testid="preview-rows-out" data-count={preview.output.length}>{count(preview.output.length)} rows out</span>
        {preview.rejected.length ? ` · ${count(preview.rejected.length)} rejected` : ""}
        {aligned ? " · changed cells are marked" : ""}
      </p>
      {preview.rule_failures.length ? (
        <div role="alert" data-testid="preview-rule-failures" className="rounded border border-amber-300 bg-amber-50 p-2 text-xs text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
          <p className="font-semibold">Rules that did not pass on the sample</p>
          <ul className="mt-1 space-y-1">
            {preview.rule_failures.map((f, i) => {
              const columns = Array.isArray(f.columns) ? (f.columns as string[]) : [];
              const sample = Array.isArray(f.sample) ? f.sample : [];
              return (
                <li key={i} data-rule={String(f.rule)} data-failed={String(f.failed)} data-rejected={String(f.rejected ?? 0)}>
                  <span className="font-mono">{String(f.node)}</span> · rule <span className="font-mono">{String(f.rule)}</span>
                  {f.type ? ` (${String(f.type)}${columns.length ? ` on ${columns.join(", ")}` : ""})` : ""}: {String(f.status)}, {String(f.failed)} of{" "}
                  {String(f.checked ?? "?")} rows failed
                  {Number(f.rejected) ? `, ${String(f.rejected)} rejected` : ""}
                  {f.message ? ` — ${String(f.message)}` : ""}
                  {sample.length ? (
                    <>
                      {" "}· failing values: <span className="font-mono">{sample.map(cell).join(", ")}</span>
                    </>
                  ) : null}
                </li>
              );
            })}
          </ul>
        </div>
      ) : null}
      {preview.rejected.length ? (
        <details className="text-xs" data-testid="preview-rejected">
          <summary className="cursor-pointer">Rejected rows ({count(preview.rejected.length)})</summary>
          <ul className="mt-1 max-h-48 space-y-0.5 overflow-auto">
            {preview.rejected.slice(0, 50).map((r, i) => (
              <li key={i} className="font-mono">
                {String(r.node)}
                {r.line ? `, line ${String(r.line)}` : ""}: {String(r.reason)} {r.raw !== undefined && r.raw !== null ? cell(r.raw) : ""}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
      <div className="grid gap-2 xl:grid-cols-2">
        <div className="min-w-0 space-y-1">
          <h3 className="text-sm font-semibold">Input</h3>
          {inputs.length === 0 ? <p className="text-xs">A source has no input: its output is what it reads.</p> : null}
          {inputs.map(([from, rows]) => (
            <Rows key={from} rows={rows} caption={`Rows from ${from}`} testId={`preview-input-${from}`} />
          ))}
        </div>
        <div className="min-w-0 space-y-1">
          <h3 className="text-sm font-semibold">Output</h3>
          <Rows rows={preview.output} caption={`Rows out of ${preview.node}`} testId="preview-output" changed={changed} />
        </div>
      </div>
      {profile?.columns.length ? (
        <details className="text-sm" data-testid="preview-profile">
          <summary className="cursor-pointer font-semibold">Profile of the output sample ({count(profile.rows)} {profile.rows === 1 ? "row" : "rows"})</summary>
          <ColumnProfiles columns={profile.columns} />
        </details>
      ) : null}
      {schemaFields.length ? (
        <div>
          <h3 className="text-sm font-semibold">Output schema</h3>
          <ul className="mt-1 flex flex-wrap gap-1 text-xs" data-testid="preview-schema">
            {schemaFields.map((f) => (
              <li key={f.name} className="rounded bg-slate-100 px-1.5 py-0.5 font-mono dark:bg-slate-700">
                {f.name} <span className="text-slate-700 dark:text-slate-300">{f.type}</span>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </section>
  );
}
