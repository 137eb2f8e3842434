"use client";

import { useQueryClient } from "@tanstack/react-query";
import { Pause, Play, Trash2, Workflow, Zap } from "lucide-react";
import dynamic from "next/dynamic";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useState } from "react";

import { ApiError, api, ok, serverDefaults } from "@/api/client";
import type { Pipeline } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { NotFound } from "@/components/NotFound";
import { RunsTable } from "@/components/RunsTable";
import { Tabs } from "@/components/Tabs";
import { Versions } from "@/components/Versions";
import { Button, ButtonLink, ConfirmDialog, ErrorNote, Loading, PageHeader } from "@/components/ui";
import { idParam, usePipeline, usePipelines } from "@/lib/queries";
import { useCan } from "@/lib/session";
import { toastError, useUi } from "@/lib/store";

// Tabs other than the run history load their code when opened (the YAML parser, the form libraries).
const loading = () => <Loading />;
const PipelineEditor = dynamic(() => import("@/components/PipelineEditor").then((m) => m.PipelineEditor), { ssr: false, loading });
const ScheduleForm = dynamic(() => import("@/components/ScheduleForm").then((m) => m.ScheduleForm), { ssr: false, loading });
const DependenciesForm = dynamic(() => import("@/components/DependenciesForm").then((m) => m.DependenciesForm), { ssr: false, loading });

type Tab = "runs" | "document" | "versions" | "settings";

function PipelineDetail() {
  const id = idParam(useSearchParams());
  const pipeline = usePipeline(id);
  if (id === null || (pipeline.error instanceof ApiError && pipeline.error.status === 404)) return <NotFound what="Pipeline" />;
  if (pipeline.isPending) return <Loading />;
  if (pipeline.isError) return <ErrorNote error={pipeline.error} />;
  return <PipelineView pipeline={pipeline.data} />;
}

function Dependencies({ ids }: { ids: number[] }) {
  const all = usePipelines();
  if (!ids.length) return null;
  const names = new Map((all.data?.results ?? []).map((p) => [p.id, p.name]));
  return (
    <p className="text-sm text-slate-700 dark:text-slate-300">
      Runs after:{" "}
      {ids.map((d, i) => (
        <span key={d}>
          {i ? ", " : ""}
          <Link href={`/pipelines/view?id=${d}`} className="text-indigo-700 hover:underline dark:text-indigo-300">
            {names.get(d) ?? `#${d}`}
          </Link>
        </span>
      ))}
    </p>
  );
}

function PipelineView({ pipeline }: { pipeline: Pipeline }) {
  const router = useRouter();
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const canEdit = useCan("editor", pipeline.workspace);
  const [tab, setTab] = useState<Tab>("runs");
  const [busy, setBusy] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);

  const act = async (name: string, action: () => Promise<void>) => {
    setBusy(name);
    try {
      await action();
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(null);
    }
  };

  const runNow = () =>
    act("run", async () => {
      const run = await ok(api.POST("/api/v1/pipelines/{id}/runs/", { params: { path: { id: pipeline.id } }, body: serverDefaults() }));
      void client.invalidateQueries({ queryKey: ["runs"] });
      toast("success", `Run #${run.id} queued.`);
      router.push(`/runs/view?id=${run.id}`);
    });
  const togglePause = () =>
    act("pause", async () => {
      const path = { params: { path: { id: pipeline.id } } };
      const saved = await ok(pipeline.is_paused ? api.POST("/api/v1/pipelines/{id}/resume/", path) : api.POST("/api/v1/pipelines/{id}/pause/", path));
      client.setQueryData(["pipeline", pipeline.id], saved);
      void client.invalidateQueries({ queryKey: ["pipelines"] });
    });
  const remove = () =>
    act("delete", async () => {
      await ok(api.DELETE("/api/v1/pipelines/{id}/", { params: { path: { id: pipeline.id } } }));
      void client.invalidateQueries({ queryKey: ["pipelines"] });
      toast("success", `Deleted ${pipeline.name}.`);
      router.replace("/pipelines");
    });

  return (
    <>
      <PageHeader
        title={pipeline.name}
        actions={
          canEdit ? (
            <>
              <ButtonLink href={`/pipelines/builder?id=${pipeline.id}`}>
                <Workflow aria-hidden className="size-4" /> Open builder
              </ButtonLink>
              <Button variant="primary" onClick={() => void runNow()} busy={busy === "run"}>
                <Zap aria-hidden className="size-4" /> Run now
              </Button>
              <Button onClick={() => void togglePause()} busy={busy === "pause"}>
                {pipeline.is_paused ? <Play aria-hidden className="size-4" /> : <Pause aria-hidden className="size-4" />}
                {pipeline.is_paused ? "Resume" : "Pause"}
              </Button>
              <Button variant="danger" onClick={() => setConfirmDelete(true)}>
                <Trash2 aria-hidden className="size-4" /> Delete
              </Button>
            </>
          ) : (
            <ButtonLink href={`/pipelines/builder?id=${pipeline.id}`}>
              <Workflow aria-hidden className="size-4" /> View graph
            </ButtonLink>
          )
        }
      >
        <p className="text-sm text-slate-700 dark:text-slate-300">
          Version {pipeline.version} · {pipeline.schedule_description || "no schedule"}
          {pipeline.is_paused ? " · paused" : ""}
        </p>
        {pipeline.description ? <p className="mt-1 text-sm">{pipeline.description}</p> : null}
        <Dependencies ids={pipeline.depends_on} />
      </PageHeader>
      <Tabs
        label="Pipeline"
        active={tab}
        onChange={setTab}
        tabs={[
          { id: "runs", label: "Runs" },
          { id: "document", label: "Document" },
          { id: "versions", label: "Versions" },
          { id: "settings", label: "Schedule & settings" },
        ]}
      >
        {tab === "runs" ? <RunsTable pipelineId={pipeline.id} /> : null}
        {tab === "document" ? (
          <PipelineEditor key={pipeline.version} pipeline={pipeline} workspaceId={pipeline.workspace} readOnly={!canEdit} onSaved={() => undefined} />
        ) : null}
        {tab === "versions" ? <Versions pipelineId={pipeline.id} /> : null}
        {tab === "settings" ? (
          <div className="grid gap-6 lg:grid-cols-2">
            <ScheduleForm key={pipeline.updated_at} pipeline={pipeline} readOnly={!canEdit} />
            <DependenciesForm key={`deps-${pipeline.updated_at}`} pipeline={pipeline} readOnly={!canEdit} />
          </div>
        ) : null}
      </Tabs>
      <ConfirmDialog
        open={confirmDelete}
        title={`Delete ${pipeline.name}?`}
        confirmLabel="Delete pipeline"
        busy={busy === "delete"}
        onCancel={() => setConfirmDelete(false)}
        onConfirm={() => void remove()}
      >
        Its schedule stops and its versions and run history are deleted. This cannot be undone.
      </ConfirmDialog>
    </>
  );
}

export default function PipelinePage() {
  return (
    <AppShell>
      <Suspense fallback={<Loading />}>
        <PipelineDetail />
      </Suspense>
    </AppShell>
  );
}
