import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import type { RunDetail } from "@/api/types";

import { RunDestinations } from "./RunDestinations";

const run = (over: Partial<RunDetail> = {}): RunDetail =>
  ({
    id: 9,
    status: "succeeded",
    nodes: [
      { node_id: "warehouse", kind: "destination", status: "succeeded", rows_in: 686, rows_out: 686, rows_rejected: 0, bytes: 0, started_at: null, finished_at: null, duration_s: 0, error: "" },
      { node_id: "archive", kind: "destination", status: "succeeded", rows_in: 686, rows_out: 1686, rows_rejected: 0, bytes: 0, started_at: null, finished_at: null, duration_s: 0, error: "" },
    ],
    destinations: [
      { node_id: "warehouse", connector: 4, connector_name: "Local warehouse", connector_type: "local_warehouse", table: "late_flights", write_mode: "overwrite", stream: "public.late_flights" },
      { node_id: "archive", connector: null, connector_name: "old-pg", connector_type: "", table: "flights", write_mode: "append", stream: null },
    ],
    ...over,
  }) as RunDetail;

const item = (node: string) => within(screen.getByTestId("destinations").querySelector(`[data-node="${node}"]`) as HTMLElement);

describe("where a run loaded its rows", () => {
  it("names each destination's connector, table and rows, and offers the rows of a table it can read back", () => {
    render(<RunDestinations run={run()} />);
    expect(item("warehouse").getByRole("link", { name: "Local warehouse" })).toHaveAttribute("href", "/connectors/view?id=4");
    expect(item("warehouse").getByText("public.late_flights")).toBeInTheDocument();
    expect(screen.getByTestId("landed-warehouse")).toHaveTextContent("686");
    expect(item("warehouse").getByRole("button", { name: "Show the rows" })).toBeInTheDocument();
    expect(item("archive").getByText("old-pg (deleted)")).toBeInTheDocument();
    expect(screen.getByTestId("landed-archive")).toHaveTextContent("1,686");
    expect(item("archive").queryByRole("button")).toBeNull();
  });

  it("offers no rows before the run has succeeded, and nothing at all without destinations", () => {
    const { rerender } = render(<RunDestinations run={run({ status: "running" })} />);
    expect(screen.queryByRole("button", { name: "Show the rows" })).toBeNull();
    rerender(<RunDestinations run={run({ destinations: [] })} />);
    expect(screen.queryByTestId("destinations")).toBeNull();
  });
});
