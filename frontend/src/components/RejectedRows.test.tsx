import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { RejectedRows } from "./RunView";

afterEach(() => vi.unstubAllGlobals());

describe("a run's quarantined rows", () => {
  it("filters by node and downloads the same selection as CSV", async () => {
    const urls: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) => {
        urls.push(request.url);
        const body = { count: 1, next: null, previous: null, results: [{ id: 1, node: "flights", rule: "", line: 9, row: null, reason: "dep_delay: not an integer", raw: { dep_delay: "abc" } }] };
        return new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });
      }),
    );
    render(
      <QueryClientProvider client={new QueryClient()}>
        <RejectedRows runId={7} nodes={["flights", "late"]} />
      </QueryClientProvider>,
    );
    expect(await screen.findByText("dep_delay: not an integer")).toBeInTheDocument();
    expect(screen.getByTestId("rejected-csv")).toHaveAttribute("href", "/api/v1/runs/7/rejected.csv");
    fireEvent.change(screen.getByLabelText("Node"), { target: { value: "flights" } });
    expect(screen.getByTestId("rejected-csv")).toHaveAttribute("href", "/api/v1/runs/7/rejected.csv?node=flights");
    await screen.findByText("dep_delay: not an integer");
    expect(urls.at(-1)).toContain("node=flights");
  });
});
