"use client";

import dynamic from "next/dynamic";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useId, useMemo, useState } from "react";

import { AppShell } from "@/components/AppShell";
import { Card, Empty, ErrorNote, Loading, PageHeader, inputClass } from "@/components/ui";
import { parseTableKey, sourceText, tableKey, type TableLineage } from "@/lib/lineageGraph";
import { useLineageTables, useTableLineage } from "@/lib/queries";

// React Flow is loaded with the graph, not with the page (nor with any other page).
const LineageGraph = dynamic(() => import("@/components/lineage/LineageGraph").then((m) => m.LineageGraph), {
  ssr: false,
  loading: () => <Loading label="Loading the graph…" />,
});

function TablePicker({ value, onChange }: { value: string; onChange: (key: string) => void }) {
  const tables = useLineageTables();
  const id = useId();
  if (tables.isPending) return <Loading />;
  if (tables.isError) return <ErrorNote error={tables.error} />;
  if (tables.data.results.length === 0) return <Empty>No pipeline writes a table yet. A pipeline&apos;s destination nodes name the tables shown here.</Empty>;
  return (
    <div>
      <label htmlFor={id} className="block text-sm font-medium">
        Destination table
      </label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)} className={`${inputClass} max-w-xl`}>
        <option value="">Choose a table…</option>
        {tables.data.results.map((t) => (
          <option key={tableKey(t)} value={tableKey(t)}>
            {t.connector.name} · {t.table} ({t.pipelines.length} pipeline{t.pipelines.length === 1 ? "" : "s"})
          </option>
        ))}
      </select>
    </div>
  );
}

function Columns({ lineage, selected, onSelect }: { lineage: TableLineage; selected: string | null; onSelect: (c: string | null) => void }) {
  return (
    <Card title="Columns">
      <p className="mb-2 text-xs text-slate-700 dark:text-slate-300">Choose a column to trace its path on the graph.</p>
      <ul className="space-y-1 text-sm" data-testid="lineage-columns">
        {lineage.columns.map((c) => (
          <li key={c.name}>
            <button
              type="button"
              aria-pressed={selected === c.name}
              onClick={() => onSelect(selected === c.name ? null : c.name)}
              className={`w-full rounded-md px-2 py-1 text-left ${selected === c.name ? "bg-amber-100 font-semibold dark:bg-amber-900" : "hover:bg-slate-100 dark:hover:bg-slate-700"}`}
            >
              <span className="font-mono">{c.name}</span> <span className="text-xs text-slate-700 dark:text-slate-300">{c.type}</span>
              <span className="block text-xs text-slate-700 dark:text-slate-300">
                {c.sources.length ? `from ${c.sources.map(sourceText).join("; ")}` : "from no source column"}
              </span>
            </button>
          </li>
        ))}
      </ul>
    </Card>
  );
}

function LineageScreen() {
  const params = useSearchParams();
  const router = useRouter();
  const chosen = useMemo(() => {
    const connector = params?.get("connector");
    const table = params?.get("table");
    return connector && /^\d+$/.test(connector) && table ? { connector: Number(connector), table } : null;
  }, [params]);
  const [selected, setSelected] = useState<string | null>(null);
  const lineage = useTableLineage(chosen);
  const choose = (key: string) => {
    const picked = parseTableKey(key);
    setSelected(null);
    // The table is in the address, so the screen can be linked to and reloaded.
    router.replace(picked ? `/lineage?connector=${picked.connector}&table=${encodeURIComponent(picked.table)}` : "/lineage");
  };
  const untraced = lineage.data?.pipelines.filter((p) => p.error) ?? [];
  return (
    <>
      <PageHeader title="Lineage">
        <p className="text-sm text-slate-700 dark:text-slate-300">For a destination table: the source columns each of its columns comes from, through the steps of every pipeline that writes it.</p>
      </PageHeader>
      <div className="space-y-4">
        <Card>
          <TablePicker value={chosen ? tableKey({ connector: { id: chosen.connector }, table: chosen.table }) : ""} onChange={choose} />
        </Card>
        {chosen === null ? null : lineage.isPending ? (
          <Loading label="Tracing the columns…" />
        ) : lineage.isError ? (
          <ErrorNote error={lineage.error} />
        ) : (
          <>
            <p className="text-sm" data-testid="lineage-writers">
              Written by{" "}
              {lineage.data.pipelines.map((p, i) => (
                <span key={p.id}>
                  {i ? ", " : ""}
                  <Link href={`/pipelines/view?id=${p.id}`} className="underline">
                    {p.name}
                  </Link>{" "}
                  (version {p.version})
                </span>
              ))}
              .
            </p>
            {untraced.length ? (
              <div role="status" className="rounded-md border border-amber-400 bg-amber-50 p-3 text-sm text-amber-950 dark:bg-amber-950 dark:text-amber-100">
                Not traced (the saved pipeline no longer validates):
                <ul className="list-inside list-disc">
                  {untraced.map((p) => (
                    <li key={p.id}>
                      {p.name}: {p.error}
                    </li>
                  ))}
                </ul>
              </div>
            ) : null}
            {lineage.data.columns.length === 0 ? (
              <Empty>No column could be traced.</Empty>
            ) : (
              <div className="grid gap-4 lg:grid-cols-[18rem_1fr]">
                <Columns lineage={lineage.data} selected={selected} onSelect={setSelected} />
                <section aria-label="Lineage graph">
                  <p className="sr-only">A picture of the list of columns beside it: source columns on the left, steps in the middle, the table&apos;s columns on the right.</p>
                  <LineageGraph graph={lineage.data} selected={selected} onSelect={setSelected} />
                  <p className="mt-1 text-xs text-slate-700 dark:text-slate-300">Source columns · steps (by pipeline) · the table&apos;s columns. Click a column on the right to trace it.</p>
                </section>
              </div>
            )}
          </>
        )}
      </div>
    </>
  );
}

export default function LineagePage() {
  return (
    <AppShell>
      <Suspense fallback={<Loading />}>
        <LineageScreen />
      </Suspense>
    </AppShell>
  );
}
