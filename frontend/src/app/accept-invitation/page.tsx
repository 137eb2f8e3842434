"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useState } from "react";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { ApiError, api, ok, serverDefaults } from "@/api/client";
import { Button, Field, inputClass, Loading } from "@/components/ui";
import { meKey, useMe } from "@/lib/session";

const schema = z.object({
  full_name: z.string().max(150),
  password: z.string().min(10, "At least 10 characters."),
});
type Values = z.infer<typeof schema>;

function Accept() {
  const token = useSearchParams().get("token") ?? "";
  const me = useMe();
  const router = useRouter();
  const client = useQueryClient();
  const [problem, setProblem] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors, isSubmitting },
  } = useForm<Values>({ resolver: zodResolver(schema), defaultValues: { full_name: "", password: "" } });

  const accept = async (body: { full_name: string; password?: string }) => {
    setProblem(null);
    try {
      await ok(api.POST("/api/v1/auth/accept-invitation/", { body: { token, ...body } }));
      await client.invalidateQueries({ queryKey: meKey });
      setDone(true);
      if (me.data) router.replace("/");
    } catch (error) {
      if (error instanceof ApiError && error.fields.password) setError("password", { message: error.fields.password.join(" ") });
      else setProblem(error instanceof ApiError && error.fields.token ? error.fields.token.join(" ") : String((error as Error).message));
    }
  };
  const here = `/accept-invitation?token=${encodeURIComponent(token)}`;

  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <div className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-700 dark:bg-slate-800">
        <h1 className="mb-4 text-xl font-semibold">Join a workspace</h1>
        {!token ? (
          <p role="alert">This link has no invitation token. Open the link from the email again.</p>
        ) : done ? (
          <p role="status">
            You have joined. <Link href="/login" className="text-indigo-700 underline dark:text-indigo-300">Sign in</Link> to continue.
          </p>
        ) : (
          <>
            {problem ? (
              <p role="alert" className="mb-4 rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900 dark:border-red-700 dark:bg-red-950 dark:text-red-100">
                {problem}
              </p>
            ) : null}
            {me.isPending ? (
              <Loading />
            ) : me.data ? (
              <div className="space-y-3">
                <p className="text-sm">You are signed in as {me.data.email}.</p>
                <Button variant="primary" onClick={() => void accept(serverDefaults())} className="w-full">
                  Accept the invitation
                </Button>
              </div>
            ) : (
              <form onSubmit={handleSubmit((v) => accept(v))} noValidate className="space-y-4">
                <p className="text-sm text-slate-700 dark:text-slate-300">
                  New here? Choose a password for your account. Have an account already?{" "}
                  <Link href={`/login?next=${encodeURIComponent(here)}`} className="text-indigo-700 underline dark:text-indigo-300">
                    Sign in first
                  </Link>
                  .
                </p>
                <Field label="Full name" errors={errors.full_name?.message ? [errors.full_name.message] : undefined}>
                  {(p) => <input {...p} {...register("full_name")} autoComplete="name" className={inputClass} />}
                </Field>
                <Field label="Password" errors={errors.password?.message ? [errors.password.message] : undefined}>
                  {(p) => <input {...p} {...register("password")} type="password" autoComplete="new-password" className={inputClass} />}
                </Field>
                <Button type="submit" variant="primary" busy={isSubmitting} className="w-full">
                  Create account and join
                </Button>
              </form>
            )}
          </>
        )}
      </div>
    </main>
  );
}

export default function AcceptInvitationPage() {
  return (
    <Suspense fallback={<Loading />}>
      <Accept />
    </Suspense>
  );
}
