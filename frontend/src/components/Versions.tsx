"use client";

import { useQuery } from "@tanstack/react-query";
import { useId, useState } from "react";

import { api, ok } from "@/api/client";
import type { VersionDiff } from "@/api/types";
import { Button, Empty, ErrorNote, Loading } from "@/components/ui";
import { ago } from "@/lib/format";

/** A pipeline's versions, newest first, and what changed between any two of them. */
export function Versions({ pipelineId }: { pipelineId: number }) {
  const versions = useQuery({
    queryKey: ["versions", pipelineId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipelines/{id}/versions/", { params: { path: { id: pipelineId }, query: { limit: 100 } }, signal })),
  });
  const [pair, setPair] = useState<{ base: number; other: number } | null>(null);
  const baseId = useId();
  const otherId = useId();
  const [base, setBase] = useState<number | "">("");
  const [other, setOther] = useState<number | "">("");
  const diff = useQuery({
    queryKey: ["diff", pipelineId, pair],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipelines/{id}/versions/diff/", { params: { path: { id: pipelineId }, query: pair! }, signal })),
    enabled: pair !== null,
  });
  if (versions.isPending) return <Loading />;
  if (versions.isError) return <ErrorNote error={versions.error} />;
  const list = versions.data.results;
  const numbers = list.map((v) => v.version);
  return (
    <div className="grid gap-4 lg:grid-cols-2">
      <ol className="space-y-2" aria-label="Versions">
        {list.map((v) => (
          <li key={v.version} className="rounded-md border border-slate-200 bg-white p-2 text-sm dark:border-slate-700 dark:bg-slate-800">
            <p className="font-semibold">Version {v.version}</p>
            <p className="text-slate-700 dark:text-slate-300">
              {v.message || "No note"} — {v.created_by ?? "unknown"}, {ago(v.created_at)}
            </p>
          </li>
        ))}
      </ol>
      <div>
        {numbers.length < 2 ? (
          <Empty>Save a second version to compare.</Empty>
        ) : (
          <form
            className="flex flex-wrap items-end gap-2"
            onSubmit={(e) => {
              e.preventDefault();
              const b = base === "" ? numbers[1] : base;
              const o = other === "" ? numbers[0] : other;
              if (b !== undefined && o !== undefined) setPair({ base: b, other: o });
            }}
          >
            <div>
              <label htmlFor={baseId} className="block text-sm font-medium">From version</label>
              <select id={baseId} value={base === "" ? numbers[1] : base} onChange={(e) => setBase(Number(e.target.value))} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
                {numbers.map((n) => <option key={n} value={n}>{n}</option>)}
              </select>
            </div>
            <div>
              <label htmlFor={otherId} className="block text-sm font-medium">To version</label>
              <select id={otherId} value={other === "" ? numbers[0] : other} onChange={(e) => setOther(Number(e.target.value))} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
                {numbers.map((n) => <option key={n} value={n}>{n}</option>)}
              </select>
            </div>
            <Button type="submit">Compare</Button>
          </form>
        )}
        {diff.isFetching ? <Loading /> : null}
        {diff.isError ? <ErrorNote error={diff.error} /> : null}
        {diff.data ? <DiffView diff={diff.data} /> : null}
      </div>
    </div>
  );
}

function DiffView({ diff }: { diff: VersionDiff }) {
  const changed = Object.entries(diff.changed_nodes as Record<string, unknown>);
  const nothing = !diff.added_nodes.length && !diff.removed_nodes.length && !changed.length && !diff.added_edges.length && !diff.removed_edges.length;
  return (
    <div data-testid="diff" className="mt-3 space-y-2 text-sm">
      <h3 className="font-semibold">
        Version {diff.base} → {diff.other}
      </h3>
      {nothing ? <p>No differences.</p> : null}
      {diff.added_nodes.map((n) => (
        <p key={`a-${n}`} className="rounded bg-green-50 px-2 py-1 text-green-900 dark:bg-green-950 dark:text-green-100">+ node {n}</p>
      ))}
      {diff.removed_nodes.map((n) => (
        <p key={`r-${n}`} className="rounded bg-red-50 px-2 py-1 text-red-900 dark:bg-red-950 dark:text-red-100">− node {n}</p>
      ))}
      {changed.map(([node, change]) => (
        <div key={node} className="rounded bg-amber-50 px-2 py-1 text-amber-950 dark:bg-amber-950 dark:text-amber-100">
          <p>~ node {node}</p>
          <pre className="overflow-x-auto text-xs">{JSON.stringify(change, null, 2)}</pre>
        </div>
      ))}
      {diff.added_edges.map((e) => <p key={`ae-${e.join()}`}>+ edge {e.join(" → ")}</p>)}
      {diff.removed_edges.map((e) => <p key={`re-${e.join()}`}>− edge {e.join(" → ")}</p>)}
    </div>
  );
}
