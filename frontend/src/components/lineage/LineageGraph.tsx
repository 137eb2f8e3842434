"use client";

// React Flow is large: this module is loaded by the lineage page with next/dynamic, never by another page.
import "@xyflow/react/dist/style.css";

import { Background, Controls, Handle, Position, ReactFlow, ReactFlowProvider, type Edge, type Node, type NodeHandle, type NodeProps } from "@xyflow/react";
import { Columns3, Database, Workflow } from "lucide-react";
import { useMemo } from "react";

import { layoutLineage, NODE_HEIGHT, NODE_WIDTH, nodeCaption, pathOf, type LineageNode, type TableLineage } from "@/lib/lineageGraph";

type LineageFlowNode = Node<{ node: LineageNode; on: boolean; dimmed: boolean; selected: boolean }, "lineage">;

const HANDLE = 8;

function handles(kind: LineageNode["kind"]): NodeHandle[] {
  const y = NODE_HEIGHT / 2 - HANDLE / 2;
  const out: NodeHandle[] = [];
  if (kind !== "source") out.push({ type: "target", position: Position.Left, x: -HANDLE / 2, y, width: HANDLE, height: HANDLE });
  if (kind !== "column") out.push({ type: "source", position: Position.Right, x: NODE_WIDTH - HANDLE / 2, y, width: HANDLE, height: HANDLE });
  return out;
}

function LineageNodeView({ data }: NodeProps<LineageFlowNode>) {
  const { node, on, dimmed, selected } = data;
  const Icon = node.kind === "source" ? Database : node.kind === "step" ? Workflow : Columns3;
  const tone =
    node.kind === "source"
      ? "border-sky-600 bg-sky-50 dark:bg-sky-950"
      : node.kind === "step"
        ? "border-slate-500 bg-white dark:bg-slate-800"
        : "border-emerald-600 bg-emerald-50 dark:bg-emerald-950";
  return (
    <div
      data-testid={`lineage-node-${node.id}`}
      data-highlighted={on ? "true" : "false"}
      style={{ width: NODE_WIDTH, height: NODE_HEIGHT }}
      className={`flex items-center gap-2 rounded-md border px-2 text-xs text-slate-900 dark:text-slate-100 ${tone} ${on ? "ring-2 ring-amber-500" : ""} ${selected ? "ring-4" : ""} ${dimmed ? "opacity-40" : ""}`}
    >
      {node.kind !== "source" ? <Handle type="target" position={Position.Left} isConnectable={false} className="!size-2 !bg-slate-500" /> : null}
      <Icon aria-hidden className="size-4 shrink-0" />
      <span className="min-w-0">
        <span className="block truncate font-mono font-semibold">{node.label}</span>
        <span className="block truncate">{nodeCaption(node)}</span>
      </span>
      {node.kind !== "column" ? <Handle type="source" position={Position.Right} isConnectable={false} className="!size-2 !bg-slate-500" /> : null}
    </div>
  );
}

const nodeTypes = { lineage: LineageNodeView };

/** The lineage of one table as a read-only graph; clicking a column (of the table) selects it. */
export function LineageGraph({ graph, selected, onSelect }: { graph: TableLineage; selected: string | null; onSelect: (column: string) => void }) {
  const layout = useMemo(() => layoutLineage(graph), [graph]);
  const path = useMemo(() => pathOf(graph, selected), [graph, selected]);
  const nodes = useMemo<LineageFlowNode[]>(
    () =>
      layout.map(({ node, x, y }) => ({
        id: node.id,
        type: "lineage",
        position: { x, y },
        width: NODE_WIDTH,
        height: NODE_HEIGHT,
        handles: handles(node.kind),
        draggable: false,
        connectable: false,
        selectable: node.kind === "column",
        ariaLabel: `${node.kind === "column" ? "Column" : node.kind === "source" ? "Source column" : "Step"} ${node.label} (${nodeCaption(node)})`,
        data: { node, on: path.nodes.has(node.id), dimmed: selected !== null && !path.nodes.has(node.id), selected: node.kind === "column" && node.column === selected },
      })),
    [layout, path, selected],
  );
  const edges = useMemo<Edge[]>(
    () =>
      graph.edges.map((e) => {
        const on = path.edges.has(e.id);
        return {
          id: e.id,
          source: e.source,
          target: e.target,
          focusable: false,
          className: on ? "lineage-edge-on" : undefined,
          style: { stroke: on ? "#d97706" : selected !== null ? "#cbd5e1" : "#64748b", strokeWidth: on ? 2.5 : 1.25 },
          animated: on,
          zIndex: on ? 1 : 0,
        };
      }),
    [graph.edges, path, selected],
  );
  return (
    <div className="h-[65vh] min-h-96 rounded-lg border border-slate-200 bg-white dark:border-slate-700 dark:bg-slate-900" data-testid="lineage-canvas">
      <ReactFlowProvider>
        <ReactFlow
          nodes={nodes}
          edges={edges}
          nodeTypes={nodeTypes}
          nodesDraggable={false}
          nodesConnectable={false}
          edgesFocusable={false}
          elementsSelectable
          onNodeClick={(_, n) => {
            const node = (n as LineageFlowNode).data.node;
            if (node.kind === "column" && node.column) onSelect(node.column);
          }}
          fitView
          fitViewOptions={{ padding: 0.15, maxZoom: 1 }}
          minZoom={0.1}
          proOptions={{ hideAttribution: true }}
          aria-label={`Lineage of ${graph.table}`}
        >
          <Background />
          <Controls showInteractive={false} />
        </ReactFlow>
      </ReactFlowProvider>
    </div>
  );
}
