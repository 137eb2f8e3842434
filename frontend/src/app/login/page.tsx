"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { ApiError, post, resetCsrf } from "@/api/client";
import type { Me } from "@/api/types";
import { Button, Field, inputClass } from "@/components/ui";
import { meKey } from "@/lib/session";
import { useUi } from "@/lib/store";

const schema = z.object({
  email: z.email("Enter an email address."),
  password: z.string().min(1, "Enter your password."),
});
type Values = z.infer<typeof schema>;

/** Only same-site paths: `next` comes from the URL and must not send the user elsewhere. */
function safeNext(): string {
  const next = new URLSearchParams(window.location.search).get("next") ?? "/";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export default function LoginPage() {
  const router = useRouter();
  const client = useQueryClient();
  const setWorkspace = useUi((s) => s.setWorkspace);
  const [problem, setProblem] = useState<{ message: string; lockedOut: boolean } | null>(null);
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors, isSubmitting },
  } = useForm<Values>({ resolver: zodResolver(schema) });

  const onSubmit = handleSubmit(async (values) => {
    setProblem(null);
    try {
      const me = await post<Me>("auth/login/", values);
      resetCsrf(); // Django rotates the CSRF token at sign-in
      client.setQueryData(meKey, me);
      const chosen = useUi.getState().workspaceId;
      if (!me.workspaces.some((w) => w.id === chosen)) setWorkspace(me.workspaces[0]?.id ?? null);
      router.replace(safeNext());
    } catch (error) {
      if (error instanceof ApiError && error.code === "locked_out") {
        setProblem({ message: error.message, lockedOut: true });
      } else if (error instanceof ApiError && error.fields.email) {
        setError("email", { message: error.fields.email.join(" ") });
      } else {
        setProblem({ message: error instanceof Error ? error.message : String(error), lockedOut: false });
      }
    }
  });

  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <div className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-700 dark:bg-slate-800">
        <h1 className="mb-1 text-xl font-semibold">Sign in to Aggregator</h1>
        <p className="mb-5 text-sm text-slate-600 dark:text-slate-400">Use the email your workspace invited.</p>
        {problem ? (
          <div
            role="alert"
            data-testid={problem.lockedOut ? "lockout" : "login-error"}
            className="mb-4 rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100"
          >
            {problem.lockedOut ? <p className="font-semibold">Too many failed attempts.</p> : null}
            <p>{problem.message}</p>
            {problem.lockedOut ? (
              <p className="mt-1">
                Or{" "}
                <Link href="/forgot-password" className="underline">
                  reset your password
                </Link>{" "}
                by email, which ends the lockout.
              </p>
            ) : null}
          </div>
        ) : null}
        <form onSubmit={onSubmit} noValidate className="space-y-4">
          <Field label="Email" errors={errors.email?.message ? [errors.email.message] : undefined}>
            {(p) => <input {...p} {...register("email")} type="email" autoComplete="username" className={inputClass} />}
          </Field>
          <Field label="Password" errors={errors.password?.message ? [errors.password.message] : undefined}>
            {(p) => (
              <input {...p} {...register("password")} type="password" autoComplete="current-password" className={inputClass} />
            )}
          </Field>
          <Button type="submit" variant="primary" busy={isSubmitting} className="w-full">
            Sign in
          </Button>
        </form>
        <p className="mt-4 text-sm">
          <Link href="/forgot-password" className="text-indigo-700 underline dark:text-indigo-300">
            Forgot your password?
          </Link>
        </p>
      </div>
    </main>
  );
}
