"use client";

import { Copy } from "lucide-react";

import { Button } from "@/components/ui";

/** A secret the server shows only in this response: copy it now. */
export function SecretOnce({ label, value, onDone }: { label: string; value: string; onDone: () => void }) {
  return (
    <div role="status" data-testid="secret-once" className="mb-4 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
      <p className="font-semibold">{label}: copy it now, it is shown only once.</p>
      <p className="mt-1 flex flex-wrap items-center gap-2">
        <code className="rounded bg-white px-1.5 py-0.5 break-all text-slate-900">{value}</code>
        <Button onClick={() => void navigator.clipboard?.writeText(value)}>
          <Copy aria-hidden className="size-4" /> Copy
        </Button>
        <Button variant="ghost" onClick={onDone}>
          Done
        </Button>
      </p>
    </div>
  );
}
