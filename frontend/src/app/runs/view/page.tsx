"use client";

import { useQueryClient } from "@tanstack/react-query";
import { RotateCcw, Square } from "lucide-react";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useCallback, useState } from "react";

import { ApiError, api, ok, serverDefaults } from "@/api/client";
import type { RunDetail, RunStart } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { NotFound } from "@/components/NotFound";
import { RunDestinations } from "@/components/RunDestinations";
import { RunQuality } from "@/components/RunQuality";
import { PipelineLink, RejectedRows, RunLogs, RunSummary } from "@/components/RunView";
import { Button, ConfirmDialog, ErrorNote, Loading, PageHeader } from "@/components/ui";
import { useLive, useLiveEvents, type LiveEvent } from "@/lib/live";
import { idParam, useRun } from "@/lib/queries";
import { applyProgress, type ProgressPayload } from "@/lib/runProgress";
import { useCan } from "@/lib/session";
import { toastError, useUi } from "@/lib/store";

function RunDetailScreen() {
  const id = idParam(useSearchParams());
  const run = useRun(id);
  const client = useQueryClient();
  const live = useLive();
  const onEvent = useCallback(
    (event: LiveEvent) => {
      if (event.type === "run.progress") {
        client.setQueryData<RunDetail>(["run", id], (old) => (old ? applyProgress(old, event.payload as unknown as ProgressPayload) : old));
      } else {
        // started, succeeded, failed, cancelled, retrying: the final figures come from the API.
        void client.invalidateQueries({ queryKey: ["run", id] });
      }
    },
    [client, id],
  );
  useLiveEvents("run", id, onEvent);

  if (id === null || (run.error instanceof ApiError && run.error.status === 404)) return <NotFound what="Run" />;
  if (run.isPending) return <Loading />;
  if (run.isError) return <ErrorNote error={run.error} />;
  return <RunScreen run={run.data} live={live} />;
}

function RunScreen({ run, live }: { run: RunDetail; live: boolean }) {
  const router = useRouter();
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const canEdit = useCan("editor", run.workspace);
  const [confirmCancel, setConfirmCancel] = useState(false);
  const [busy, setBusy] = useState<string | null>(null);
  const active = run.status === "queued" || run.status === "running";

  const cancel = async () => {
    setBusy("cancel");
    try {
      await ok(api.POST("/api/v1/runs/{id}/cancel/", { params: { path: { id: run.id } } }));
      setConfirmCancel(false);
      toast("info", "Cancel requested: the run stops after its current batch.");
      void client.invalidateQueries({ queryKey: ["run", run.id] });
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(null);
    }
  };
  const rerun = async () => {
    setBusy("rerun");
    try {
      const next = await ok(api.POST("/api/v1/pipelines/{id}/runs/", { params: { path: { id: run.pipeline } }, body: (run.options as RunStart | null) ?? serverDefaults() }));
      void client.invalidateQueries({ queryKey: ["runs"] });
      router.push(`/runs/view?id=${next.id}`);
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(null);
    }
  };

  return (
    <>
      <PageHeader
        title={`Run #${run.id}`}
        actions={
          canEdit ? (
            active ? (
              <Button variant="danger" onClick={() => setConfirmCancel(true)} disabled={run.cancel_requested}>
                <Square aria-hidden className="size-4" /> {run.cancel_requested ? "Cancelling…" : "Cancel run"}
              </Button>
            ) : (
              <Button onClick={() => void rerun()} busy={busy === "rerun"}>
                <RotateCcw aria-hidden className="size-4" /> Re-run
              </Button>
            )
          ) : null
        }
      >
        <PipelineLink run={run} />
      </PageHeader>
      <div className="space-y-4">
        <RunSummary run={run} live={live} />
        <RunDestinations run={run} />
        <RunLogs runId={run.id} active={active} />
        <RejectedRows key={run.status} runId={run.id} nodes={run.nodes.map((n) => n.node_id)} />
        {active ? null : <RunQuality key={`q-${run.status}`} runId={run.id} />}
      </div>
      <ConfirmDialog
        open={confirmCancel}
        title="Cancel this run?"
        confirmLabel="Cancel run"
        dismissLabel="Keep running"
        busy={busy === "cancel"}
        onCancel={() => setConfirmCancel(false)}
        onConfirm={() => void cancel()}
      >
        Rows of unfinished writes are dropped; what a destination committed stays.
      </ConfirmDialog>
    </>
  );
}

export default function RunPage() {
  return (
    <AppShell>
      <Suspense fallback={<Loading />}>
        <RunDetailScreen />
      </Suspense>
    </AppShell>
  );
}
