"use client";

import { Handle, Position, type Node, type NodeHandle, type NodeProps } from "@xyflow/react";
import { AlertTriangle, Database, Filter, HardDriveDownload } from "lucide-react";
import { memo } from "react";

import { NODE_HEIGHT, NODE_WIDTH } from "@/lib/builderGraph";
import type { DocNode } from "@/lib/pipelineDoc";
import { count as formatNumber } from "@/lib/format";

export interface NodeCounts {
  status: string;
  rows_in: number;
  rows_out: number;
  rows_rejected: number;
}

export type PipelineNodeData = {
  doc: DocNode;
  errors: string[];
  fieldCount: number | null;
  counts: NodeCounts | null;
  /** Against the version being compared with. */
  change: "added" | "changed" | null;
  /** On the path of the column being traced. */
  traced: boolean;
};

export type PipelineFlowNode = Node<PipelineNodeData, "pipeline">;

const KIND_STYLE: Record<string, string> = {
  source: "border-l-emerald-600",
  transform: "border-l-indigo-600",
  destination: "border-l-amber-600",
};

const HANDLE = 12;

/** Where the handles are (centred on the left and right borders), so React Flow need not measure them. */
export function nodeHandles(kind: string): NodeHandle[] {
  const y = NODE_HEIGHT / 2 - HANDLE / 2;
  const handles: NodeHandle[] = [];
  if (kind !== "source") handles.push({ type: "target", position: Position.Left, x: -HANDLE / 2, y, width: HANDLE, height: HANDLE });
  if (kind !== "destination") handles.push({ type: "source", position: Position.Right, x: NODE_WIDTH - HANDLE / 2, y, width: HANDLE, height: HANDLE });
  return handles;
}

/** What a node does, in a few words: its stream, step or table. */
export function nodeSummary(doc: DocNode): string {
  if (doc.kind === "source") return `${String(doc.connector ?? "?")} · ${String(doc.stream ?? "no stream")}`;
  if (doc.kind === "destination") return `${String(doc.connector ?? "?")} → ${String(doc.table ?? "no table")}`;
  return String(doc.step ?? "no step");
}

function PipelineNodeView({ id, data, selected }: NodeProps<PipelineFlowNode>) {
  const { doc, errors, fieldCount, counts, change, traced } = data;
  const Icon = doc.kind === "source" ? Database : doc.kind === "destination" ? HardDriveDownload : Filter;
  return (
    <div data-testid={`canvas-node-${id}`} data-errors={errors.length} data-change={change ?? undefined} data-traced={traced || undefined} style={{ width: NODE_WIDTH, height: NODE_HEIGHT }} className="relative">
      {doc.kind !== "source" ? <Handle type="target" position={Position.Left} className="!size-3 !bg-slate-600" /> : null}
    <div
      className={`h-full overflow-hidden rounded-md border border-l-4 bg-white p-2 text-left text-xs shadow-sm dark:bg-slate-800 ${KIND_STYLE[String(doc.kind)] ?? "border-l-slate-500"} ${errors.length ? "border-red-600 dark:border-red-500" : "border-slate-300 dark:border-slate-600"} ${selected ? "ring-2 ring-indigo-600" : traced ? "ring-2 ring-sky-500" : change === "added" ? "ring-2 ring-green-600" : change === "changed" ? "ring-2 ring-amber-500" : ""}`}
    >
      <p className="flex items-center gap-1.5 font-semibold text-slate-900 dark:text-slate-50">
        <Icon aria-hidden className="size-3.5 shrink-0" />
        <span className="truncate font-mono">{id}</span>
        <span className="ml-auto rounded bg-slate-100 px-1 text-[10px] font-normal text-slate-800 dark:bg-slate-700 dark:text-slate-100">{change ?? String(doc.kind ?? "?")}</span>
      </p>
      <p className="mt-0.5 truncate text-slate-700 dark:text-slate-300">{nodeSummary(doc)}</p>
      {fieldCount !== null ? <p className="text-slate-700 dark:text-slate-300">{fieldCount} fields</p> : null}
      {counts ? (
        <p
          data-testid={`counts-${id}`}
          data-status={counts.status}
          data-rows-in={counts.rows_in}
          data-rows-out={counts.rows_out}
          className="mt-1 rounded bg-slate-100 px-1 font-mono text-slate-900 dark:bg-slate-700 dark:text-slate-50"
        >
          {counts.status} · in {formatNumber(counts.rows_in)} · out {formatNumber(counts.rows_out)}
          {counts.rows_rejected ? ` · rejected ${formatNumber(counts.rows_rejected)}` : ""}
        </p>
      ) : null}
      {errors.length ? (
        <p className="mt-1 flex items-start gap-1 text-red-800 dark:text-red-300" title={errors.join("\n")}>
          <AlertTriangle aria-hidden className="mt-0.5 size-3 shrink-0" />
          <span className="line-clamp-1">{errors[0]}{errors.length > 1 ? ` (+${errors.length - 1})` : ""}</span>
        </p>
      ) : null}
    </div>
      {doc.kind !== "destination" ? <Handle type="source" position={Position.Right} className="!size-3 !bg-slate-600" /> : null}
    </div>
  );
}

export const PipelineNode = memo(PipelineNodeView);
