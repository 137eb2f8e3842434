"use client";

import { useQueryClient } from "@tanstack/react-query";
import dynamic from "next/dynamic";
import { useRouter } from "next/navigation";
import { useState } from "react";

import { api, ok } from "@/api/client";
import type { ConnectorType } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { UploadField } from "@/components/UploadField";
import { Button, Card, ErrorNote, Loading, PageHeader } from "@/components/ui";
import { takesFiles } from "@/lib/configSchema";
import { useConnectorTypes } from "@/lib/queries";
import { useWorkspace } from "@/lib/session";
import { useUi } from "@/lib/store";

// The JSON-Schema form library (@rjsf + ajv) is large: loaded when a form is shown, not with the page.
const ConnectorForm = dynamic(() => import("@/components/ConnectorForm").then((m) => m.ConnectorForm), {
  ssr: false,
  loading: () => <Loading label="Loading the form…" />,
});

const KINDS = [
  { kind: "source", label: "Sources" },
  { kind: "destination", label: "Destinations" },
  { kind: "both", label: "Sources and destinations" },
] as const;

function TypePicker({ types, onPick }: { types: ConnectorType[]; onPick: (t: ConnectorType) => void }) {
  return (
    <div className="space-y-5">
      {KINDS.map(({ kind, label }) => {
        const group = types.filter((t) => t.kind === kind);
        if (!group.length) return null;
        return (
          <section key={kind} aria-labelledby={`kind-${kind}`}>
            <h2 id={`kind-${kind}`} className="mb-2 text-base font-semibold">
              {label}
            </h2>
            <ul className="grid gap-3 sm:grid-cols-2 lg:grid-cols-3">
              {group.map((t) => (
                <li key={t.slug}>
                  <button
                    type="button"
                    onClick={() => onPick(t)}
                    data-type={t.slug}
                    className="h-full w-full rounded-lg border border-slate-200 bg-white p-3 text-left hover:border-indigo-500 focus-visible:outline-2 focus-visible:outline-indigo-600 dark:border-slate-700 dark:bg-slate-800"
                  >
                    <span className="block font-medium">{t.title}</span>
                    <span className="mt-1 block text-sm text-slate-700 dark:text-slate-300">{t.description}</span>
                  </button>
                </li>
              ))}
            </ul>
          </section>
        );
      })}
    </div>
  );
}

export default function NewConnectorPage() {
  const types = useConnectorTypes();
  const { id: workspace } = useWorkspace();
  const [type, setType] = useState<ConnectorType | null>(null);
  const [overrides, setOverrides] = useState<Record<string, unknown> | undefined>(undefined);
  const router = useRouter();
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  return (
    <AppShell>
      <PageHeader title={type ? `New ${type.title} connector` : "New connector"} actions={type ? <Button onClick={() => setType(null)}>Choose another type</Button> : null} />
      {types.isPending ? (
        <Loading />
      ) : types.isError ? (
        <ErrorNote error={types.error} />
      ) : type ? (
        <Card>
          <p className="mb-4 text-sm text-slate-700 dark:text-slate-300">{type.description}</p>
          {takesFiles(type) ? <UploadField workspace={workspace} onUploaded={(u) => setOverrides({ path: u.path })} /> : null}
          <ConnectorForm
            overrides={overrides}
            key={type.slug}
            type={type}
            submitLabel="Create connector"
            onSubmit={async ({ name, config }) => {
              const created = await ok(api.POST("/api/v1/connectors/", { body: { workspace: workspace ?? undefined, name, connector_type: type.slug, config } }));
              void client.invalidateQueries({ queryKey: ["connectors"] });
              toast("success", `Created ${created.name}.`);
              router.push(`/connectors/view?id=${created.id}`);
            }}
          />
        </Card>
      ) : (
        <TypePicker types={types.data.results} onPick={setType} />
      )}
    </AppShell>
  );
}
