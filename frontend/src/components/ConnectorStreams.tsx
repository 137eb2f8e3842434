"use client";

import { useMutation, useQuery } from "@tanstack/react-query";
import type { ColumnDef } from "@tanstack/react-table";
import { BarChart3, KeyRound } from "lucide-react";
import { useId, useMemo, useState } from "react";

import { api, ok } from "@/api/client";
import type { Stream } from "@/api/types";
import { DataTable } from "@/components/DataTable";
import { ColumnProfiles, type ColumnProfile } from "@/components/RunQuality";
import { Button, Card, Empty, ErrorNote, Loading } from "@/components/ui";
import { cellText, count } from "@/lib/format";

/** Discover: the streams a source offers now, each with its fields, types, primary key and cursor. */
export function DiscoverPanel({ connectorId, canDiscover, onStreams }: { connectorId: number; canDiscover: boolean; onStreams: (s: Stream[]) => void }) {
  const [streams, setStreams] = useState<Stream[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const discover = async () => {
    setBusy(true);
    setError(null);
    try {
      const result = await ok(api.POST("/api/v1/connectors/{id}/discover/", { params: { path: { id: connectorId } } }));
      setStreams(result.streams);
      onStreams(result.streams);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="space-y-3">
      {canDiscover ? (
        <Button variant="primary" onClick={() => void discover()} busy={busy}>
          {busy ? "Discovering…" : "Discover streams"}
        </Button>
      ) : (
        <p className="text-sm">Editors discover streams; you can preview them below.</p>
      )}
      {error ? <ErrorNote error={error} /> : null}
      {streams?.length === 0 ? <Empty>The source offers no streams.</Empty> : null}
      {streams?.map((stream) => (
        <Card key={stream.name} title={stream.name}>
          <p className="mb-2 text-sm text-slate-700 dark:text-slate-300">
            Sync modes: {stream.supported_sync_modes.join(", ") || "—"}
            {stream.cursor_field ? ` · cursor ${stream.cursor_field}` : ""}
          </p>
          <div className="overflow-x-auto">
            <table className="min-w-full text-sm">
              <caption className="sr-only">Fields of {stream.name}</caption>
              <thead>
                <tr className="text-left">
                  <th scope="col" className="px-2 py-1">Field</th>
                  <th scope="col" className="px-2 py-1">Type</th>
                  <th scope="col" className="px-2 py-1">Nullable</th>
                  <th scope="col" className="px-2 py-1">Key</th>
                </tr>
              </thead>
              <tbody>
                {stream.fields.map((f) => (
                  <tr key={f.name} className="border-t border-slate-100 dark:border-slate-700">
                    <td className="px-2 py-1 font-mono">{f.name}</td>
                    <td className="px-2 py-1">{f.type}</td>
                    <td className="px-2 py-1">{f.nullable ? "yes" : "no"}</td>
                    <td className="px-2 py-1">
                      {stream.primary_key.includes(f.name) ? (
                        <span className="inline-flex items-center gap-1">
                          <KeyRound aria-hidden className="size-3.5" /> primary
                        </span>
                      ) : stream.cursor_field === f.name ? (
                        "cursor"
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </Card>
      ))}
    </div>
  );
}


/** Preview: the first rows of a stream in a grid, and the rows the source rejected on the way. */
export function PreviewPanel({ connectorId, streams }: { connectorId: number; streams: Stream[] }) {
  const [stream, setStream] = useState(streams[0]?.name ?? "");
  const [typed, setTyped] = useState("");
  const [asked, setAsked] = useState<string | null>(null);
  const selectId = useId();
  const preview = useQuery({
    queryKey: ["preview", connectorId, asked],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/connectors/{id}/preview/", { params: { path: { id: connectorId }, query: { stream: asked ?? "", limit: 100 } }, signal })),
    enabled: asked !== null,
    staleTime: 0,
  });
  const columns = useMemo<ColumnDef<Record<string, unknown>, unknown>[]>(
    () =>
      (preview.data?.stream.fields ?? []).map((f) => ({
        id: f.name,
        header: f.name,
        accessorFn: (row) => row[f.name],
        cell: ({ getValue }) => <span className="font-mono text-xs whitespace-nowrap">{cellText(getValue())}</span>,
      })),
    [preview.data],
  );
  return (
    <div className="space-y-3">
      <form
        className="flex flex-wrap items-end gap-2"
        onSubmit={(e) => {
          e.preventDefault();
          setAsked(streams.length ? stream : typed);
        }}
      >
        <div>
          <label htmlFor={selectId} className="block text-sm font-medium">
            Stream
          </label>
          {streams.length ? (
            <select id={selectId} value={stream} onChange={(e) => setStream(e.target.value)} className="rounded-md border border-slate-400 bg-white px-2 py-1.5 text-sm dark:bg-slate-900">
              {streams.map((s) => (
                <option key={s.name}>{s.name}</option>
              ))}
            </select>
          ) : (
            <input id={selectId} value={typed} onChange={(e) => setTyped(e.target.value)} placeholder="stream name" className="rounded-md border border-slate-400 bg-white px-2 py-1.5 text-sm dark:bg-slate-900" />
          )}
        </div>
        <Button type="submit" variant="primary" busy={preview.isFetching}>
          Preview rows
        </Button>
      </form>
      {preview.isError ? <ErrorNote error={preview.error} /> : null}
      {preview.isFetching && !preview.data ? <Loading label="Reading the first rows…" /> : null}
      {preview.data ? (
        <>
          <DataTable data={preview.data.rows} columns={columns} caption={`Preview of ${preview.data.stream.name}`} testId="preview" pageSize={25} empty="The stream is empty." />
          {preview.data.rejected.length ? (
            <Card title={`Rejected rows (${preview.data.rejected.length})`}>
              <ul className="space-y-1 text-sm">
                {preview.data.rejected.map((r, i) => (
                  <li key={i}>
                    line {r.line ?? r.row ?? "?"}: {r.reason}
                  </li>
                ))}
              </ul>
            </Card>
          ) : null}
        </>
      ) : null}
    </div>
  );
}

/** Profile: a stream's first rows (10,000 by default, at most 100,000) profiled without a run — nulls,
 * distinct values, min/max/mean and a histogram per column (`GET connectors/{id}/profile/`). */
export function ProfilePanel({ connectorId, streams }: { connectorId: number; streams: Stream[] }) {
  const recorded = useQuery({
    queryKey: ["connector-streams", connectorId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/schemas/connectors/{id}/streams/", { params: { path: { id: connectorId } }, signal })),
  });
  const names = useMemo(
    () => [...new Set([...streams.map((s) => s.name), ...(recorded.data?.streams ?? []).filter((s) => !s.is_removed).map((s) => s.stream)])].sort(),
    [streams, recorded.data],
  );
  const [limit, setLimit] = useState(10_000);
  const limitId = useId();
  const profile = useMutation({
    mutationFn: (stream: string) => ok(api.GET("/api/v1/connectors/{id}/profile/", { params: { path: { id: connectorId }, query: { stream, limit } } })),
  });
  return (
    <div className="space-y-3">
      <div>
        <label htmlFor={limitId} className="block text-sm font-medium">
          Rows to profile
        </label>
        <input
          id={limitId}
          type="number"
          min={1}
          max={100_000}
          value={limit}
          onChange={(e) => setLimit(Math.max(1, Math.min(100_000, Number(e.target.value) || 1)))}
          aria-describedby={`${limitId}-hint`}
          className="w-36 rounded-md border border-slate-400 bg-white px-2 py-1.5 text-sm dark:bg-slate-900"
        />
        <p id={`${limitId}-hint`} className="text-xs text-slate-700 dark:text-slate-300">
          The stream&apos;s first rows, at most 100,000; nothing is stored.
        </p>
      </div>
      {recorded.isPending && !streams.length ? <Loading /> : null}
      {recorded.isError ? <ErrorNote error={recorded.error} /> : null}
      {!recorded.isPending && names.length === 0 ? <Empty>No streams recorded yet: discover them on the Streams tab.</Empty> : null}
      <ul className="divide-y divide-slate-100 text-sm dark:divide-slate-700" data-testid="profile-streams">
        {names.map((name) => (
          <li key={name} className="flex items-center justify-between gap-2 py-1.5">
            <span className="font-mono">{name}</span>
            <Button onClick={() => profile.mutate(name)} busy={profile.isPending && profile.variables === name} aria-label={`Profile ${name}`}>
              <BarChart3 aria-hidden className="size-4" /> Profile
            </Button>
          </li>
        ))}
      </ul>
      {profile.isError ? <ErrorNote error={profile.error} /> : null}
      {profile.isPending ? <Loading label={`Profiling ${profile.variables}…`} /> : null}
      {profile.data && !profile.isPending ? (
        <Card title={`Profile of ${profile.data.stream}`}>
          <p className="text-sm" data-testid="profile-summary">
            {count(profile.data.rows)} rows profiled{profile.data.rows >= profile.data.limit ? ` (the first ${count(profile.data.limit)})` : " (the whole stream)"}
            {profile.data.rejected ? `; ${count(profile.data.rejected)} rows the source could not read` : ""}.
          </p>
          <ColumnProfiles columns={profile.data.columns as ColumnProfile[]} />
        </Card>
      ) : null}
    </div>
  );
}
