"use client";

import { useQuery } from "@tanstack/react-query";
import type { ColumnDef } from "@tanstack/react-table";
import { ArrowRight } from "lucide-react";
import Link from "next/link";
import { useMemo, useState } from "react";

import { api, ok } from "@/api/client";
import type { RunDestination, RunDetail } from "@/api/types";
import { DataTable } from "@/components/DataTable";
import { Button, Card, ErrorNote, Loading } from "@/components/ui";
import { cellText, count } from "@/lib/format";

const LOADED_ROWS_LIMIT = 50;

/** The rows in a destination table, read back through its connector (a Local warehouse table is a stream of
 * the same connector). */
function LoadedRows({ destination }: { destination: RunDestination }) {
  const rows = useQuery({
    queryKey: ["preview", destination.connector, destination.stream],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/connectors/{id}/preview/", { params: { path: { id: destination.connector! }, query: { stream: destination.stream ?? "", limit: LOADED_ROWS_LIMIT } }, signal })),
    staleTime: 0,
  });
  const columns = useMemo<ColumnDef<Record<string, unknown>, unknown>[]>(
    () =>
      (rows.data?.stream.fields ?? []).map((f) => ({
        id: f.name,
        header: f.name,
        accessorFn: (row) => row[f.name],
        cell: ({ getValue }) => <span className="font-mono text-xs whitespace-nowrap">{cellText(getValue())}</span>,
      })),
    [rows.data],
  );
  if (rows.isPending) return <Loading label="Reading the table…" />;
  if (rows.isError) return <ErrorNote error={rows.error} />;
  return (
    <DataTable
      data={rows.data.rows}
      columns={columns}
      caption={`The first ${LOADED_ROWS_LIMIT} rows of ${destination.table} as it is now`}
      testId={`loaded-rows-${destination.node_id}`}
      pageSize={10}
      empty="The table is empty."
    />
  );
}

/** Where the run loaded its rows: each destination's connector and table, and for a table that can be read
 * back (the Local warehouse) its rows as they are now. */
export function RunDestinations({ run }: { run: RunDetail }) {
  const [shown, setShown] = useState<string | null>(null);
  if (!run.destinations.length) return null;
  const written = new Map(run.nodes.map((n) => [n.node_id, n.rows_out]));
  return (
    <Card title="Loaded into">
      <ul className="space-y-3 text-sm" data-testid="destinations">
        {run.destinations.map((d) => (
          <li key={d.node_id} data-node={d.node_id}>
            <p className="flex flex-wrap items-center gap-x-2 gap-y-1">
              <span className="font-mono">{d.node_id}</span>
              <ArrowRight aria-hidden className="size-4" />
              {d.connector !== null ? (
                <Link href={`/connectors/view?id=${d.connector}`} className="text-indigo-700 hover:underline dark:text-indigo-300">
                  {d.connector_name}
                </Link>
              ) : (
                <span>{d.connector_name} (deleted)</span>
              )}
              <span>
                · table <strong className="font-mono">{d.stream ?? d.table}</strong> · {d.write_mode} ·{" "}
                <span data-testid={`landed-${d.node_id}`}>{count(written.get(d.node_id) ?? 0)}</span> rows written by this run
              </span>
              {d.stream && d.connector !== null && run.status === "succeeded" ? (
                <Button onClick={() => setShown(shown === d.node_id ? null : d.node_id)} aria-expanded={shown === d.node_id}>
                  {shown === d.node_id ? "Hide the rows" : "Show the rows"}
                </Button>
              ) : null}
            </p>
            {shown === d.node_id ? (
              <div className="mt-2">
                <LoadedRows destination={d} />
              </div>
            ) : null}
          </li>
        ))}
      </ul>
    </Card>
  );
}
