import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, within } from "@testing-library/react";
import type { ReactNode } from "react";
import { describe, expect, it, vi } from "vitest";

import type { PipelinePreview, StepType } from "@/api/types";

import { NodePanel, fieldsOfNode } from "./NodePanel";
import { PreviewPanel } from "./PreviewPanel";

const filter: StepType = {
  slug: "filter",
  title: "Filter rows",
  category: "rows",
  description: "",
  buffers: false,
  min_inputs: 1,
  max_inputs: 1,
  config_schema: {
    additionalProperties: false,
    properties: { expression: { title: "Expression", type: "string", minLength: 1, description: "A condition." } },
    required: ["expression"],
    title: "FilterConfig",
    type: "object",
  },
};

const wrap = (ui: ReactNode) => <QueryClientProvider client={new QueryClient()}>{ui}</QueryClientProvider>;

function panel(overrides: Partial<Parameters<typeof NodePanel>[0]> = {}) {
  const props = {
    doc: { id: "late", kind: "transform", step: "filter", config: { expression: "dep_delay > 60" } },
    steps: [filter],
    connectors: [],
    sources: [],
    destinations: [],
    errors: {},
    fields: null,
    readOnly: false,
    onChange: vi.fn(),
    onConfigChange: vi.fn(),
    onDelete: vi.fn(),
    onPreview: vi.fn(),
    canPreview: true,
    ...overrides,
  };
  render(wrap(<NodePanel {...props} />));
  return props;
}

describe("the builder's side panel", () => {
  it("configures a step with the form generated from its JSON Schema", () => {
    const props = panel();
    const input = screen.getByLabelText(/^Expression/);
    expect(input).toHaveValue("dep_delay > 60");
    fireEvent.change(input, { target: { value: "dep_delay > 90" } });
    expect(props.onConfigChange).toHaveBeenLastCalledWith({ expression: "dep_delay > 90" });
  });

  it("shows the server's errors for the node, at the field too, and the fields available there", () => {
    const errors = fieldsOfNode(
      { "nodes.late.config.expression": ["unknown column 'dep_dely', did you mean 'dep_delay'?"], "nodes.other.step": ["x"] },
      "late",
    );
    expect(errors).toEqual({ "config.expression": ["unknown column 'dep_dely', did you mean 'dep_delay'?"] });
    panel({ errors, fields: [{ name: "dep_delay", type: "integer", nullable: true }] });
    expect(within(screen.getByTestId("node-errors")).getByText(/config.expression: unknown column 'dep_dely'/)).toBeInTheDocument();
    expect(screen.getAllByText(/did you mean 'dep_delay'/)).toHaveLength(2);
    expect(within(screen.getByTestId("node-fields")).getByText("dep_delay")).toBeInTheDocument();
  });

  it("edits a destination's table and write mode; merge asks for a primary key", () => {
    const onChange = vi.fn();
    panel({ doc: { id: "wh", kind: "destination", connector: "warehouse-pg", table: "late", write_mode: "append" }, onChange });
    fireEvent.change(screen.getByLabelText("Table"), { target: { value: "late_flights" } });
    expect(onChange).toHaveBeenLastCalledWith({ table: "late_flights" }, "wh:table");
    fireEvent.change(screen.getByLabelText("Write mode"), { target: { value: "merge" } });
    expect(onChange).toHaveBeenLastCalledWith({ write_mode: "merge", primary_key: [] });
  });

  it("is read-only for a viewer: no delete button, the form cannot change", () => {
    panel({ readOnly: true });
    expect(screen.queryByRole("button", { name: /Delete node/ })).not.toBeInTheDocument();
    expect(screen.getByLabelText(/^Expression/)).toHaveAttribute("readonly");
  });
});

describe("the node preview", () => {
  const preview: PipelinePreview = {
    node: "late",
    limit: 100,
    inputs: { flights: [{ id: 1, dep_delay: 10 }, { id: 2, dep_delay: 90 }, { id: 3, dep_delay: null }] },
    output: [{ id: 2, dep_delay: 90 }],
    schema: { fields: [{ name: "id", type: "integer", nullable: false }, { name: "dep_delay", type: "integer", nullable: true }] },
    rejected: [{ node: "late", line: 3, reason: "dep_delay is null (rule 'known')", raw: { id: 3, dep_delay: null } }],
    rule_failures: [
      { node: "late", rule: "few", type: "range", columns: ["dep_delay"], status: "warned", checked: 3, failed: 2, rejected: 0, sample: [10, 90], message: null },
      { node: "late", rule: "known", type: "not_null", columns: ["dep_delay"], status: "rejected", checked: 3, failed: 1, rejected: 1, sample: [null], message: null },
    ],
    profile: {
      rows: 1,
      complete: true,
      row_cap: null,
      columns: [
        { name: "id", type: "integer", rows: 1, nulls: 0, null_share: 0, distinct: 1, min: 2, max: 2, mean: 2, histogram: { edges: [2, 3], counts: [1] } },
        { name: "dep_delay", type: "integer", rows: 1, nulls: 0, null_share: 0, distinct: 1, min: 90, max: 90, mean: 90, histogram: { edges: [90, 91], counts: [1] } },
      ],
    },
  };

  it("shows input and output side by side with their counts, the output schema and rule failures", () => {
    render(<PreviewPanel preview={preview} />);
    expect(screen.getByTestId("preview-rows-in")).toHaveAttribute("data-count", "3");
    expect(screen.getByTestId("preview-rows-out")).toHaveAttribute("data-count", "1");
    expect(within(screen.getByTestId("preview-input-flights")).getAllByRole("row")).toHaveLength(4);
    expect(within(screen.getByTestId("preview-output")).getAllByRole("row")).toHaveLength(2);
    expect(within(screen.getByTestId("preview-schema")).getByText("dep_delay")).toBeInTheDocument();
    const failures = screen.getByTestId("preview-rule-failures");
    expect(failures).toHaveTextContent("rule few (range on dep_delay): warned, 2 of 3 rows failed · failing values: 10, 90");
    expect(failures).toHaveTextContent("rule known (not_null on dep_delay): rejected, 1 of 3 rows failed, 1 rejected · failing values: ∅");
    expect(screen.getByTestId("preview-rejected")).toHaveTextContent("Rejected rows (1)");
    expect(screen.getByTestId("preview-rejected")).toHaveTextContent(`late, line 3: dep_delay is null (rule 'known') {"id":3,"dep_delay":null}`);
    const profile = screen.getByTestId("preview-profile");
    expect(profile).toHaveTextContent("Profile of the output sample (1 row)");
    expect(within(profile).getByTestId("column-profile-dep_delay")).toHaveTextContent("min 90 · max 90");
  });

  it("marks the cells a row-wise step changed", () => {
    const derived: PipelinePreview = { ...preview, inputs: { flights: [{ id: 1, late: false }] }, output: [{ id: 1, late: true }], rule_failures: [] };
    render(<PreviewPanel preview={derived} />);
    const cells = within(screen.getByTestId("preview-output")).getAllByRole("cell");
    expect(cells[0]?.className).not.toMatch(/bg-amber/);
    expect(cells[1]?.className).toMatch(/bg-amber/);
  });
});

describe("expression fields", () => {
  it("complete column names from the fields arriving at the node", async () => {
    const { wordBefore } = await import("./ExpressionWidget");
    expect(wordBefore("dep_delay > 6 and car", 21)).toBe("car");
    expect(wordBefore("x > ", 4)).toBe("");
    const props = panel({
      doc: { id: "late", kind: "transform", step: "filter", config: {} },
      upstreamFields: [
        { name: "dep_delay", type: "integer" },
        { name: "dep_time", type: "integer" },
        { name: "carrier", type: "string" },
      ],
    });
    const input = screen.getByLabelText(/^Expression/);
    fireEvent.change(input, { target: { value: "carrier = 'UA' and dep_d", selectionStart: 24 } });
    expect(screen.queryByRole("button", { name: "Insert column dep_time" })).not.toBeInTheDocument();
    fireEvent.click(screen.getByRole("button", { name: "Insert column dep_delay" }));
    expect(props.onConfigChange).toHaveBeenLastCalledWith({ expression: "carrier = 'UA' and dep_delay" });
    expect(screen.getByText(/Columns here:/)).toHaveTextContent("dep_delay, dep_time, carrier");
  });
});
