import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { StepType } from "@/api/types";
import { stubApi } from "@/test/stubApi";

import { offsetOf, type ExpressionCheck } from "./ExpressionWidget";
import { NodePanel } from "./NodePanel";

const post = vi.fn();

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
    properties: { expression: { title: "Expression", type: "string", minLength: 1 } },
    required: ["expression"],
    type: "object",
  },
};
const upstream = [
  { name: "dep_delay", type: "integer", nullable: true },
  { name: "carrier", type: "string", nullable: true },
];

const ok = (type: string, columns: string[]): ExpressionCheck => ({ valid: true, error: null, type: type as ExpressionCheck["type"], columns_used: columns, unknown_columns: [] });
const bad = (reason: string, column: number, hint: string | null = null, unknown: string[] = []): ExpressionCheck => ({
  valid: false,
  error: { message: `${reason} at 1:${column}`, reason, hint, position: { line: 1, column } },
  type: null,
  columns_used: unknown,
  unknown_columns: unknown,
});

/** A filter node's panel whose expression is controlled like the builder does it (the config round-trips). */
function Panel({ initial = "", errors = {}, fields = upstream }: { initial?: string; errors?: Record<string, string[]>; fields?: typeof upstream }) {
  return (
    <QueryClientProvider client={new QueryClient()}>
      <Stateful initial={initial} errors={errors} fields={fields} />
    </QueryClientProvider>
  );
}

function Stateful({ initial, errors, fields }: { initial: string; errors: Record<string, string[]>; fields: typeof upstream }) {
  const [config, setConfig] = useState<Record<string, unknown>>({ expression: initial });
  return (
    <NodePanel
      doc={{ id: "late", kind: "transform", step: "filter", config }}
      steps={[filter]}
      connectors={[]}
      sources={[]}
      destinations={[]}
      errors={errors}
      fields={null}
      upstreamFields={fields}
      readOnly={false}
      onChange={vi.fn()}
      onConfigChange={setConfig}
      onDelete={vi.fn()}
      onPreview={vi.fn()}
      canPreview
    />
  );
}

const input = () => screen.getByLabelText(/^Expression/) as HTMLInputElement;
const type = (value: string) => fireEvent.change(input(), { target: { value } });
const settle = () => act(async () => void vi.advanceTimersByTime(300));

beforeEach(() => {
  vi.useFakeTimers();
  post.mockReset();
  stubApi({ post });
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("the expression field checks what is typed", () => {
  it("sends the text to the server's parser once typing pauses, with the columns arriving at the node", async () => {
    post.mockResolvedValue(ok("boolean", ["dep_delay"]));
    render(<Panel />);
    type("dep");
    type("dep_delay >");
    await act(async () => void vi.advanceTimersByTime(200));
    type("dep_delay > 60");
    await act(async () => void vi.advanceTimersByTime(299));
    expect(post).not.toHaveBeenCalled();
    await settle();
    expect(post).toHaveBeenCalledTimes(1);
    expect(post).toHaveBeenCalledWith("expressions/check/", {
      expression: "dep_delay > 60",
      columns: [
        { name: "dep_delay", type: "integer" },
        { name: "carrier", type: "string" },
      ],
    });
    expect(input()).toHaveAttribute("aria-invalid", "false");
    expect(screen.getByTestId("expression-type")).toHaveTextContent("Gives boolean values.");
    expect(screen.getByRole("alert")).toBeEmptyDOMElement();
  });

  it("shows a syntax error inline with its column, tied to the input, and clears it once fixed", async () => {
    post.mockResolvedValueOnce(bad("unexpected end of the expression", 13, "expected a value"));
    render(<Panel />);
    type("dep_delay > ");
    await settle();
    const alert = screen.getByRole("alert");
    expect(alert).toHaveTextContent("Column 13: unexpected end of the expression, expected a value");
    expect(input()).toHaveAttribute("aria-invalid", "true");
    expect(input().getAttribute("aria-describedby")?.split(" ")).toContain(alert.id);

    post.mockResolvedValueOnce(ok("boolean", ["dep_delay"]));
    type("dep_delay > 60");
    await settle();
    expect(screen.getByRole("alert")).toBeEmptyDOMElement();
    expect(input()).toHaveAttribute("aria-invalid", "false");
  });

  it("flags unknown columns against the upstream fields, with the server's suggestion", async () => {
    post.mockResolvedValueOnce(bad("unknown column 'dep_dely'", 1, "did you mean 'dep_delay'?", ["dep_dely", "carier"]));
    render(<Panel />);
    type("dep_dely > 60 or carier = 'UA'");
    await settle();
    expect(screen.getByTestId("expression-error")).toHaveTextContent(
      "Column 1: unknown column 'dep_dely', did you mean 'dep_delay'? (not among the columns here: dep_dely, carier)",
    );
  });

  it("puts the cursor on the mistake", async () => {
    post.mockResolvedValueOnce(bad("unexpected character '.'", 6));
    render(<Panel />);
    type("a > 1.x");
    await settle();
    fireEvent.click(screen.getByRole("button", { name: "Go to the mistake" }));
    await act(async () => void vi.advanceTimersByTime(50));
    expect(input().selectionStart).toBe(5);
    expect(document.activeElement).toBe(input());
  });

  it("keeps only the answer to the latest text", async () => {
    let answerFirst: (value: ExpressionCheck) => void = () => {};
    post.mockImplementationOnce(() => new Promise((resolve) => (answerFirst = resolve)));
    post.mockResolvedValueOnce(ok("boolean", ["dep_delay"]));
    render(<Panel />);
    type("dep_delay >");
    await settle();
    type("dep_delay > 1");
    await settle();
    await act(async () => answerFirst(bad("unexpected end of the expression", 12)));
    expect(screen.getByRole("alert")).toBeEmptyDOMElement();
    expect(input()).toHaveAttribute("aria-invalid", "false");
  });

  it("checks only the syntax while the node's inputs are unknown, and says nothing when the check fails", async () => {
    post.mockRejectedValueOnce(new TypeError("network down"));
    render(<Panel fields={[]} initial="x > 1" />);
    await settle();
    expect(post).toHaveBeenCalledWith("expressions/check/", { expression: "x > 1" });
    expect(screen.getByRole("alert")).toBeEmptyDOMElement();
    type("");
    await settle();
    expect(post).toHaveBeenCalledTimes(1);
  });

  it("shows the document's validation error at the field when the check has nothing to add", async () => {
    post.mockResolvedValue(ok("number", ["dep_delay"]));
    render(<Panel initial="dep_delay / 60" errors={{ "config.expression": ["the filter expression must be a condition (true or false), but it gives number values"] }} />);
    // Before and after the check: one message at the field, one in the node's list.
    expect(screen.getAllByText(/must be a condition/)).toHaveLength(2);
    await settle();
    expect(screen.getByTestId("expression-check")).toHaveTextContent(/must be a condition/);
    expect(screen.getAllByText(/must be a condition/)).toHaveLength(2);
    expect(input()).toHaveAttribute("aria-invalid", "true");
  });
});

describe("offsetOf", () => {
  it("turns a line and column into an offset", () => {
    expect(offsetOf("a > 1", 1, 5)).toBe(4);
    expect(offsetOf("a > 1\n and b", 2, 2)).toBe(7);
    expect(offsetOf("a", 3, 9)).toBe(1);
  });
});
