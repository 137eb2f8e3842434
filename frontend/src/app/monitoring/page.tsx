"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { CheckCircle2, XCircle } from "lucide-react";
import Link from "next/link";
import { useCallback, useId, useState } from "react";

import { api, ok } from "@/api/client";
import type { Alert, Health } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { Tabs } from "@/components/Tabs";
import { Button, Card, Empty, ErrorNote, Loading, PageHeader, Pager } from "@/components/ui";
import { ago, when } from "@/lib/format";
import { useLive, useLiveEvents, type LiveEvent } from "@/lib/live";
import { useCan, useMe, useWorkspace } from "@/lib/session";
import { toastError } from "@/lib/store";

function HealthPanel() {
  const health = useQuery({
    queryKey: ["health"],
    // The schema types the answer as a list (a viewset's `list`); the endpoint answers one Health object.
    queryFn: async ({ signal }) => (await ok(api.GET("/api/v1/health/", { signal }))) as unknown as Health,
    refetchInterval: 15_000,
  });
  if (health.isPending) return <Loading />;
  if (health.isError) return <ErrorNote error={health.error} />;
  return (
    <Card title={`Health: ${health.data.status}`} actions={<span className="text-xs text-slate-600 dark:text-slate-400">checked {ago(health.data.checked_at)}</span>}>
      <ul className="grid gap-2 sm:grid-cols-2 lg:grid-cols-3" data-testid="health">
        {Object.entries(health.data.components).map(([name, c]) => (
          <li key={name} className="flex items-start gap-2 rounded-md border border-slate-200 p-2 text-sm dark:border-slate-700">
            {c.ok ? <CheckCircle2 aria-label="ok" className="mt-0.5 size-4 shrink-0 text-green-700" /> : <XCircle aria-label="failing" className="mt-0.5 size-4 shrink-0 text-red-700" />}
            <span>
              <span className="font-medium capitalize">{name}</span>
              <span className="block text-slate-700 dark:text-slate-300">{c.detail}</span>
            </span>
          </li>
        ))}
      </ul>
    </Card>
  );
}

function subjectLink(e: { subject: { type: string; id: string } }) {
  const { type, id } = e.subject;
  const href = type === "run" ? `/runs/view?id=${id}` : type === "pipeline" ? `/pipelines/view?id=${id}` : type === "connector" ? `/connectors/view?id=${id}` : null;
  return href ? (
    <Link href={href} className="text-indigo-700 hover:underline dark:text-indigo-300">
      {type} #{id}
    </Link>
  ) : type ? (
    `${type} #${id}`
  ) : null;
}

/** The workspace's events: the stored history, with new ones added live (progress ticks left out). */
function EventFeed({ workspaceId }: { workspaceId: number }) {
  const connected = useLive();
  const [offset, setOffset] = useState(0);
  const [fresh, setFresh] = useState<LiveEvent[]>([]);
  const events = useQuery({
    queryKey: ["events", workspaceId, offset],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/events/", { params: { query: { workspace: workspaceId, limit: 50, offset } }, signal })),
  });
  const onEvent = useCallback((e: LiveEvent) => {
    if (e.type === "run.progress" || e.id === null) return;
    setFresh((old) => [e, ...old.filter((o) => o.id !== e.id)].slice(0, 50));
  }, []);
  useLiveEvents("workspace", workspaceId, onEvent);
  const stored = events.data?.results ?? [];
  const seen = new Set(stored.map((e) => e.id));
  const rows = [...(offset === 0 ? fresh.filter((e) => !seen.has(e.id as number)) : []), ...stored];
  return (
    <Card title="Events" actions={<span className="text-xs text-slate-600 dark:text-slate-400">{connected ? "live" : "not live: reload for new events"}</span>}>
      {events.isPending ? (
        <Loading />
      ) : events.isError ? (
        <ErrorNote error={events.error} />
      ) : rows.length === 0 ? (
        <Empty>No events yet.</Empty>
      ) : (
        <ol className="divide-y divide-slate-100 text-sm dark:divide-slate-700" aria-label="Events, newest first">
          {rows.map((e) => (
            <li key={`${e.id}`} className="flex flex-wrap items-baseline gap-x-3 py-1.5">
              <span className="w-40 shrink-0 text-xs text-slate-600 tabular-nums dark:text-slate-400">{when(e.created_at)}</span>
              <span className="font-mono font-medium">{e.type}</span>
              <span>{subjectLink(e)}</span>
            </li>
          ))}
        </ol>
      )}
      {events.data ? <Pager offset={offset} limit={50} count={events.data.count} onChange={setOffset} label="Events" /> : null}
    </Card>
  );
}

function Alerts({ workspaceId }: { workspaceId: number }) {
  const client = useQueryClient();
  const canAct = useCan("editor");
  const [status, setStatus] = useState("open");
  const [offset, setOffset] = useState(0);
  const selectId = useId();
  const alerts = useQuery({
    queryKey: ["alerts", workspaceId, status, offset],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/alerts/", { params: { query: { workspace: workspaceId ?? undefined, status: status ? [status as Alert["status"]] : undefined, limit: 25, offset } }, signal })),
  });
  const act = async (alert: Alert, action: "acknowledge" | "resolve") => {
    try {
      await ok(
        action === "acknowledge"
          ? api.POST("/api/v1/alerts/{id}/acknowledge/", { params: { path: { id: alert.id } } })
          : api.POST("/api/v1/alerts/{id}/resolve/", { params: { path: { id: alert.id } } }),
      );
      void client.invalidateQueries({ queryKey: ["alerts"] });
      void client.invalidateQueries({ queryKey: ["dashboard"] });
    } catch (error) {
      toastError(error);
    }
  };
  return (
    <Card
      title="Alerts"
      actions={
        <span className="flex items-center gap-2 text-sm">
          <label htmlFor={selectId}>Status</label>
          <select id={selectId} value={status} onChange={(e) => { setStatus(e.target.value); setOffset(0); }} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
            <option value="open">open</option>
            <option value="acknowledged">acknowledged</option>
            <option value="resolved">resolved</option>
            <option value="">all</option>
          </select>
        </span>
      }
    >
      {alerts.isPending ? (
        <Loading />
      ) : alerts.isError ? (
        <ErrorNote error={alerts.error} />
      ) : alerts.data.results.length === 0 ? (
        <Empty>No {status} alerts.</Empty>
      ) : (
        <ul className="divide-y divide-slate-100 text-sm dark:divide-slate-700">
          {alerts.data.results.map((a) => (
            <li key={a.id} className="flex flex-wrap items-center justify-between gap-2 py-2">
              <span>
                <span className="font-medium">{a.title}</span>
                <span className="block text-xs text-slate-700 dark:text-slate-300">
                  {a.kind} · {a.status} · {a.count}× · first {ago(a.first_seen)}, last {ago(a.last_seen)}
                </span>
              </span>
              {canAct && a.status !== "resolved" ? (
                <span className="flex gap-2">
                  {a.status === "open" ? <Button onClick={() => void act(a, "acknowledge")}>Acknowledge</Button> : null}
                  <Button onClick={() => void act(a, "resolve")}>Resolve</Button>
                </span>
              ) : null}
            </li>
          ))}
        </ul>
      )}
      {alerts.data ? <Pager offset={offset} limit={25} count={alerts.data.count} onChange={setOffset} label="Alerts" /> : null}
    </Card>
  );
}

function AuditLog({ workspaceId }: { workspaceId: number }) {
  const [offset, setOffset] = useState(0);
  const audit = useQuery({
    queryKey: ["audit", workspaceId, offset],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/audit-log/", { params: { query: { workspace: workspaceId, limit: 50, offset } }, signal })),
  });
  if (audit.isPending) return <Loading />;
  if (audit.isError) return <ErrorNote error={audit.error} />;
  return (
    <Card title="Audit log">
      {audit.data.results.length === 0 ? (
        <Empty>No changes recorded yet.</Empty>
      ) : (
        <div className="overflow-x-auto">
          <table className="min-w-full text-sm">
            <caption className="sr-only">Audit log, newest first</caption>
            <thead>
              <tr className="text-left">
                <th scope="col" className="px-2 py-1">When</th>
                <th scope="col" className="px-2 py-1">Who</th>
                <th scope="col" className="px-2 py-1">Action</th>
                <th scope="col" className="px-2 py-1">Object</th>
                <th scope="col" className="px-2 py-1">Changes</th>
              </tr>
            </thead>
            <tbody>
              {audit.data.results.map((a) => (
                <tr key={a.id} className="border-t border-slate-100 align-top dark:border-slate-700">
                  <td className="px-2 py-1 whitespace-nowrap">{when(a.timestamp)}</td>
                  <td className="px-2 py-1">{a.actor.email ?? "system"} <span className="text-xs text-slate-600 dark:text-slate-400">({a.credential})</span></td>
                  <td className="px-2 py-1">{a.action}</td>
                  <td className="px-2 py-1">{a.object.type} {a.object.repr}</td>
                  <td className="px-2 py-1 font-mono text-xs break-all">
                    {Object.entries((a.changes ?? {}) as Record<string, unknown>).map(([field, change]) => (
                      <div key={field}>
                        {field}: {JSON.stringify(change)}
                      </div>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager offset={offset} limit={50} count={audit.data.count} onChange={setOffset} label="Audit log" />
    </Card>
  );
}

type Tab = "overview" | "audit";

function Monitoring() {
  const { id } = useWorkspace();
  const isAdmin = useCan("admin");
  const { data: me } = useMe();
  const [tab, setTab] = useState<Tab>("overview");
  if (id === null) return <Empty>You are not a member of any workspace.</Empty>;
  const overview = (
    <div className="space-y-4">
      {me?.is_staff ? (
        <HealthPanel />
      ) : (
        <p data-testid="health-operators-only" className="text-sm text-slate-700 dark:text-slate-300">
          The platform&apos;s health (workers, queues, beat, disk) is shown to operators (staff users): it is the whole platform&apos;s, not this workspace&apos;s.
        </p>
      )}
      <div className="grid gap-4 lg:grid-cols-2">
        <Alerts workspaceId={id} />
        <EventFeed workspaceId={id} />
      </div>
    </div>
  );
  return (
    <>
      <PageHeader title="Monitoring" />
      {isAdmin ? (
        <Tabs label="Monitoring" active={tab} onChange={setTab} tabs={[{ id: "overview", label: "Health, alerts, events" }, { id: "audit", label: "Audit log" }]}>
          {tab === "overview" ? overview : <AuditLog workspaceId={id} />}
        </Tabs>
      ) : (
        overview
      )}
    </>
  );
}

export default function MonitoringPage() {
  return (
    <AppShell>
      <Monitoring />
    </AppShell>
  );
}
