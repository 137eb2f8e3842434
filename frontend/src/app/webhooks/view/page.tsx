"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { KeyRound, Send, Trash2 } from "lucide-react";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useId, useState } from "react";

import { ApiError, api, ok, serverDefaults } from "@/api/client";
import type { Delivery } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { NotFound } from "@/components/NotFound";
import { SecretOnce } from "@/components/SecretOnce";
import { Button, Card, ConfirmDialog, Empty, ErrorNote, Loading, PageHeader, Pager, StatusBadge } from "@/components/ui";
import { ago, when } from "@/lib/format";
import { idParam } from "@/lib/queries";
import { useCan } from "@/lib/session";
import { toastError, useUi } from "@/lib/store";

function Deliveries({ webhookId, canEdit }: { webhookId: number; canEdit: boolean }) {
  const client = useQueryClient();
  const [status, setStatus] = useState("");
  const [offset, setOffset] = useState(0);
  const selectId = useId();
  const deliveries = useQuery({
    queryKey: ["deliveries", webhookId, status, offset],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/webhooks/{id}/deliveries/", { params: { path: { id: webhookId }, query: { status: (status || undefined) as Delivery["status"] | undefined, limit: 25, offset } }, signal })),
    refetchInterval: (q) => (q.state.data?.results.some((d) => d.status === "pending" || d.status === "sending") ? 3000 : false),
  });
  const redeliver = async (d: Delivery) => {
    try {
      await ok(api.POST("/api/v1/webhook-deliveries/{id}/redeliver/", { params: { path: { id: d.id } } }));
      void client.invalidateQueries({ queryKey: ["deliveries", webhookId] });
    } catch (error) {
      toastError(error);
    }
  };
  return (
    <Card
      title="Deliveries"
      actions={
        <span className="flex items-center gap-2 text-sm">
          <label htmlFor={selectId}>Status</label>
          <select id={selectId} value={status} onChange={(e) => { setStatus(e.target.value); setOffset(0); }} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
            {["", "pending", "sending", "succeeded", "failed"].map((s) => (
              <option key={s} value={s}>{s || "all"}</option>
            ))}
          </select>
        </span>
      }
    >
      {deliveries.isPending ? (
        <Loading />
      ) : deliveries.isError ? (
        <ErrorNote error={deliveries.error} />
      ) : deliveries.data.results.length === 0 ? (
        <Empty>No deliveries.</Empty>
      ) : (
        <ul className="space-y-2">
          {deliveries.data.results.map((d) => (
            <li key={d.id} className="rounded-md border border-slate-200 p-2 text-sm dark:border-slate-700">
              <details>
                <summary className="flex cursor-pointer flex-wrap items-center gap-2">
                  <StatusBadge status={d.status} />
                  <span className="font-mono">{d.event_type}</span>
                  {d.is_test ? <span className="text-xs">(test)</span> : null}
                  <span className="text-xs text-slate-700 dark:text-slate-300">
                    {d.attempt_count} attempt{d.attempt_count === 1 ? "" : "s"} · {ago(d.created_at)}
                    {d.next_attempt_at ? ` · next try ${ago(d.next_attempt_at).replace(" ago", "")}` : ""}
                  </span>
                </summary>
                <ol className="mt-2 space-y-1" aria-label="Attempts">
                  {d.attempts.map((a) => (
                    <li key={a.number} className="rounded bg-slate-50 p-1.5 text-xs dark:bg-slate-900">
                      #{a.number} {when(a.started_at)} · {a.outcome} · {a.response_status ?? "no response"} · {a.latency_ms} ms
                      {a.error ? <span className="block text-red-800 dark:text-red-300">{a.error}</span> : null}
                      {a.response_body ? <pre className="mt-1 max-h-24 overflow-auto whitespace-pre-wrap">{a.response_body}</pre> : null}
                    </li>
                  ))}
                </ol>
                {canEdit ? (
                  <Button className="mt-2" onClick={() => void redeliver(d)}>
                    Redeliver
                  </Button>
                ) : null}
              </details>
            </li>
          ))}
        </ul>
      )}
      {deliveries.data ? <Pager offset={offset} limit={25} count={deliveries.data.count} onChange={setOffset} label="Deliveries" /> : null}
    </Card>
  );
}

function WebhookDetail() {
  const id = idParam(useSearchParams());
  const client = useQueryClient();
  const router = useRouter();
  const toast = useUi((s) => s.toast);
  const hook = useQuery({
    queryKey: ["webhook", id],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/webhooks/{id}/", { params: { path: { id: id! } }, signal })),
    enabled: id !== null,
  });
  const canEdit = useCan("editor", hook.data?.workspace);
  const [secret, setSecret] = useState<string | null>(null);
  const [confirm, setConfirm] = useState<"rotate" | "delete" | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  if (id === null || (hook.error instanceof ApiError && hook.error.status === 404)) return <NotFound what="Webhook" />;
  if (hook.isPending) return <Loading />;
  if (hook.isError) return <ErrorNote error={hook.error} />;
  const w = hook.data;
  const run = async (name: string, action: () => Promise<void>) => {
    setBusy(name);
    try {
      await action();
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(null);
      setConfirm(null);
    }
  };
  return (
    <>
      <PageHeader
        title={<span className="break-all">{w.url}</span>}
        actions={
          canEdit ? (
            <>
              <Button busy={busy === "test"} onClick={() => void run("test", async () => {
                await ok(api.POST("/api/v1/webhooks/{id}/test/", { params: { path: { id: w.id } } }));
                toast("info", "Test event queued.");
                void client.invalidateQueries({ queryKey: ["deliveries", w.id] });
              })}>
                <Send aria-hidden className="size-4" /> Send test
              </Button>
              <Button busy={busy === "active"} onClick={() => void run("active", async () => {
                client.setQueryData(["webhook", w.id], await ok(api.PATCH("/api/v1/webhooks/{id}/", { params: { path: { id: w.id } }, body: { is_active: !w.is_active } })));
              })}>
                {w.is_active ? "Disable" : "Enable"}
              </Button>
              <Button onClick={() => setConfirm("rotate")}>
                <KeyRound aria-hidden className="size-4" /> Rotate secret
              </Button>
              <Button variant="danger" onClick={() => setConfirm("delete")}>
                <Trash2 aria-hidden className="size-4" /> Delete
              </Button>
            </>
          ) : null
        }
      >
        <p className="text-sm text-slate-700 dark:text-slate-300">
          {Array.isArray(w.event_types) && w.event_types.length ? w.event_types.join(", ") : "all events"} · {w.is_active ? "active" : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ""}`}
          {w.previous_secret_expires_at ? ` · previous secret valid until ${when(w.previous_secret_expires_at)}` : ""}
        </p>
        {w.description ? <p className="text-sm">{w.description}</p> : null}
      </PageHeader>
      {secret ? <SecretOnce label="New signing secret" value={secret} onDone={() => setSecret(null)} /> : null}
      <Deliveries webhookId={w.id} canEdit={canEdit} />
      <ConfirmDialog
        open={confirm === "rotate"}
        title="Rotate the signing secret?"
        confirmLabel="Rotate secret"
        busy={busy === "rotate"}
        onCancel={() => setConfirm(null)}
        onConfirm={() => void run("rotate", async () => {
          const updated = await ok(api.POST("/api/v1/webhooks/{id}/rotate-secret/", { params: { path: { id: w.id } }, body: serverDefaults() }));
          setSecret(updated.signing_secret);
          client.setQueryData(["webhook", w.id], updated);
        })}
      >
        For a day, deliveries are signed with the old secret as well, so the receiver can switch over.
      </ConfirmDialog>
      <ConfirmDialog
        open={confirm === "delete"}
        title="Delete this webhook?"
        confirmLabel="Delete webhook"
        busy={busy === "delete"}
        onCancel={() => setConfirm(null)}
        onConfirm={() => void run("delete", async () => {
          await ok(api.DELETE("/api/v1/webhooks/{id}/", { params: { path: { id: w.id } } }));
          void client.invalidateQueries({ queryKey: ["webhooks"] });
          router.replace("/webhooks");
        })}
      >
        Pending deliveries are dropped.
      </ConfirmDialog>
    </>
  );
}

export default function WebhookPage() {
  return (
    <AppShell>
      <Suspense fallback={<Loading />}>
        <WebhookDetail />
      </Suspense>
    </AppShell>
  );
}
