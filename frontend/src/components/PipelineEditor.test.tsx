import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";

import type { Pipeline } from "@/api/types";

import { PipelineEditor } from "./PipelineEditor";

const definition = {
  nodes: [
    { id: "people", kind: "source", connector: "people-csv", stream: "people" },
    { id: "even", kind: "transform", step: "filter", config: { expression: "idd % 2 == 0" } },
    { id: "warehouse", kind: "destination", connector: "warehouse-pg", table: "t", write_mode: "append" },
  ],
  edges: [
    { from: "people", to: "even" },
    { from: "even", to: "warehouse" },
  ],
};
const pipeline = { id: 3, workspace: 1, name: "people", definition, version: 1 } as unknown as Pipeline;

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function mockApi(handler: (url: string, request: Request) => Response) {
  const fetchMock = vi.fn(async (request: Request) => {
    const url = request.url;
    if (url.endsWith("/auth/csrf/")) return json(200, { csrf_token: "t" });
    return handler(url, request);
  });
  vi.stubGlobal("fetch", fetchMock);
  return fetchMock;
}

function renderEditor(props: Partial<Parameters<typeof PipelineEditor>[0]> = {}) {
  const client = new QueryClient();
  return render(
    <QueryClientProvider client={client}>
      <PipelineEditor pipeline={pipeline} workspaceId={1} onSaved={vi.fn()} {...props} />
    </QueryClientProvider>,
  );
}

afterEach(() => vi.unstubAllGlobals());

describe("PipelineEditor (document editor)", () => {
  it("lists the document's nodes and shows the server's validation errors at the node", async () => {
    const fetchMock = mockApi(() =>
      json(200, { valid: false, errors: { "nodes.even.config.expression": ["unknown column 'idd'"], "edges.1": ["Cycle."] }, schemas: {} }),
    );
    renderEditor();
    await userEvent.click(screen.getByRole("button", { name: "Validate" }));
    const even = await screen.findByTestId("node-even");
    expect(within(even).getByText("config.expression: unknown column 'idd'")).toBeInTheDocument();
    expect(within(screen.getByTestId("node-people")).queryByRole("listitem")).toBeNull();
    expect(screen.getByTestId("graph-errors")).toHaveTextContent("edges.1: Cycle.");
    expect(screen.getByText("2 problems: see the nodes.")).toBeInTheDocument();
    const [request] = fetchMock.mock.calls.find(([r]) => r.url.includes("/validate/"))!;
    expect(request.headers.get("X-CSRFToken")).toBe("t");
    expect(JSON.parse(await request.text()).definition.nodes).toHaveLength(3);
  });

  it("reports a syntax error locally and does not save", async () => {
    const fetchMock = mockApi(() => json(500, {}));
    renderEditor();
    fireEvent.change(screen.getByLabelText("Document"), { target: { value: "nodes: [\n" } });
    expect(screen.getByText(/^Not valid YAML/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Save new version" })).toBeDisabled();
    expect(fetchMock).not.toHaveBeenCalled();
  });

  it("converts between YAML and JSON without losing the document", async () => {
    mockApi(() => json(500, {}));
    renderEditor();
    await userEvent.selectOptions(screen.getByLabelText("Format"), "json");
    expect(JSON.parse((screen.getByLabelText("Document") as HTMLTextAreaElement).value)).toEqual(definition);
  });

  it("saves a new version and puts a save's node errors at the node", async () => {
    mockApi(() =>
      json(400, { error: { code: "validation_error", message: "x", fields: { "definition.nodes.warehouse.connector": ["No such connector."] } } }),
    );
    renderEditor();
    await userEvent.click(screen.getByRole("button", { name: "Save new version" }));
    await waitFor(() => expect(within(screen.getByTestId("node-warehouse")).getByText("connector: No such connector.")).toBeInTheDocument());
  });

  it("is read-only for viewers: no save or validate", () => {
    mockApi(() => json(500, {}));
    renderEditor({ readOnly: true });
    expect(screen.queryByRole("button", { name: /Save|Validate/ })).toBeNull();
    expect(screen.getByLabelText("Document")).toHaveAttribute("readonly");
  });
});
