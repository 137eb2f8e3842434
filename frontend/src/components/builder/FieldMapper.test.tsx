import { fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { FieldMapper } from "./FieldMapper";

const sourceFields = [
  { name: "flight", type: "integer" },
  { name: "dep_delay", type: "integer" },
];
const config = {
  mappings: [{ from: "flight", to: "flight_no" }],
  destination_schema: [
    { name: "flight_no", type: "integer", nullable: false },
    { name: "delay", type: "integer", nullable: false },
  ],
};

function dataTransfer() {
  const data: Record<string, string> = {};
  return {
    setData: (k: string, v: string) => (data[k] = v),
    getData: (k: string) => data[k] ?? "",
    get types() {
      return Object.keys(data);
    },
    effectAllowed: "",
    dropEffect: "",
  };
}

describe("the field mapper (map_fields)", () => {
  it("flags required destination fields left unmapped and maps by dragging a source field onto one", () => {
    const onChange = vi.fn();
    render(<FieldMapper config={config} onChange={onChange} sourceFields={sourceFields} readOnly={false} errors={{}} />);
    expect(screen.getByTestId("unmapped-required")).toHaveTextContent("Required and not mapped: delay");
    const dt = dataTransfer();
    fireEvent.dragStart(document.querySelector('[data-source-field="dep_delay"]') as Element, { dataTransfer: dt });
    fireEvent.drop(document.querySelector('[data-destination-field="delay"]') as Element, { dataTransfer: dt });
    expect(onChange).toHaveBeenLastCalledWith({ ...config, mappings: [...config.mappings, { from: "dep_delay", to: "delay" }] });
  });

  it("maps from the keyboard too, and sets a cast, a default and what a bad value does", () => {
    const onChange = vi.fn();
    render(<FieldMapper config={config} onChange={onChange} sourceFields={sourceFields} readOnly={false} errors={{ "config.mappings.0.cast": ["cannot cast"] }} />);
    fireEvent.change(screen.getByLabelText(/^delay/), { target: { value: "dep_delay" } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ mappings: [{ from: "flight", to: "flight_no" }, { from: "dep_delay", to: "delay" }] }));
    fireEvent.change(screen.getByLabelText("Cast of flight_no"), { target: { value: "string" } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ mappings: [{ from: "flight", to: "flight_no", cast: "string" }] }));
    const defaultInput = screen.getByLabelText("Default of flight_no");
    fireEvent.change(defaultInput, { target: { value: "0" } });
    fireEvent.blur(defaultInput);
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ mappings: [{ from: "flight", to: "flight_no", default: 0 }] }));
    fireEvent.change(screen.getByLabelText("On a value that does not cast"), { target: { value: "reject" } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ on_error: "reject" }));
    expect(screen.getByText("cannot cast")).toBeInTheDocument();
  });

  it("uses an existing destination table's columns: required NOT NULL columns flagged, keys and new columns marked", () => {
    const onChange = vi.fn();
    const table = {
      connector: 3,
      schema: "public",
      name: "flights",
      primary_key: ["id"],
      columns: [
        { name: "id", type: "integer" as const, nullable: false, required: false, has_default: true, primary_key: true, db_type: "bigint" },
        { name: "flight_no", type: "integer" as const, nullable: false, required: true, has_default: false, primary_key: false, db_type: "bigint" },
        { name: "delay", type: "integer" as const, nullable: false, required: true, has_default: false, primary_key: false, db_type: "integer" },
        { name: "airline", type: "string" as const, nullable: true, required: false, has_default: false, primary_key: false, db_type: "text" },
        { name: "_ag_run_id", type: "string" as const, nullable: true, required: false, has_default: true, primary_key: false, db_type: "text" },
      ],
    };
    const own = { mappings: [{ from: "flight", to: "flight_no" }], destination_schema: [{ name: "note", type: "string", nullable: true }] };
    render(<FieldMapper config={own} onChange={onChange} sourceFields={sourceFields} readOnly={false} errors={{}} destinationTable={{ status: "found", name: "flights", table }} />);
    expect(screen.getByTestId("destination-table")).toHaveTextContent("Columns of table public.flights");
    const names = [...document.querySelectorAll("[data-destination-field]")].map((e) => e.getAttribute("data-destination-field"));
    expect(names).toEqual(["id", "flight_no", "delay", "airline", "note"]);
    expect(screen.getByTestId("unmapped-required")).toHaveTextContent("Required and not mapped: delay");
    expect(screen.getByLabelText(/^id integer key$/)).toBeInTheDocument();
    expect(screen.getByLabelText(/^note string new column$/)).toBeInTheDocument();
    fireEvent.change(screen.getByLabelText(/^delay/), { target: { value: "dep_delay" } });
    expect(onChange).toHaveBeenLastCalledWith(expect.objectContaining({ mappings: [{ from: "flight", to: "flight_no" }, { from: "dep_delay", to: "delay" }] }));
    fireEvent.click(screen.getByRole("button", { name: "Validate against these columns" }));
    expect(onChange).toHaveBeenLastCalledWith({
      ...own,
      destination_schema: [
        { name: "id", type: "integer", nullable: true },
        { name: "flight_no", type: "integer", nullable: false },
        { name: "delay", type: "integer", nullable: false },
        { name: "airline", type: "string", nullable: true },
        { name: "note", type: "string", nullable: true },
      ],
    });
  });

  it("keeps to the step's own fields when the table does not exist yet", () => {
    render(<FieldMapper config={config} onChange={vi.fn()} sourceFields={sourceFields} readOnly={false} errors={{}} destinationTable={{ status: "missing", name: "late_flights" }} />);
    expect(screen.getByTestId("destination-table")).toHaveTextContent("Table late_flights does not exist yet");
    const names = [...document.querySelectorAll("[data-destination-field]")].map((e) => e.getAttribute("data-destination-field"));
    expect(names).toEqual(["flight_no", "delay"]);
    expect(screen.getByTestId("unmapped-required")).toHaveTextContent("Required and not mapped: delay");
    expect(screen.queryByRole("button", { name: "Validate against these columns" })).toBeNull();
  });
});
