"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useCallback, useEffect, useMemo, useState } from "react";

import { ApiError, api, ok } from "@/api/client";
import type { Connector, Pipeline, RunDetail, ValidateOutput } from "@/api/types";
import type { SchemaField } from "@/components/builder/NodePanel";
import { edgeErrors, type BuilderGraph } from "@/lib/builderGraph";
import { useLiveEvents, type LiveEvent } from "@/lib/live";
import { asDefinition, sortErrors, type PipelineDocument } from "@/lib/pipelineDoc";
import { useConnectorTypes, useConnectors, useRun } from "@/lib/queries";
import { applyProgress, type ProgressPayload } from "@/lib/runProgress";

/** `GET /pipelines/{id}/lineage/`: per destination, column -> source columns; `paths`: the nodes on the way. */
export type Lineage = Record<string, unknown> & { paths?: Record<string, Record<string, string[]>> };
const VALIDATE_DELAY_MS = 600;

/** What the palette and the side panel offer: connectors by kind, step types, rule types. */
export function useReferenceData() {
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
  return { connectors, types, steps, ruleTypes, sources, destinations };
}

/**
 * The unsaved document checked by the server as it is built: 600 ms after the last edit it goes to
 * `validate/`; the errors (a save's, while they stand, or the last validation's) sorted to nodes, edges and
 * the rest; the fields the server could plan at each node, and the last ones known (kept while a mistake
 * above hides them). A pipeline not created yet is checked, and previewed, in its workspace by the
 * collection routes (`pipelines/validate/`, `pipelines/preview/`), a saved one by its own: the answers are
 * the same.
 */
export function useValidation(
  pipeline: Pipeline | null,
  workspaceId: number | null,
  graph: BuilderGraph,
  document: PipelineDocument,
  docKey: string,
  saveErrors: Record<string, string[]> | null,
) {
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
  const errorCount = Object.values(sorted.nodes).flat().length + Object.values(byEdge).flat().length + generalErrors.length;
  return { previewDocument, validating, errorFields, sorted, byEdge, schemas, knownSchemas, generalErrors, isValid, errorCount };
}

/** A run followed on the canvas over `/ws/` (a run started elsewhere, such as the sample's, from the start). */
export function useFollowedRun(initialRunId: number | null) {
  const client = useQueryClient();
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
  return { run, setRunId, counts };
}

/** The saved versions, to compare the canvas with. */
export function useVersions(pipeline: Pipeline | null) {
  return useQuery({
    queryKey: ["versions", pipeline?.id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipelines/{id}/versions/", { params: { path: { id: pipeline!.id }, query: { limit: 100 } }, signal })),
    enabled: Boolean(pipeline),
  });
}

/** The lineage of the saved version, fetched while a destination is selected. */
export function useLineage(pipeline: Pipeline | null, destinationSelected: boolean) {
  return useQuery({
    queryKey: ["lineage", pipeline?.id, pipeline?.version],
    // The schema types the answer as a free-form object.
    queryFn: async ({ signal }) => (await ok(api.GET("/api/v1/pipelines/{id}/lineage/", { params: { path: { id: pipeline!.id } }, signal }))) as Lineage,
    enabled: Boolean(pipeline) && destinationSelected,
  });
}
