import type { NodeRun, RunDetail, RunStatus } from "@/api/types";

/** The payload of a `run.progress` event (the executor's `progress()`), pushed every second. */
export interface ProgressPayload {
  run: number;
  status: RunStatus;
  nodes: Record<string, { rows_in: number; rows_out: number; rows_rejected: number; status: string }>;
}

const FINISHED: readonly string[] = ["succeeded", "failed", "cancelled"];

/**
 * Applies a live progress event to the run as last fetched. Counts only grow during a run, so a late or
 * repeated event never moves a counter back; a finished run (fetched after its final event) is left alone.
 */
export function applyProgress(run: RunDetail, progress: ProgressPayload): RunDetail {
  if (progress.run !== run.id || FINISHED.includes(run.status)) return run;
  const known = new Set(run.nodes.map((n) => n.node_id));
  const nodes: NodeRun[] = run.nodes.map((node) => {
    const live = progress.nodes[node.node_id];
    if (!live) return node;
    return {
      ...node,
      status: FINISHED.includes(node.status) ? node.status : (live.status as NodeRun["status"]),
      rows_in: Math.max(node.rows_in, live.rows_in),
      rows_out: Math.max(node.rows_out, live.rows_out),
      rows_rejected: Math.max(node.rows_rejected, live.rows_rejected),
    };
  });
  for (const [nodeId, live] of Object.entries(progress.nodes)) {
    if (known.has(nodeId)) continue;
    nodes.push({
      node_id: nodeId,
      kind: "",
      status: live.status as NodeRun["status"],
      rows_in: live.rows_in,
      rows_out: live.rows_out,
      rows_rejected: live.rows_rejected,
      bytes: 0,
      started_at: null,
      finished_at: null,
      duration_s: 0,
      error: "",
    } as NodeRun);
  }
  return { ...run, status: run.status === "queued" ? "running" : run.status, nodes };
}

/** Rows read, written and rejected, summed the way the run header shows them while a run is live. */
export function totals(run: RunDetail) {
  const sources = run.nodes.filter((n) => n.kind === "source");
  const sinks = run.nodes.filter((n) => n.kind === "destination");
  const sum = (nodes: NodeRun[], key: "rows_out" | "rows_in" | "rows_rejected") => nodes.reduce((a, n) => a + n[key], 0);
  return {
    read: Math.max(run.rows_read, sum(sources, "rows_out")),
    written: Math.max(run.rows_written, sum(sinks, "rows_in")),
    rejected: Math.max(run.rows_rejected, sum(run.nodes, "rows_rejected")),
  };
}
