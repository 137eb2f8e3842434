import { describe, expect, it } from "vitest";

import { parseDefault, removeMapping, setMapping, unmappedRequired, updateMapping } from "@/lib/fieldMapping";

describe("the field mapper's config", () => {
  const base = {
    mappings: [{ from: "flight", to: "flight_no" }],
    destination_schema: [
      { name: "flight_no", type: "integer", nullable: false },
      { name: "delay", type: "integer", nullable: false },
      { name: "airline", type: "string" },
    ],
    on_error: "fail",
  };

  it("maps a source field to a destination field, replacing what gave that field before", () => {
    const one = setMapping(base, "dep_delay", "delay");
    expect(one.mappings).toEqual([{ from: "flight", to: "flight_no" }, { from: "dep_delay", to: "delay" }]);
    const two = setMapping(updateMapping(one, 1, { cast: "integer", default: 0 }), "arr_delay", "delay");
    expect(two.mappings?.[1]).toEqual({ from: "arr_delay", to: "delay", cast: "integer", default: 0 });
  });

  it("drops an empty cast or default and removes a mapping", () => {
    const edited = updateMapping(updateMapping(base, 0, { cast: "integer", default: 1 }), 0, { cast: "", default: undefined });
    expect(edited.mappings).toEqual([{ from: "flight", to: "flight_no" }]);
    expect(removeMapping(base, 0).mappings).toEqual([]);
  });

  it("flags required destination fields nothing maps", () => {
    expect(unmappedRequired(base)).toEqual(["delay"]);
    expect(unmappedRequired(setMapping(base, "dep_delay", "delay"))).toEqual([]);
    expect(unmappedRequired({ mappings: [] })).toEqual([]);
  });

  it("reads defaults as JSON when they are", () => {
    expect(parseDefault("0")).toBe(0);
    expect(parseDefault("true")).toBe(true);
    expect(parseDefault("??")).toBe("??");
    expect(parseDefault("")).toBeUndefined();
  });
});
