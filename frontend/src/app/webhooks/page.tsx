"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState } from "react";

import { api, ok } from "@/api/client";
import type { WebhookWithSecret } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { PipelineTriggers, PushStreams } from "@/components/IncomingHooks";
import { SecretOnce } from "@/components/SecretOnce";
import { Tabs } from "@/components/Tabs";
import { Button, Card, Empty, ErrorNote, Field, inputClass, Loading, PageHeader, StatusBadge } from "@/components/ui";
import { useSubmit } from "@/lib/forms";
import { ago } from "@/lib/format";
import { useCan, useWorkspace } from "@/lib/session";

function eventTypesText(types: unknown): string {
  return Array.isArray(types) && types.length ? types.join(", ") : "all events";
}

function CreateWebhook({ workspaceId, onCreated }: { workspaceId: number; onCreated: (w: WebhookWithSecret) => void }) {
  const [url, setUrl] = useState("");
  const [types, setTypes] = useState("run.failed, run.succeeded");
  const [description, setDescription] = useState("");
  const { busy, errors, submit } = useSubmit();
  return (
    <form
      className="grid gap-3"
      onSubmit={(e) => {
        e.preventDefault();
        void submit(async () => {
          const event_types = types.split(",").map((t) => t.trim()).filter(Boolean);
          onCreated(await ok(api.POST("/api/v1/webhooks/", { body: { workspace: workspaceId, url, event_types, description } })));
          setUrl("");
          setDescription("");
        });
      }}
    >
      <Field label="Endpoint URL" errors={errors.url}>
        {(p) => <input {...p} type="url" required value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://example.com/hooks/aggregator" className={inputClass} />}
      </Field>
      <Field label="Events" hint='Comma-separated; "run.*" matches every run event; empty: all events.' errors={errors.event_types ?? errors["event_types.0"]}>
        {(p) => <input {...p} value={types} onChange={(e) => setTypes(e.target.value)} className={inputClass} />}
      </Field>
      <Field label="Description" errors={errors.description}>
        {(p) => <input {...p} value={description} onChange={(e) => setDescription(e.target.value)} className={inputClass} />}
      </Field>
      <div>
        <Button type="submit" variant="primary" busy={busy} disabled={!url}>
          Add webhook
        </Button>
      </div>
    </form>
  );
}

type Tab = "outgoing" | "triggers" | "push";

function Webhooks() {
  const { id } = useWorkspace();
  const [tab, setTab] = useState<Tab>("outgoing");
  const canEdit = useCan("editor");
  const client = useQueryClient();
  const [created, setCreated] = useState<WebhookWithSecret | null>(null);
  const hooks = useQuery({
    queryKey: ["webhooks", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/webhooks/", { params: { query: { workspace: id, limit: 100 } }, signal })),
    enabled: id !== null,
  });
  if (id === null) return <Empty>You are not a member of any workspace.</Empty>;
  const outgoing = (
    <>
      {created ? <SecretOnce label={`Signing secret of ${created.url}`} value={created.signing_secret} onDone={() => setCreated(null)} /> : null}
      <div className="grid gap-4 lg:grid-cols-[2fr_1fr]">
        <Card title="Endpoints">
          {hooks.isPending ? (
            <Loading />
          ) : hooks.isError ? (
            <ErrorNote error={hooks.error} />
          ) : hooks.data.results.length === 0 ? (
            <Empty>No webhooks yet.</Empty>
          ) : (
            <ul className="divide-y divide-slate-100 text-sm dark:divide-slate-700">
              {hooks.data.results.map((w) => (
                <li key={w.id} className="py-2">
                  <Link href={`/webhooks/view?id=${w.id}`} className="font-medium break-all text-indigo-700 hover:underline dark:text-indigo-300">
                    {w.url}
                  </Link>
                  <span className="block text-xs text-slate-700 dark:text-slate-300">
                    {eventTypesText(w.event_types)} · {w.is_active ? "active" : <StatusBadge status="disabled" />}
                    {w.consecutive_failures ? ` · ${w.consecutive_failures} failures in a row` : ""} · added {ago(w.created_at)}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </Card>
        {canEdit ? (
          <Card title="Add a webhook">
            <CreateWebhook
              workspaceId={id}
              onCreated={(w) => {
                setCreated(w);
                void client.invalidateQueries({ queryKey: ["webhooks"] });
              }}
            />
          </Card>
        ) : null}
      </div>
    </>
  );
  return (
    <>
      <PageHeader title="Webhooks">
        <p className="text-sm text-slate-700 dark:text-slate-300">
          Outgoing: events of this workspace, POSTed to your endpoints. Incoming: signed URLs that start a pipeline or take records. All signed (Standard Webhooks).
        </p>
      </PageHeader>
      <Tabs<Tab>
        label="Webhook kinds"
        active={tab}
        onChange={setTab}
        tabs={[
          { id: "outgoing", label: "Outgoing" },
          { id: "triggers", label: "Pipeline triggers" },
          { id: "push", label: "Push streams" },
        ]}
      >
        {tab === "triggers" ? (
          <PipelineTriggers workspaceId={id} canEdit={canEdit} />
        ) : tab === "push" ? (
          <PushStreams workspaceId={id} canEdit={canEdit} />
        ) : (
          outgoing
        )}
      </Tabs>
    </>
  );
}

export default function WebhooksPage() {
  return (
    <AppShell>
      <Webhooks />
    </AppShell>
  );
}
