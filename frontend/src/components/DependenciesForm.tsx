"use client";

import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";

import { ApiError, api, ok } from "@/api/client";
import type { Pipeline } from "@/api/types";
import { Button, Empty } from "@/components/ui";
import { usePipelines } from "@/lib/queries";
import { toastError, useUi } from "@/lib/store";

/** The pipelines this one runs after (when they succeed); the server refuses a cycle. */
export function DependenciesForm({ pipeline, readOnly }: { pipeline: Pipeline; readOnly: boolean }) {
  const all = usePipelines();
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const [chosen, setChosen] = useState<number[]>(pipeline.depends_on);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const others = (all.data?.results ?? []).filter((p) => p.id !== pipeline.id && p.workspace === pipeline.workspace);
  const dirty = [...chosen].sort().join() !== [...pipeline.depends_on].sort().join();
  return (
    <form
      className="max-w-xl"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        try {
          const saved = await ok(api.PATCH("/api/v1/pipelines/{id}/", { params: { path: { id: pipeline.id } }, body: { name: pipeline.name, depends_on: chosen } }));
          client.setQueryData(["pipeline", pipeline.id], saved);
          void client.invalidateQueries({ queryKey: ["pipelines"] });
          toast("success", "Dependencies saved.");
        } catch (err) {
          if (err instanceof ApiError && err.fields.depends_on) setError(err.fields.depends_on.join(" "));
          else toastError(err);
        } finally {
          setBusy(false);
        }
      }}
    >
      <fieldset aria-describedby={error ? "deps-error" : undefined}>
        <legend className="text-sm font-medium">Run after these pipelines succeed</legend>
        {others.length === 0 ? (
          <Empty>No other pipelines in this workspace.</Empty>
        ) : (
          <ul className="mt-2 space-y-1">
            {others.map((p) => (
              <li key={p.id}>
                <label className="flex items-center gap-2 text-sm">
                  <input
                    type="checkbox"
                    disabled={readOnly}
                    checked={chosen.includes(p.id)}
                    onChange={(e) => setChosen((old) => (e.target.checked ? [...old, p.id] : old.filter((id) => id !== p.id)))}
                  />
                  {p.name}
                </label>
              </li>
            ))}
          </ul>
        )}
      </fieldset>
      {error ? (
        <p id="deps-error" className="mt-2 text-sm text-red-700 dark:text-red-400">
          {error}
        </p>
      ) : null}
      {!readOnly && others.length ? (
        <Button type="submit" variant="primary" className="mt-3" busy={busy} disabled={!dirty}>
          Save dependencies
        </Button>
      ) : null}
    </form>
  );
}
