"use client";

import type { ColumnDef } from "@tanstack/react-table";
import { Plus, Workflow } from "lucide-react";
import Link from "next/link";
import { useId, useMemo, useState } from "react";

import type { LastRun, Pipeline } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { DataTable } from "@/components/DataTable";
import { ButtonLink, ErrorNote, inputClass, Loading, PageHeader, StatusBadge } from "@/components/ui";
import { ago } from "@/lib/format";
import { usePipelines } from "@/lib/queries";
import { useCan } from "@/lib/session";

const columns: ColumnDef<Pipeline, unknown>[] = [
  {
    header: "Name",
    accessorKey: "name",
    cell: ({ row }) => (
      <Link href={`/pipelines/view?id=${row.original.id}`} className="font-medium text-indigo-700 hover:underline dark:text-indigo-300">
        {row.original.name}
      </Link>
    ),
  },
  {
    header: "Last run",
    id: "last_run",
    accessorFn: (p) => (p.last_run as LastRun | null)?.status ?? "",
    cell: ({ row }) => {
      const last = row.original.last_run as LastRun | null;
      return (
        <span className="flex flex-wrap items-center gap-2">
          <StatusBadge status={last?.status} />
          {last ? (
            <Link href={`/runs/view?id=${last.id}`} className="text-xs text-slate-700 hover:underline dark:text-slate-300">
              {ago(last.queued_at)}
            </Link>
          ) : null}
        </span>
      );
    },
  },
  {
    header: "Schedule",
    accessorKey: "schedule_description",
    cell: ({ row }) => (
      <span>
        {row.original.schedule_description || "—"}
        {row.original.is_paused ? <span className="ml-2 rounded bg-amber-100 px-1.5 text-xs text-amber-900">paused</span> : null}
      </span>
    ),
  },
  { header: "Version", accessorKey: "version" },
  { header: "Updated", accessorKey: "updated_at", cell: ({ row }) => ago(row.original.updated_at) },
];

export default function PipelinesPage() {
  const pipelines = usePipelines();
  const canEdit = useCan("editor");
  const [search, setSearch] = useState("");
  const [status, setStatus] = useState("");
  const searchId = useId();
  const statusId = useId();
  const rows = useMemo(
    () =>
      (pipelines.data?.results ?? []).filter((p) => {
        const last = (p.last_run as LastRun | null)?.status ?? "never";
        if (status === "paused") return p.is_paused;
        return !status || last === status;
      }),
    [pipelines.data, status],
  );
  return (
    <AppShell>
      <PageHeader
        title="Pipelines"
        actions={
          canEdit ? (
            <>
              <ButtonLink href="/pipelines/builder">
                <Workflow aria-hidden className="size-4" /> Build visually
              </ButtonLink>
              <ButtonLink href="/pipelines/new" variant="primary">
                <Plus aria-hidden className="size-4" /> New pipeline
              </ButtonLink>
            </>
          ) : null
        }
      />
      <div className="mb-3 flex flex-wrap gap-3">
        <div>
          <label htmlFor={searchId} className="block text-sm font-medium">
            Search
          </label>
          <input id={searchId} type="search" value={search} onChange={(e) => setSearch(e.target.value)} className={inputClass} />
        </div>
        <div>
          <label htmlFor={statusId} className="block text-sm font-medium">
            Last run
          </label>
          <select id={statusId} value={status} onChange={(e) => setStatus(e.target.value)} className={inputClass}>
            <option value="">Any</option>
            {["succeeded", "failed", "running", "queued", "cancelled", "never"].map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
            <option value="paused">Paused pipelines</option>
          </select>
        </div>
      </div>
      {pipelines.isPending ? (
        <Loading />
      ) : pipelines.isError ? (
        <ErrorNote error={pipelines.error} />
      ) : (
        <DataTable data={rows} columns={columns} caption="Pipelines" globalFilter={search} testId="pipelines" empty="No pipelines match." />
      )}
    </AppShell>
  );
}
