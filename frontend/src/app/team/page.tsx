"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Copy, Trash2 } from "lucide-react";
import { useState } from "react";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { api, ok } from "@/api/client";
import type { ApiKey, ApiKeyCreated, Invitation, Membership, Role } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { Profile } from "@/components/Profile";
import { Button, Card, ConfirmDialog, Empty, ErrorNote, Field, inputClass, Loading, PageHeader } from "@/components/ui";
import { ago } from "@/lib/format";
import { applyApiError } from "@/lib/forms";
import { useCan, useMe, useWorkspace } from "@/lib/session";
import { toastError, useUi } from "@/lib/store";

const ROLES: Role[] = ["viewer", "editor", "admin"];

function Members({ workspaceId, isAdmin }: { workspaceId: number; isAdmin: boolean }) {
  const client = useQueryClient();
  const me = useMe();
  const [removing, setRemoving] = useState<Membership | null>(null);
  const members = useQuery({
    queryKey: ["members", workspaceId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/workspaces/{workspace_pk}/members/", { params: { path: { workspace_pk: String(workspaceId) }, query: { limit: 500 } }, signal })),
  });
  const setRole = async (m: Membership, role: Role) => {
    try {
      await ok(api.PATCH("/api/v1/workspaces/{workspace_pk}/members/{id}/", { params: { path: { workspace_pk: String(workspaceId), id: m.id } }, body: { role } }));
      void client.invalidateQueries({ queryKey: ["members", workspaceId] });
      void client.invalidateQueries({ queryKey: ["me"] });
    } catch (error) {
      toastError(error);
    }
  };
  const remove = async () => {
    if (!removing) return;
    try {
      await ok(api.DELETE("/api/v1/workspaces/{workspace_pk}/members/{id}/", { params: { path: { workspace_pk: String(workspaceId), id: removing.id } } }));
      void client.invalidateQueries({ queryKey: ["members", workspaceId] });
    } catch (error) {
      toastError(error);
    } finally {
      setRemoving(null);
    }
  };
  return (
    <Card title="Members">
      {members.isPending ? (
        <Loading />
      ) : members.isError ? (
        <ErrorNote error={members.error} />
      ) : (
        <ul className="divide-y divide-slate-100 dark:divide-slate-700">
          {members.data.results.map((m) => (
            <li key={m.id} className="flex flex-wrap items-center justify-between gap-2 py-2 text-sm">
              <span>
                <span className="font-medium">{m.user.full_name || m.user.email}</span>
                {m.user.full_name ? <span className="block text-xs text-slate-600 dark:text-slate-400">{m.user.email}</span> : null}
              </span>
              {isAdmin && m.user.id !== me.data?.id ? (
                <span className="flex items-center gap-2">
                  <label className="sr-only" htmlFor={`role-${m.id}`}>
                    Role of {m.user.email}
                  </label>
                  <select id={`role-${m.id}`} value={m.role} onChange={(e) => void setRole(m, e.target.value as Role)} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
                    {ROLES.map((r) => (
                      <option key={r}>{r}</option>
                    ))}
                  </select>
                  <Button variant="ghost" onClick={() => setRemoving(m)} aria-label={`Remove ${m.user.email}`}>
                    <Trash2 aria-hidden className="size-4" />
                  </Button>
                </span>
              ) : (
                <span className="rounded bg-slate-100 px-2 py-0.5 text-xs dark:bg-slate-700">{m.role}</span>
              )}
            </li>
          ))}
        </ul>
      )}
      <ConfirmDialog open={removing !== null} title="Remove this member?" confirmLabel="Remove" onCancel={() => setRemoving(null)} onConfirm={() => void remove()}>
        {removing?.user.email} loses access to this workspace at once.
      </ConfirmDialog>
    </Card>
  );
}

const inviteSchema = z.object({ email: z.email("Enter an email address."), role: z.enum(["viewer", "editor", "admin"]) });
type InviteValues = z.infer<typeof inviteSchema>;

function Invitations({ workspaceId }: { workspaceId: number }) {
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const invitations = useQuery({
    queryKey: ["invitations", workspaceId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/workspaces/{workspace_pk}/invitations/", { params: { path: { workspace_pk: String(workspaceId) }, query: { limit: 100 } }, signal })),
  });
  const {
    register,
    handleSubmit,
    setError,
    reset,
    formState: { errors, isSubmitting },
  } = useForm<InviteValues>({ resolver: zodResolver(inviteSchema), defaultValues: { role: "viewer", email: "" } });
  const onSubmit = handleSubmit(async (values) => {
    try {
      await ok(api.POST("/api/v1/workspaces/{workspace_pk}/invitations/", { params: { path: { workspace_pk: String(workspaceId) } }, body: values }));
      reset({ role: values.role, email: "" });
      toast("success", `Invitation sent to ${values.email}.`);
      void client.invalidateQueries({ queryKey: ["invitations", workspaceId] });
    } catch (error) {
      applyApiError(error, setError, ["email", "role"]);
    }
  });
  const [revoking, setRevoking] = useState<Invitation | null>(null);
  const revoke = async () => {
    if (!revoking) return;
    try {
      await ok(api.DELETE("/api/v1/workspaces/{workspace_pk}/invitations/{id}/", { params: { path: { workspace_pk: String(workspaceId), id: revoking.id } } }));
      void client.invalidateQueries({ queryKey: ["invitations", workspaceId] });
    } catch (error) {
      toastError(error);
    } finally {
      setRevoking(null);
    }
  };
  return (
    <Card title="Invitations">
      <form onSubmit={onSubmit} noValidate className="mb-4 grid gap-3 sm:grid-cols-[1fr_auto_auto] sm:items-end">
        <Field label="Email" errors={errors.email?.message ? [errors.email.message] : undefined}>
          {(p) => <input {...p} {...register("email")} type="email" className={inputClass} />}
        </Field>
        <Field label="Role" errors={errors.role?.message ? [errors.role.message] : undefined}>
          {(p) => (
            <select {...p} {...register("role")} className={inputClass}>
              {ROLES.map((r) => (
                <option key={r}>{r}</option>
              ))}
            </select>
          )}
        </Field>
        <Button type="submit" variant="primary" busy={isSubmitting}>
          Invite
        </Button>
      </form>
      {invitations.isPending ? (
        <Loading />
      ) : invitations.isError ? (
        <ErrorNote error={invitations.error} />
      ) : invitations.data.results.length === 0 ? (
        <Empty>No invitations.</Empty>
      ) : (
        <ul className="divide-y divide-slate-100 text-sm dark:divide-slate-700">
          {invitations.data.results.map((inv) => (
            <li key={inv.id} className="flex flex-wrap items-center justify-between gap-2 py-2">
              <span>
                {inv.email} · {inv.role} · {inv.status}
                <span className="block text-xs text-slate-600 dark:text-slate-400">sent {ago(inv.created_at)}</span>
              </span>
              {inv.status === "pending" ? (
                <Button variant="ghost" onClick={() => setRevoking(inv)}>
                  Revoke
                </Button>
              ) : null}
            </li>
          ))}
        </ul>
      )}
      <ConfirmDialog open={revoking !== null} title="Revoke this invitation?" confirmLabel="Revoke invitation" onCancel={() => setRevoking(null)} onConfirm={() => void revoke()}>
        The link sent to {revoking?.email} stops working.
      </ConfirmDialog>
    </Card>
  );
}

function ApiKeys({ workspaceId }: { workspaceId: number }) {
  const client = useQueryClient();
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [name, setName] = useState("");
  const [scope, setScope] = useState<"read" | "write">("read");
  const [fieldErrors, setFieldErrors] = useState<Record<string, string[]>>({});
  const keys = useQuery({
    queryKey: ["api-keys", workspaceId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/api-keys/", { params: { query: { workspace: workspaceId, limit: 100 } }, signal })),
  });
  const create = async () => {
    setFieldErrors({});
    try {
      const key = await ok(api.POST("/api/v1/api-keys/", { body: { workspace: workspaceId, name, scopes: scope === "write" ? ["read", "write"] : ["read"] } }));
      setCreated(key);
      setName("");
      void client.invalidateQueries({ queryKey: ["api-keys", workspaceId] });
    } catch (error) {
      const fields = (error as { fields?: Record<string, string[]> }).fields;
      if (fields && Object.keys(fields).length) setFieldErrors(fields);
      else toastError(error);
    }
  };
  const revoke = async () => {
    if (!revoking) return;
    try {
      await ok(api.DELETE("/api/v1/api-keys/{id}/", { params: { path: { id: revoking.id } } }));
      void client.invalidateQueries({ queryKey: ["api-keys", workspaceId] });
    } catch (error) {
      toastError(error);
    } finally {
      setRevoking(null);
    }
  };
  return (
    <Card title="API keys">
      <form
        className="mb-4 grid gap-3 sm:grid-cols-[1fr_auto_auto] sm:items-end"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <Field label="Key name" errors={fieldErrors.name}>
          {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} className={inputClass} />}
        </Field>
        <Field label="Access" errors={fieldErrors.scopes}>
          {(p) => (
            <select {...p} value={scope} onChange={(e) => setScope(e.target.value as "read" | "write")} className={inputClass}>
              <option value="read">read</option>
              <option value="write">read and write</option>
            </select>
          )}
        </Field>
        <Button type="submit" variant="primary" disabled={!name.trim()}>
          Create key
        </Button>
      </form>
      {created ? (
        <div role="status" className="mb-4 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
          <p className="font-semibold">Copy this key now: it is shown only once.</p>
          <p className="mt-1 flex flex-wrap items-center gap-2">
            <code className="rounded bg-white px-1.5 py-0.5 break-all text-slate-900">{created.key}</code>
            <Button onClick={() => void navigator.clipboard?.writeText(created.key)}>
              <Copy aria-hidden className="size-4" /> Copy
            </Button>
            <Button variant="ghost" onClick={() => setCreated(null)}>
              Done
            </Button>
          </p>
        </div>
      ) : null}
      {keys.isPending ? (
        <Loading />
      ) : keys.isError ? (
        <ErrorNote error={keys.error} />
      ) : keys.data.results.length === 0 ? (
        <Empty>No API keys.</Empty>
      ) : (
        <ul className="divide-y divide-slate-100 text-sm dark:divide-slate-700">
          {keys.data.results.map((k) => (
            <li key={k.id} className="flex flex-wrap items-center justify-between gap-2 py-2">
              <span>
                <span className="font-medium">{k.name}</span> <code className="text-xs">{k.prefix}…</code> · {k.scopes.join(", ")}
                <span className="block text-xs text-slate-600 dark:text-slate-400">
                  {k.is_active ? `last used ${ago(k.last_used_at)}` : k.revoked_at ? `revoked ${ago(k.revoked_at)}` : "expired"}
                </span>
              </span>
              {k.is_active ? (
                <Button variant="ghost" onClick={() => setRevoking(k)}>
                  Revoke
                </Button>
              ) : null}
            </li>
          ))}
        </ul>
      )}
      <ConfirmDialog open={revoking !== null} title={`Revoke ${revoking?.name ?? "key"}?`} confirmLabel="Revoke key" onCancel={() => setRevoking(null)} onConfirm={() => void revoke()}>
        Clients using it are refused at once.
      </ConfirmDialog>
    </Card>
  );
}

function Team() {
  const { id, current } = useWorkspace();
  const isAdmin = useCan("admin");
  if (id === null) return <Empty>You are not a member of any workspace.</Empty>;
  return (
    <>
      <PageHeader title="Team and settings">
        <p className="text-sm text-slate-700 dark:text-slate-300">
          {current?.name} · your role: {current?.role}
        </p>
      </PageHeader>
      <div className="grid gap-4 lg:grid-cols-2">
        <Members workspaceId={id} isAdmin={isAdmin} />
        <Profile />
        {isAdmin ? <Invitations workspaceId={id} /> : null}
        {isAdmin ? <ApiKeys workspaceId={id} /> : null}
      </div>
    </>
  );
}

export default function TeamPage() {
  return (
    <AppShell>
      <Team />
    </AppShell>
  );
}
