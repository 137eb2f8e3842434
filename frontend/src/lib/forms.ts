import { useState } from "react";
import type { FieldValues, Path, UseFormSetError } from "react-hook-form";

import { ApiError } from "@/api/client";
import { toastError } from "@/lib/store";

/** Puts an API error's `fields` on the form's fields; whatever no field claims goes to a toast. */
export function applyApiError<T extends FieldValues>(error: unknown, setError: UseFormSetError<T>, known: readonly string[]) {
  if (error instanceof ApiError && Object.keys(error.fields).length) {
    let unclaimed: string[] = [];
    for (const [field, messages] of Object.entries(error.fields)) {
      const top = field.split(".")[0] ?? field;
      if (known.includes(top)) setError(top as Path<T>, { type: "server", message: messages.join(" ") });
      else unclaimed = [...unclaimed, ...messages];
    }
    if (unclaimed.length) toastError(new Error(unclaimed.join(" ")));
    return;
  }
  toastError(error);
}

/**
 * A small form that sends one request: `submit(action)` runs it with `busy` set; an API error's `fields`
 * land in `errors` (shown at the fields), any other error in a toast.
 */
export function useSubmit() {
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Record<string, string[]>>({});
  const submit = async (action: () => Promise<void>) => {
    setBusy(true);
    setErrors({});
    try {
      await action();
    } catch (error) {
      if (error instanceof ApiError && Object.keys(error.fields).length) setErrors(error.fields);
      else toastError(error);
    } finally {
      setBusy(false);
    }
  };
  return { busy, errors, submit };
}
