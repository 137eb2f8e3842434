"use client";

import { Background, Controls, MiniMap, ReactFlow, useReactFlow, type Edge } from "@xyflow/react";
import { useMemo, type DragEvent } from "react";

import type { NodeRun, RunStatus } from "@/api/types";
import { NodePanel, fieldsOfNode } from "@/components/builder/NodePanel";
import { Palette, DRAG_TYPE, type NodeTemplate } from "@/components/builder/Palette";
import { PipelineNode, nodeHandles, type PipelineFlowNode } from "@/components/builder/PipelineNode";
import type { BuilderGraphStore } from "@/components/builder/useBuilderGraph";
import type { Lineage, useReferenceData, useValidation } from "@/components/builder/useBuilderServer";
import { NODE_HEIGHT, NODE_WIDTH, updateNode, type DocDiff } from "@/lib/builderGraph";

const nodeTypes = { pipeline: PipelineNode };

type CanvasProps = {
  store: BuilderGraphStore;
  reference: ReturnType<typeof useReferenceData>;
  checks: ReturnType<typeof useValidation>;
  counts: Map<string, NodeRun>;
  runStatus: RunStatus | undefined;
  diff: DocDiff | null;
  lineage: Lineage | undefined;
  traced: { node: string; column: string } | null;
  onTrace: (traced: { node: string; column: string } | null) => void;
  canEdit: boolean;
  fitOnOpen: boolean;
  canPreview: boolean;
  onPreview: () => void;
};

/**
 * The canvas view: the palette, React Flow drawing the graph (each node with its errors, field count, the
 * followed run's counts, the compared version's change and the traced column's path) and the selected
 * node's panel. Edits go to the store.
 */
export function BuilderCanvas({ store, reference, checks, counts, runStatus, diff, lineage, traced, onTrace, canEdit, fitOnOpen, canPreview, onPreview }: CanvasProps) {
  const flow = useReactFlow();
  const { graph, selected, selectedEdges, selectedNode, apply, add, remove } = store;
  const { sorted, schemas, byEdge, knownSchemas, errorFields } = checks;
  const tracedPath = useMemo(() => (traced ? (lineage?.paths?.[traced.node]?.[traced.column] ?? []) : []), [traced, lineage]);

  const onDrop = (event: DragEvent) => {
    const raw = event.dataTransfer.getData(DRAG_TYPE);
    if (!raw) return;
    event.preventDefault();
    const template = JSON.parse(raw) as NodeTemplate;
    const p = flow.screenToFlowPosition({ x: event.clientX, y: event.clientY });
    add(template, { x: p.x - 20, y: p.y - 20 });
  };

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
          animated: runStatus === "running",
          ariaLabel: `Edge from ${e.source} to ${e.target}`,
          ...(diff?.addedEdges.includes(e.id) ? { style: { stroke: "#15803d", strokeWidth: 2 } } : {}),
          ...(tracedPath.includes(e.source) && tracedPath.includes(e.target) ? { style: { stroke: "#0284c7", strokeWidth: 3 } } : {}),
          ...(problems ? { label: problems.join(" "), style: { stroke: "#b91c1c", strokeWidth: 2 }, labelStyle: { fill: "#7f1d1d" } } : {}),
        };
      }),
    [graph, byEdge, selectedEdges, runStatus, diff, tracedPath],
  );

  return (
    <div className="grid gap-3 lg:grid-cols-[14rem_minmax(0,1fr)_22rem]">
      <div className="max-h-[70vh] overflow-y-auto rounded-lg border border-slate-200 bg-white p-2 dark:border-slate-700 dark:bg-slate-800">
        <Palette connectors={reference.connectors} types={reference.types} steps={reference.steps} onAdd={(t) => add(t)} canEdit={canEdit} />
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
          onNodesChange={store.onNodesChange}
          onEdgesChange={store.onEdgesChange}
          onConnect={store.onConnect}
          onDelete={({ nodes: n, edges: e }) => remove(n.map((x) => x.id), e.map((x) => x.id))}
          deleteKeyCode={canEdit ? ["Delete", "Backspace"] : null}
          nodesDraggable={canEdit}
          nodesConnectable={canEdit}
          fitView={fitOnOpen}
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
            steps={reference.steps}
            connectors={reference.connectors}
            sources={reference.sources}
            destinations={reference.destinations}
            errors={fieldsOfNode(errorFields, selectedNode.id)}
            fields={schemas[selectedNode.id] ?? null}
            upstreamFields={graph.edges.filter((e) => e.target === selectedNode.id).flatMap((e) => knownSchemas[e.source] ?? [])}
            outputFields={knownSchemas[selectedNode.id]}
            ruleTypes={reference.ruleTypes}
            readOnly={!canEdit}
            onChange={(p, key) => apply((g) => updateNode(g, selectedNode.id, p), key)}
            onConfigChange={(config) => apply((g) => updateNode(g, selectedNode.id, { config }), `${selectedNode.id}:config`)}
            onDelete={() => remove([selectedNode.id], [])}
            onPreview={onPreview}
            canPreview={canPreview}
            lineage={selectedNode.doc.kind === "destination" ? ((lineage?.[selectedNode.id] as Record<string, { node: string; column: string }[]> | undefined) ?? null) : null}
            traced={traced?.node === selectedNode.id ? traced.column : null}
            onTrace={(column) => onTrace(column ? { node: selectedNode.id, column } : null)}
          />
        ) : (
          <p className="text-sm text-slate-700 dark:text-slate-300">
            Select a node to configure it. Connect nodes by dragging from a node&apos;s right handle to another&apos;s left handle. Delete removes the selection; Ctrl+Z undoes, Ctrl+Shift+Z redoes.
          </p>
        )}
      </aside>
    </div>
  );
}
