"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import Link from "next/link";
import { useSearchParams } from "next/navigation";
import { Suspense, useState } from "react";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { ApiError, api, ok } from "@/api/client";
import { Button, Field, inputClass, Loading } from "@/components/ui";
import { applyApiError } from "@/lib/forms";

// The server owns the password rules (AUTH_PASSWORD_VALIDATORS) and names the field at fault; the form only
// checks what needs no round trip.
const schema = z
  .object({
    new_password: z.string().min(1, "Enter a new password."),
    confirm_password: z.string(),
  })
  .refine((v) => v.new_password === v.confirm_password, { path: ["confirm_password"], message: "The two passwords differ." });
type Values = z.infer<typeof schema>;

const linkClass = "text-indigo-700 underline dark:text-indigo-300";

function Reset() {
  const query = useSearchParams();
  const uid = query.get("uid") ?? "";
  const token = query.get("token") ?? "";
  const [done, setDone] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors, isSubmitting },
  } = useForm<Values>({ resolver: zodResolver(schema), defaultValues: { new_password: "", confirm_password: "" } });

  const onSubmit = handleSubmit(async ({ new_password }) => {
    setProblem(null);
    try {
      await ok(api.POST("/api/v1/auth/password-reset/confirm/", { body: { uid, token, new_password } }));
      setDone(true);
    } catch (error) {
      // A bad, expired or spent link is the link's fault, not a field's: say so above the form.
      const linkErrors = error instanceof ApiError ? [...(error.fields.token ?? []), ...(error.fields.uid ?? [])] : [];
      if (linkErrors.length) setProblem(linkErrors.join(" "));
      else if (error instanceof ApiError && error.status === 429) setProblem("Too many attempts. Wait a minute, then try again.");
      else applyApiError(error, setError, ["new_password"]);
    }
  });
  const messages = (key: keyof Values) => (errors[key]?.message ? [errors[key].message] : undefined);
  const incomplete = !uid || !token;

  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <div className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-700 dark:bg-slate-800">
        <h1 className="mb-1 text-xl font-semibold">Choose a new password</h1>
        {/* Both regions are in the page from the start, so what appears in them is announced. */}
        <div role="alert" data-testid="reset-error">
          {problem || incomplete ? (
            <div className="my-3 space-y-1 rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
              <p>{problem ?? "This link is incomplete. Open the link from the email again."}</p>
              <p>
                <Link href="/forgot-password" className="underline">
                  Ask for a new link
                </Link>
              </p>
            </div>
          ) : null}
        </div>
        <div role="status" data-testid="reset-done">
          {done ? (
            <p className="mt-3 text-sm">
              Your password is changed, and every session that used the old one is signed out.{" "}
              <Link href="/login" className={linkClass}>
                Sign in
              </Link>{" "}
              with the new password.
            </p>
          ) : null}
        </div>
        {done || incomplete ? null : (
          <form onSubmit={onSubmit} noValidate className="mt-3 space-y-4" aria-label="Choose a new password">
            <Field label="New password" hint="At least 10 characters, not a common password and not like your email." errors={messages("new_password")}>
              {(p) => <input {...p} {...register("new_password")} type="password" autoComplete="new-password" className={inputClass} />}
            </Field>
            <Field label="Repeat the new password" errors={messages("confirm_password")}>
              {(p) => <input {...p} {...register("confirm_password")} type="password" autoComplete="new-password" className={inputClass} />}
            </Field>
            <Button type="submit" variant="primary" busy={isSubmitting} className="w-full">
              Set the new password
            </Button>
          </form>
        )}
        {done ? null : (
          <p className="mt-5 text-sm">
            <Link href="/login" className={linkClass}>
              Back to sign in
            </Link>
          </p>
        )}
      </div>
    </main>
  );
}

export default function ResetPasswordPage() {
  return (
    <Suspense fallback={<Loading />}>
      <Reset />
    </Suspense>
  );
}
