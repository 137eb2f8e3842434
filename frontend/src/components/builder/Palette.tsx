"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Database, HardDriveDownload, Plus, Search } from "lucide-react";
import { useId, useMemo, useState, type DragEvent } from "react";

import { api, ok } from "@/api/client";
import type { Connector, ConnectorType, StepType } from "@/api/types";
import { Button, inputClass } from "@/components/ui";
import type { DocNode } from "@/lib/pipelineDoc";
import { toastError } from "@/lib/store";

/** What a palette item puts on the canvas: a document node (without id) and the base of its id. */
export interface NodeTemplate {
  doc: Omit<DocNode, "id">;
  base: string;
}

export const DRAG_TYPE = "application/x-aggregator-node";

function Item({ template, label, detail, onAdd, disabled }: { template: NodeTemplate; label: string; detail?: string; onAdd: (t: NodeTemplate) => void; disabled?: boolean }) {
  const onDragStart = (event: DragEvent) => {
    event.dataTransfer.setData(DRAG_TYPE, JSON.stringify(template));
    event.dataTransfer.effectAllowed = "move";
  };
  return (
    <li>
      <button
        type="button"
        draggable={!disabled}
        disabled={disabled}
        onDragStart={onDragStart}
        onClick={() => onAdd(template)}
        data-palette={label}
        title={detail ? `${label}: ${detail}` : label}
        className="flex w-full cursor-grab items-center gap-1.5 rounded px-2 py-1 text-left text-sm text-slate-900 hover:bg-slate-100 focus-visible:outline-2 focus-visible:outline-indigo-600 disabled:cursor-not-allowed dark:text-slate-100 dark:hover:bg-slate-700"
        aria-label={`Add ${label}`}
      >
        <Plus aria-hidden className="size-3.5 shrink-0" />
        <span className="truncate">{label}</span>
      </button>
    </li>
  );
}

function SourceStreams({ connector, onAdd, canEdit }: { connector: Connector; onAdd: (t: NodeTemplate) => void; canEdit: boolean }) {
  const client = useQueryClient();
  const [busy, setBusy] = useState(false);
  const streams = useQuery({
    queryKey: ["connector-streams", connector.id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/schemas/connectors/{id}/streams/", { params: { path: { id: connector.id } }, signal })),
  });
  const discover = async () => {
    setBusy(true);
    try {
      await ok(api.POST("/api/v1/connectors/{id}/discover/", { params: { path: { id: connector.id } } }));
      await client.invalidateQueries({ queryKey: ["connector-streams", connector.id] });
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(false);
    }
  };
  const names = (streams.data?.streams ?? []).filter((s) => !s.is_removed).map((s) => s.stream);
  return (
    <li className="py-1">
      <p className="flex items-center gap-1 px-2 text-xs font-semibold text-slate-700 dark:text-slate-300">
        <Database aria-hidden className="size-3" /> {connector.name}
      </p>
      <ul aria-label={`Streams of ${connector.name}`}>
        {names.map((stream) => (
          <Item
            key={stream}
            label={stream}
            detail={connector.name}
            onAdd={onAdd}
            disabled={!canEdit}
            template={{ base: stream, doc: { kind: "source", connector: connector.name, stream, sync_mode: "full_refresh" } }}
          />
        ))}
      </ul>
      {streams.isSuccess && names.length === 0 ? (
        canEdit ? (
          <Button variant="ghost" className="ml-2 text-xs" busy={busy} onClick={() => void discover()} aria-label={`Discover streams of ${connector.name}`}>
            Discover streams
          </Button>
        ) : (
          <p className="px-2 text-xs text-slate-600 dark:text-slate-400">No streams discovered yet.</p>
        )
      ) : null}
    </li>
  );
}

/** Sources (connectors and their streams), transform steps (grouped, searchable) and destinations. */
export function Palette({
  connectors,
  types,
  steps,
  onAdd,
  canEdit,
}: {
  connectors: Connector[];
  types: ConnectorType[];
  steps: StepType[];
  onAdd: (t: NodeTemplate) => void;
  canEdit: boolean;
}) {
  const [query, setQuery] = useState("");
  const searchId = useId();
  const kindOf = useMemo(() => new Map(types.map((t) => [t.slug, t.kind])), [types]);
  const sources = connectors.filter((c) => kindOf.get(c.connector_type) !== "destination");
  const destinations = connectors.filter((c) => kindOf.get(c.connector_type) !== "source");
  const groups = useMemo(() => {
    const q = query.trim().toLowerCase();
    const matching = steps.filter((s) => !q || s.slug.includes(q) || s.title.toLowerCase().includes(q) || s.category.toLowerCase().includes(q));
    const out = new Map<string, StepType[]>();
    for (const step of matching) out.set(step.category, [...(out.get(step.category) ?? []), step]);
    return [...out.entries()].sort(([a], [b]) => a.localeCompare(b));
  }, [steps, query]);

  return (
    <nav aria-label="Palette" data-testid="palette" className="space-y-3 overflow-y-auto text-sm">
      <p className="text-xs text-slate-700 dark:text-slate-300">Drag onto the canvas, or click to add.</p>
      <section aria-labelledby={`${searchId}-sources`}>
        <h2 id={`${searchId}-sources`} className="mb-1 font-semibold">Sources</h2>
        {sources.length === 0 ? <p className="text-xs text-slate-600 dark:text-slate-400">No source connectors yet.</p> : null}
        <ul>
          {sources.map((c) => (
            <SourceStreams key={c.id} connector={c} onAdd={onAdd} canEdit={canEdit} />
          ))}
        </ul>
      </section>
      <section aria-labelledby={`${searchId}-steps`}>
        <h2 id={`${searchId}-steps`} className="mb-1 font-semibold">Transform steps</h2>
        <div className="relative mb-1">
          <Search aria-hidden className="pointer-events-none absolute top-2 left-2 size-3.5 text-slate-500" />
          <label htmlFor={searchId} className="sr-only">Search steps</label>
          <input id={searchId} type="search" value={query} onChange={(e) => setQuery(e.target.value)} placeholder="Search steps" className={`${inputClass} pl-7`} />
        </div>
        {groups.map(([category, items]) => (
          <div key={category} className="mb-1">
            <h3 className="px-2 text-xs font-semibold text-slate-700 uppercase dark:text-slate-300">{category}</h3>
            <ul>
              {items.map((step) => (
                <Item key={step.slug} label={step.title} detail={step.description} onAdd={onAdd} disabled={!canEdit} template={{ base: step.slug, doc: { kind: "transform", step: step.slug, config: {} } }} />
              ))}
            </ul>
          </div>
        ))}
        {groups.length === 0 ? <p className="text-xs text-slate-600 dark:text-slate-400">No step matches.</p> : null}
      </section>
      <section aria-labelledby={`${searchId}-dest`}>
        <h2 id={`${searchId}-dest`} className="mb-1 flex items-center gap-1 font-semibold">
          <HardDriveDownload aria-hidden className="size-3.5" /> Destinations
        </h2>
        {destinations.length === 0 ? <p className="text-xs text-slate-600 dark:text-slate-400">No destination connectors yet.</p> : null}
        <ul>
          {destinations.map((c) => (
            <Item key={c.id} label={c.name} onAdd={onAdd} disabled={!canEdit} template={{ base: c.name, doc: { kind: "destination", connector: c.name, table: "", write_mode: "append" } }} />
          ))}
        </ul>
      </section>
    </nav>
  );
}
