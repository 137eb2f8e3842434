"use client";

import { CheckCircle2, LayoutGrid, Maximize, Redo2, Undo2, Zap } from "lucide-react";
import Link from "next/link";
import { useId } from "react";

import type { PipelineVersion, RunDetail } from "@/api/types";
import { Button, Field, StatusBadge, inputClass } from "@/components/ui";
import type { DocDiff } from "@/lib/builderGraph";

export type View = "canvas" | "document";

type ToolbarProps = {
  isNew: boolean;
  canEdit: boolean;
  view: View;
  name: string;
  onName: (name: string) => void;
  nameErrors: string[] | undefined;
  message: string;
  onMessage: (message: string) => void;
  busy: "save" | "run" | "preview" | null;
  canSave: boolean;
  onSave: () => void;
  dirty: boolean;
  onRun: (() => void) | null;
  canUndo: boolean;
  canRedo: boolean;
  onUndo: () => void;
  onRedo: () => void;
  onLayout: () => void;
  onFit: () => void;
  onShowCanvas: () => void;
  onShowDocument: () => void;
};

/** The builder's toolbar: name (a new pipeline), change note, save, run, undo/redo, auto-layout, fit, the view. */
export function BuilderToolbar(props: ToolbarProps) {
  const { isNew, canEdit, view, busy, dirty } = props;
  return (
    <div className="flex flex-wrap items-end gap-2">
      {isNew ? (
        <div className="w-64">
          <Field label="Name" errors={props.nameErrors}>
            {(p) => <input {...p} value={props.name} onChange={(e) => props.onName(e.target.value)} required className={inputClass} />}
          </Field>
        </div>
      ) : null}
      {canEdit ? (
        <div className="w-64">
          <Field label="Change note">
            {(p) => <input {...p} value={props.message} onChange={(e) => props.onMessage(e.target.value)} className={inputClass} placeholder="optional" />}
          </Field>
        </div>
      ) : null}
      {canEdit ? (
        <Button variant="primary" busy={busy === "save"} onClick={props.onSave} disabled={!props.canSave}>
          {isNew ? "Create pipeline" : "Save version"}
        </Button>
      ) : null}
      {canEdit && props.onRun ? (
        <Button busy={busy === "run"} onClick={props.onRun} disabled={dirty} title={dirty ? "Save first: a run runs the saved version" : undefined}>
          <Zap aria-hidden className="size-4" /> Run
        </Button>
      ) : null}
      <span className="mx-1 h-6 w-px bg-slate-300 dark:bg-slate-600" aria-hidden />
      {canEdit ? (
        <>
          <Button variant="ghost" onClick={props.onUndo} disabled={!props.canUndo || view !== "canvas"} aria-label="Undo" title="Undo (Ctrl+Z)">
            <Undo2 aria-hidden className="size-4" />
          </Button>
          <Button variant="ghost" onClick={props.onRedo} disabled={!props.canRedo || view !== "canvas"} aria-label="Redo" title="Redo (Ctrl+Shift+Z)">
            <Redo2 aria-hidden className="size-4" />
          </Button>
          <Button variant="ghost" onClick={props.onLayout} disabled={view !== "canvas"} aria-label="Auto-layout" title="Auto-layout">
            <LayoutGrid aria-hidden className="size-4" />
          </Button>
        </>
      ) : null}
      <Button variant="ghost" onClick={props.onFit} disabled={view !== "canvas"} aria-label="Zoom to fit" title="Zoom to fit">
        <Maximize aria-hidden className="size-4" />
      </Button>
      <div role="group" aria-label="View" className="ml-auto inline-flex rounded-md border border-slate-300 dark:border-slate-600">
        <button type="button" aria-pressed={view === "canvas"} onClick={() => view !== "canvas" && props.onShowCanvas()} className={`px-3 py-1.5 text-sm ${view === "canvas" ? "bg-indigo-700 text-white" : ""}`}>
          Canvas
        </button>
        <button type="button" aria-pressed={view === "document"} onClick={() => view !== "document" && props.onShowDocument()} className={`px-3 py-1.5 text-sm ${view === "document" ? "bg-indigo-700 text-white" : ""}`}>
          Document
        </button>
      </div>
    </div>
  );
}

/** Under the toolbar: what the server says of the document, and the followed run with a link to it. */
export function BuilderStatus({ empty, validating, isValid, dirty, errorCount, run }: { empty: boolean; validating: boolean; isValid: boolean; dirty: boolean; errorCount: number; run: RunDetail | undefined }) {
  return (
    <p role="status" data-testid="validation" data-valid={isValid ? "true" : "false"} className="text-sm">
      {empty ? (
        <span className="text-slate-700 dark:text-slate-300">Drag sources, steps and destinations from the palette; the server checks the pipeline as you build it.</span>
      ) : validating ? (
        <span className="text-slate-700 dark:text-slate-300">Checking…</span>
      ) : isValid ? (
        <span className="inline-flex items-center gap-1 text-green-800 dark:text-green-300">
          <CheckCircle2 aria-hidden className="size-4" /> Valid{dirty ? " (unsaved changes)" : ""}
        </span>
      ) : errorCount ? (
        <span className="text-red-700 dark:text-red-400">
          {errorCount} problem{errorCount === 1 ? "" : "s"}: see the nodes.
        </span>
      ) : null}
      {run ? (
        <span className="ml-3 inline-flex items-center gap-1">
          Run #{run.id} <StatusBadge status={run.status} testId="builder-run-status" />
          <Link href={`/runs/view?id=${run.id}`} className="text-indigo-700 hover:underline dark:text-indigo-300">
            Open the run
          </Link>
        </span>
      ) : null}
    </p>
  );
}

type CompareProps = {
  versions: PipelineVersion[];
  compareWith: number | "";
  onCompareWith: (version: number | "") => void;
  compared: PipelineVersion | undefined;
  diff: DocDiff | null;
  canEdit: boolean;
  onRestore: (version: PipelineVersion) => void;
};

/** "Compare with" a saved version: what differs from the canvas, and "Restore version N". */
export function VersionCompare({ versions, compareWith, onCompareWith, compared, diff, canEdit, onRestore }: CompareProps) {
  const ids = useId();
  return (
    <div className="flex flex-wrap items-center gap-2 text-sm" data-testid="compare">
      <label htmlFor={`${ids}-compare`}>Compare with</label>
      <select id={`${ids}-compare`} value={compareWith} onChange={(e) => onCompareWith(e.target.value ? Number(e.target.value) : "")} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
        <option value="">no version</option>
        {versions.map((v) => (
          <option key={v.version} value={v.version}>
            version {v.version}{v.message ? ` — ${v.message}` : ""}
          </option>
        ))}
      </select>
      {diff && compared ? (
        <>
          <span data-testid="compare-summary">
            {diff.added.length} added, {Object.keys(diff.changed).length} changed ({Object.entries(diff.changed).map(([id, keys]) => `${id}: ${keys.join(", ")}`).join("; ") || "none"}), {diff.removed.length} removed
            {diff.removed.length ? ` (${diff.removed.join(", ")})` : ""}; edges +{diff.addedEdges.length} −{diff.removedEdges.length}
          </span>
          {canEdit ? <Button onClick={() => onRestore(compared)}>Restore version {compared.version}</Button> : null}
        </>
      ) : null}
    </div>
  );
}
