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
