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
});
