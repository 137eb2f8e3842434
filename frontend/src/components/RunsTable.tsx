"use client";

import Link from "next/link";
import { useState } from "react";

import { Empty, ErrorNote, Loading, Pager, StatusBadge } from "@/components/ui";
import { ago, count, duration } from "@/lib/format";
import { useRuns } from "@/lib/queries";

const LIMIT = 25;

/** Runs, newest first, paginated by the server (so a pipeline with thousands of runs stays quick). */
export function RunsTable({ pipelineId, showPipeline = false, limit = LIMIT, paginate = true }: { pipelineId?: number; showPipeline?: boolean; limit?: number; paginate?: boolean }) {
  const [offset, setOffset] = useState(0);
  const runs = useRuns({ pipeline: pipelineId, limit, offset });
  if (runs.isPending) return <Loading />;
  if (runs.isError) return <ErrorNote error={runs.error} />;
  if (runs.data.count === 0) return <Empty>No runs yet.</Empty>;
  return (
    <>
      <div className="overflow-x-auto">
        <table data-testid="runs" className="min-w-full divide-y divide-slate-200 text-sm dark:divide-slate-700">
          <caption className="sr-only">Runs</caption>
          <thead>
            <tr className="text-left">
              <th scope="col" className="px-2 py-1.5">Run</th>
              {showPipeline ? <th scope="col" className="px-2 py-1.5">Pipeline</th> : null}
              <th scope="col" className="px-2 py-1.5">Status</th>
              <th scope="col" className="px-2 py-1.5">Trigger</th>
              <th scope="col" className="px-2 py-1.5">Queued</th>
              <th scope="col" className="px-2 py-1.5">Duration</th>
              <th scope="col" className="px-2 py-1.5 text-right">Rows written</th>
            </tr>
          </thead>
          <tbody className="divide-y divide-slate-100 dark:divide-slate-800">
            {runs.data.results.map((run) => (
              <tr key={run.id} data-run-id={run.id}>
                <td className="px-2 py-1.5">
                  <Link href={`/runs/view?id=${run.id}`} className="font-medium text-indigo-700 hover:underline dark:text-indigo-300">
                    #{run.id}
                  </Link>
                </td>
                {showPipeline ? (
                  <td className="px-2 py-1.5">
                    <Link href={`/pipelines/view?id=${run.pipeline}`} className="hover:underline">
                      {run.pipeline_name}
                    </Link>
                  </td>
                ) : null}
                <td className="px-2 py-1.5">
                  <StatusBadge status={run.status} />
                </td>
                <td className="px-2 py-1.5">{run.trigger}</td>
                <td className="px-2 py-1.5 whitespace-nowrap">{ago(run.queued_at)}</td>
                <td className="px-2 py-1.5">{duration(run.duration_s)}</td>
                <td className="px-2 py-1.5 text-right tabular-nums">{count(run.rows_written)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {paginate ? <Pager offset={offset} limit={limit} count={runs.data.count} onChange={setOffset} label="Runs" /> : null}
    </>
  );
}
