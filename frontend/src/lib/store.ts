import { create } from "zustand";
import { persist } from "zustand/middleware";

// UI state only (server state lives in TanStack Query): the chosen workspace, the theme, the toasts.

export interface Toast {
  id: number;
  kind: "error" | "success" | "info";
  message: string;
}

interface UiState {
  workspaceId: number | null;
  theme: "light" | "dark" | "system";
  toasts: Toast[];
  setWorkspace: (id: number | null) => void;
  setTheme: (theme: UiState["theme"]) => void;
  toast: (kind: Toast["kind"], message: string) => void;
  dismiss: (id: number) => void;
}

let nextToast = 1;

export const useUi = create<UiState>()(
  persist(
    (set) => ({
      workspaceId: null,
      theme: "system",
      toasts: [],
      setWorkspace: (workspaceId) => set({ workspaceId }),
      setTheme: (theme) => set({ theme }),
      toast: (kind, message) => {
        const id = nextToast++;
        set((s) => ({ toasts: [...s.toasts.slice(-4), { id, kind, message }] }));
        if (kind !== "error") setTimeout(() => useUi.getState().dismiss(id), 5000);
      },
      dismiss: (id) => set((s) => ({ toasts: s.toasts.filter((t) => t.id !== id) })),
    }),
    { name: "aggregator-ui", partialize: (s) => ({ workspaceId: s.workspaceId, theme: s.theme }) },
  ),
);

export const toastError = (error: unknown) =>
  useUi.getState().toast("error", error instanceof Error ? error.message : String(error));
