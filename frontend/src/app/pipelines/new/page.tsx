"use client";

import { useRouter } from "next/navigation";

import { AppShell } from "@/components/AppShell";
import { PipelineEditor } from "@/components/PipelineEditor";
import { PageHeader } from "@/components/ui";
import { useWorkspace } from "@/lib/session";

export default function NewPipelinePage() {
  const router = useRouter();
  const { id } = useWorkspace();
  return (
    <AppShell>
      <PageHeader title="New pipeline">
        <p className="text-sm text-slate-700 dark:text-slate-300">
          Describe the graph: nodes (sources, transforms, destinations) and the edges between them.
        </p>
      </PageHeader>
      <PipelineEditor workspaceId={id} onSaved={(p) => router.push(`/pipelines/view?id=${p.id}`)} />
    </AppShell>
  );
}
