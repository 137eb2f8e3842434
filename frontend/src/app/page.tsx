"use client";

import { useQuery } from "@tanstack/react-query";
import { startOfDay } from "date-fns";
import dynamic from "next/dynamic";
import Link from "next/link";
import { useMemo } from "react";

import { api, ok } from "@/api/client";
import type { LastRun } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { GetStarted } from "@/components/GetStarted";
import { RunsTable } from "@/components/RunsTable";
import { Card, Empty, ErrorNote, Loading, PageHeader } from "@/components/ui";
import { fillSeries, kpis } from "@/lib/charts";
import { ago, count } from "@/lib/format";
import { usePipelines } from "@/lib/queries";
import { useWorkspace } from "@/lib/session";

// Recharts is the largest library here: loaded after the page, so the dashboard's first load stays small.
const RunCharts = dynamic(() => import("@/components/RunCharts"), { ssr: false, loading: () => <Loading label="Loading charts…" /> });

function Kpi({ label, value, testId }: { label: string; value: string; testId: string }) {
  return (
    <div className="rounded-lg border border-slate-200 bg-white p-4 dark:border-slate-700 dark:bg-slate-800">
      <dt className="text-sm text-slate-700 dark:text-slate-300">{label}</dt>
      <dd data-testid={testId} className="mt-1 text-2xl font-semibold tabular-nums">
        {value}
      </dd>
    </div>
  );
}

function useWindow() {
  // `until` is left to the server (now), so a refetch after a live event includes the run just finished.
  return useMemo(() => ({ today: startOfDay(new Date()).toISOString() }), []);
}

function Dashboard() {
  const { id } = useWorkspace();
  const window = useWindow();
  const series = useQuery({
    queryKey: ["dashboard", "series", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/metrics/runs/", { params: { query: { workspace: id ?? undefined, bucket: "hour" } }, signal })),
    enabled: id !== null,
    refetchInterval: 60_000,
  });
  const today = useQuery({
    queryKey: ["dashboard", "today", id, window.today],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/metrics/runs/", { params: { query: { workspace: id ?? undefined, since: window.today, bucket: "hour" } }, signal })),
    enabled: id !== null,
    refetchInterval: 60_000,
  });
  const alerts = useQuery({
    queryKey: ["dashboard", "alerts", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/alerts/", { params: { query: { workspace: id ?? undefined, status: ["open"], limit: 5 } }, signal })),
    enabled: id !== null,
  });
  const pipelines = usePipelines();
  const failing = (pipelines.data?.results ?? []).filter((p) => (p.last_run as LastRun | null)?.status === "failed");
  const k = today.data ? kpis(today.data.points) : null;
  const chartData = useMemo(() => (series.data ? fillSeries(series.data.points, series.data.since, series.data.until, "hour") : []), [series.data]);

  return (
    <>
      <PageHeader title="Dashboard" />
      {pipelines.data && pipelines.data.count === 0 ? <GetStarted /> : null}
      <dl className="mb-4 grid grid-cols-2 gap-3 lg:grid-cols-4">
        <Kpi label="Runs today" testId="kpi-runs" value={k ? count(k.runs) : "…"} />
        <Kpi label="Success rate" testId="kpi-success" value={k ? (k.successRate === null ? "—" : `${Math.round(k.successRate * 1000) / 10}%`) : "…"} />
        <Kpi label="Rows moved today" testId="kpi-rows" value={k ? count(k.rows) : "…"} />
        <Kpi label="Failing pipelines" testId="kpi-failing" value={pipelines.data ? String(failing.length) : "…"} />
      </dl>
      {series.isError ? <ErrorNote error={series.error} /> : series.isPending ? <Loading /> : <RunCharts data={chartData} />}
      <div className="mt-4 grid gap-4 lg:grid-cols-3">
        <Card title="Recent runs" className="lg:col-span-2" actions={<Link href="/pipelines" className="text-sm text-indigo-700 hover:underline dark:text-indigo-300">All pipelines</Link>}>
          <RunsTable showPipeline limit={10} paginate={false} />
        </Card>
        <div className="space-y-4">
          <Card title="Open alerts">
            {alerts.isPending ? (
              <Loading />
            ) : alerts.isError ? (
              <ErrorNote error={alerts.error} />
            ) : alerts.data.results.length === 0 ? (
              <Empty>No open alerts.</Empty>
            ) : (
              <ul className="space-y-2 text-sm">
                {alerts.data.results.map((a) => (
                  <li key={a.id} className="rounded border border-red-200 bg-red-50 p-2 text-red-950 dark:border-red-800 dark:bg-red-950 dark:text-red-100">
                    <p className="font-medium">{a.title}</p>
                    <p className="text-xs">
                      {a.kind} · seen {a.count}× · last {ago(a.last_seen)}
                    </p>
                  </li>
                ))}
              </ul>
            )}
          </Card>
          <Card title="Failing pipelines">
            {failing.length === 0 ? (
              <Empty>None: every pipeline&apos;s last run passed or has not run.</Empty>
            ) : (
              <ul className="space-y-1 text-sm">
                {failing.map((p) => (
                  <li key={p.id}>
                    <Link href={`/pipelines/view?id=${p.id}`} className="text-indigo-700 hover:underline dark:text-indigo-300">
                      {p.name}
                    </Link>
                  </li>
                ))}
              </ul>
            )}
          </Card>
        </div>
      </div>
    </>
  );
}

export default function DashboardPage() {
  return (
    <AppShell>
      <Dashboard />
    </AppShell>
  );
}
