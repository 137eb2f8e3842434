"use client";

import { useQueryClient } from "@tanstack/react-query";
import { AlertTriangle, CheckCircle2 } from "lucide-react";
import { useId, useMemo, useState } from "react";

import { ApiError, api, ok } from "@/api/client";
import type { Pipeline } from "@/api/types";
import { Button, Field, inputClass } from "@/components/ui";
import { asDefinition, nodeLine, parse, serialize, sortErrors, type DocFormat, type SortedErrors } from "@/lib/pipelineDoc";
import { useUi } from "@/lib/store";

const EXAMPLE = {
  nodes: [
    { id: "source", kind: "source", connector: "my-csv", stream: "my_stream", sync_mode: "full_refresh" },
    { id: "warehouse", kind: "destination", connector: "my-postgres", table: "my_table", write_mode: "append" },
  ],
  edges: [{ from: "source", to: "warehouse" }],
};

/**
 * The document editor (until the visual builder lands): the pipeline's graph as YAML or JSON. Syntax is
 * checked here; the server validates the graph, and its errors are shown at the node they concern.
 */
export function PipelineEditor({
  pipeline,
  workspaceId,
  readOnly,
  onSaved,
}: {
  pipeline?: Pipeline;
  workspaceId: number | null;
  readOnly?: boolean;
  onSaved: (pipeline: Pipeline) => void;
}) {
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const [format, setFormat] = useState<DocFormat>("yaml");
  const [text, setText] = useState(() => serialize(pipeline?.definition ?? EXAMPLE, "yaml"));
  const [name, setName] = useState(pipeline?.name ?? "");
  const [message, setMessage] = useState("");
  const [errors, setErrors] = useState<SortedErrors | null>(null);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string[]>>({});
  const [valid, setValid] = useState(false);
  const [busy, setBusy] = useState<"validate" | "save" | null>(null);
  const textId = useId();
  const formatId = useId();

  const parsed = useMemo(() => parse(text, format), [text, format]);
  const nodes = parsed.ok ? parsed.value.nodes : [];

  const switchFormat = (next: DocFormat) => {
    if (next === format) return;
    if (parsed.ok) setText(serialize(parsed.value, next));
    setFormat(next);
  };

  const showErrors = (error: unknown) => {
    setValid(false);
    if (error instanceof ApiError && Object.keys(error.fields).length) {
      // The document's errors go to its nodes (or above them); the form's own fields keep theirs.
      const isGraph = (key: string) => /^(definition|nodes|edges)(\.|$)/.test(key);
      const ids = nodes.map((n) => String(n.id));
      const graph = Object.fromEntries(Object.entries(error.fields).filter(([k]) => isGraph(k)));
      const other = Object.fromEntries(Object.entries(error.fields).filter(([k]) => !isGraph(k)));
      setErrors(sortErrors(graph, ids));
      setFieldErrors(other);
      const unclaimed = Object.entries(other).filter(([k]) => k !== "name" && k !== "message");
      if (unclaimed.length) toast("error", unclaimed.map(([k, v]) => `${k}: ${v.join(" ")}`).join(" "));
    } else {
      toast("error", error instanceof Error ? error.message : String(error));
    }
  };

  const validate = async () => {
    if (!parsed.ok || !pipeline) return;
    setBusy("validate");
    try {
      const result = await ok(api.POST("/api/v1/pipelines/{id}/validate/", { params: { path: { id: pipeline.id } }, body: { definition: parsed.value } }));
      setErrors(sortErrors(result.errors, nodes.map((n) => String(n.id))));
      setFieldErrors({});
      setValid(result.valid);
    } catch (error) {
      showErrors(error);
    } finally {
      setBusy(null);
    }
  };

  const save = async () => {
    if (!parsed.ok) return;
    setBusy("save");
    try {
      const body = { name, definition: asDefinition(parsed.value), message, ...(pipeline || workspaceId === null ? {} : { workspace: workspaceId }) };
      const saved = pipeline
        ? await ok(api.PATCH("/api/v1/pipelines/{id}/", { params: { path: { id: pipeline.id } }, body: body }))
        : await ok(api.POST("/api/v1/pipelines/", { body: body }));
      setErrors(null);
      setFieldErrors({});
      setMessage("");
      void client.invalidateQueries({ queryKey: ["pipelines"] });
      client.setQueryData(["pipeline", saved.id], saved);
      void client.invalidateQueries({ queryKey: ["versions", saved.id] });
      toast("success", pipeline ? `Saved version ${saved.version}.` : "Pipeline created.");
      onSaved(saved);
    } catch (error) {
      showErrors(error);
    } finally {
      setBusy(null);
    }
  };

  const errorCount = errors ? errors.general.length + Object.values(errors.nodes).flat().length : 0;

  return (
    <form
      className="space-y-4"
      onSubmit={(e) => {
        e.preventDefault();
        void save();
      }}
    >
      <div className="grid gap-4 sm:grid-cols-2">
        <Field label="Name" errors={fieldErrors.name}>
          {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} readOnly={readOnly} required className={inputClass} />}
        </Field>
        {pipeline && !readOnly ? (
          <Field label="Change note" hint="Kept with the new version." errors={fieldErrors.message}>
            {(p) => <input {...p} value={message} onChange={(e) => setMessage(e.target.value)} className={inputClass} />}
          </Field>
        ) : null}
      </div>
      <div className="grid gap-4 lg:grid-cols-[minmax(0,3fr)_minmax(0,2fr)]">
        <div className="space-y-2">
          <div className="flex flex-wrap items-end justify-between gap-2">
            <label htmlFor={textId} className="text-sm font-medium">
              Document
            </label>
            <span className="flex items-center gap-2 text-sm">
              <label htmlFor={formatId}>Format</label>
              <select id={formatId} value={format} onChange={(e) => switchFormat(e.target.value as DocFormat)} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
                <option value="yaml">YAML</option>
                <option value="json">JSON</option>
              </select>
            </span>
          </div>
          <textarea
            id={textId}
            data-testid="document"
            value={text}
            onChange={(e) => {
              setText(e.target.value);
              setValid(false);
            }}
            readOnly={readOnly}
            spellCheck={false}
            rows={22}
            aria-invalid={!parsed.ok || errorCount > 0}
            aria-describedby={`${textId}-status`}
            className={`${inputClass} font-mono text-xs leading-5`}
          />
          <p id={`${textId}-status`} role="status" className="text-sm">
            {!parsed.ok ? (
              <span className="text-red-700 dark:text-red-400">{parsed.message}</span>
            ) : valid ? (
              <span className="inline-flex items-center gap-1 text-green-800 dark:text-green-300">
                <CheckCircle2 aria-hidden className="size-4" /> The server accepts this document.
              </span>
            ) : errorCount ? (
              <span className="text-red-700 dark:text-red-400">
                {errorCount} problem{errorCount === 1 ? "" : "s"}: see the nodes.
              </span>
            ) : null}
          </p>
          {!readOnly ? (
            <div className="flex flex-wrap gap-2">
              {pipeline ? (
                <Button onClick={() => void validate()} busy={busy === "validate"} disabled={!parsed.ok}>
                  Validate
                </Button>
              ) : null}
              <Button type="submit" variant="primary" busy={busy === "save"} disabled={!parsed.ok || !name.trim()}>
                {pipeline ? "Save new version" : "Create pipeline"}
              </Button>
            </div>
          ) : null}
        </div>
        <section aria-labelledby={`${textId}-nodes`} className="space-y-2">
          <h2 id={`${textId}-nodes`} className="text-sm font-medium">
            Nodes
          </h2>
          {errors?.general.length ? (
            <div role="alert" data-testid="graph-errors" className="rounded-md border border-red-300 bg-red-50 p-2 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
              <ul className="list-disc pl-5">
                {errors.general.map((m, i) => (
                  <li key={i}>{m}</li>
                ))}
              </ul>
            </div>
          ) : null}
          <ul className="space-y-2">
            {nodes.map((node, index) => {
              const id = String(node.id ?? `#${index + 1}`);
              const problems = errors?.nodes[id] ?? [];
              const line = nodeLine(text, id);
              return (
                <li
                  key={`${id}-${index}`}
                  data-testid={`node-${id}`}
                  className={`rounded-md border p-2 text-sm ${problems.length ? "border-red-400 bg-red-50 dark:border-red-700 dark:bg-red-950" : "border-slate-200 bg-white dark:border-slate-700 dark:bg-slate-800"}`}
                >
                  <p className="flex flex-wrap items-center gap-2">
                    <span className="font-mono font-semibold">{id}</span>
                    <span className="rounded bg-slate-100 px-1.5 text-xs dark:bg-slate-700">{String(node.kind ?? "?")}</span>
                    {line ? <span className="text-xs text-slate-600 dark:text-slate-400">line {line}</span> : null}
                  </p>
                  {problems.length ? (
                    <ul className="mt-1 space-y-0.5 text-red-800 dark:text-red-200">
                      {problems.map((m, i) => (
                        <li key={i} className="flex gap-1">
                          <AlertTriangle aria-hidden className="mt-0.5 size-3.5 shrink-0" />
                          {m}
                        </li>
                      ))}
                    </ul>
                  ) : null}
                </li>
              );
            })}
          </ul>
        </section>
      </div>
    </form>
  );
}
