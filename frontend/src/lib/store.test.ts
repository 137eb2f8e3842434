import { afterEach, describe, expect, it, vi } from "vitest";

import { useUi } from "./store";

afterEach(() => {
  vi.useRealTimers();
  useUi.setState({ toasts: [] });
});

describe("toasts", () => {
  it("dismisses confirmations after a few seconds but keeps errors until dismissed", () => {
    vi.useFakeTimers();
    useUi.getState().toast("success", "Saved.");
    useUi.getState().toast("error", "The server failed.");
    expect(useUi.getState().toasts.map((t) => t.message)).toEqual(["Saved.", "The server failed."]);
    vi.advanceTimersByTime(5000);
    expect(useUi.getState().toasts.map((t) => t.message)).toEqual(["The server failed."]);
  });
});
