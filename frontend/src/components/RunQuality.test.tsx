import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { RunQuality } from "./RunQuality";

afterEach(() => vi.unstubAllGlobals());

const REPORT = {
  run: 7,
  status: "rejected",
  nodes: [
    {
      node: "flights",
      status: "rejected",
      rules: [
        { rule: "delay_range", type: "range", action: "reject", columns: ["dep_delay"], status: "rejected", checked: 11, passed: 10, failed: 1, rejected: 1, warned: 0, observed: null, sample: [900] },
      ],
    },
  ],
};
const PROFILES = {
  count: 1,
  next: null,
  previous: null,
  results: [
    {
      node: "flights",
      rows: 11,
      complete: true,
      row_cap: 100000,
      created_at: "2026-11-25T10:00:00Z",
      columns: [
        { name: "dep_delay", type: "integer", rows: 11, nulls: 1, null_share: 0.090909, distinct: 9, min: -5, max: 900, mean: 90, histogram: { edges: [-64, 0, 64, 1024], counts: [2, 7, 1] } },
        { name: "carrier", type: "string", rows: 11, nulls: 0, null_share: 0, distinct: 2, top_values: [{ value: "UA", count: 6 }] },
      ],
    },
  ],
};

describe("a run's quality report and profiles", () => {
  it("lists every rule with its counts and draws each numeric column's histogram with a text caption", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) => new Response(JSON.stringify(request.url.includes("quality") ? REPORT : PROFILES), { status: 200, headers: { "Content-Type": "application/json" } })),
    );
    render(
      <QueryClientProvider client={new QueryClient()}>
        <RunQuality runId={7} />
      </QueryClientProvider>,
    );
    const table = await screen.findByTestId("quality");
    const row = within(table).getAllByRole("row")[1] as HTMLElement;
    expect(row).toHaveTextContent("delay_range");
    expect(row).toHaveTextContent("[900]");
    expect(screen.getByTestId("quality-status")).toHaveTextContent("rejected");
    const histogram = await screen.findByTestId("histogram-dep_delay");
    expect(within(histogram).getByText(/Histogram of dep_delay: -64–0: 2, 0–64: 7, 64–1024: 1/)).toBeInTheDocument();
    expect(screen.getByText(/top: UA \(6\)/)).toBeInTheDocument();
  });
});
