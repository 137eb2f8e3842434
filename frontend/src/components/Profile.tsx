"use client";

import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";

import { api, ok } from "@/api/client";
import { asMe } from "@/api/types";
import { Button, Card, Field, inputClass } from "@/components/ui";
import { meKey, useMe } from "@/lib/session";
import { useUi } from "@/lib/store";

/** The signed-in user's name and the theme (kept in this browser). */
export function Profile() {
  const me = useMe();
  const client = useQueryClient();
  const toast = useUi((s) => s.toast);
  const theme = useUi((s) => s.theme);
  const setTheme = useUi((s) => s.setTheme);
  const [name, setName] = useState(me.data?.full_name ?? "");
  const [errors, setErrors] = useState<string[] | undefined>();
  const [busy, setBusy] = useState(false);
  if (!me.data) return null;
  return (
    <Card title="Your profile">
      <form
        className="space-y-3"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setErrors(undefined);
          try {
            const saved = asMe(await ok(api.PATCH("/api/v1/me/", { body: { full_name: name } })));
            client.setQueryData(meKey, saved);
            toast("success", "Profile saved.");
          } catch (error) {
            setErrors((error as { fields?: Record<string, string[]> }).fields?.full_name ?? [String((error as Error).message)]);
          } finally {
            setBusy(false);
          }
        }}
      >
        <p className="text-sm">{me.data.email}</p>
        <Field label="Full name" errors={errors}>
          {(p) => <input {...p} value={name} onChange={(e) => setName(e.target.value)} autoComplete="name" className={inputClass} />}
        </Field>
        <fieldset>
          <legend className="text-sm font-medium">Theme</legend>
          <div className="mt-1 flex gap-4 text-sm">
            {(["system", "light", "dark"] as const).map((t) => (
              <label key={t} className="flex items-center gap-1.5">
                <input type="radio" name="theme" value={t} checked={theme === t} onChange={() => setTheme(t)} /> {t}
              </label>
            ))}
          </div>
        </fieldset>
        <Button type="submit" variant="primary" busy={busy}>
          Save profile
        </Button>
      </form>
    </Card>
  );
}
