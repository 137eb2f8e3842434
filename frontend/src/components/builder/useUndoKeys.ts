"use client";

import { useCallback, useEffect, type Dispatch } from "react";

import type { HistoryAction } from "@/lib/builderGraph";

const isTyping = (target: EventTarget | null) => {
  const el = target as HTMLElement | null;
  return Boolean(el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName)));
};

/**
 * The keyboard and undo controller: `undo` and `redo` over the builder's history, and Ctrl+Z (undo),
 * Ctrl+Shift+Z and Ctrl+Y (redo) — Cmd on a Mac — while `active` (the canvas view, an editor) and no field
 * has the focus (typing keeps its own undo).
 */
export function useUndoKeys(dispatch: Dispatch<HistoryAction>, active: boolean) {
  const undo = useCallback(() => dispatch({ type: "undo" }), [dispatch]);
  const redo = useCallback(() => dispatch({ type: "redo" }), [dispatch]);
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (!active || isTyping(event.target)) return;
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
  }, [undo, redo, active]);
  return { undo, redo };
}
