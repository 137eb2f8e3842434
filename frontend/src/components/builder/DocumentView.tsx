"use client";

import { useId } from "react";

import { inputClass } from "@/components/ui";
import type { DocFormat } from "@/lib/pipelineDoc";

type DocumentViewProps = {
  format: DocFormat;
  onFormat: (format: DocFormat) => void;
  text: string;
  onText: (text: string) => void;
  error: string | null;
  readOnly: boolean;
};

/** The Document view: the pipeline as YAML or JSON text, its parse error under it. */
export function DocumentView({ format, onFormat, text, onText, error, readOnly }: DocumentViewProps) {
  const ids = useId();
  return (
    <div className="space-y-2">
      <div className="flex items-center gap-2 text-sm">
        <label htmlFor={`${ids}-format`}>Format</label>
        <select id={`${ids}-format`} value={format} onChange={(e) => onFormat(e.target.value as DocFormat)} className="rounded-md border border-slate-400 bg-white px-2 py-1 dark:bg-slate-900">
          <option value="yaml">YAML</option>
          <option value="json">JSON</option>
        </select>
      </div>
      <label htmlFor={`${ids}-text`} className="sr-only">Document</label>
      <textarea
        id={`${ids}-text`}
        data-testid="builder-document"
        value={text}
        onChange={(e) => onText(e.target.value)}
        readOnly={readOnly}
        spellCheck={false}
        rows={24}
        aria-invalid={Boolean(error)}
        aria-describedby={`${ids}-text-error`}
        className={`${inputClass} font-mono text-xs leading-5`}
      />
      <p id={`${ids}-text-error`} className="text-sm text-red-700 dark:text-red-400">{error}</p>
    </div>
  );
}
