"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Check, X } from "lucide-react";
import { useId, useState } from "react";

import { api, ok } from "@/api/client";
import type { SchemaChange, StreamSummary } from "@/api/types";
import { AppShell } from "@/components/AppShell";
import { Button, Card, Empty, ErrorNote, Loading, PageHeader } from "@/components/ui";
import { ago } from "@/lib/format";
import { useConnectors } from "@/lib/queries";
import { useCan, useWorkspace } from "@/lib/session";
import { toastError, useUi } from "@/lib/store";

interface Diff {
  added_fields?: string[];
  removed_fields?: string[];
  type_changes?: Record<string, { from?: unknown; to?: unknown }>;
  nullability_changes?: Record<string, { from?: unknown; to?: unknown }>;
  key_changes?: Record<string, { from?: unknown; to?: unknown }>;
}

/** A schema diff in words: "+ tailnum; − origin; dep_delay integer → string". */
function describeDiff(diff: unknown): string {
  const d = (diff ?? {}) as Diff;
  const parts: string[] = [];
  if (d.added_fields?.length) parts.push(`+ ${d.added_fields.join(", ")}`);
  if (d.removed_fields?.length) parts.push(`− ${d.removed_fields.join(", ")}`);
  for (const [field, change] of Object.entries(d.type_changes ?? {})) parts.push(`${field} ${String(change.from)} → ${String(change.to)}`);
  for (const [field, change] of Object.entries(d.nullability_changes ?? {})) parts.push(`${field} ${change.to ? "nullable" : "not null"}`);
  for (const [key, change] of Object.entries(d.key_changes ?? {})) parts.push(`${key} ${JSON.stringify(change.from)} → ${JSON.stringify(change.to)}`);
  return parts.join("; ") || "no field changes";
}

/** The contract settings that refused a change: a list of setting names, or settings with their values. */
function frozenText(frozen: unknown): string {
  if (Array.isArray(frozen)) return frozen.map(String).join(", ");
  if (frozen && typeof frozen === "object") return Object.entries(frozen as Record<string, unknown>).map(([k, v]) => `${k}: ${String(v)}`).join(", ");
  return String(frozen ?? "");
}

function PendingChanges({ workspaceId, canDecide, names }: { workspaceId: number | null; canDecide: boolean; names: Map<number, string> }) {
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const [busy, setBusy] = useState<string | null>(null);
  const changes = useQuery({
    queryKey: ["schema-changes", "pending"],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/schemas/changes/", { params: { query: { status: ["pending"], limit: 200 } }, signal })),
  });
  const decide = async (change: SchemaChange, action: "approve" | "reject") => {
    setBusy(`${action}-${change.id}`);
    try {
      await ok(
        action === "approve"
          ? api.POST("/api/v1/schemas/changes/{id}/approve/", { params: { path: { id: change.id } } })
          : api.POST("/api/v1/schemas/changes/{id}/reject/", { params: { path: { id: change.id } } }),
      );
      toast("success", `Change #${change.id} ${action === "approve" ? "approved" : "rejected"}.`);
      void client.invalidateQueries({ queryKey: ["schema-changes"] });
      void client.invalidateQueries({ queryKey: ["connector-streams"] });
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(null);
    }
  };
  const list = (changes.data?.results ?? []).filter((c) => c.workspace === workspaceId);
  return (
    <Card title="Pending drift changes">
      {changes.isPending ? (
        <Loading />
      ) : changes.isError ? (
        <ErrorNote error={changes.error} />
      ) : list.length === 0 ? (
        <Empty>No drift waits for a decision.</Empty>
      ) : (
        <ul className="space-y-2" data-testid="pending-changes">
          {list.map((c) => (
            <li key={c.id} data-change-id={c.id} className="rounded-md border border-amber-300 bg-amber-50 p-2 text-sm dark:border-amber-700 dark:bg-amber-950">
              <p className="font-semibold">
                #{c.id} · {names.get(c.connector) ?? `connector ${c.connector}`} · stream <span className="font-mono">{c.stream}</span> · version {c.from_version ?? "—"} → {c.to_version}
              </p>
              <p className="font-mono text-xs">{describeDiff(c.changes)}</p>
              <p className="text-xs text-slate-700 dark:text-slate-300">
                Refused by the contract (frozen: {frozenText(c.frozen)}), {ago(c.created_at)}. Runs reading this stream fail until it is decided.
              </p>
              {canDecide ? (
                <div className="mt-1 flex gap-2">
                  <Button variant="primary" busy={busy === `approve-${c.id}`} onClick={() => void decide(c, "approve")} aria-label={`Approve change #${c.id}`}>
                    <Check aria-hidden className="size-4" /> Approve
                  </Button>
                  <Button busy={busy === `reject-${c.id}`} onClick={() => void decide(c, "reject")} aria-label={`Reject change #${c.id}`}>
                    <X aria-hidden className="size-4" /> Reject
                  </Button>
                </div>
              ) : null}
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}

const POLICIES = ["evolve", "freeze", "discard_value", "discard_row"] as const;
const SETTINGS = [
  ["new_columns", "New columns"],
  ["type_changes", "Type changes"],
  ["new_tables", "New streams"],
] as const;

type Settings = StreamSummary["contract"];
const SOURCE_TEXT: Record<StreamSummary["contract_source"], string> = {
  stream: "its own",
  connector: "the connector's default",
  platform: "the platform's default",
};

/**
 * A contract's three settings, set by editors: `stream` "" is the connector's default (POST
 * schemas/contracts/ creates or replaces the row).
 */
function ContractForm({ connectorId, stream, contract, label }: { connectorId: number; stream: string; contract: Settings; label: string }) {
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const base = useId();
  const [values, setValues] = useState({ ...contract });
  const [busy, setBusy] = useState(false);
  const changed = SETTINGS.some(([key]) => values[key] !== contract[key]);
  const save = async () => {
    setBusy(true);
    try {
      await ok(api.POST("/api/v1/schemas/contracts/", { body: { connector: connectorId, stream, ...values } }));
      toast("success", `Contract of ${label} saved.`);
      void client.invalidateQueries({ queryKey: ["connector-streams", connectorId] });
    } catch (error) {
      toastError(error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="mt-1 flex flex-wrap items-end gap-2 text-xs" data-testid={`contract-${stream || "default"}`}>
      {SETTINGS.map(([key, setting]) => (
        <span key={key} className="flex flex-col">
          <label htmlFor={`${base}-${key}`}>{setting}</label>
          <select
            id={`${base}-${key}`}
            value={values[key]}
            onChange={(e) => setValues((v) => ({ ...v, [key]: e.target.value }))}
            className="rounded-md border border-slate-400 bg-white px-1 py-0.5 dark:bg-slate-900"
          >
            {POLICIES.map((p) => (
              <option key={p} value={p}>{p.replace("_", " ")}</option>
            ))}
          </select>
        </span>
      ))}
      <Button onClick={() => void save()} busy={busy} disabled={!changed} aria-label={`Save the contract of ${label}`}>
        Save contract
      </Button>
    </div>
  );
}

/** Drops a stream's own contract: the connector's default (or the platform's) holds again. */
function UseDefault({ connectorId, stream }: { connectorId: number; stream: StreamSummary }) {
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const [busy, setBusy] = useState(false);
  if (stream.contract_id === null) return null;
  return (
    <Button
      variant="ghost"
      busy={busy}
      aria-label={`Use the default contract for ${stream.stream}`}
      onClick={async () => {
        setBusy(true);
        try {
          await ok(api.DELETE("/api/v1/schemas/contracts/{id}/", { params: { path: { id: stream.contract_id! } } }));
          toast("success", `${stream.stream} follows the default contract again.`);
          void client.invalidateQueries({ queryKey: ["connector-streams", connectorId] });
        } catch (error) {
          toastError(error);
        } finally {
          setBusy(false);
        }
      }}
    >
      Use the default
    </Button>
  );
}

function StreamCard({ stream, connectorId, canEdit }: { stream: StreamSummary; connectorId: number; canEdit: boolean }) {
  return (
    <li className="rounded-md border border-slate-200 p-2 text-sm dark:border-slate-700">
      <p className="font-semibold">
        <span className="font-mono">{stream.stream}</span>
        {stream.is_removed ? " (removed)" : ""} · latest version {stream.latest_version} · accepted {stream.accepted_version ?? "none"}
      </p>
      <p className="flex flex-wrap items-center gap-x-2 text-xs text-slate-700 dark:text-slate-300" data-testid={`contract-source-${stream.stream}`}>
        Contract ({SOURCE_TEXT[stream.contract_source]}): new columns {stream.contract.new_columns}, type changes {stream.contract.type_changes}, new streams {stream.contract.new_tables}
        {canEdit ? <UseDefault connectorId={connectorId} stream={stream} /> : null}
      </p>
      {canEdit ? <ContractForm key={JSON.stringify(stream.contract)} connectorId={connectorId} stream={stream.stream} contract={stream.contract} label={stream.stream} /> : null}
      <ol className="mt-1 space-y-0.5 text-xs" aria-label={`Versions of ${stream.stream}`}>
        {stream.versions.map((v) => (
          <li key={v.version}>
            v{v.version} · {ago(v.discovered_at)} · {v.is_accepted ? "accepted" : "not accepted"}
            {v.is_removed ? " · removed" : ""} · <span className="font-mono">{describeDiff(v.changes)}</span>
          </li>
        ))}
      </ol>
    </li>
  );
}

function ConnectorSchemas({ connectorId, canEdit }: { connectorId: number; canEdit: boolean }) {
  const streams = useQuery({
    queryKey: ["connector-streams", connectorId],
    queryFn: ({ signal }) => ok(api.GET("/api/v1/schemas/connectors/{id}/streams/", { params: { path: { id: connectorId } }, signal })),
  });
  if (streams.isPending) return <Loading />;
  if (streams.isError) return <ErrorNote error={streams.error} />;
  const data = streams.data;
  return (
    <>
      <section aria-labelledby={`default-contract-${connectorId}`} className="mb-3 rounded-md bg-slate-50 p-2 text-sm dark:bg-slate-800" data-testid="default-contract">
        <h3 id={`default-contract-${connectorId}`} className="font-semibold">
          Default contract {data.default_contract_id === null ? "(the platform's)" : "(this connector's)"}
        </h3>
        <p className="text-xs text-slate-700 dark:text-slate-300">
          For streams without a contract of their own, and for new streams: new columns {data.default_contract.new_columns}, type changes {data.default_contract.type_changes}, new streams {data.default_contract.new_tables}.
        </p>
        {canEdit ? <ContractForm key={JSON.stringify(data.default_contract)} connectorId={connectorId} stream="" contract={data.default_contract} label="the connector's streams by default" /> : null}
      </section>
      {data.streams.length ? (
        <ul className="space-y-2">
          {data.streams.map((s) => (
            <StreamCard key={s.stream} stream={s} connectorId={connectorId} canEdit={canEdit} />
          ))}
        </ul>
      ) : (
        <Empty>No streams discovered yet.</Empty>
      )}
    </>
  );
}

export default function SchemasPage() {
  const workspace = useWorkspace();
  const canDecide = useCan("editor");
  const connectors = useConnectors();
  const [chosen, setChosen] = useState<number | "">("");
  const selectId = useId();
  const list = connectors.data?.results ?? [];
  const names = new Map(list.map((c) => [c.id, c.name]));
  const current = chosen === "" ? list[0]?.id : chosen;
  return (
    <AppShell>
      <PageHeader title="Schemas">
        <p className="text-sm text-slate-700 dark:text-slate-300">Streams of each connector with their versions and contracts; drift a contract froze, to approve or reject.</p>
      </PageHeader>
      <div className="grid gap-4 lg:grid-cols-2">
        <PendingChanges workspaceId={workspace.id} canDecide={canDecide} names={names} />
        <Card
          title="Streams and versions"
          actions={
            list.length ? (
              <span className="flex items-center gap-2 text-sm">
                <label htmlFor={selectId}>Connector</label>
                <select id={selectId} value={current ?? ""} onChange={(e) => setChosen(Number(e.target.value))} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
                  {list.map((c) => (
                    <option key={c.id} value={c.id}>{c.name}</option>
                  ))}
                </select>
              </span>
            ) : null
          }
        >
          {connectors.isPending ? <Loading /> : current ? <ConnectorSchemas connectorId={current} canEdit={canDecide} /> : <Empty>No connectors yet.</Empty>}
        </Card>
      </div>
    </AppShell>
  );
}
