"use client";

import dynamic from "next/dynamic";
import Link from "next/link";
import { useSearchParams } from "next/navigation";
import { Suspense } from "react";

import { ApiError } from "@/api/client";
import { AppShell } from "@/components/AppShell";
import { NotFound } from "@/components/NotFound";
import { ErrorNote, Loading, PageHeader } from "@/components/ui";
import { idParam, usePipeline } from "@/lib/queries";
import { useCan, useWorkspace } from "@/lib/session";

// React Flow, dagre and the form library load with this route only (the dashboard's budget is 250 KB).
const Builder = dynamic(() => import("@/components/builder/Builder").then((m) => m.Builder), {
  ssr: false,
  loading: () => <Loading label="Loading the builder…" />,
});

function BuilderScreen() {
  const params = useSearchParams();
  const id = idParam(params);
  const runParam = params?.get("run") ?? "";
  const runId = /^\d+$/.test(runParam) ? Number(runParam) : null;
  const pipeline = usePipeline(id);
  const workspace = useWorkspace();
  const canEdit = useCan("editor", pipeline.data?.workspace ?? workspace.id);
  if (id !== null && pipeline.error instanceof ApiError && pipeline.error.status === 404) return <NotFound what="Pipeline" />;
  if (id !== null && pipeline.isPending) return <Loading />;
  if (id !== null && pipeline.isError) return <ErrorNote error={pipeline.error} />;
  const data = id !== null ? (pipeline.data ?? null) : null;
  return (
    <>
      <PageHeader title={data ? `${data.name} — builder` : "New pipeline — builder"}>
        <p className="text-sm text-slate-700 dark:text-slate-300">
          {data ? (
            <>
              Version {data.version} ·{" "}
              <Link href={`/pipelines/view?id=${data.id}`} className="text-indigo-700 hover:underline dark:text-indigo-300">
                runs, versions and settings
              </Link>
            </>
          ) : (
            "Drag sources, steps and destinations onto the canvas and connect them."
          )}
        </p>
      </PageHeader>
      <Builder key={data?.id ?? "new"} pipeline={data} workspaceId={data?.workspace ?? workspace.id} canEdit={canEdit} initialRunId={data ? runId : null} />
    </>
  );
}

export default function PipelineBuilderPage() {
  return (
    <AppShell>
      <Suspense fallback={<Loading />}>
        <BuilderScreen />
      </Suspense>
    </AppShell>
  );
}
