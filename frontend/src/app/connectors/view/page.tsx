"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { PlugZap, Trash2 } from "lucide-react";
import dynamic from "next/dynamic";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useState } from "react";

import { ApiError, api, ok } from "@/api/client";
import type { Connector, Stream } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { DiscoverPanel, PreviewPanel, ProfilePanel } from "@/components/ConnectorStreams";
import { NotFound } from "@/components/NotFound";
import { UploadField } from "@/components/UploadField";
import { Tabs } from "@/components/Tabs";
import { Button, Card, ConfirmDialog, ErrorNote, Loading, PageHeader, StatusBadge } from "@/components/ui";
import { takesFiles } from "@/lib/configSchema";
import { ago } from "@/lib/format";
import { idParam, useConnectorTypes } from "@/lib/queries";
import { useCan } from "@/lib/session";
import { toastError, useUi } from "@/lib/store";

// The JSON-Schema form library (@rjsf + ajv) is large: loaded when a form is shown, not with the page.
const ConnectorForm = dynamic(() => import("@/components/ConnectorForm").then((m) => m.ConnectorForm), {
  ssr: false,
  loading: () => <Loading label="Loading the form…" />,
});

type Tab = "settings" | "streams" | "preview" | "profile";
type LastCheck = { status: string; message: string; at: string | null };

function ConnectorDetail() {
  const id = idParam(useSearchParams());
  const connector = useQuery({
    queryKey: ["connector", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/connectors/{id}/", { params: { path: { id: id! } }, signal })),
    enabled: id !== null,
  });
  if (id === null || (connector.error instanceof ApiError && connector.error.status === 404)) return <NotFound what="Connector" />;
  if (connector.isPending) return <Loading />;
  if (connector.isError) return <ErrorNote error={connector.error} />;
  return <ConnectorView connector={connector.data} />;
}

function ConnectorView({ connector }: { connector: Connector }) {
  const types = useConnectorTypes();
  const type = types.data?.results.find((t) => t.slug === connector.connector_type);
  const canEdit = useCan("editor", connector.workspace);
  const client = useQueryClient();
  const router = useRouter();
  const toast = useUi((s) => s.toast);
  const [tab, setTab] = useState<Tab>("settings");
  const [streams, setStreams] = useState<Stream[]>([]);
  const [checking, setChecking] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [overrides, setOverrides] = useState<Record<string, unknown> | undefined>(undefined);
  const check = connector.last_check as LastCheck;

  const testConnection = async () => {
    setChecking(true);
    try {
      const result = await ok(api.POST("/api/v1/connectors/{id}/check/", { params: { path: { id: connector.id } } }));
      client.setQueryData<Connector>(["connector", connector.id], (old) => (old ? { ...old, last_check: { status: result.status, message: result.message, at: result.at } } : old));
      void client.invalidateQueries({ queryKey: ["connectors"] });
    } catch (error) {
      toastError(error);
    } finally {
      setChecking(false);
    }
  };
  const remove = async () => {
    setDeleting(true);
    try {
      await ok(api.DELETE("/api/v1/connectors/{id}/", { params: { path: { id: connector.id } } }));
      void client.invalidateQueries({ queryKey: ["connectors"] });
      toast("success", `Deleted ${connector.name}.`);
      router.replace("/connectors");
    } catch (error) {
      toastError(error);
      setDeleting(false);
    }
  };

  return (
    <>
      <PageHeader
        title={connector.name}
        actions={
          canEdit ? (
            <>
              <Button onClick={() => void testConnection()} busy={checking}>
                <PlugZap aria-hidden className="size-4" /> {checking ? "Testing…" : "Test connection"}
              </Button>
              <Button variant="danger" onClick={() => setConfirmDelete(true)}>
                <Trash2 aria-hidden className="size-4" /> Delete
              </Button>
            </>
          ) : null
        }
      >
        <p className="text-sm text-slate-700 dark:text-slate-300">{type?.title ?? connector.connector_type}</p>
      </PageHeader>
      <div aria-live="polite" data-testid="check-result" className="mb-4">
        {check.status !== "never" ? (
          <Card>
            <p className="flex flex-wrap items-center gap-2 text-sm">
              Last test: <StatusBadge status={check.status} /> {ago(check.at)}
            </p>
            {check.message ? <p className="mt-1 text-sm break-words">{check.message}</p> : null}
          </Card>
        ) : null}
      </div>
      <Tabs
        label="Connector"
        active={tab}
        onChange={setTab}
        tabs={[
          { id: "settings", label: "Settings" },
          { id: "streams", label: "Streams" },
          { id: "preview", label: "Preview" },
          { id: "profile", label: "Profile" },
        ]}
      >
        {tab === "settings" ? (
          type ? (
            <Card>
              {canEdit && takesFiles(type) ? <UploadField workspace={connector.workspace} onUploaded={(u) => setOverrides({ path: u.path })} /> : null}
              <ConnectorForm
                key={connector.updated_at}
                overrides={overrides}
                type={type}
                readOnly={!canEdit}
                initial={{ name: connector.name, config: connector.config as Record<string, unknown> }}
                submitLabel="Save changes"
                onSubmit={async ({ name, config }) => {
                  const saved = await ok(api.PATCH("/api/v1/connectors/{id}/", { params: { path: { id: connector.id } }, body: { name, config } }));
                  client.setQueryData(["connector", connector.id], saved);
                  void client.invalidateQueries({ queryKey: ["connectors"] });
                  toast("success", "Saved.");
                }}
              />
            </Card>
          ) : types.isError ? (
            <ErrorNote error={types.error} />
          ) : (
            <Loading />
          )
        ) : null}
        {tab === "streams" ? <DiscoverPanel connectorId={connector.id} canDiscover={canEdit} onStreams={setStreams} /> : null}
        {tab === "preview" ? <PreviewPanel connectorId={connector.id} streams={streams} /> : null}
        {tab === "profile" ? <ProfilePanel connectorId={connector.id} streams={streams} /> : null}
      </Tabs>
      <ConfirmDialog open={confirmDelete} title={`Delete ${connector.name}?`} confirmLabel="Delete connector" busy={deleting} onCancel={() => setConfirmDelete(false)} onConfirm={() => void remove()}>
        Pipelines that use it will fail validation until they point at another connector.
      </ConfirmDialog>
    </>
  );
}

export default function ConnectorPage() {
  return (
    <AppShell>
      <Suspense fallback={<Loading />}>
        <ConnectorDetail />
      </Suspense>
    </AppShell>
  );
}
