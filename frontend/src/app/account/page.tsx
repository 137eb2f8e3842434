"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import { useState } from "react";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { api, ok } from "@/api/client";
import { AppShell } from "@/components/AppShell";
import { TwoFactor } from "@/components/TwoFactor";
import { Button, Card, Field, inputClass, PageHeader } from "@/components/ui";
import { applyApiError } from "@/lib/forms";
import { useMe } from "@/lib/session";

// The server owns the password rules (AUTH_PASSWORD_VALIDATORS: length, likeness to the email, common
// passwords) and names the field at fault; the form only checks what needs no round trip.
const passwordSchema = z
  .object({
    current_password: z.string().min(1, "Enter your current password."),
    new_password: z.string().min(1, "Enter a new password."),
    confirm_password: z.string(),
  })
  .refine((v) => v.new_password === v.confirm_password, { path: ["confirm_password"], message: "The two new passwords differ." });
type PasswordValues = z.infer<typeof passwordSchema>;

const EMPTY: PasswordValues = { current_password: "", new_password: "", confirm_password: "" };

function ChangePassword({ email }: { email: string }) {
  const [done, setDone] = useState(false);
  const {
    register,
    handleSubmit,
    setError,
    reset,
    formState: { errors, isSubmitting },
  } = useForm<PasswordValues>({ resolver: zodResolver(passwordSchema), defaultValues: EMPTY });
  const onSubmit = handleSubmit(async ({ current_password, new_password }) => {
    setDone(false);
    try {
      await ok(api.POST("/api/v1/auth/password/", { body: { current_password, new_password } }));
      reset(EMPTY);
      setDone(true);
    } catch (error) {
      applyApiError(error, setError, ["current_password", "new_password"]);
    }
  });
  const messages = (key: keyof PasswordValues) => (errors[key]?.message ? [errors[key].message] : undefined);
  return (
    <Card title="Change password">
      <form onSubmit={onSubmit} noValidate className="space-y-3" aria-label="Change password">
        {/* Lets password managers tie the new password to the account. */}
        <input type="email" name="username" autoComplete="username" value={email} readOnly hidden />
        <Field label="Current password" errors={messages("current_password")}>
          {(p) => <input {...p} {...register("current_password")} type="password" autoComplete="current-password" className={inputClass} />}
        </Field>
        <Field label="New password" hint="At least 10 characters, not a common password and not like your email." errors={messages("new_password")}>
          {(p) => <input {...p} {...register("new_password")} type="password" autoComplete="new-password" className={inputClass} />}
        </Field>
        <Field label="Repeat the new password" errors={messages("confirm_password")}>
          {(p) => <input {...p} {...register("confirm_password")} type="password" autoComplete="new-password" className={inputClass} />}
        </Field>
        <Button type="submit" variant="primary" busy={isSubmitting}>
          Change password
        </Button>
        {done ? (
          <p role="status" className="text-sm text-emerald-800 dark:text-emerald-300" data-testid="password-changed">
            Password changed. You stay signed in here; your other sessions and API tokens have to sign in again.
          </p>
        ) : null}
      </form>
    </Card>
  );
}

function Account() {
  const me = useMe();
  const email = me.data?.email ?? "";
  return (
    <>
      <PageHeader title="Your account">
        <p className="text-sm text-slate-700 dark:text-slate-300">Signed in as {email}</p>
      </PageHeader>
      <div className="grid items-start gap-4 lg:grid-cols-2">
        <ChangePassword email={email} />
        <TwoFactor />
      </div>
    </>
  );
}

export default function AccountPage() {
  return (
    <AppShell>
      <Account />
    </AppShell>
  );
}
