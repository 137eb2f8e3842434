import { fireEvent, renderHook } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { useUndoKeys } from "./useUndoKeys";

describe("the builder's keyboard and undo controller", () => {
  it("undoes on Ctrl+Z and redoes on Ctrl+Shift+Z, Ctrl+Y and Cmd+Shift+Z", () => {
    const dispatch = vi.fn();
    renderHook(() => useUndoKeys(dispatch, true));
    fireEvent.keyDown(window, { key: "z", ctrlKey: true });
    fireEvent.keyDown(window, { key: "Z", ctrlKey: true, shiftKey: true });
    fireEvent.keyDown(window, { key: "y", ctrlKey: true });
    fireEvent.keyDown(window, { key: "z", metaKey: true, shiftKey: true });
    fireEvent.keyDown(window, { key: "z" });
    expect(dispatch.mock.calls.map(([a]) => a.type)).toEqual(["undo", "redo", "redo", "redo"]);
  });

  it("leaves the keys alone while a field has the focus or the controller is inactive", () => {
    const dispatch = vi.fn();
    const { rerender } = renderHook(({ active }) => useUndoKeys(dispatch, active), { initialProps: { active: true } });
    const input = document.createElement("input");
    document.body.append(input);
    fireEvent.keyDown(input, { key: "z", ctrlKey: true });
    rerender({ active: false });
    fireEvent.keyDown(window, { key: "z", ctrlKey: true });
    expect(dispatch).not.toHaveBeenCalled();
    input.remove();
  });

  it("gives undo and redo for the toolbar", () => {
    const dispatch = vi.fn();
    const { result } = renderHook(() => useUndoKeys(dispatch, false));
    result.current.undo();
    result.current.redo();
    expect(dispatch.mock.calls.map(([a]) => a.type)).toEqual(["undo", "redo"]);
  });
});
