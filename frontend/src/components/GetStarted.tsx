"use client";

import { Database, PlayCircle, Plug, Workflow } from "lucide-react";
import { useRouter } from "next/navigation";
import { useState } from "react";

import { api, ok } from "@/api/client";
import { Button, ButtonLink, Card } from "@/components/ui";
import { useConnectorTypes } from "@/lib/queries";
import { useCan, useWorkspace } from "@/lib/session";
import { toastError, useUi } from "@/lib/store";

/** What an empty workspace's dashboard offers: the sample pipeline in one click (where the platform has a
 * Local warehouse to load it into), or the first steps by hand. */
export function GetStarted() {
  const { id } = useWorkspace();
  const canEdit = useCan("editor");
  const types = useConnectorTypes();
  const router = useRouter();
  const toast = useUi((s) => s.toast);
  const [busy, setBusy] = useState(false);
  const hasWarehouse = (types.data?.results ?? []).some((t) => t.slug === "local_warehouse");

  const createSample = async () => {
    setBusy(true);
    try {
      const made = await ok(api.POST("/api/v1/pipelines/sample/", { body: { workspace: id ?? undefined } }));
      toast("success", `"${made.pipeline.name}" created; run #${made.run.id} started.`);
      router.push(`/pipelines/builder?id=${made.pipeline.id}&run=${made.run.id}`);
    } catch (error) {
      toastError(error);
      setBusy(false);
    }
  };

  return (
    <Card title="Get started" className="mb-4">
      <div data-testid="get-started" className="space-y-3 text-sm">
        <p>This workspace has no pipelines yet. A pipeline reads a stream from a source, reshapes and checks it, and loads it into a destination.</p>
        <ol className="grid gap-2 sm:grid-cols-3">
          <li className="flex items-start gap-2">
            <Plug aria-hidden className="mt-0.5 size-4 shrink-0 text-indigo-700 dark:text-indigo-300" />
            <span>
              <strong>Connect</strong> a source (a file, a database, an API) and a destination.
            </span>
          </li>
          <li className="flex items-start gap-2">
            <Workflow aria-hidden className="mt-0.5 size-4 shrink-0 text-indigo-700 dark:text-indigo-300" />
            <span>
              <strong>Draw</strong> the pipeline: source → steps → destination, previewing as you go.
            </span>
          </li>
          <li className="flex items-start gap-2">
            <PlayCircle aria-hidden className="mt-0.5 size-4 shrink-0 text-indigo-700 dark:text-indigo-300" />
            <span>
              <strong>Run</strong> it now or on a schedule, and watch every node live.
            </span>
          </li>
        </ol>
        {canEdit && hasWarehouse ? (
          <div className="rounded-md border border-indigo-200 bg-indigo-50 p-3 dark:border-indigo-800 dark:bg-indigo-950">
            <p className="mb-2 flex items-start gap-2">
              <Database aria-hidden className="mt-0.5 size-4 shrink-0 text-indigo-700 dark:text-indigo-300" />
              <span>
                No data at hand? The sample pipeline reads 6,099 New York flights of January 2013 (a CSV file), keeps those that left more than 30 minutes late, works out the minutes each made
                up in the air, and loads them into this workspace&apos;s <strong>Local warehouse</strong>, a PostgreSQL database the platform keeps for you.
              </span>
            </p>
            <Button variant="primary" busy={busy} onClick={() => void createSample()}>
              Create a sample pipeline
            </Button>
          </div>
        ) : null}
        {canEdit ? (
          <div className="flex flex-wrap gap-2">
            <ButtonLink href="/connectors/new">Add a connector</ButtonLink>
            <ButtonLink href="/pipelines/builder">Draw a pipeline</ButtonLink>
          </div>
        ) : (
          <p className="text-slate-700 dark:text-slate-300">Editors and admins of this workspace can add connectors and pipelines.</p>
        )}
      </div>
    </Card>
  );
}
