"use client";

import type { ColumnDef } from "@tanstack/react-table";
import { Plus } from "lucide-react";
import Link from "next/link";
import { useId, useState } from "react";

import type { Connector } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { DataTable } from "@/components/DataTable";
import { ButtonLink, ErrorNote, inputClass, Loading, PageHeader, StatusBadge } from "@/components/ui";
import { ago } from "@/lib/format";
import { useConnectors, useConnectorTypes } from "@/lib/queries";
import { useCan } from "@/lib/session";

type LastCheck = { status: string; message: string; at: string | null };

export default function ConnectorsPage() {
  const connectors = useConnectors();
  const types = useConnectorTypes();
  const canEdit = useCan("editor");
  const [search, setSearch] = useState("");
  const searchId = useId();
  const titles = new Map((types.data?.results ?? []).map((t) => [t.slug, t.title]));
  const columns: ColumnDef<Connector, unknown>[] = [
    {
      header: "Name",
      accessorKey: "name",
      cell: ({ row }) => (
        <Link href={`/connectors/view?id=${row.original.id}`} className="font-medium text-indigo-700 hover:underline dark:text-indigo-300">
          {row.original.name}
        </Link>
      ),
    },
    { header: "Type", accessorFn: (c) => titles.get(c.connector_type) ?? c.connector_type, id: "type" },
    {
      header: "Last check",
      id: "check",
      accessorFn: (c) => (c.last_check as LastCheck).status,
      cell: ({ row }) => {
        const check = row.original.last_check as LastCheck;
        return check.status === "never" ? (
          <span className="text-sm text-slate-600 dark:text-slate-400">never checked</span>
        ) : (
          <span className="flex flex-wrap items-center gap-2">
            <StatusBadge status={check.status} /> <span className="text-xs">{ago(check.at)}</span>
          </span>
        );
      },
    },
    { header: "Updated", accessorKey: "updated_at", cell: ({ row }) => ago(row.original.updated_at) },
  ];
  return (
    <AppShell>
      <PageHeader
        title="Connectors"
        actions={
          canEdit ? (
            <ButtonLink href="/connectors/new" variant="primary">
              <Plus aria-hidden className="size-4" /> New connector
            </ButtonLink>
          ) : null
        }
      />
      <div className="mb-3 max-w-xs">
        <label htmlFor={searchId} className="block text-sm font-medium">
          Search
        </label>
        <input id={searchId} type="search" value={search} onChange={(e) => setSearch(e.target.value)} className={inputClass} />
      </div>
      {connectors.isPending ? (
        <Loading />
      ) : connectors.isError ? (
        <ErrorNote error={connectors.error} />
      ) : (
        <DataTable data={connectors.data.results} columns={columns} caption="Connectors" globalFilter={search} testId="connectors" empty="No connectors yet." />
      )}
    </AppShell>
  );
}
