"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState } from "react";

import { api, ok } from "@/api/client";
import type { components } from "@/api/schema";
import { SecretOnce } from "@/components/SecretOnce";
import { Button, Card, ConfirmDialog, Empty, ErrorNote, Field, inputClass, Loading } from "@/components/ui";
import { useSubmit } from "@/lib/forms";
import { ago } from "@/lib/format";
import { toastError } from "@/lib/store";

type S = components["schemas"];
type TriggerWithSecret = S["PipelineTriggerWithSecret"];
type PushStreamWithSecrets = S["PushStreamWithSecrets"];

/** How a caller signs a request (Standard Webhooks), for the URL just made. */
function SigningHint({ url }: { url: string }) {
  return (
    <details className="mt-2 text-xs text-slate-700 dark:text-slate-300">
      <summary className="cursor-pointer">How to call it</summary>
      <p className="mt-1">
        POST JSON to <code className="break-all">{url}</code> with the headers <code>webhook-id</code> (unique per
        message), <code>webhook-timestamp</code> (Unix seconds) and <code>webhook-signature</code> (<code>v1,</code> +
        base64 HMAC-SHA256 of <code>id.timestamp.body</code> with the signing secret), as any Standard Webhooks
        library signs them. Requests older than five minutes or replayed are refused.
      </p>
    </details>
  );
}

function DeleteButton({ label, remove, onDeleted }: { label: string; remove: () => Promise<unknown>; onDeleted: () => void }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  return (
    <>
      <Button variant="ghost" onClick={() => setOpen(true)} aria-label={`Delete ${label}`}>
        Delete
      </Button>
      <ConfirmDialog
        open={open}
        title={`Delete ${label}?`}
        confirmLabel="Delete"
        busy={busy}
        onCancel={() => setOpen(false)}
        onConfirm={async () => {
          setBusy(true);
          try {
            await remove();
            setOpen(false);
            onDeleted();
          } catch (error) {
            toastError(error);
          } finally {
            setBusy(false);
          }
        }}
      >
        Calls to its URL will be refused from now on.
      </ConfirmDialog>
    </>
  );
}

/** Incoming webhooks that start a run of a pipeline: list, create (secret shown once), delete. */
export function PipelineTriggers({ workspaceId, canEdit }: { workspaceId: number; canEdit: boolean }) {
  const client = useQueryClient();
  const [pipeline, setPipeline] = useState("");
  const { busy, errors, submit } = useSubmit();
  const [created, setCreated] = useState<TriggerWithSecret | null>(null);
  const triggers = useQuery({
    queryKey: ["pipeline-triggers", workspaceId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipeline-triggers/", { params: { query: { workspace: workspaceId, limit: 500 } }, signal })),
  });
  const pipelines = useQuery({
    queryKey: ["pipelines", workspaceId, "names"],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/pipelines/", { params: { query: { workspace: workspaceId, limit: 500 } }, signal })),
  });
  const names = new Map((pipelines.data?.results ?? []).map((p) => [p.id, p.name]));
  const refresh = () => void client.invalidateQueries({ queryKey: ["pipeline-triggers"] });
  return (
    <div className="grid gap-4 lg:grid-cols-[2fr_1fr]">
      <Card title="Pipeline triggers">
        {created ? (
          <>
            <SecretOnce label={`Signing secret of the trigger for ${names.get(created.pipeline) ?? `pipeline ${created.pipeline}`}`} value={created.signing_secret} onDone={() => setCreated(null)} />
            <SigningHint url={created.url} />
          </>
        ) : null}
        {triggers.isPending ? (
          <Loading />
        ) : triggers.isError ? (
          <ErrorNote error={triggers.error} />
        ) : triggers.data.results.length === 0 ? (
          <Empty>No triggers yet: a trigger gives a pipeline a signed URL that starts a run.</Empty>
        ) : (
          <ul className="divide-y divide-slate-100 text-sm dark:divide-slate-700" data-testid="trigger-list">
            {triggers.data.results.map((t) => (
              <li key={t.id} className="flex flex-wrap items-start justify-between gap-2 py-2">
                <span className="min-w-0">
                  <Link href={`/pipelines/view?id=${t.pipeline}`} className="font-medium text-indigo-700 hover:underline dark:text-indigo-300">
                    {names.get(t.pipeline) ?? `Pipeline ${t.pipeline}`}
                  </Link>
                  <code className="block text-xs break-all text-slate-700 dark:text-slate-300">{t.url}</code>
                  <span className="block text-xs text-slate-700 dark:text-slate-300">
                    {t.last_triggered_at ? `last called ${ago(t.last_triggered_at)}` : "never called"} · made {ago(t.created_at)}
                  </span>
                </span>
                {canEdit ? <DeleteButton label={`the trigger of ${names.get(t.pipeline) ?? `pipeline ${t.pipeline}`}`} remove={() => ok(api.DELETE("/api/v1/pipeline-triggers/{id}/", { params: { path: { id: t.id } } }))} onDeleted={refresh} /> : null}
              </li>
            ))}
          </ul>
        )}
      </Card>
      {canEdit ? (
        <Card title="Add a trigger">
          <form
            className="grid gap-3"
            onSubmit={(e) => {
              e.preventDefault();
              void submit(async () => {
                setCreated(await ok(api.POST("/api/v1/pipeline-triggers/", { body: { pipeline: Number(pipeline) } })));
                setPipeline("");
                refresh();
              });
            }}
          >
            <Field label="Pipeline" errors={errors.pipeline}>
              {(p) => (
                <select {...p} required value={pipeline} onChange={(e) => setPipeline(e.target.value)} className={inputClass}>
                  <option value="">Choose a pipeline…</option>
                  {(pipelines.data?.results ?? []).map((p) => (
                    <option key={p.id} value={p.id}>
                      {p.name}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <div>
              <Button type="submit" variant="primary" busy={busy} disabled={!pipeline}>
                Add trigger
              </Button>
            </div>
          </form>
        </Card>
      ) : null}
    </div>
  );
}

/**
 * Push streams: a signed URL that takes JSON records. Made here with its read key shown once, which is why
 * the same screen offers to add the source connector that reads it right away.
 */
export function PushStreams({ workspaceId, canEdit }: { workspaceId: number; canEdit: boolean }) {
  const client = useQueryClient();
  const [name, setName] = useState("");
  const { busy, errors, submit } = useSubmit();
  const [created, setCreated] = useState<PushStreamWithSecrets | null>(null);
  const [connector, setConnector] = useState<{ id: number; name: string } | null>(null);
  const streams = useQuery({
    queryKey: ["push-streams", workspaceId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/push-streams/", { params: { query: { workspace: workspaceId, limit: 500 } }, signal })),
  });
  const refresh = () => void client.invalidateQueries({ queryKey: ["push-streams"] });
  const addConnector = async (stream: PushStreamWithSecrets) => {
    try {
      const made = await ok(api.POST("/api/v1/connectors/", { body: {
        workspace: workspaceId,
        name: `${stream.name} (push)`,
        connector_type: "push_stream",
        config: { stream_id: stream.id, read_key: stream.read_key },
      } }));
      setConnector(made);
      void client.invalidateQueries({ queryKey: ["connectors"] });
    } catch (error) {
      toastError(error);
    }
  };
  return (
    <div className="grid gap-4 lg:grid-cols-[2fr_1fr]">
      <Card title="Push streams">
        {created ? (
          <div className="mb-4">
            <SecretOnce label={`Signing secret of ${created.name}`} value={created.signing_secret} onDone={() => setCreated(null)} />
            <SecretOnce label={`Read key of ${created.name}`} value={created.read_key} onDone={() => setCreated(null)} />
            <SigningHint url={created.url} />
            {connector ? (
              <p className="mt-2 text-sm" role="status">
                Source connector{" "}
                <Link href={`/connectors/view?id=${connector.id}`} className="font-medium text-indigo-700 hover:underline dark:text-indigo-300">
                  {connector.name}
                </Link>{" "}
                reads this stream.
              </p>
            ) : (
              <Button className="mt-2" onClick={() => void addConnector(created)}>
                Add a source connector for it
              </Button>
            )}
          </div>
        ) : null}
        {streams.isPending ? (
          <Loading />
        ) : streams.isError ? (
          <ErrorNote error={streams.error} />
        ) : streams.data.results.length === 0 ? (
          <Empty>No push streams yet: a push stream takes JSON records at a signed URL; pipelines read it.</Empty>
        ) : (
          <ul className="divide-y divide-slate-100 text-sm dark:divide-slate-700" data-testid="push-stream-list">
            {streams.data.results.map((s) => (
              <li key={s.id} className="flex flex-wrap items-start justify-between gap-2 py-2">
                <span className="min-w-0">
                  <span className="font-medium">{s.name}</span>
                  <code className="block text-xs break-all text-slate-700 dark:text-slate-300">{s.url}</code>
                  <span className="block text-xs text-slate-700 dark:text-slate-300" data-testid={`push-stream-${s.id}-count`}>
                    {s.last_seq === 0 ? "no records yet" : `${s.last_seq.toLocaleString()} record${s.last_seq === 1 ? "" : "s"} received`} · made {ago(s.created_at)}
                  </span>
                </span>
                {canEdit ? <DeleteButton label={`push stream ${s.name}`} remove={() => ok(api.DELETE("/api/v1/push-streams/{id}/", { params: { path: { id: s.id } } }))} onDeleted={refresh} /> : null}
              </li>
            ))}
          </ul>
        )}
      </Card>
      {canEdit ? (
        <Card title="Add a push stream">
          <form
            className="grid gap-3"
            onSubmit={(e) => {
              e.preventDefault();
              setConnector(null);
              void submit(async () => {
                setCreated(await ok(api.POST("/api/v1/push-streams/", { body: { workspace: workspaceId, name } })));
                setName("");
                refresh();
              });
            }}
          >
            <Field label="Stream name" errors={errors.name}>
              {(p) => <input {...p} required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} placeholder="orders" className={inputClass} />}
            </Field>
            <div>
              <Button type="submit" variant="primary" busy={busy} disabled={!name.trim()}>
                Add push stream
              </Button>
            </div>
          </form>
        </Card>
      ) : null}
    </div>
  );
}
