"use client";

import { useQuery } from "@tanstack/react-query";

import { api, ok } from "@/api/client";
import { Card, Empty, ErrorNote, Loading } from "@/components/ui";
import { count } from "@/lib/format";

export interface ColumnProfile {
  name: string;
  type: string;
  rows: number;
  nulls: number;
  null_share: number | null;
  distinct: number;
  min?: unknown;
  max?: unknown;
  mean?: unknown;
  histogram?: { edges: number[]; counts: number[] } | null;
  top_values?: { value: unknown; count: number }[];
}

/** A histogram as bars, with its numbers in words for screen readers (the figure's caption). */
export function Histogram({ column }: { column: ColumnProfile }) {
  const h = column.histogram;
  if (!h || !h.counts.length) return null;
  const top = Math.max(...h.counts, 1);
  const text = h.counts.map((c, i) => `${h.edges[i]}–${h.edges[i + 1]}: ${c}`).join(", ");
  return (
    <figure className="mt-1" data-testid={`histogram-${column.name}`}>
      <div className="flex h-12 items-end gap-px" aria-hidden>
        {h.counts.map((c, i) => (
          <div key={i} className="flex-1 bg-indigo-600 dark:bg-indigo-400" style={{ height: `${Math.max(2, (c / top) * 100)}%` }} title={`${h.edges[i]}–${h.edges[i + 1]}: ${c}`} />
        ))}
      </div>
      <figcaption className="sr-only">Histogram of {column.name}: {text}</figcaption>
      <p className="flex justify-between text-[10px] text-slate-700 dark:text-slate-300" aria-hidden>
        <span>{h.edges[0]}</span>
        <span>{h.edges[h.edges.length - 1]}</span>
      </p>
    </figure>
  );
}

// Six significant digits: a mean of 20.0875333… reads 20.0875.
const plain = (v: unknown) => (typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : String(v));

/** Per column of a profile: nulls (and their share), distinct values, min/max/mean, a histogram of numbers or
 * the top values of the rest. Shared by the run page and the connector page's stream profiles. */
export function ColumnProfiles({ columns }: { columns: ColumnProfile[] }) {
  return (
    <ul className="mt-1 grid gap-2 sm:grid-cols-2 lg:grid-cols-3">
      {columns.map((c) => (
        <li key={c.name} className="rounded border border-slate-200 p-2 text-xs dark:border-slate-700" data-testid={`column-profile-${c.name}`}>
          <p className="font-semibold"><span className="font-mono">{c.name}</span> {c.type}</p>
          <p>
            <span data-testid="nulls">nulls {count(c.nulls)}{c.null_share !== null ? ` (${(c.null_share * 100).toFixed(1)}%)` : ""}</span> · distinct {count(c.distinct)}
            {c.min !== undefined ? ` · min ${plain(c.min)} · max ${plain(c.max)}` : ""}
            {c.mean !== undefined && c.mean !== null ? ` · mean ${plain(c.mean)}` : ""}
          </p>
          <Histogram column={c} />
          {!c.histogram && c.top_values?.length ? (
            <p className="mt-1">top: {c.top_values.slice(0, 3).map((t) => `${String(t.value)} (${t.count})`).join(", ")}</p>
          ) : null}
        </li>
      ))}
    </ul>
  );
}

/** A run's quality report (every rule of every node) and the profiles of its node outputs. */
export function RunQuality({ runId }: { runId: number }) {
  const report = useQuery({
    queryKey: ["quality", runId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/runs/{id}/quality/", { params: { path: { id: runId } }, signal })),
  });
  const profiles = useQuery({
    queryKey: ["profiles", runId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/runs/{id}/profiles/", { params: { path: { id: runId }, query: { limit: 50 } }, signal })),
  });
  const nodes = report.data?.nodes ?? [];
  return (
    <>
      <Card title="Quality report" actions={report.data ? <span data-testid="quality-status" className="text-sm">overall: {report.data.status}</span> : null}>
        {report.isPending ? (
          <Loading />
        ) : report.isError ? (
          <ErrorNote error={report.error} />
        ) : nodes.every((n) => !n.rules.length) ? (
          <Empty>No validation rules ran.</Empty>
        ) : (
          <div className="overflow-x-auto">
            <table className="min-w-full text-sm" data-testid="quality">
              <caption className="sr-only">Validation rules of the run</caption>
              <thead>
                <tr className="text-left">
                  {["Node", "Rule", "Action", "Status", "Checked", "Failed", "Rejected", "Warned", "Failing values"].map((h) => (
                    <th key={h} scope="col" className="px-2 py-1">{h}</th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {nodes.flatMap((n) =>
                  n.rules.map((r) => (
                    <tr key={`${n.node}-${r.rule}`} className="border-t border-slate-100 dark:border-slate-700">
                      <td className="px-2 py-1 font-mono">{n.node}</td>
                      <td className="px-2 py-1">{r.rule} <span className="text-xs text-slate-700 dark:text-slate-300">({r.type})</span></td>
                      <td className="px-2 py-1">{r.action}</td>
                      <td className="px-2 py-1">{r.status}</td>
                      <td className="px-2 py-1 text-right tabular-nums">{count(r.checked)}</td>
                      <td className="px-2 py-1 text-right tabular-nums">{count(r.failed)}</td>
                      <td className="px-2 py-1 text-right tabular-nums">{count(r.rejected)}</td>
                      <td className="px-2 py-1 text-right tabular-nums">{count(r.warned)}</td>
                      <td className="px-2 py-1 font-mono text-xs">{JSON.stringify(r.sample)}</td>
                    </tr>
                  )),
                )}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      <Card title="Profiles">
        {profiles.isPending ? (
          <Loading />
        ) : profiles.isError ? (
          <ErrorNote error={profiles.error} />
        ) : profiles.data.results.length === 0 ? (
          <Empty>No node was profiled.</Empty>
        ) : (
          <div className="space-y-4">
            {profiles.data.results.map((p) => (
              <section key={p.node} aria-label={`Profile of ${p.node}`} data-testid={`profile-${p.node}`}>
                <h3 className="text-sm font-semibold">
                  <span className="font-mono">{p.node}</span> · {count(p.rows)} rows{p.complete ? "" : ` (first ${count(p.row_cap ?? p.rows)})`}
                </h3>
                <ColumnProfiles columns={(p.columns ?? []) as ColumnProfile[]} />
              </section>
            ))}
          </div>
        )}
      </Card>
    </>
  );
}
