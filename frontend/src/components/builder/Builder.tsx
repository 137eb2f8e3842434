"use client";

import "@xyflow/react/dist/style.css";

import { useQueryClient } from "@tanstack/react-query";
import { ReactFlowProvider, useReactFlow } from "@xyflow/react";
import { useRouter } from "next/navigation";
import { useCallback, useMemo, useState } from "react";

import { ApiError, api, ok, serverDefaults } from "@/api/client";
import type { Pipeline, PipelinePreview } from "@/api/types";
import { BuilderCanvas } from "@/components/builder/BuilderCanvas";
import { BuilderStatus, BuilderToolbar, VersionCompare, type View } from "@/components/builder/BuilderToolbar";
import { DocumentView } from "@/components/builder/DocumentView";
import { PreviewPanel } from "@/components/builder/PreviewPanel";
import { useBuilderGraph } from "@/components/builder/useBuilderGraph";
import { useFollowedRun, useLineage, useReferenceData, useValidation, useVersions } from "@/components/builder/useBuilderServer";
import { useUndoKeys } from "@/components/builder/useUndoKeys";
import { ErrorNote, Loading } from "@/components/ui";
import { diffDocs, docToGraph, emptyGraph, graphToDoc, layoutGraph, stableKey } from "@/lib/builderGraph";
import { asDefinition, parse, serialize, type DocFormat, type PipelineDocument } from "@/lib/pipelineDoc";
import { toastError, useUi } from "@/lib/store";

type BuilderProps = { pipeline: Pipeline | null; workspaceId: number | null; canEdit: boolean; initialRunId?: number | null };

// The builder is composed of: the graph store with its undo history (useBuilderGraph), the keyboard and
// undo controller (useUndoKeys), the server's side — reference data, validation as you build, the followed
// run, versions, lineage (useBuilderServer) — the toolbar (BuilderToolbar), the canvas (BuilderCanvas) and
// the Document view (DocumentView). This component holds the view, saving, running and previewing.
function BuilderInner({ pipeline, workspaceId, canEdit, initialRunId = null }: BuilderProps) {
  const router = useRouter();
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const flow = useReactFlow();

  const initial = useMemo(() => (pipeline ? docToGraph(pipeline.definition as PipelineDocument) : emptyGraph()), [pipeline]);
  const [saveErrors, setSaveErrors] = useState<Record<string, string[]> | null>(null);
  const clearSaveErrors = useCallback(() => setSaveErrors(null), []);
  const store = useBuilderGraph(initial, canEdit, clearSaveErrors);
  const { graph, document, docKey, dirty, apply, selectedNode } = store;

  const [view, setView] = useState<View>("canvas");
  const [format, setFormat] = useState<DocFormat>("yaml");
  const [text, setText] = useState("");
  const [textError, setTextError] = useState<string | null>(null);
  const { undo, redo } = useUndoKeys(store.dispatch, view === "canvas" && canEdit);

  const [name, setName] = useState(pipeline?.name ?? "");
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState<"save" | "run" | "preview" | null>(null);

  const reference = useReferenceData();
  const checks = useValidation(pipeline, workspaceId, graph, document, docKey, saveErrors);
  const { run, setRunId, counts } = useFollowedRun(initialRunId);
  const versions = useVersions(pipeline);
  const [compareWith, setCompareWith] = useState<number | "">("");
  const compared = versions.data?.results.find((v) => v.version === compareWith);
  const diff = useMemo(() => (compared ? diffDocs(compared.definition as PipelineDocument, document) : null), [compared, document]);
  const [traced, setTraced] = useState<{ node: string; column: string } | null>(null);
  const lineage = useLineage(pipeline, selectedNode?.doc.kind === "destination");
  const [preview, setPreview] = useState<PipelinePreview | null>(null);
  const [previewError, setPreviewError] = useState<unknown>(null);

  // --- the two views -----------------------------------------------------------------------------------
  const fit = () => void flow.fitView({ padding: 0.2, maxZoom: 1 });
  const showDocument = () => {
    setText(serialize(document, format));
    setTextError(null);
    setView("document");
  };
  const showCanvas = () => {
    const parsed = parse(text, format);
    if (!parsed.ok) {
      setTextError(parsed.message);
      return;
    }
    const next = docToGraph(parsed.value);
    if (stableKey(graphToDoc(next)) !== docKey) apply(next);
    setView("canvas");
    setTimeout(fit, 50);
  };
  const switchFormat = (next: DocFormat) => {
    const parsed = parse(text, format);
    if (parsed.ok) setText(serialize(parsed.value, next));
    setFormat(next);
  };
  /** The document as the canvas would have it (the text view's edits included). */
  const currentDocument = (): PipelineDocument | null => {
    if (view === "canvas") return document;
    const parsed = parse(text, format);
    if (!parsed.ok) {
      setTextError(parsed.message);
      return null;
    }
    return parsed.value;
  };

  // --- save, run, preview ------------------------------------------------------------------------------
  const save = async () => {
    const definition = currentDocument();
    if (!definition) return;
    setBusy("save");
    try {
      const saved = pipeline
        ? await ok(api.PATCH("/api/v1/pipelines/{id}/", { params: { path: { id: pipeline.id } }, body: { definition: asDefinition(definition), message } }))
        : await ok(api.POST("/api/v1/pipelines/", { body: { name, definition: asDefinition(definition), message, workspace: workspaceId ?? undefined } }));
      setSaveErrors(null);
      setMessage("");
      store.setSavedKey(stableKey(definition));
      client.setQueryData(["pipeline", saved.id], saved);
      void client.invalidateQueries({ queryKey: ["pipelines"] });
      void client.invalidateQueries({ queryKey: ["versions", saved.id] });
      toast("success", pipeline ? `Saved version ${saved.version}.` : "Pipeline created.");
      if (!pipeline) router.replace(`/pipelines/builder?id=${saved.id}`);
    } catch (error) {
      if (error instanceof ApiError && Object.keys(error.fields).length) {
        setSaveErrors(error.fields);
        const other = Object.entries(error.fields).filter(([k]) => !/^(definition|nodes|edges)(\.|$)/.test(k));
        if (other.length) toast("error", other.map(([k, v]) => `${k}: ${v.join(" ")}`).join(" "));
        else toast("error", "The pipeline has problems: see the nodes.");
      } else toastError(error);
    } finally {
      setBusy(null);
    }
  };

  const runNow = async () => {
    if (!pipeline) return;
    setBusy("run");
    try {
      const queued = await ok(api.POST("/api/v1/pipelines/{id}/runs/", { params: { path: { id: pipeline.id } }, body: serverDefaults() }));
      setRunId(queued.id);
      void client.invalidateQueries({ queryKey: ["runs"] });
      toast("success", `Run #${queued.id} queued.`);
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(null);
    }
  };

  const runPreview = async () => {
    if (!selectedNode) return;
    setBusy("preview");
    setPreviewError(null);
    try {
      setPreview(await checks.previewDocument(document, selectedNode.id));
    } catch (error) {
      setPreview(null);
      setPreviewError(error);
    } finally {
      setBusy(null);
    }
  };

  return (
    <div className="space-y-3">
      <BuilderToolbar
        isNew={!pipeline}
        canEdit={canEdit}
        view={view}
        name={name}
        onName={setName}
        nameErrors={saveErrors?.name}
        message={message}
        onMessage={setMessage}
        busy={busy}
        canSave={!((!pipeline && !name.trim()) || (!!pipeline && !dirty && view === "canvas"))}
        onSave={() => void save()}
        dirty={dirty}
        onRun={pipeline ? () => void runNow() : null}
        canUndo={store.history.past.length > 0}
        canRedo={store.history.future.length > 0}
        onUndo={undo}
        onRedo={redo}
        onLayout={() => apply((g) => layoutGraph(g))}
        onFit={fit}
        onShowCanvas={showCanvas}
        onShowDocument={showDocument}
      />
      <BuilderStatus empty={graph.nodes.length === 0} validating={checks.validating} isValid={checks.isValid} dirty={dirty} errorCount={checks.errorCount} run={run.data} />
      {pipeline && versions.data?.results.length ? (
        <VersionCompare
          versions={versions.data.results}
          compareWith={compareWith}
          onCompareWith={setCompareWith}
          compared={compared}
          diff={diff}
          canEdit={canEdit}
          onRestore={(version) => {
            apply(docToGraph(version.definition as PipelineDocument));
            setCompareWith("");
            toast("success", `Version ${version.version} is on the canvas: save to make it the latest.`);
          }}
        />
      ) : null}
      {checks.generalErrors.length ? (
        <ul role="alert" data-testid="graph-errors" className="list-disc rounded-md border border-red-300 bg-red-50 p-2 pl-6 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
          {checks.generalErrors.map((m, i) => (
            <li key={i}>{m}</li>
          ))}
        </ul>
      ) : null}

      {view === "canvas" ? (
        <BuilderCanvas
          store={store}
          reference={reference}
          checks={checks}
          counts={counts}
          runStatus={run.data?.status}
          diff={diff}
          lineage={lineage.data}
          traced={traced}
          onTrace={setTraced}
          canEdit={canEdit}
          fitOnOpen={initial.nodes.length > 0}
          canPreview={busy !== "preview"}
          onPreview={() => void runPreview()}
        />
      ) : (
        <DocumentView format={format} onFormat={switchFormat} text={text} onText={setText} error={textError} readOnly={!canEdit} />
      )}

      {busy === "preview" ? <Loading label="Previewing…" /> : null}
      {previewError ? <ErrorNote error={previewError} /> : null}
      {preview && view === "canvas" ? <PreviewPanel preview={preview} /> : null}
    </div>
  );
}

/** The visual pipeline builder (React Flow). Loaded only on its own route, so other pages stay small. */
export function Builder(props: BuilderProps) {
  return (
    <ReactFlowProvider>
      <BuilderInner {...props} />
    </ReactFlowProvider>
  );
}
