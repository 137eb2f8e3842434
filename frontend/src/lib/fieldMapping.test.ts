import { describe, expect, it } from "vitest";

import {
  destinationFields,
  downstreamDestination,
  parseDefault,
  removeMapping,
  schemaMatchesTable,
  setMapping,
  tableFields,
  unmappedRequired,
  updateMapping,
  type TableColumn,
} from "@/lib/fieldMapping";

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

describe("destination fields from an existing table", () => {
  const column = (name: string, type: TableColumn["type"], required: boolean, extra: Partial<TableColumn> = {}): TableColumn => ({
    name,
    type,
    nullable: !required,
    required,
    has_default: false,
    primary_key: false,
    db_type: type,
    ...extra,
  });
  const columns = [
    column("id", "integer", false, { nullable: false, has_default: true, primary_key: true }),
    column("flight_no", "integer", true),
    column("airline", "string", false),
    column("_ag_run_id", "string", false),
    column("_ag_loaded_at", "datetime", false),
  ];

  it("turns columns into fields: required when NOT NULL without a default, run columns left out", () => {
    expect(tableFields(columns)).toEqual([
      { name: "id", type: "integer", nullable: true },
      { name: "flight_no", type: "integer", nullable: false },
      { name: "airline", type: "string", nullable: true },
    ]);
  });

  it("shows the table's columns, then the step's own new fields; without a table, the step's schema", () => {
    const config = { mappings: [{ from: "carrier", to: "airline" }], destination_schema: [{ name: "airline", type: "string" }, { name: "note", type: "string", nullable: true }] };
    expect(destinationFields(config, columns).map((f) => f.name)).toEqual(["id", "flight_no", "airline", "note"]);
    expect(destinationFields(config, null)).toEqual(config.destination_schema);
    expect(unmappedRequired(config, destinationFields(config, columns))).toEqual(["flight_no"]);
    expect(unmappedRequired(config)).toEqual([]);
  });

  it("knows when the step's schema already says what the table says", () => {
    expect(schemaMatchesTable({ destination_schema: tableFields(columns) }, columns)).toBe(true);
    expect(schemaMatchesTable({ destination_schema: [{ name: "flight_no", type: "integer" }] }, columns)).toBe(false);
    expect(schemaMatchesTable({}, columns)).toBe(false);
  });

  it("finds the destination a node feeds directly, once its connector and table are set", () => {
    const nodes = [
      { id: "mapped", data: { doc: { kind: "transform" } } },
      { id: "lake", data: { doc: { kind: "destination", connector: "files", table: "" } } },
      { id: "warehouse", data: { doc: { kind: "destination", connector: 7, table: " flights " } } },
    ];
    const edges = [
      { source: "mapped", target: "lake" },
      { source: "mapped", target: "warehouse" },
    ];
    expect(downstreamDestination(nodes, edges, "mapped")).toEqual({ connector: "7", table: "flights" });
    expect(downstreamDestination(nodes, edges.slice(0, 1), "mapped")).toBeNull();
    expect(downstreamDestination(nodes, edges, "warehouse")).toBeNull();
  });
});
