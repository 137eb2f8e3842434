"use client";

import "@xyflow/react/dist/style.css";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import {
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Connection,
  type Edge,
  type EdgeChange,
  type NodeChange,
} from "@xyflow/react";
import { CheckCircle2, LayoutGrid, Maximize, Redo2, Undo2, Zap } from "lucide-react";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useCallback, useEffect, useId, useMemo, useReducer, useRef, useState, type DragEvent } from "react";

import { ApiError, api, ok, serverDefaults } from "@/api/client";
import type { Connector, Pipeline, PipelinePreview, RunDetail, ValidateOutput } from "@/api/types";
import { NodePanel, fieldsOfNode, type SchemaField } from "@/components/builder/NodePanel";
import { Palette, DRAG_TYPE, type NodeTemplate } from "@/components/builder/Palette";
import { PipelineNode, nodeHandles, type PipelineFlowNode } from "@/components/builder/PipelineNode";
import { PreviewPanel } from "@/components/builder/PreviewPanel";
import { Button, ErrorNote, Field, Loading, StatusBadge, inputClass } from "@/components/ui";
import {
  addNode,
  connect,
  connectProblem,
  diffDocs,
  docToGraph,
  edgeErrors,
  emptyGraph,
  graphToDoc,
  historyReducer,
  layoutGraph,
  NODE_HEIGHT,
  NODE_WIDTH,
  moveNodes,
  removeElements,
  stableKey,
  startHistory,
  updateNode,
  type BuilderGraph,
  type Point,
} from "@/lib/builderGraph";
import { useLiveEvents, type LiveEvent } from "@/lib/live";
import { asDefinition, parse, serialize, sortErrors, type DocFormat, type PipelineDocument } from "@/lib/pipelineDoc";
import { useConnectorTypes, useConnectors, useRun } from "@/lib/queries";
import { applyProgress, type ProgressPayload } from "@/lib/runProgress";
import { toastError, useUi } from "@/lib/store";

const nodeTypes = { pipeline: PipelineNode };

/** `GET /pipelines/{id}/lineage/`: per destination, column -> source columns; `paths`: the nodes on the way. */
type Lineage = Record<string, unknown> & { paths?: Record<string, Record<string, string[]>> };
const VALIDATE_DELAY_MS = 600;

const isTyping = (target: EventTarget | null) => {
  const el = target as HTMLElement | null;
  return Boolean(el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName)));
};

type View = "canvas" | "document";

type BuilderProps = { pipeline: Pipeline | null; workspaceId: number | null; canEdit: boolean; initialRunId?: number | null };

function BuilderInner({ pipeline, workspaceId, canEdit, initialRunId = null }: BuilderProps) {
  const router = useRouter();
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const flow = useReactFlow();
  const ids = useId();

  const initial = useMemo(() => (pipeline ? docToGraph(pipeline.definition as PipelineDocument) : emptyGraph()), [pipeline]);
  const [history, dispatch] = useReducer(historyReducer, initial, startHistory);
  const graph = history.present;
  const document = useMemo(() => graphToDoc(graph), [graph]);
  const docKey = useMemo(() => stableKey(document), [document]);
  const [savedKey, setSavedKey] = useState(() => stableKey(graphToDoc(initial)));
  const dirty = docKey !== savedKey;

  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [selectedEdges, setSelectedEdges] = useState<Set<string>>(new Set());
  const dragStart = useRef<BuilderGraph | null>(null);

  const [view, setView] = useState<View>("canvas");
  const [format, setFormat] = useState<DocFormat>("yaml");
  const [text, setText] = useState("");
  const [textError, setTextError] = useState<string | null>(null);

  const [name, setName] = useState(pipeline?.name ?? "");
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState<"save" | "run" | "preview" | null>(null);

  // --- reference data --------------------------------------------------------------------------------
  const connectorsQuery = useConnectors();
  const typesQuery = useConnectorTypes();
  const stepsQuery = useQuery({
    queryKey: ["step-types"],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/step-types/", { params: { query: { limit: 500 } }, signal })),
    staleTime: Infinity,
  });
  const ruleTypesQuery = useQuery({
    queryKey: ["rule-types"],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/rule-types/", { signal })),
    staleTime: Infinity,
  });
  const ruleTypes = useMemo(() => ruleTypesQuery.data ?? [], [ruleTypesQuery.data]);
  const connectors = useMemo(() => connectorsQuery.data?.results ?? [], [connectorsQuery.data]);
  const types = useMemo(() => typesQuery.data?.results ?? [], [typesQuery.data]);
  const steps = useMemo(() => stepsQuery.data?.results ?? [], [stepsQuery.data]);
  const kindOf = useMemo(() => new Map(types.map((t) => [t.slug, t.kind])), [types]);
  const sources = connectors.filter((c: Connector) => kindOf.get(c.connector_type) !== "destination");
  const destinations = connectors.filter((c: Connector) => kindOf.get(c.connector_type) !== "source");

  // --- validation as you build (debounced, the unsaved document) -----------------------------------------
  // A pipeline not created yet is checked in its workspace by the collection routes (`pipelines/validate/`,
  // `pipelines/preview/`), a saved one by its own: the answers are the same.
  const validateDocument = useCallback(
    (doc: PipelineDocument) => {
      const definition = asDefinition(doc);
      return pipeline
        ? ok(api.POST("/api/v1/pipelines/{id}/validate/", { params: { path: { id: pipeline.id } }, body: { definition } }))
        : ok(api.POST("/api/v1/pipelines/validate/", { body: { definition, ...(workspaceId ? { workspace: workspaceId } : {}) } }));
    },
    [pipeline, workspaceId],
  );
  const previewDocument = useCallback(
    (doc: PipelineDocument, node: string) => {
      const body = { node, definition: asDefinition(doc), limit: 100 };
      return pipeline
        ? ok(api.POST("/api/v1/pipelines/{id}/preview/", { params: { path: { id: pipeline.id } }, body }))
        : ok(api.POST("/api/v1/pipelines/preview/", { body: { ...body, ...(workspaceId ? { workspace: workspaceId } : {}) } }));
    },
    [pipeline, workspaceId],
  );
  const [validation, setValidation] = useState<{ key: string; result: ValidateOutput } | null>(null);
  const [validating, setValidating] = useState(false);
  useEffect(() => {
    if (document.nodes.length === 0) return;
    let cancelled = false;
    const timer = setTimeout(async () => {
      setValidating(true);
      try {
        const result = await validateDocument(document);
        if (!cancelled) setValidation({ key: docKey, result });
      } catch (error) {
        if (!cancelled && error instanceof ApiError && Object.keys(error.fields).length) {
          setValidation({ key: docKey, result: { valid: false, errors: error.fields, schemas: {} } });
        }
      } finally {
        if (!cancelled) setValidating(false);
      }
    }, VALIDATE_DELAY_MS);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
    // docKey stands for the document
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [docKey, validateDocument]);
  const [saveErrors, setSaveErrors] = useState<Record<string, string[]> | null>(null);
  const errorFields = useMemo(() => saveErrors ?? validation?.result.errors ?? {}, [saveErrors, validation]);
  const nodeIds = useMemo(() => graph.nodes.map((n) => n.id), [graph]);
  const sorted = useMemo(() => sortErrors(errorFields, nodeIds), [errorFields, nodeIds]);
  const byEdge = useMemo(() => edgeErrors(errorFields, graph), [errorFields, graph]);
  const schemas = (validation?.result.schemas ?? {}) as Record<string, SchemaField[]>;
  // The last fields known at each node: a document with a mistake answers the fields of the nodes that
  // could still be planned, but not below the mistake, and that is just where completing a column helps.
  const [knownSchemas, setKnownSchemas] = useState<Record<string, SchemaField[]>>({});
  useEffect(() => {
    const next = validation?.result.schemas as Record<string, SchemaField[]> | undefined;
    if (next && Object.keys(next).length) setKnownSchemas((old) => ({ ...old, ...next }));
  }, [validation]);
  const generalErrors = sorted.general.filter((m) => !/^edges\./.test(m));
  const isValid = validation?.key === docKey && validation.result.valid && !saveErrors;

  // --- live run on the canvas --------------------------------------------------------------------------
  // A run started elsewhere (the dashboard's sample pipeline) can be followed here from the start.
  const [runId, setRunId] = useState<number | null>(initialRunId);
  const run = useRun(runId);
  const onRunEvent = useCallback(
    (event: LiveEvent) => {
      if (event.type === "run.progress") {
        client.setQueryData<RunDetail>(["run", runId], (old) => (old ? applyProgress(old, event.payload as unknown as ProgressPayload) : old));
      } else {
        void client.invalidateQueries({ queryKey: ["run", runId] });
      }
    },
    [client, runId],
  );
  useLiveEvents("run", runId, onRunEvent);
  const counts = useMemo(() => new Map((run.data?.nodes ?? []).map((n) => [n.node_id, n])), [run.data]);

  // --- versions: compare the canvas with a saved version, restore one ----------------------------------
  const versions = useQuery({
    queryKey: ["versions", pipeline?.id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipelines/{id}/versions/", { params: { path: { id: pipeline!.id }, query: { limit: 100 } }, signal })),
    enabled: Boolean(pipeline),
  });
  const [compareWith, setCompareWith] = useState<number | "">("");
  const compared = versions.data?.results.find((v) => v.version === compareWith);
  const diff = useMemo(() => (compared ? diffDocs(compared.definition as PipelineDocument, document) : null), [compared, document]);

  // --- lineage of the selected destination (saved version) ---------------------------------------------
  const [traced, setTraced] = useState<{ node: string; column: string } | null>(null);

  // --- preview -----------------------------------------------------------------------------------------
  const [preview, setPreview] = useState<PipelinePreview | null>(null);
  const [previewError, setPreviewError] = useState<unknown>(null);

  // --- graph edits -------------------------------------------------------------------------------------
  const apply = useCallback((update: BuilderGraph | ((g: BuilderGraph) => BuilderGraph), key?: string) => {
    setSaveErrors(null);
    dispatch({ type: "apply", graph: update, key });
  }, []);

  const freeSpot = useCallback((): Point => {
    const right = graph.nodes.reduce((x, n) => Math.max(x, n.position.x + 260), 0);
    return { x: right, y: 40 };
  }, [graph]);

  const add = useCallback(
    (template: NodeTemplate, position?: Point) => {
      if (!canEdit) return;
      let newId = "";
      apply((g) => {
        const r = addNode(g, template.doc, position ?? freeSpot(), template.base);
        newId = r.id;
        return r.graph;
      });
      // Select the new node so its settings are at hand.
      setTimeout(() => {
        if (newId) {
          setSelected(new Set([newId]));
          setSelectedEdges(new Set());
        }
      }, 0);
    },
    [apply, canEdit, freeSpot],
  );

  const onDrop = (event: DragEvent) => {
    const raw = event.dataTransfer.getData(DRAG_TYPE);
    if (!raw) return;
    event.preventDefault();
    const template = JSON.parse(raw) as NodeTemplate;
    const p = flow.screenToFlowPosition({ x: event.clientX, y: event.clientY });
    add(template, { x: p.x - 20, y: p.y - 20 });
  };

  const onNodesChange = useCallback(
    (changes: NodeChange<PipelineFlowNode>[]) => {
      const moves: Record<string, Point> = {};
      let ended = false;
      for (const change of changes) {
        if (change.type === "position") {
          if (change.position) moves[change.id] = change.position;
          if (change.dragging === false) ended = true;
        } else if (change.type === "select") {
          setSelected((s) => {
            const next = new Set(s);
            if (change.selected) next.add(change.id);
            else next.delete(change.id);
            return next;
          });
        }
      }
      if (Object.keys(moves).length) {
        if (!dragStart.current) dragStart.current = history.present;
        dispatch({ type: "replace", graph: (g) => moveNodes(g, moves) });
      }
      if (ended && dragStart.current) {
        dispatch({ type: "commit", before: dragStart.current });
        dragStart.current = null;
      }
    },
    [history.present],
  );

  const onEdgesChange = useCallback((changes: EdgeChange[]) => {
    for (const change of changes) {
      if (change.type === "select") {
        setSelectedEdges((s) => {
          const next = new Set(s);
          if (change.selected) next.add(change.id);
          else next.delete(change.id);
          return next;
        });
      }
    }
  }, []);

  const onConnect = useCallback(
    (c: Connection) => {
      const problem = connectProblem(graph, c.source, c.target);
      if (problem) toast("error", problem);
      else apply((g) => connect(g, c.source, c.target));
    },
    [apply, graph, toast],
  );

  const remove = useCallback(
    (nodeIds: string[], edgeIds: string[]) => {
      if (!canEdit || (!nodeIds.length && !edgeIds.length)) return;
      apply((g) => removeElements(g, nodeIds, edgeIds));
      setSelected((s) => new Set([...s].filter((id) => !nodeIds.includes(id))));
      setSelectedEdges(new Set());
    },
    [apply, canEdit],
  );

  const undo = useCallback(() => dispatch({ type: "undo" }), []);
  const redo = useCallback(() => dispatch({ type: "redo" }), []);
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (view !== "canvas" || isTyping(event.target) || !canEdit) return;
      const mod = event.ctrlKey || event.metaKey;
      if (mod && event.key.toLowerCase() === "z") {
        event.preventDefault();
        if (event.shiftKey) redo();
        else undo();
      } else if (mod && event.key.toLowerCase() === "y") {
        event.preventDefault();
        redo();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [undo, redo, view, canEdit]);

  // --- the two views -----------------------------------------------------------------------------------
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
    setTimeout(() => void flow.fitView({ padding: 0.2, maxZoom: 1 }), 50);
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
      setSavedKey(stableKey(definition));
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

  const selectedId = selected.size === 1 ? [...selected][0] : undefined;
  const selectedNode = graph.nodes.find((n) => n.id === selectedId);
  const lineage = useQuery({
    queryKey: ["lineage", pipeline?.id, pipeline?.version],
    // The schema types the answer as a free-form object.
    queryFn: async ({ signal }) => (await ok(api.GET("/api/v1/pipelines/{id}/lineage/", { params: { path: { id: pipeline!.id } }, signal }))) as Lineage,
    enabled: Boolean(pipeline) && selectedNode?.doc.kind === "destination",
  });
  const tracedPath = useMemo(() => (traced ? (lineage.data?.paths?.[traced.node]?.[traced.column] ?? []) : []), [traced, lineage.data]);

  const runPreview = async () => {
    if (!selectedNode) return;
    setBusy("preview");
    setPreviewError(null);
    try {
      setPreview(await previewDocument(document, selectedNode.id));
    } catch (error) {
      setPreview(null);
      setPreviewError(error);
    } finally {
      setBusy(null);
    }
  };

  // --- what React Flow draws ---------------------------------------------------------------------------
  const nodes: PipelineFlowNode[] = useMemo(
    () =>
      graph.nodes.map((n) => {
        const live = counts.get(n.id);
        return {
          id: n.id,
          type: "pipeline",
          position: n.position,
          selected: selected.has(n.id),
          // Fixed sizes and handles: React Flow then needs no measuring pass, so an edge drawn to a node
          // just added (or restored by undo) always has its ends.
          width: NODE_WIDTH,
          height: NODE_HEIGHT,
          measured: { width: NODE_WIDTH, height: NODE_HEIGHT },
          handles: nodeHandles(String(n.doc.kind)),
          ariaLabel: `${String(n.doc.kind)} node ${n.id}`,
          data: {
            doc: n.doc,
            errors: sorted.nodes[n.id] ?? [],
            fieldCount: schemas[n.id]?.length ?? null,
            counts: live ? { status: live.status, rows_in: live.rows_in, rows_out: live.rows_out, rows_rejected: live.rows_rejected } : null,
            change: diff?.added.includes(n.id) ? "added" : diff?.changed[n.id] ? "changed" : null,
            traced: tracedPath.includes(n.id),
          },
        };
      }),
    [graph, counts, selected, sorted, schemas, diff, tracedPath],
  );
  const edges: Edge[] = useMemo(
    () =>
      graph.edges.map((e) => {
        const problems = byEdge[e.id];
        return {
          id: e.id,
          source: e.source,
          target: e.target,
          selected: selectedEdges.has(e.id),
          animated: run.data?.status === "running",
          ariaLabel: `Edge from ${e.source} to ${e.target}`,
          ...(diff?.addedEdges.includes(e.id) ? { style: { stroke: "#15803d", strokeWidth: 2 } } : {}),
          ...(tracedPath.includes(e.source) && tracedPath.includes(e.target) ? { style: { stroke: "#0284c7", strokeWidth: 3 } } : {}),
          ...(problems ? { label: problems.join(" "), style: { stroke: "#b91c1c", strokeWidth: 2 }, labelStyle: { fill: "#7f1d1d" } } : {}),
        };
      }),
    [graph, byEdge, selectedEdges, run.data?.status, diff, tracedPath],
  );

  const nodeErrorCount = Object.values(sorted.nodes).flat().length + Object.values(byEdge).flat().length + generalErrors.length;

  return (
    <div className="space-y-3">
      <div className="flex flex-wrap items-end gap-2">
        {!pipeline ? (
          <div className="w-64">
            <Field label="Name" errors={saveErrors?.name}>
              {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} required className={inputClass} />}
            </Field>
          </div>
        ) : null}
        {canEdit ? (
          <div className="w-64">
            <Field label="Change note">
              {(p) => <input {...p} value={message} onChange={(e) => setMessage(e.target.value)} className={inputClass} placeholder="optional" />}
            </Field>
          </div>
        ) : null}
        {canEdit ? (
          <Button variant="primary" busy={busy === "save"} onClick={() => void save()} disabled={(!pipeline && !name.trim()) || (!!pipeline && !dirty && view === "canvas")}>
            {pipeline ? "Save version" : "Create pipeline"}
          </Button>
        ) : null}
        {canEdit && pipeline ? (
          <Button busy={busy === "run"} onClick={() => void runNow()} disabled={dirty} title={dirty ? "Save first: a run runs the saved version" : undefined}>
            <Zap aria-hidden className="size-4" /> Run
          </Button>
        ) : null}
        <span className="mx-1 h-6 w-px bg-slate-300 dark:bg-slate-600" aria-hidden />
        {canEdit ? (
          <>
            <Button variant="ghost" onClick={undo} disabled={!history.past.length || view !== "canvas"} aria-label="Undo" title="Undo (Ctrl+Z)">
              <Undo2 aria-hidden className="size-4" />
            </Button>
            <Button variant="ghost" onClick={redo} disabled={!history.future.length || view !== "canvas"} aria-label="Redo" title="Redo (Ctrl+Shift+Z)">
              <Redo2 aria-hidden className="size-4" />
            </Button>
            <Button variant="ghost" onClick={() => apply((g) => layoutGraph(g))} disabled={view !== "canvas"} aria-label="Auto-layout" title="Auto-layout">
              <LayoutGrid aria-hidden className="size-4" />
            </Button>
          </>
        ) : null}
        <Button variant="ghost" onClick={() => void flow.fitView({ padding: 0.2, maxZoom: 1 })} disabled={view !== "canvas"} aria-label="Zoom to fit" title="Zoom to fit">
          <Maximize aria-hidden className="size-4" />
        </Button>
        <div role="group" aria-label="View" className="ml-auto inline-flex rounded-md border border-slate-300 dark:border-slate-600">
          <button type="button" aria-pressed={view === "canvas"} onClick={() => view !== "canvas" && showCanvas()} className={`px-3 py-1.5 text-sm ${view === "canvas" ? "bg-indigo-700 text-white" : ""}`}>
            Canvas
          </button>
          <button type="button" aria-pressed={view === "document"} onClick={() => view !== "document" && showDocument()} className={`px-3 py-1.5 text-sm ${view === "document" ? "bg-indigo-700 text-white" : ""}`}>
            Document
          </button>
        </div>
      </div>

      <p role="status" data-testid="validation" data-valid={isValid ? "true" : "false"} className="text-sm">
        {graph.nodes.length === 0 ? (
          <span className="text-slate-700 dark:text-slate-300">Drag sources, steps and destinations from the palette; the server checks the pipeline as you build it.</span>
        ) : validating ? (
          <span className="text-slate-700 dark:text-slate-300">Checking…</span>
        ) : isValid ? (
          <span className="inline-flex items-center gap-1 text-green-800 dark:text-green-300">
            <CheckCircle2 aria-hidden className="size-4" /> Valid{dirty ? " (unsaved changes)" : ""}
          </span>
        ) : nodeErrorCount ? (
          <span className="text-red-700 dark:text-red-400">
            {nodeErrorCount} problem{nodeErrorCount === 1 ? "" : "s"}: see the nodes.
          </span>
        ) : null}
        {run.data ? (
          <span className="ml-3 inline-flex items-center gap-1">
            Run #{run.data.id} <StatusBadge status={run.data.status} testId="builder-run-status" />
            <Link href={`/runs/view?id=${run.data.id}`} className="text-indigo-700 hover:underline dark:text-indigo-300">
              Open the run
            </Link>
          </span>
        ) : null}
      </p>
      {pipeline && versions.data?.results.length ? (
        <div className="flex flex-wrap items-center gap-2 text-sm" data-testid="compare">
          <label htmlFor={`${ids}-compare`}>Compare with</label>
          <select id={`${ids}-compare`} value={compareWith} onChange={(e) => setCompareWith(e.target.value ? Number(e.target.value) : "")} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
            <option value="">no version</option>
            {versions.data.results.map((v) => (
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
              {canEdit ? (
                <Button
                  onClick={() => {
                    apply(docToGraph(compared.definition as PipelineDocument));
                    setCompareWith("");
                    toast("success", `Version ${compared.version} is on the canvas: save to make it the latest.`);
                  }}
                >
                  Restore version {compared.version}
                </Button>
              ) : null}
            </>
          ) : null}
        </div>
      ) : null}
      {generalErrors.length ? (
        <ul role="alert" data-testid="graph-errors" className="list-disc rounded-md border border-red-300 bg-red-50 p-2 pl-6 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
          {generalErrors.map((m, i) => (
            <li key={i}>{m}</li>
          ))}
        </ul>
      ) : null}

      {view === "canvas" ? (
        <div className="grid gap-3 lg:grid-cols-[14rem_minmax(0,1fr)_22rem]">
          <div className="max-h-[70vh] overflow-y-auto rounded-lg border border-slate-200 bg-white p-2 dark:border-slate-700 dark:bg-slate-800">
            <Palette connectors={connectors} types={types} steps={steps} onAdd={(t) => add(t)} canEdit={canEdit} />
          </div>
          <div
            className="h-[70vh] min-h-96 rounded-lg border border-slate-200 bg-slate-50 dark:border-slate-700 dark:bg-slate-900"
            data-testid="canvas"
            onDragOver={(e) => {
              e.preventDefault();
              e.dataTransfer.dropEffect = "move";
            }}
            onDrop={onDrop}
          >
            <ReactFlow
              nodes={nodes}
              edges={edges}
              nodeTypes={nodeTypes}
              onNodesChange={onNodesChange}
              onEdgesChange={onEdgesChange}
              onConnect={onConnect}
              onDelete={({ nodes: n, edges: e }) => remove(n.map((x) => x.id), e.map((x) => x.id))}
              deleteKeyCode={canEdit ? ["Delete", "Backspace"] : null}
              nodesDraggable={canEdit}
              nodesConnectable={canEdit}
              fitView={initial.nodes.length > 0}
              fitViewOptions={{ padding: 0.2, maxZoom: 1 }}
              proOptions={{ hideAttribution: true }}
              aria-label="Pipeline canvas"
            >
              <Background />
              <MiniMap pannable zoomable ariaLabel="Minimap" />
              <Controls showInteractive={false} />
            </ReactFlow>
          </div>
          <aside aria-label="Selected node" className="max-h-[70vh] overflow-y-auto rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-700 dark:bg-slate-800">
            {selectedNode ? (
              <NodePanel
                key={selectedNode.id}
                doc={selectedNode.doc}
                steps={steps}
                connectors={connectors}
                sources={sources}
                destinations={destinations}
                errors={fieldsOfNode(errorFields, selectedNode.id)}
                fields={schemas[selectedNode.id] ?? null}
                upstreamFields={graph.edges.filter((e) => e.target === selectedNode.id).flatMap((e) => knownSchemas[e.source] ?? [])}
                outputFields={knownSchemas[selectedNode.id]}
                ruleTypes={ruleTypes}
                readOnly={!canEdit}
                onChange={(p, key) => apply((g) => updateNode(g, selectedNode.id, p), key)}
                onConfigChange={(config) => apply((g) => updateNode(g, selectedNode.id, { config }), `${selectedNode.id}:config`)}
                onDelete={() => remove([selectedNode.id], [])}
                onPreview={() => void runPreview()}
                canPreview={busy !== "preview"}
                lineage={selectedNode.doc.kind === "destination" ? ((lineage.data?.[selectedNode.id] as Record<string, { node: string; column: string }[]> | undefined) ?? null) : null}
                traced={traced?.node === selectedNode.id ? traced.column : null}
                onTrace={(column) => setTraced(column ? { node: selectedNode.id, column } : null)}
              />
            ) : (
              <p className="text-sm text-slate-700 dark:text-slate-300">
                Select a node to configure it. Connect nodes by dragging from a node&apos;s right handle to another&apos;s left handle. Delete removes the selection; Ctrl+Z undoes, Ctrl+Shift+Z redoes.
              </p>
            )}
          </aside>
        </div>
      ) : (
        <div className="space-y-2">
          <div className="flex items-center gap-2 text-sm">
            <label htmlFor={`${ids}-format`}>Format</label>
            <select id={`${ids}-format`} value={format} onChange={(e) => switchFormat(e.target.value as DocFormat)} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
              <option value="yaml">YAML</option>
              <option value="json">JSON</option>
            </select>
          </div>
          <label htmlFor={`${ids}-text`} className="sr-only">Document</label>
          <textarea
            id={`${ids}-text`}
            data-testid="builder-document"
            value={text}
            onChange={(e) => setText(e.target.value)}
            readOnly={!canEdit}
            spellCheck={false}
            rows={24}
            aria-invalid={Boolean(textError)}
            aria-describedby={`${ids}-text-error`}
            className={`${inputClass} font-mono text-xs leading-5`}
          />
          <p id={`${ids}-text-error`} className="text-sm text-red-700 dark:text-red-400">{textError}</p>
        </div>
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
