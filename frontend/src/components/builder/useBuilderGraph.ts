"use client";

import type { Connection, EdgeChange, NodeChange } from "@xyflow/react";
import { useCallback, useMemo, useReducer, useRef, useState } from "react";

import type { NodeTemplate } from "@/components/builder/Palette";
import type { PipelineFlowNode } from "@/components/builder/PipelineNode";
import {
  addNode,
  connect,
  connectProblem,
  graphToDoc,
  historyReducer,
  moveNodes,
  removeElements,
  stableKey,
  startHistory,
  type BuilderGraph,
  type Point,
} from "@/lib/builderGraph";
import { useUi } from "@/lib/store";

/**
 * The builder's store wiring: the graph with its undo history (`historyReducer`), the document it stands
 * for and whether it differs from the saved one, the selection, and the edits the canvas makes — each one
 * undo step (a drag is one step, `key` merges typing in one field). `onEdit` runs before every edit (the
 * builder drops the last save's errors).
 */
export function useBuilderGraph(initial: BuilderGraph, canEdit: boolean, onEdit: () => void) {
  const toast = useUi((s) => s.toast);
  const [history, dispatch] = useReducer(historyReducer, initial, startHistory);
  const graph = history.present;
  const document = useMemo(() => graphToDoc(graph), [graph]);
  const docKey = useMemo(() => stableKey(document), [document]);
  const [savedKey, setSavedKey] = useState(() => stableKey(graphToDoc(initial)));
  const dirty = docKey !== savedKey;

  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [selectedEdges, setSelectedEdges] = useState<Set<string>>(new Set());
  const dragStart = useRef<BuilderGraph | null>(null);

  const apply = useCallback(
    (update: BuilderGraph | ((g: BuilderGraph) => BuilderGraph), key?: string) => {
      onEdit();
      dispatch({ type: "apply", graph: update, key });
    },
    [onEdit],
  );

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

  const selectedId = selected.size === 1 ? [...selected][0] : undefined;
  const selectedNode = graph.nodes.find((n) => n.id === selectedId);

  return {
    history,
    dispatch,
    graph,
    document,
    docKey,
    dirty,
    setSavedKey,
    selected,
    selectedEdges,
    selectedNode,
    apply,
    add,
    remove,
    onNodesChange,
    onEdgesChange,
    onConnect,
  };
}

export type BuilderGraphStore = ReturnType<typeof useBuilderGraph>;
