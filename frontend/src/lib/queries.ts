"use client";

import { useQuery } from "@tanstack/react-query";

import { api, ok, undeclared } from "@/api/client";
import type { operations } from "@/api/schema";
import { useLive } from "@/lib/live";
import { useWorkspace } from "@/lib/session";

// Query keys start with the resource, so a live event or a mutation can invalidate a whole family.

export function usePipelines() {
  const { id } = useWorkspace();
  return useQuery({
    queryKey: ["pipelines", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipelines/", { params: { query: { workspace: id, limit: 500 } }, signal })),
    enabled: id !== null,
  });
}

export function usePipeline(pipelineId: number | null) {
  return useQuery({
    queryKey: ["pipeline", pipelineId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipelines/{id}/", { params: { path: { id: pipelineId! } }, signal })),
    enabled: pipelineId !== null,
  });
}

export function useConnectors() {
  const { id } = useWorkspace();
  return useQuery({
    queryKey: ["connectors", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/connectors/", { params: { query: { workspace: id, limit: 500 } }, signal })),
    enabled: id !== null,
  });
}

export function useConnectorTypes() {
  return useQuery({
    queryKey: ["connector-types"],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/connector-types/", { params: { query: { limit: 500 } }, signal })),
    staleTime: Infinity,
  });
}

const active = (status: string | undefined) => status === "queued" || status === "running";

/** A page of runs; polls while any is active and the live socket is down. */
export function useRuns(query: NonNullable<operations["runs_list"]["parameters"]["query"]>, key: unknown[] = []) {
  const { id } = useWorkspace();
  const connected = useLive();
  return useQuery({
    queryKey: ["runs", id, query, ...key],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/runs/", { params: { query: { ...undeclared({ workspace: id }), ...query } }, signal })),
    enabled: id !== null,
    refetchInterval: (q) => (!connected && q.state.data?.results.some((r) => active(r.status)) ? 3000 : false),
  });
}

export function useRun(runId: number | null) {
  const connected = useLive();
  return useQuery({
    queryKey: ["run", runId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/runs/{id}/", { params: { path: { id: runId! } }, signal })),
    enabled: runId !== null,
    // Live progress arrives over the socket; without it, poll every second while the run is active.
    refetchInterval: (q) => (active(q.state.data?.status) ? (connected ? 5000 : 1000) : false),
  });
}

/** The `id` query parameter of a detail page (`/pipelines/view?id=3`), or null. */
export function idParam(params: URLSearchParams | null): number | null {
  const raw = params?.get("id");
  if (!raw || !/^\d+$/.test(raw)) return null;
  return Number(raw);
}

/** The destination tables the workspace's pipelines write (`lineage/`), for the lineage screen. */
export function useLineageTables() {
  const { id } = useWorkspace();
  return useQuery({
    queryKey: ["lineage", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/lineage/", { params: { query: { workspace: id ?? undefined } }, signal })),
    enabled: id !== null,
  });
}

/** Where each column of one destination table comes from (`lineage/table/`). */
export function useTableLineage(table: { connector: number; table: string } | null) {
  return useQuery({
    queryKey: ["lineage", "table", table?.connector, table?.table],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/lineage/table/", { params: { query: { connector: table!.connector, table: table!.table } }, signal })),
    enabled: table !== null,
  });
}
