"use client";

import { useQuery } from "@tanstack/react-query";
import { useStore } from "@xyflow/react";
import { AlertTriangle, ArrowRight, Plus, Trash2 } from "lucide-react";
import { useCallback, useId, useState, type DragEvent } from "react";

import { ApiError, api, ok } from "@/api/client";
import type { Connector } from "@/api/types";
import type { SchemaField } from "@/components/builder/NodePanel";
import { Button, inputClass } from "@/components/ui";
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
  type DestinationTable,
  type MapFieldsConfig,
} from "@/lib/fieldMapping";

const TYPES = ["string", "integer", "number", "boolean", "date", "datetime", "json"];
const DRAG = "application/x-aggregator-field";

/** What the mapper knows of the destination table the node feeds (connector + table of the next node). */
export type TableState =
  | { status: "loading"; name: string }
  | { status: "found"; name: string; table: DestinationTable }
  | { status: "missing"; name: string }
  | { status: "error"; name: string; message: string };

interface MapperProps {
  config: MapFieldsConfig;
  onChange: (config: MapFieldsConfig) => void;
  sourceFields: SchemaField[];
  readOnly: boolean;
  errors: Record<string, string[]>;
}

/**
 * The `map_fields` step as two columns: the fields arriving at the node on the left, the destination's
 * fields on the right. Drag a source field onto a destination field (or onto "new column") to map it, or
 * choose it in the destination field's list; each mapping has a cast and a default. Required destination
 * fields nothing maps are flagged.
 *
 * When the node feeds a destination node whose connector and table are set, and that table exists, its
 * columns are the destination fields (`GET connectors/{id}/tables/{table}/`; required = NOT NULL without a
 * default). Given `nodeId` and `connectors`, the mapper finds that node on the builder's canvas (React
 * Flow's store); `destinationTable` gives the table directly instead. Without a table (none set, not made
 * yet, or not readable) it works from the step's own `destination_schema`, as before.
 */
export function FieldMapper({
  nodeId,
  connectors,
  destinationTable,
  ...props
}: MapperProps & { nodeId?: string; connectors?: Connector[]; destinationTable?: TableState | null }) {
  if (destinationTable !== undefined || nodeId === undefined || connectors === undefined) {
    return <Mapper {...props} table={destinationTable ?? null} />;
  }
  return <CanvasMapper {...props} nodeId={nodeId} connectors={connectors} />;
}

/** The mapper inside the builder: looks up the destination node this one feeds and reads its table. */
function CanvasMapper({ nodeId, connectors, ...props }: MapperProps & { nodeId: string; connectors: Connector[] }) {
  // A string, so the panel re-renders only when the target changes, not on every canvas move.
  const key = useStore(
    useCallback((s: { nodes: Parameters<typeof downstreamDestination>[0]; edges: Parameters<typeof downstreamDestination>[1] }) => {
      const target = downstreamDestination(s.nodes, s.edges, nodeId);
      return target ? JSON.stringify([target.connector, target.table]) : "";
    }, [nodeId]),
  );
  const [ref, name] = key ? (JSON.parse(key) as [string, string]) : ["", ""];
  const connector = connectors.find((c) => c.name === ref || String(c.id) === ref);
  const table = useQuery({
    queryKey: ["connector-table", connector?.id, name],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/connectors/{connector_pk}/tables/{table}/", { params: { path: { connector_pk: connector!.id, table: name } }, signal })),
    enabled: Boolean(connector && name),
    retry: false,
    staleTime: 30_000,
  });
  let state: TableState | null = null;
  if (connector && name) {
    if (table.isPending) state = { status: "loading", name };
    else if (table.isSuccess) state = { status: "found", name, table: table.data };
    else if (table.error instanceof ApiError && table.error.status === 404) state = { status: "missing", name };
    // A destination without tables (files) has nothing to show; anything else is worth saying.
    else if (!(table.error instanceof ApiError && "connector" in table.error.fields)) state = { status: "error", name, message: table.error?.message ?? "" };
  }
  return <Mapper {...props} table={state} />;
}

function Mapper({ config, onChange, sourceFields, readOnly, errors, table }: MapperProps & { table: TableState | null }) {
  const ids = useId();
  const [newField, setNewField] = useState("");
  const mappings = config.mappings ?? [];
  const columns = table?.status === "found" ? table.table.columns : null;
  const destination = destinationFields(config, columns);
  const fromTable = new Set(columns ? tableFields(columns).map((f) => f.name) : []);
  const keyColumns = new Set(table?.status === "found" ? table.table.primary_key : []);
  const missing = unmappedRequired(config, destination);
  const drop = (to: string | null) => (event: DragEvent) => {
    const from = event.dataTransfer.getData(DRAG);
    if (!from || readOnly) return;
    event.preventDefault();
    onChange(setMapping(config, from, to ?? from));
  };
  const allow = (event: DragEvent) => {
    if (event.dataTransfer.types.includes(DRAG)) event.preventDefault();
  };
  const at = (path: string) => errors[`config.${path}`];

  return (
    <div className="space-y-3 text-sm" data-testid="field-mapper">
      <div className="grid grid-cols-2 gap-2">
        <section aria-label="Source fields">
          <h3 className="text-xs font-semibold uppercase">Source fields</h3>
          {sourceFields.length === 0 ? <p className="text-xs text-slate-700 dark:text-slate-300">Connect an input; its fields show once the pipeline validates.</p> : null}
          <ul className="space-y-1">
            {sourceFields.map((f) => (
              <li
                key={f.name}
                draggable={!readOnly}
                onDragStart={(e) => {
                  e.dataTransfer.setData(DRAG, f.name);
                  e.dataTransfer.effectAllowed = "link";
                }}
                data-source-field={f.name}
                className="cursor-grab rounded border border-slate-300 bg-white px-1.5 py-0.5 font-mono text-xs dark:border-slate-600 dark:bg-slate-800"
              >
                {f.name} <span className="text-slate-700 dark:text-slate-300">{f.type}</span>
              </li>
            ))}
          </ul>
        </section>
        <section aria-label="Destination fields">
          <h3 className="text-xs font-semibold uppercase">Destination fields</h3>
          <TableNote table={table} />
          {columns && !readOnly && !schemaMatchesTable(config, columns) ? (
            <Button variant="ghost" className="text-xs" onClick={() => onChange({ ...config, destination_schema: destination })}>
              Validate against these columns
            </Button>
          ) : null}
          <ul className="space-y-1">
            {destination.map((f, i) => {
              const index = mappings.findIndex((m) => m.to === f.name);
              const required = f.nullable === false;
              return (
                <li
                  key={f.name}
                  onDragOver={allow}
                  onDrop={drop(f.name)}
                  data-destination-field={f.name}
                  className={`rounded border px-1.5 py-0.5 text-xs ${missing.includes(f.name) ? "border-red-600 bg-red-50 dark:bg-red-950" : "border-slate-300 dark:border-slate-600"}`}
                >
                  <label htmlFor={`${ids}-dest-${i}`} className="font-mono">
                    {f.name}{" "}
                    <span className="text-slate-700 dark:text-slate-300">
                      {f.type ?? "string"}
                      {required ? " required" : ""}
                      {keyColumns.has(f.name) ? " key" : ""}
                      {columns && !fromTable.has(f.name) ? " new column" : ""}
                    </span>
                  </label>
                  <select
                    id={`${ids}-dest-${i}`}
                    value={index === -1 ? "" : (mappings[index]?.from ?? "")}
                    disabled={readOnly}
                    onChange={(e) => onChange(e.target.value ? setMapping(config, e.target.value, f.name) : index === -1 ? config : removeMapping(config, index))}
                    className="mt-0.5 block w-full rounded border border-slate-400 bg-white px-1 dark:bg-slate-900"
                  >
                    <option value="">not mapped</option>
                    {sourceFields.map((s) => (
                      <option key={s.name} value={s.name}>{s.name}</option>
                    ))}
                  </select>
                </li>
              );
            })}
            <li onDragOver={allow} onDrop={drop(null)} className="rounded border border-dashed border-slate-400 px-1.5 py-1 text-center text-xs text-slate-700 dark:text-slate-300" data-testid="new-column-drop">
              drop here for a column of the same name
            </li>
          </ul>
          {!readOnly ? (
            <div className="mt-1 flex gap-1">
              <label htmlFor={`${ids}-new`} className="sr-only">New destination field</label>
              <input id={`${ids}-new`} value={newField} onChange={(e) => setNewField(e.target.value)} placeholder="destination field" className={`${inputClass} py-0.5 text-xs`} />
              <Button
                variant="ghost"
                aria-label="Add destination field"
                disabled={!newField.trim() || destination.some((f) => f.name === newField.trim())}
                onClick={() => {
                  onChange({ ...config, destination_schema: [...destination, { name: newField.trim(), type: "string", nullable: true }] });
                  setNewField("");
                }}
              >
                <Plus aria-hidden className="size-4" />
              </Button>
            </div>
          ) : null}
        </section>
      </div>
      {missing.length ? (
        <p role="alert" data-testid="unmapped-required" className="flex items-center gap-1 text-red-800 dark:text-red-300">
          <AlertTriangle aria-hidden className="size-4" /> Required and not mapped: {missing.join(", ")}
        </p>
      ) : null}
      {at("destination_schema") ? <p className="text-red-800 dark:text-red-300">{at("destination_schema")?.join(" ")}</p> : null}
      <section aria-label="Mappings">
        <h3 className="text-xs font-semibold uppercase">Mappings</h3>
        {mappings.length === 0 ? <p className="text-xs">None yet: drag a source field to the right.</p> : null}
        <ol className="space-y-1">
          {mappings.map((m, i) => (
            <li key={`${m.to}-${i}`} data-mapping={m.to} className="rounded border border-slate-200 p-1 text-xs dark:border-slate-700">
              <p className="flex items-center gap-1 font-mono">
                {m.from} <ArrowRight aria-hidden className="size-3" /> {m.to}
                {!readOnly ? (
                  <button type="button" className="ml-auto" aria-label={`Remove the mapping to ${m.to}`} onClick={() => onChange(removeMapping(config, i))}>
                    <Trash2 aria-hidden className="size-3.5" />
                  </button>
                ) : null}
              </p>
              <div className="mt-0.5 grid grid-cols-2 gap-1">
                <span>
                  <label htmlFor={`${ids}-cast-${i}`}>Cast of {m.to}</label>
                  <select id={`${ids}-cast-${i}`} value={m.cast ?? ""} disabled={readOnly} onChange={(e) => onChange(updateMapping(config, i, { cast: e.target.value }))} className="block w-full rounded border border-slate-400 bg-white px-1 dark:bg-slate-900">
                    <option value="">keep the type</option>
                    {TYPES.map((t) => (
                      <option key={t} value={t}>{t}</option>
                    ))}
                  </select>
                </span>
                <span>
                  <label htmlFor={`${ids}-default-${i}`}>Default of {m.to}</label>
                  <input
                    id={`${ids}-default-${i}`}
                    defaultValue={m.default === undefined ? "" : JSON.stringify(m.default)}
                    readOnly={readOnly}
                    onBlur={(e) => onChange(updateMapping(config, i, { default: parseDefault(e.target.value) }))}
                    className="block w-full rounded border border-slate-400 bg-white px-1 dark:bg-slate-900"
                  />
                </span>
              </div>
              {[at(`mappings.${i}.from`), at(`mappings.${i}.to`), at(`mappings.${i}.cast`), at(`mappings.${i}.default`), at(`mappings.${i}`)].flat().filter(Boolean).map((msg, k) => (
                <p key={k} className="text-red-800 dark:text-red-300">{msg}</p>
              ))}
            </li>
          ))}
        </ol>
      </section>
      <span className="flex items-center gap-2 text-xs">
        <label htmlFor={`${ids}-onerror`}>On a value that does not cast</label>
        <select id={`${ids}-onerror`} value={config.on_error ?? "fail"} disabled={readOnly} onChange={(e) => onChange({ ...config, on_error: e.target.value })} className="rounded border border-slate-400 bg-white px-1 dark:bg-slate-900">
          <option value="fail">fail the run</option>
          <option value="null">null</option>
          <option value="reject">reject the row</option>
        </select>
      </span>
    </div>
  );
}

function TableNote({ table }: { table: TableState | null }) {
  if (!table) return null;
  const text =
    table.status === "loading"
      ? `Reading table ${table.name}…`
      : table.status === "found"
        ? `Columns of table ${table.table.schema}.${table.table.name}`
        : table.status === "missing"
          ? `Table ${table.name} does not exist yet: the first run creates it from the mapped fields.`
          : `Could not read table ${table.name}: ${table.message}`;
  return (
    <p className="text-xs text-slate-700 dark:text-slate-300" data-testid="destination-table" data-status={table.status} aria-live="polite">
      {text}
    </p>
  );
}
