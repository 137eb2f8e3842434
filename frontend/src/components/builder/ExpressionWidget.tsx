"use client";

import type { WidgetProps } from "@rjsf/utils";
import { AlertTriangle } from "lucide-react";
import { useEffect, useRef, useState } from "react";

import { api, ok } from "@/api/client";
import type { components } from "@/api/schema";
import { inputClass } from "@/components/ui";

export type ExpressionCheck = components["schemas"]["ExpressionCheck"];
export type ExpressionColumn = components["schemas"]["ExpressionColumnRequest"];

/** How long typing must pause before the expression is sent to the server's parser. */
export const CHECK_DELAY_MS = 300;

/** The identifier being typed just before the cursor (what a column name would complete). */
export function wordBefore(text: string, cursor: number): string {
  return /[A-Za-z_][A-Za-z0-9_]*$/.exec(text.slice(0, cursor))?.[0] ?? "";
}

/** The offset in `text` of a 1-based line and column (the server counts characters, as JS strings do
 * for everything outside the astral planes). */
export function offsetOf(text: string, line: number, column: number): number {
  const lines = text.split("\n");
  let offset = 0;
  lines.slice(0, Math.max(0, line - 1)).forEach((l) => (offset += l.length + 1));
  return Math.min(offset + column - 1, text.length);
}

/** The check of the text, `CHECK_DELAY_MS` after it last changed: the server's parser and type checker
 * (`POST /expressions/check/`), against the typed columns when they are known. Answers that arrive after
 * a newer request are dropped; a failed request leaves no verdict (the validation of the document still
 * reports the mistake). */
function useExpressionCheck(text: string, columns: ExpressionColumn[] | null, enabled: boolean) {
  const [result, setResult] = useState<{ text: string; check: ExpressionCheck } | null>(null);
  const latest = useRef(0);
  const columnsKey = columns ? JSON.stringify(columns) : "";
  useEffect(() => {
    const request = ++latest.current;
    if (!enabled || !text.trim()) {
      setResult(null);
      return;
    }
    const timer = setTimeout(() => {
      ok(api.POST("/api/v1/expressions/check/", { body: { expression: text, ...(columns ? { columns } : {}) } }))
        .then((check) => {
          if (request === latest.current) setResult({ text, check });
        })
        .catch(() => {
          if (request === latest.current) setResult(null);
        });
    }, CHECK_DELAY_MS);
    return () => clearTimeout(timer);
    // columnsKey stands for columns
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [text, columnsKey, enabled]);
  return result;
}

/**
 * An expression input (the `expression` of filter, derive and the like). As you type, the server checks
 * it (`POST /expressions/check/`, the parser the steps use): a syntax error, type mistake or unknown
 * column shows under the field with its position and a button that puts the cursor there. Column names
 * complete from the fields arriving at the node: the columns starting with the word at the cursor are
 * offered as buttons, and one replaces the word. The server's errors from validating the whole document
 * (`rawErrors`) show here too when the check has nothing to say.
 *
 * Options: `columns` (names), `fields` (names with types: sent with the check, so unknown columns and type
 * mistakes are caught; without them only the syntax is judged).
 */
export function ExpressionWidget(props: WidgetProps) {
  const { id, value, onChange, onBlur, onFocus, readonly, disabled, required, options, rawErrors } = props;
  const fields = (options.fields as ExpressionColumn[] | undefined) ?? null;
  const columns = (options.columns as string[] | undefined) ?? fields?.map((f) => f.name) ?? [];
  const text = typeof value === "string" ? value : "";
  const ref = useRef<HTMLInputElement>(null);
  const [cursor, setCursor] = useState<number | null>(null);
  const checked = useExpressionCheck(text, fields?.length ? fields.map(({ name, type }) => ({ name, type })) : null, !readonly && !disabled);
  const at = Math.min(cursor ?? text.length, text.length);
  const word = wordBefore(text, at);
  const matches = word ? columns.filter((c) => c.startsWith(word) && c !== word).slice(0, 8) : [];
  const track = () => setCursor(ref.current?.selectionStart ?? null);
  const place = (next: number) => {
    setCursor(next);
    requestAnimationFrame(() => {
      ref.current?.focus();
      ref.current?.setSelectionRange(next, next);
    });
  };
  const insert = (column: string) => {
    const start = at - word.length;
    onChange(`${text.slice(0, start)}${column}${text.slice(at)}`);
    place(start + column.length);
  };

  const problem = checked && !checked.check.valid ? checked.check : null;
  const error = problem?.error ?? null;
  const position = error?.position ?? null;
  const multiline = text.includes("\n");
  const where = position ? (multiline ? `Line ${position.line}, column ${position.column}` : `Column ${position.column}`) : null;
  const unknown = problem?.unknown_columns ?? [];
  const serverErrors = problem ? [] : (rawErrors ?? []);
  const invalid = Boolean(problem) || serverErrors.length > 0;
  const checkId = `${id}__check`;
  const resultType = checked?.check.valid ? checked.check.type : null;
  const describedBy = [checkId, columns.length || resultType ? `${id}__columns` : ""].filter(Boolean).join(" ");

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
        aria-invalid={invalid}
        aria-describedby={describedBy}
        onChange={(e) => {
          onChange(e.target.value);
          setCursor(e.target.selectionStart);
        }}
        onKeyUp={track}
        onClick={track}
        onBlur={() => onBlur(id, text)}
        onFocus={() => onFocus(id, text)}
        className={`${inputClass} font-mono ${invalid ? "border-red-600 dark:border-red-400" : ""}`}
      />
      {/* Always in the page, so screen readers announce a message when it appears in it. */}
      <div id={checkId} role="alert" data-testid="expression-check" data-valid={problem ? "false" : checked?.check.valid ? "true" : undefined} className="text-xs text-red-800 dark:text-red-300">
        {error ? (
          <div className="flex flex-wrap items-start gap-1">
            <AlertTriangle aria-hidden className="mt-0.5 size-3.5 shrink-0" />
            <span data-testid="expression-error">
              {where ? <span className="font-semibold">{where}: </span> : null}
              {error.reason}
              {error.hint ? `, ${error.hint}` : ""}
              {unknown.length > 1 ? ` (not among the columns here: ${unknown.join(", ")})` : ""}
            </span>
            {position && !readonly ? (
              <button type="button" onClick={() => place(offsetOf(text, position.line, position.column))} className="rounded px-1 text-indigo-800 underline dark:text-indigo-300">
                Go to the mistake
              </button>
            ) : null}
          </div>
        ) : serverErrors.length ? (
          <ul>
            {serverErrors.map((m, i) => (
              <li key={i}>{m}</li>
            ))}
          </ul>
        ) : null}
      </div>
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
      {columns.length || resultType ? (
        <p id={`${id}__columns`} className="text-xs text-slate-700 dark:text-slate-300">
          {columns.length ? (
            <>
              Columns here: <span className="font-mono">{columns.join(", ")}</span>
            </>
          ) : null}
          {resultType ? (
            <span data-testid="expression-type">
              {columns.length ? ". " : ""}Gives {resultType} values.
            </span>
          ) : null}
        </p>
      ) : null}
    </div>
  );
}
