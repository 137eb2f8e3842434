"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import Link from "next/link";
import { useState } from "react";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { ApiError, api, ok } from "@/api/client";
import { Button, Field, inputClass } from "@/components/ui";

const schema = z.object({ email: z.email("Enter an email address.") });
type Values = z.infer<typeof schema>;

const linkClass = "text-indigo-700 underline dark:text-indigo-300";

/**
 * Asks for a reset link. The server answers the same whether or not an account has the address, so this
 * page says the same too: it cannot tell, and neither can anyone trying addresses.
 */
export default function ForgotPasswordPage() {
  const [sent, setSent] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors, isSubmitting },
  } = useForm<Values>({ resolver: zodResolver(schema), defaultValues: { email: "" } });

  const onSubmit = handleSubmit(async (values) => {
    setProblem(null);
    try {
      const answer = await ok(api.POST("/api/v1/auth/password-reset/", { body: values }));
      setSent(answer.detail);
    } catch (error) {
      if (error instanceof ApiError && error.fields.email) setError("email", { message: error.fields.email.join(" ") });
      else if (error instanceof ApiError && error.status === 429)
        setProblem("Too many requests for a reset link. Wait a while, then try again.");
      else setProblem(error instanceof Error ? error.message : String(error));
    }
  });

  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <div className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-700 dark:bg-slate-800">
        <h1 className="mb-1 text-xl font-semibold">Forgot your password?</h1>
        {/* Both regions are in the page from the start, so what appears in them is announced. */}
        <div role="alert" data-testid="forgot-error">
          {problem ? (
            <p className="my-3 rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
              {problem}
            </p>
          ) : null}
        </div>
        <div role="status" data-testid="forgot-sent">
          {sent ? (
            <div className="mt-3 space-y-3 text-sm">
              <p>{sent}</p>
              <p className="text-slate-700 dark:text-slate-300">
                The link works once and not for long (the email says how long). No email? Check the spam folder and the address, then ask again.
              </p>
            </div>
          ) : null}
        </div>
        {sent ? null : (
          <form onSubmit={onSubmit} noValidate className="mt-3 space-y-4">
            <p className="text-sm text-slate-700 dark:text-slate-300">
              Enter the email you sign in with. We send a link to it to choose a new password.
            </p>
            <Field label="Email" errors={errors.email?.message ? [errors.email.message] : undefined}>
              {(p) => <input {...p} {...register("email")} type="email" autoComplete="username" className={inputClass} />}
            </Field>
            <Button type="submit" variant="primary" busy={isSubmitting} className="w-full">
              Send the link
            </Button>
          </form>
        )}
        <p className="mt-5 text-sm">
          <Link href="/login" className={linkClass}>
            Back to sign in
          </Link>
        </p>
      </div>
    </main>
  );
}
