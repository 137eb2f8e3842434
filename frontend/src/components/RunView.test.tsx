import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import type { RunDetail } from "@/api/types";
import { applyProgress } from "@/lib/runProgress";

import { RunSummary } from "./RunView";

const run = (over: Partial<RunDetail> = {}): RunDetail =>
  ({
    id: 7,
    workspace: 1,
    pipeline: 3,
    pipeline_name: "late flights",
    version: 2,
    status: "running",
    trigger: "manual",
    options: {},
    scheduled_for: null,
    attempt: 1,
    max_attempts: 3,
    cancel_requested: false,
    error: "",
    error_kind: "",
    rows_read: 0,
    rows_written: 0,
    rows_rejected: 0,
    queued_at: "2026-11-25T10:00:00Z",
    started_at: "2026-11-25T10:00:01Z",
    heartbeat_at: null,
    finished_at: null,
    duration_s: null,
    nodes: [
      { node_id: "flights", kind: "source", status: "running", rows_in: 0, rows_out: 100, rows_rejected: 0, bytes: 0, started_at: null, finished_at: null, duration_s: 0, error: "" },
      { node_id: "warehouse", kind: "destination", status: "running", rows_in: 50, rows_out: 50, rows_rejected: 0, bytes: 0, started_at: null, finished_at: null, duration_s: 0, error: "" },
    ],
    ...over,
  }) as RunDetail;

const progress = (nodes: Record<string, [number, number, number, string]>, id = 7) => ({
  run: id,
  status: "running" as const,
  nodes: Object.fromEntries(Object.entries(nodes).map(([k, [i, o, r, s]]) => [k, { rows_in: i, rows_out: o, rows_rejected: r, status: s }])),
});

function rowOf(node: string) {
  const cell = screen.getByRole("rowheader", { name: new RegExp(`^${node}`) });
  return within(cell.closest("tr")!);
}

describe("run view", () => {
  it("shows each node's counts and the run's totals", () => {
    render(<RunSummary run={run()} live />);
    expect(rowOf("flights").getAllByRole("cell")[2]).toHaveTextContent("100");
    expect(rowOf("warehouse").getAllByRole("cell")[1]).toHaveTextContent("50");
    expect(screen.getByTestId("rows-read")).toHaveTextContent("100");
    expect(screen.getByTestId("rows-written")).toHaveTextContent("50");
    expect(screen.getByText("live")).toBeInTheDocument();
  });

  it("applies live progress, node by node", () => {
    const next = applyProgress(run(), progress({ flights: [0, 3000, 2, "running"], warehouse: [2500, 2500, 0, "running"] }));
    render(<RunSummary run={next} live />);
    expect(screen.getByTestId("rows-read")).toHaveTextContent("3,000");
    expect(screen.getByTestId("rows-written")).toHaveTextContent("2,500");
    expect(rowOf("flights").getAllByRole("cell")[3]).toHaveTextContent("2");
  });

  it("never moves a counter back on a late event, and adds nodes it had not seen", () => {
    const next = applyProgress(run(), progress({ flights: [0, 10, 0, "running"], late: [5, 4, 1, "running"] }));
    expect(next.nodes.find((n) => n.node_id === "flights")!.rows_out).toBe(100);
    expect(next.nodes.map((n) => n.node_id)).toEqual(["flights", "warehouse", "late"]);
  });

  it("ignores progress for another run or for a finished one", () => {
    const finished = run({ status: "succeeded" });
    expect(applyProgress(finished, progress({ flights: [0, 999, 0, "running"] }))).toBe(finished);
    const other = run();
    expect(applyProgress(other, progress({ flights: [0, 999, 0, "running"] }, 8))).toBe(other);
  });

  it("says it is waiting for a worker while queued, and shows a failure", () => {
    render(<RunSummary run={run({ status: "queued", nodes: [] })} live={false} />);
    expect(screen.getByText("Waiting for a worker…")).toBeInTheDocument();
    expect(screen.getByText("refreshing every second")).toBeInTheDocument();
  });

  it("shows the error of a failed run as an alert", () => {
    render(<RunSummary run={run({ status: "failed", error: "connection refused", error_kind: "transient" })} live />);
    expect(screen.getByRole("alert")).toHaveTextContent("transient: connection refused");
    expect(screen.getByTestId("run-status")).toHaveAttribute("data-status", "failed");
  });
});
