"use client";

import { useQuery } from "@tanstack/react-query";
import { ArrowRight } from "lucide-react";
import Link from "next/link";
import { useEffect, useId, useRef, useState } from "react";

import { api, ok, withQuery } from "@/api/client";
import type { RunDetail, RunLog } from "@/api/types";
import { Card, Empty, ErrorNote, Loading, Pager, StatusBadge } from "@/components/ui";
import { bytes, count, duration, when } from "@/lib/format";
import { totals } from "@/lib/runProgress";

const ACTIVE = ["queued", "running"];

/** The run's header figures and its nodes, one row each, with live counts. */
export function RunSummary({ run, live }: { run: RunDetail; live: boolean }) {
  const t = totals(run);
  return (
    <>
      <dl className="mb-4 grid grid-cols-2 gap-3 sm:grid-cols-4">
        {[
          ["Status", <StatusBadge key="s" status={run.status} testId="run-status" />],
          ["Rows read", <span key="r" data-testid="rows-read">{count(t.read)}</span>],
          ["Rows written", <span key="w" data-testid="rows-written">{count(t.written)}</span>],
          ["Rows rejected", count(t.rejected)],
          ["Queued", when(run.queued_at)],
          ["Duration", duration(run.duration_s)],
          ["Attempt", `${run.attempt} of ${run.max_attempts}`],
          ["Trigger", run.trigger],
        ].map(([label, value]) => (
          <div key={String(label)} className="rounded-md border border-slate-200 bg-white p-2 dark:border-slate-700 dark:bg-slate-800">
            <dt className="text-xs text-slate-600 dark:text-slate-400">{label}</dt>
            <dd className="text-sm font-semibold tabular-nums">{value}</dd>
          </div>
        ))}
      </dl>
      {run.error ? (
        <p role="alert" className="mb-4 rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
          {run.error_kind ? <strong>{run.error_kind}: </strong> : null}
          {run.error}
        </p>
      ) : null}
      <Card title="Nodes" actions={ACTIVE.includes(run.status) ? <span className="text-xs text-slate-600 dark:text-slate-400">{live ? "live" : "refreshing every second"}</span> : null}>
        {run.nodes.length === 0 ? (
          <Empty>{run.status === "queued" ? "Waiting for a worker…" : "No nodes ran."}</Empty>
        ) : (
          <div className="overflow-x-auto">
            <table data-testid="nodes" className="min-w-full text-sm">
              <caption className="sr-only">Progress of each node</caption>
              <thead>
                <tr className="text-left">
                  <th scope="col" className="px-2 py-1">Node</th>
                  <th scope="col" className="px-2 py-1">Status</th>
                  <th scope="col" className="px-2 py-1 text-right">Rows in</th>
                  <th scope="col" className="px-2 py-1 text-right">Rows out</th>
                  <th scope="col" className="px-2 py-1 text-right">Rejected</th>
                  <th scope="col" className="px-2 py-1 text-right">Bytes</th>
                  <th scope="col" className="px-2 py-1">Duration</th>
                </tr>
              </thead>
              <tbody>
                {run.nodes.map((node) => (
                  <tr key={node.node_id} data-node={node.node_id} className="border-t border-slate-100 dark:border-slate-700">
                    <th scope="row" className="px-2 py-1 text-left font-mono font-medium">
                      {node.node_id}
                      {node.kind ? <span className="ml-1 text-xs font-normal text-slate-600 dark:text-slate-400">{node.kind}</span> : null}
                      {node.error ? <p className="font-sans text-xs font-normal text-red-700 dark:text-red-300">{node.error}</p> : null}
                    </th>
                    <td className="px-2 py-1">
                      <StatusBadge status={node.status} />
                    </td>
                    <td className="px-2 py-1 text-right tabular-nums" data-col="rows_in">{count(node.rows_in)}</td>
                    <td className="px-2 py-1 text-right tabular-nums" data-col="rows_out">{count(node.rows_out)}</td>
                    <td className="px-2 py-1 text-right tabular-nums">{count(node.rows_rejected)}</td>
                    <td className="px-2 py-1 text-right tabular-nums">{node.bytes ? bytes(node.bytes) : "—"}</td>
                    <td className="px-2 py-1">{node.finished_at ? duration(node.duration_s) : "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
    </>
  );
}

const LEVELS = ["", "debug", "info", "warning", "error"] as const;

/** The log, tailed: new lines are fetched after the last id seen while the run is active. */
export function RunLogs({ runId, active }: { runId: number; active: boolean }) {
  const [level, setLevel] = useState<(typeof LEVELS)[number]>("");
  const [lines, setLines] = useState<RunLog[]>([]);
  const [error, setError] = useState<unknown>(null);
  const lastId = useRef<number | null>(null);
  const box = useRef<HTMLOListElement>(null);
  const selectId = useId();

  useEffect(() => {
    setLines([]);
    lastId.current = null;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout>;
    const tick = async (final: boolean) => {
      try {
        const page = await ok(api.GET("/api/v1/runs/{id}/logs/", { params: { path: { id: runId }, query: { after: lastId.current ?? undefined, level: level || undefined, limit: 500 } } }));
        if (stopped) return;
        if (page.results.length) {
          lastId.current = page.results[page.results.length - 1]!.id;
          setLines((old) => [...old, ...page.results].slice(-2000));
        }
        setError(null);
        const more = page.results.length === 500;
        if (more || (active && !final)) timer = setTimeout(() => void tick(false), more ? 0 : 2000);
      } catch (e) {
        if (!stopped) setError(e);
      }
    };
    void tick(!active);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [runId, level, active]);

  useEffect(() => {
    const el = box.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines]);

  return (
    <Card
      title="Log"
      actions={
        <span className="flex items-center gap-2 text-sm">
          <label htmlFor={selectId}>Level</label>
          <select id={selectId} value={level} onChange={(e) => setLevel(e.target.value as typeof level)} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
            {LEVELS.map((l) => (
              <option key={l} value={l}>
                {l || "all"}
              </option>
            ))}
          </select>
        </span>
      }
    >
      {error ? <ErrorNote error={error} /> : null}
      {lines.length === 0 ? (
        <Empty>No log lines{level ? ` at level ${level}` : ""}.</Empty>
      ) : (
        <ol ref={box} tabIndex={0} aria-label="Log lines" className="max-h-80 overflow-y-auto rounded bg-slate-950 p-2 font-mono text-xs text-slate-100">
          {lines.map((line) => (
            <li key={line.id} className="whitespace-pre-wrap">
              <span className="text-slate-400">{when(line.at).slice(11)}</span>{" "}
              <span className={line.level === "error" ? "text-red-300" : line.level === "warning" ? "text-amber-300" : "text-sky-300"}>{line.level.padEnd(7)}</span>{" "}
              {line.node ? <span className="text-violet-300">[{line.node}] </span> : null}
              {line.message}
            </li>
          ))}
        </ol>
      )}
    </Card>
  );
}

export function RejectedRows({ runId, nodes = [] }: { runId: number; nodes?: string[] }) {
  const [offset, setOffset] = useState(0);
  const [node, setNode] = useState("");
  const rejected = useQuery({
    queryKey: ["rejected", runId, offset, node],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/runs/{id}/rejected/", { params: { path: { id: runId }, query: { limit: 50, offset, node: node || undefined } }, signal })),
  });
  const csv = withQuery(`/api/v1/runs/${runId}/rejected.csv`, { node: node || undefined });
  return (
    <Card
      title="Rejected rows"
      actions={
        <div className="flex flex-wrap items-center gap-2 text-sm">
          {nodes.length > 1 ? (
            <>
              <label htmlFor={`rejected-node-${runId}`}>Node</label>
              <select
                id={`rejected-node-${runId}`}
                value={node}
                onChange={(e) => {
                  setNode(e.target.value);
                  setOffset(0);
                }}
                className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900"
              >
                <option value="">all nodes</option>
                {nodes.map((n) => (
                  <option key={n} value={n}>{n}</option>
                ))}
              </select>
            </>
          ) : null}
          <a href={csv} download data-testid="rejected-csv" className="text-indigo-700 hover:underline dark:text-indigo-300">
            Download CSV
          </a>
        </div>
      }
    >
      {rejected.isPending ? (
        <Loading />
      ) : rejected.isError ? (
        <ErrorNote error={rejected.error} />
      ) : rejected.data.count === 0 ? (
        <Empty>No rows were rejected.</Empty>
      ) : (
        <>
          <div className="overflow-x-auto">
            <table className="min-w-full text-sm">
              <caption className="sr-only">Rejected rows</caption>
              <thead>
                <tr className="text-left">
                  <th scope="col" className="px-2 py-1">Node</th>
                  <th scope="col" className="px-2 py-1">Line</th>
                  <th scope="col" className="px-2 py-1">Reason</th>
                  <th scope="col" className="px-2 py-1">Raw</th>
                </tr>
              </thead>
              <tbody>
                {rejected.data.results.map((r) => (
                  <tr key={r.id} className="border-t border-slate-100 align-top dark:border-slate-700">
                    <td className="px-2 py-1 font-mono">{r.node}</td>
                    <td className="px-2 py-1">{r.line ?? r.row ?? "—"}</td>
                    <td className="px-2 py-1">{r.reason}</td>
                    <td className="px-2 py-1 font-mono text-xs break-all">{typeof r.raw === "string" ? r.raw : JSON.stringify(r.raw)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager offset={offset} limit={50} count={rejected.data.count} onChange={setOffset} label="Rejected rows" />
        </>
      )}
    </Card>
  );
}

export function PipelineLink({ run }: { run: RunDetail }) {
  return (
    <Link href={`/pipelines/view?id=${run.pipeline}`} className="inline-flex items-center gap-1 text-sm text-indigo-700 hover:underline dark:text-indigo-300">
      {run.pipeline_name} (version {run.version}) <ArrowRight aria-hidden className="size-3.5" />
    </Link>
  );
}
