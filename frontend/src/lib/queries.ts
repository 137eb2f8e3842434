"use client";

import { useQuery } from "@tanstack/react-query";

import { get } from "@/api/client";
import type { Connector, ConnectorType, Page, Pipeline, Run, RunDetail } from "@/api/types";
import { useLive } from "@/lib/live";
import type { LineageTableList, TableLineage } from "@/lib/lineageGraph";
import { useWorkspace } from "@/lib/session";

// Query keys start with the resource, so a live event or a mutation can invalidate a whole family.

export function usePipelines() {
  const { id } = useWorkspace();
  return useQuery({
    queryKey: ["pipelines", id],
    queryFn: ({ signal }) => get<Page<Pipeline>>("pipelines/", { workspace: id, limit: 500 }, signal),
    enabled: id !== null,
  });
}

export function usePipeline(pipelineId: number | null) {
  return useQuery({
    queryKey: ["pipeline", pipelineId],
    queryFn: ({ signal }) => get<Pipeline>(`pipelines/${pipelineId}/`, undefined, signal),
    enabled: pipelineId !== null,
  });
}

export function useConnectors() {
  const { id } = useWorkspace();
  return useQuery({
    queryKey: ["connectors", id],
    queryFn: ({ signal }) => get<Page<Connector>>("connectors/", { workspace: id, limit: 500 }, signal),
    enabled: id !== null,
  });
}

export function useConnectorTypes() {
  return useQuery({
    queryKey: ["connector-types"],
    queryFn: ({ signal }) => get<Page<ConnectorType>>("connector-types/", { limit: 500 }, signal),
    staleTime: Infinity,
  });
}

const active = (status: string | undefined) => status === "queued" || status === "running";

/** A page of runs; polls while any is active and the live socket is down. */
export function useRuns(query: Record<string, string | number | undefined>, key: unknown[] = []) {
  const { id } = useWorkspace();
  const connected = useLive();
  return useQuery({
    queryKey: ["runs", id, query, ...key],
    queryFn: ({ signal }) => get<Page<Run>>("runs/", { workspace: id, ...query }, signal),
    enabled: id !== null,
    refetchInterval: (q) => (!connected && q.state.data?.results.some((r) => active(r.status)) ? 3000 : false),
  });
}

export function useRun(runId: number | null) {
  const connected = useLive();
  return useQuery({
    queryKey: ["run", runId],
    queryFn: ({ signal }) => get<RunDetail>(`runs/${runId}/`, undefined, signal),
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
    queryFn: ({ signal }) => get<LineageTableList>("lineage/", { workspace: id }, signal),
    enabled: id !== null,
  });
}

/** Where each column of one destination table comes from (`lineage/table/`). */
export function useTableLineage(table: { connector: number; table: string } | null) {
  return useQuery({
    queryKey: ["lineage", "table", table?.connector, table?.table],
    queryFn: ({ signal }) => get<TableLineage>("lineage/table/", { connector: table!.connector, table: table!.table }, signal),
    enabled: table !== null,
  });
}
