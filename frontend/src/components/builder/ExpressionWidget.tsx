"use client";

import type { WidgetProps } from "@rjsf/utils";
import { useRef, useState } from "react";

import { inputClass } from "@/components/ui";

/** The identifier being typed just before the cursor (what a column name would complete). */
export function wordBefore(text: string, cursor: number): string {
  return /[A-Za-z_][A-Za-z0-9_]*$/.exec(text.slice(0, cursor))?.[0] ?? "";
}

/**
 * An expression input (the `expression` of filter and the like) that completes column names from the
 * fields arriving at the node: the columns starting with the word at the cursor are offered as buttons,
 * and one replaces the word. Syntax and unknown columns are the server's to judge; its error shows below.
 */
export function ExpressionWidget(props: WidgetProps) {
  const { id, value, onChange, onBlur, onFocus, readonly, disabled, required, options, rawErrors } = props;
  const columns = (options.columns as string[] | undefined) ?? [];
  const text = typeof value === "string" ? value : "";
  const ref = useRef<HTMLInputElement>(null);
  const [cursor, setCursor] = useState<number | null>(null);
  const at = Math.min(cursor ?? text.length, text.length);
  const word = wordBefore(text, at);
  const matches = word ? columns.filter((c) => c.startsWith(word) && c !== word).slice(0, 8) : [];
  const track = () => setCursor(ref.current?.selectionStart ?? null);
  const insert = (column: string) => {
    const start = at - word.length;
    onChange(`${text.slice(0, start)}${column}${text.slice(at)}`);
    const next = start + column.length;
    setCursor(next);
    requestAnimationFrame(() => {
      ref.current?.focus();
      ref.current?.setSelectionRange(next, next);
    });
  };
  return (
    <div className="space-y-1">
      <input
        ref={ref}
        id={id}
        name={id}
        type="text"
        autoComplete="off"
        spellCheck={false}
        value={text}
        required={required}
        readOnly={readonly}
        disabled={disabled}
        aria-invalid={Boolean(rawErrors?.length)}
        aria-describedby={columns.length ? `${id}__columns` : undefined}
        onChange={(e) => {
          onChange(e.target.value);
          setCursor(e.target.selectionStart);
        }}
        onKeyUp={track}
        onClick={track}
        onBlur={() => onBlur(id, text)}
        onFocus={() => onFocus(id, text)}
        className={`${inputClass} font-mono`}
      />
      {matches.length && !readonly ? (
        <div role="group" aria-label="Matching columns" className="flex flex-wrap gap-1" data-testid="column-suggestions">
          {matches.map((c) => (
            <button
              key={c}
              type="button"
              onClick={() => insert(c)}
              aria-label={`Insert column ${c}`}
              className="rounded border border-indigo-300 bg-indigo-50 px-1.5 py-0.5 font-mono text-xs text-indigo-900 hover:bg-indigo-100 dark:border-indigo-700 dark:bg-indigo-950 dark:text-indigo-100"
            >
              {c}
            </button>
          ))}
        </div>
      ) : null}
      {columns.length ? (
        <p id={`${id}__columns`} className="text-xs text-slate-700 dark:text-slate-300">
          Columns here: <span className="font-mono">{columns.join(", ")}</span>
        </p>
      ) : null}
    </div>
  );
}
