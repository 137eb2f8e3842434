import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, within } from "@testing-library/react";
import { useState, type ReactNode } from "react";
import { describe, expect, it, vi } from "vitest";

import { changeRuleType, changedKey, ruleFromForm, ruleIdProblem, suggestRuleId, typedValue, type Rule, type RuleTypeInfo } from "@/lib/qualityRules";

import { NodePanel } from "./NodePanel";
import { RulesEditor } from "./RulesEditor";

const base = (type: string, extra: Record<string, unknown>, required: string[], actions = ["fail", "reject", "warn"]) => ({
  additionalProperties: false,
  properties: {
    id: { description: "Names the rule in reports and quarantine.", pattern: "^[A-Za-z0-9_.\\-]{1,100}$", title: "Id", type: "string" },
    action: { default: "fail", enum: actions, title: "Action", type: "string" },
    description: { default: "", maxLength: 500, title: "Description", type: "string" },
    type: { const: type, title: "Type", type: "string" },
    ...extra,
  },
  required: ["id", "type", ...required],
  title: type,
  type: "object",
});

// As `GET /rule-types/` answers (apps/transformations/quality.py, rule_types), trimmed to four types.
const RULE_TYPES: RuleTypeInfo[] = [
  { type: "not_null", description: "The value is not null.", stream_level: false, actions: ["fail", "reject", "warn"], config_schema: base("not_null", { column: { title: "Column", type: "string" } }, ["column"]) },
  { type: "unique", description: "Unique within the run.", stream_level: false, actions: ["fail", "reject", "warn"], config_schema: base("unique", { columns: { items: { type: "string" }, minItems: 1, title: "Columns", type: "array" } }, ["columns"]) },
  {
    type: "range",
    description: "The value lies between min and max.",
    stream_level: false,
    actions: ["fail", "reject", "warn"],
    config_schema: base(
      "range",
      {
        column: { title: "Column", type: "string" },
        min: { anyOf: [{ type: "number" }, { type: "integer" }, { type: "string" }, { type: "null" }], default: null, title: "Min" },
        max: { anyOf: [{ type: "number" }, { type: "integer" }, { type: "string" }, { type: "null" }], default: null, title: "Max" },
      },
      ["column"],
    ),
  },
  { type: "expression", description: "A boolean expression; a row passes where it is true.", stream_level: false, actions: ["fail", "reject", "warn"], config_schema: base("expression", { expression: { minLength: 1, title: "Expression", type: "string" } }, ["expression"]) },
  { type: "row_count", description: "The node's total row count.", stream_level: true, actions: ["fail", "warn"], config_schema: base("row_count", { min: { anyOf: [{ type: "integer" }, { type: "null" }], default: null, title: "Min" } }, [], ["fail", "warn"]) },
];

const FIELDS = [
  { name: "carrier", type: "string", nullable: false },
  { name: "flight", type: "integer", nullable: false },
  { name: "dep_delay", type: "integer", nullable: true },
];

const wrap = (ui: ReactNode) => <QueryClientProvider client={new QueryClient()}>{ui}</QueryClientProvider>;

/** The editor over a node's rules held in state, as the builder's document holds them. */
function Harness({ initial, errors = {}, readOnly = false, onChange }: { initial: Rule[]; errors?: Record<string, string[]>; readOnly?: boolean; onChange: (patch: Record<string, unknown>, key?: string) => void }) {
  const [rules, setRules] = useState<Rule[]>(initial);
  return (
    <RulesEditor
      nodeId="flights"
      rules={rules}
      ruleTypes={RULE_TYPES}
      fields={FIELDS}
      errors={errors}
      readOnly={readOnly}
      onChange={(patch, key) => {
        onChange(patch, key);
        setRules((patch.rules as Rule[] | undefined) ?? []);
      }}
    />
  );
}

function editor(initial: Rule[] = [], more: { errors?: Record<string, string[]>; readOnly?: boolean } = {}) {
  const onChange = vi.fn();
  render(wrap(<Harness initial={initial} onChange={onChange} {...more} />));
  const lastRules = () => (onChange.mock.lastCall?.[0] as { rules?: Rule[] }).rules;
  return { onChange, lastRules };
}

describe("quality rules in the side panel", () => {
  it("adds a rule of a type with the form from its schema, picks the column from the node's fields and names it after them", () => {
    const { onChange, lastRules } = editor();
    expect(screen.getByTestId("no-rules")).toBeInTheDocument();
    fireEvent.change(screen.getByLabelText("Rule type"), { target: { value: "not_null" } });
    fireEvent.click(screen.getByRole("button", { name: "Add rule" }));
    expect(onChange).toHaveBeenLastCalledWith({ rules: [{ id: "not_null", type: "not_null", action: "fail" }] }, undefined);

    const rule = screen.getByTestId("rule-0");
    const column = within(rule).getByLabelText(/^Column/);
    expect([...(column as HTMLSelectElement).options].map((o) => o.value)).toEqual(["", "carrier", "flight", "dep_delay"]);
    fireEvent.change(column, { target: { value: "dep_delay" } });
    // The suggested id follows the column while nobody changed it.
    expect(lastRules()).toEqual([{ id: "not_null_dep_delay", type: "not_null", action: "fail", column: "dep_delay" }]);
    expect(onChange.mock.lastCall?.[1]).toBe("flights:rules.0.column");
    expect(within(screen.getByTestId("rule-0")).getByRole("heading")).toHaveTextContent("not_null_dep_delay not_null on dep_delay");
  });

  it("offers only the actions a type allows: a stream rule cannot reject", () => {
    editor([
      { id: "known", type: "not_null", column: "carrier" },
      { id: "enough", type: "row_count", min: 10 },
    ]);
    const options = (i: number) => [...(within(screen.getByTestId(`rule-${i}`)).getByLabelText(/^Action/) as HTMLSelectElement).options].map((o) => o.textContent);
    expect(options(0)).toEqual(["fail — stop the run", "reject — quarantine the row", "warn — count it, keep the row"]);
    expect(options(1)).toEqual(["fail — stop the run", "warn — count it, keep the row"]);
    expect(within(screen.getByTestId("rule-1")).getByText(/no row to reject/)).toBeInTheDocument();
  });

  it("sets the action, one undo key per rule field", () => {
    const { onChange, lastRules } = editor([{ id: "known", type: "not_null", column: "carrier" }]);
    const action = within(screen.getByTestId("rule-0")).getByLabelText(/^Action/) as HTMLSelectElement;
    const reject = [...action.options].find((o) => o.textContent?.startsWith("reject"));
    fireEvent.change(action, { target: { value: reject?.value } });
    expect(lastRules()).toEqual([{ id: "known", type: "not_null", column: "carrier", action: "reject" }]);
    expect(onChange.mock.lastCall?.[1]).toBe("flights:rules.0.action");
  });

  it("checks the id as it is typed: the allowed characters and unique on the node", () => {
    editor([
      { id: "known", type: "not_null", column: "carrier" },
      { id: "late", type: "range", column: "dep_delay", max: 60 },
    ]);
    const id = within(screen.getByTestId("rule-1")).getByLabelText(/^Rule id/);
    fireEvent.change(id, { target: { value: "too late!" } });
    expect(within(screen.getByTestId("rule-1")).getByText("Use only letters, digits, underscores, dots and hyphens in an id.")).toBeInTheDocument();
    fireEvent.change(id, { target: { value: "known" } });
    expect(within(screen.getByTestId("rule-1")).getByText("Another rule of this node already has the id 'known'.")).toBeInTheDocument();
    fireEvent.change(id, { target: { value: "too_late" } });
    expect(within(screen.getByTestId("rule-1")).queryByText(/Another rule/)).not.toBeInTheDocument();
  });

  it("types a range bound as a number for a numeric column", () => {
    const { lastRules } = editor([{ id: "late", type: "range", column: "dep_delay" }]);
    fireEvent.change(within(screen.getByTestId("rule-0")).getByLabelText(/^Max/), { target: { value: "600" } });
    expect(lastRules()).toEqual([{ id: "late", type: "range", column: "dep_delay", max: 600 }]);
  });

  it("chooses a unique rule's key among the fields", () => {
    const { lastRules } = editor([{ id: "one", type: "unique", column: "flight" }]);
    const columns = within(screen.getByTestId("rule-0")).getByLabelText(/^Columns/) as HTMLSelectElement;
    expect([...columns.selectedOptions].map((o) => o.value)).toEqual(["flight"]);
    for (const o of columns.options) o.selected = o.value === "flight" || o.value === "carrier";
    fireEvent.change(columns);
    expect(lastRules()).toEqual([{ id: "one", type: "unique", columns: ["carrier", "flight"] }]);
  });

  it("edits an expression rule with the expression field (column completion)", () => {
    const { lastRules } = editor([{ id: "sane", type: "expression", expression: "" }]);
    const expression = within(screen.getByTestId("rule-0")).getByLabelText(/^Expression/);
    fireEvent.change(expression, { target: { value: "dep_d", selectionStart: 5 } });
    fireEvent.click(screen.getByRole("button", { name: "Insert column dep_delay" }));
    expect(lastRules()).toEqual([{ id: "sane", type: "expression", expression: "dep_delay" }]);
  });

  it("reorders and removes rules; the last one removed leaves no rules key", () => {
    const { onChange } = editor([
      { id: "a", type: "not_null", column: "carrier" },
      { id: "b", type: "not_null", column: "flight" },
    ]);
    fireEvent.click(screen.getByRole("button", { name: "Move rule b up" }));
    expect(onChange).toHaveBeenLastCalledWith({ rules: [{ id: "b", type: "not_null", column: "flight" }, { id: "a", type: "not_null", column: "carrier" }] }, undefined);
    fireEvent.click(screen.getByRole("button", { name: "Remove rule a" }));
    fireEvent.click(screen.getByRole("button", { name: "Remove rule b" }));
    expect(onChange).toHaveBeenLastCalledWith({ rules: undefined }, undefined);
    expect(screen.getByTestId("no-rules")).toBeInTheDocument();
  });

  it("changes a rule's type in place, keeping its column, action and a typed id", () => {
    const { lastRules } = editor([
      { id: "not_null_dep_delay", type: "not_null", action: "reject", column: "dep_delay" },
      { id: "mine", type: "not_null", action: "reject", column: "carrier", description: "known carrier" },
    ]);
    fireEvent.change(screen.getByLabelText("Type of rule not_null_dep_delay"), { target: { value: "range" } });
    expect(lastRules()?.[0]).toEqual({ id: "range_dep_delay", type: "range", action: "reject", column: "dep_delay" });
    expect(screen.getByTestId("rule-0")).toHaveTextContent("range on dep_delay");
    expect(within(screen.getByTestId("rule-0")).getByLabelText(/^Min/)).toBeInTheDocument();
    // A stream rule cannot reject: the action becomes the type's default; columns do not carry over.
    fireEvent.change(screen.getByLabelText("Type of rule mine"), { target: { value: "row_count" } });
    expect(lastRules()?.[1]).toEqual({ id: "mine", type: "row_count", action: "fail", description: "known carrier" });
  });

  it("shows the server's errors at the rule's field, and the rest above its form", () => {
    editor(
      [
        { id: "known", type: "not_null", column: "carier" },
        { id: "late", type: "range", column: "dep_delay" },
      ],
      { errors: { "rules.0.column": ["unknown column 'carier', did you mean 'carrier'?"], "rules.1": ["give `min`, `max` or both"] } },
    );
    const first = screen.getByTestId("rule-0");
    const column = within(first).getByLabelText(/^Column/);
    expect(within(first).getByText("unknown column 'carier', did you mean 'carrier'?")).toBeInTheDocument();
    expect(column).toHaveValue("carier");
    expect(within(first).getByRole("option", { name: "carier (not at this node)" })).toBeInTheDocument();
    expect(within(screen.getByTestId("rule-1")).getByTestId("rule-errors")).toHaveTextContent("give `min`, `max` or both");
  });

  it("is read-only for a viewer", () => {
    editor([{ id: "known", type: "not_null", column: "carrier" }], { readOnly: true });
    expect(screen.queryByRole("button", { name: "Add rule" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Remove rule/ })).not.toBeInTheDocument();
    expect(within(screen.getByTestId("rule-0")).getByLabelText(/^Column/)).toBeDisabled();
    expect(within(screen.getByTestId("rule-0")).getByLabelText(/^Rule id/)).toHaveAttribute("readonly");
  });

  it("sits in the node panel of any node, with the node's output fields and errors", () => {
    const onChange = vi.fn();
    render(
      wrap(
        <NodePanel
          doc={{ id: "flights", kind: "source", connector: "flights-csv", stream: "flights", rules: [{ id: "x", type: "not_null", column: "dep_delay" }] }}
          steps={[]}
          connectors={[]}
          sources={[]}
          destinations={[]}
          errors={{ "rules.0.column": ["boom"] }}
          fields={null}
          outputFields={FIELDS}
          ruleTypes={RULE_TYPES}
          readOnly={false}
          onChange={onChange}
          onConfigChange={vi.fn()}
          onDelete={vi.fn()}
          onPreview={vi.fn()}
          canPreview
        />,
      ),
    );
    const rules = screen.getByTestId("rules");
    expect(within(rules).getByRole("heading", { name: "Quality rules" })).toBeInTheDocument();
    expect(within(rules).getByText("boom")).toBeInTheDocument();
    expect(within(rules).getByLabelText(/^Column/)).toHaveValue("dep_delay");
  });
});

describe("rule helpers", () => {
  it("suggest unique ids and check them", () => {
    expect(suggestRuleId("not_null", ["dep_delay"], [])).toBe("not_null_dep_delay");
    expect(suggestRuleId("unique", ["year", "month"], ["unique_year_month"])).toBe("unique_year_month_2");
    expect(ruleIdProblem("", [])).toMatch(/Give the rule an id/);
    expect(ruleIdProblem("a.b-c_1", ["x"])).toBeNull();
    expect(ruleIdProblem("a b", [])).toMatch(/letters, digits/);
    expect(ruleIdProblem("x", ["x"])).toMatch(/already has the id 'x'/);
  });

  it("carry a rule's columns into a unique rule's key", () => {
    const unique = RULE_TYPES.find((t) => t.type === "unique")!;
    expect(changeRuleType({ id: "not_null_flight", type: "not_null", action: "warn", column: "flight" }, unique, [])).toEqual({
      id: "unique_flight",
      type: "unique",
      action: "warn",
      columns: ["flight"],
    });
  });

  it("keep a typed id, leave empty descriptions out and type values by column", () => {
    expect(ruleFromForm({ id: "mine", type: "not_null", column: "a" }, { id: "mine", column: "b", description: "" }, [])).toEqual({ id: "mine", type: "not_null", column: "b" });
    expect(changedKey({ a: 1, b: 2 }, { a: 1, b: 3 })).toBe("b");
    expect(typedValue("1.5", "number")).toBe(1.5);
    expect(typedValue("2013-01-01", "date")).toBe("2013-01-01");
    expect(typedValue("12", "string")).toBe("12");
  });
});
