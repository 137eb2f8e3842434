import { describe, expect, it } from "vitest";

import { nodeLine, parse, serialize, sortErrors } from "./pipelineDoc";

const doc = {
  nodes: [
    { id: "flights", kind: "source", connector: "files", stream: "flights" },
    { id: "late", kind: "transform", step: "filter", config: { expression: "dep_delay > 60" } },
  ],
  edges: [{ from: "flights", to: "late" }],
};

describe("pipeline document", () => {
  it("round-trips through YAML and JSON", () => {
    for (const format of ["yaml", "json"] as const) {
      const parsed = parse(serialize(doc, format), format);
      expect(parsed).toEqual({ ok: true, value: doc });
    }
  });

  it("puts nodes before edges, id and kind first, from before to, whatever order the server kept", () => {
    const stored = { edges: [{ to: "late", from: "flights" }], nodes: [{ stream: "f", kind: "source", id: "flights" }] };
    expect(serialize(stored, "yaml")).toBe(
      "nodes:\n  - id: flights\n    kind: source\n    stream: f\nedges:\n  - from: flights\n    to: late\n",
    );
  });

  it("names a syntax error", () => {
    const parsed = parse("{nodes: [", "json");
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toMatch(/^Not valid JSON/);
  });

  it("puts node errors at their node and the rest in general", () => {
    const sorted = sortErrors(
      {
        "nodes.late.config.expression": ["Unknown field dep_dely."],
        "definition.nodes.flights.connector": ["No such connector."],
        "edges.0": ["Cycle."],
        definition: ["Needs a destination."],
      },
      ["flights", "late"],
    );
    expect(sorted).toEqual({
      nodes: { late: ["config.expression: Unknown field dep_dely."], flights: ["connector: No such connector."] },
      general: ["edges.0: Cycle.", "Needs a destination."],
    });
  });

  it("prefers the longest known node id when ids contain dots", () => {
    expect(sortErrors({ "nodes.a.b.step": ["Unknown step."] }, ["a", "a.b"]).nodes).toEqual({ "a.b": ["step: Unknown step."] });
  });

  it("finds the line declaring a node in YAML and JSON", () => {
    expect(nodeLine(serialize(doc, "yaml"), "late")).toBe(6);
    expect(nodeLine(serialize(doc, "json"), "late")).toBe(10);
    expect(nodeLine("nodes: []", "late")).toBeNull();
  });
});
