"use client";

import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useId, useRef, useState, type FormEvent } from "react";
import { useForm } from "react-hook-form";
import { z } from "zod";

import { ApiError, api, ok, resetCsrf } from "@/api/client";
import { asMe, type Me } from "@/api/types";
import { Button, Field, inputClass } from "@/components/ui";
import { ENROLMENT_PATH, meKey } from "@/lib/session";
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

type Problem = { message: string; lockedOut: boolean };

function LockoutOrError({ problem }: { problem: Problem }) {
  return (
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
  );
}

/**
 * The second step for an account with two-factor authentication: the server answered `mfa_required` to
 * the email and password, which are sent again with the code. A wrong code is said at the field.
 */
function CodeStep({
  submitCode,
  onBack,
}: {
  submitCode: (otp: string) => Promise<string | null>;
  onBack: () => void;
}) {
  const [recovery, setRecovery] = useState(false);
  const [otp, setOtp] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const id = useId();
  const label = recovery ? "Recovery code" : "Authentication code";
  const onSubmit = async (e: FormEvent) => {
    e.preventDefault();
    if (!otp.trim()) {
      setError(recovery ? "Enter one of your recovery codes." : "Enter the 6-digit code from your app.");
      input.current?.focus();
      return;
    }
    setBusy(true);
    const problem = await submitCode(otp.trim());
    setBusy(false);
    if (problem) {
      setError(problem);
      setOtp("");
      input.current?.focus();
    }
  };
  return (
    <form onSubmit={(e) => void onSubmit(e)} noValidate className="space-y-4" aria-labelledby={`${id}-title`}>
      <div>
        <h2 id={`${id}-title`} className="text-base font-semibold">
          Two-factor authentication
        </h2>
        <p className="text-sm text-slate-600 dark:text-slate-400">
          {recovery
            ? "Enter one of the recovery codes you saved when you set it up. Each works once."
            : "Enter the 6-digit code your authenticator app shows for Aggregator."}
        </p>
      </div>
      <Field label={label} errors={error ? [error] : undefined}>
        {(p) => (
          <input
            {...p}
            key={label}
            ref={input}
            autoFocus
            name="otp"
            value={otp}
            onChange={(e) => setOtp(e.target.value)}
            inputMode={recovery ? "text" : "numeric"}
            autoComplete={recovery ? "off" : "one-time-code"}
            autoCapitalize="none"
            spellCheck={false}
            maxLength={20}
            className={`${inputClass} font-mono tracking-widest`}
          />
        )}
      </Field>
      <Button type="submit" variant="primary" busy={busy} className="w-full">
        Verify
      </Button>
      <div className="flex flex-wrap justify-between gap-2 text-sm">
        <button
          type="button"
          className="text-indigo-700 underline dark:text-indigo-300"
          onClick={() => {
            setRecovery(!recovery);
            setOtp("");
            setError(null);
          }}
        >
          {recovery ? "Use your authenticator app instead" : "Use a recovery code instead"}
        </button>
        <button type="button" className="text-slate-700 underline dark:text-slate-300" onClick={onBack}>
          Start over
        </button>
      </div>
    </form>
  );
}

export default function LoginPage() {
  const router = useRouter();
  const client = useQueryClient();
  const setWorkspace = useUi((s) => s.setWorkspace);
  const [problem, setProblem] = useState<Problem | null>(null);
  // Set once the server asks for a second factor: the credentials are sent again with the code.
  const [pending, setPending] = useState<Values | null>(null);
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors, isSubmitting },
  } = useForm<Values>({ resolver: zodResolver(schema) });

  const signedIn = (me: Me) => {
    resetCsrf(); // Django rotates the CSRF token at sign-in
    client.setQueryData(meKey, me);
    const chosen = useUi.getState().workspaceId;
    if (!me.workspaces.some((w) => w.id === chosen)) setWorkspace(me.workspaces[0]?.id ?? null);
    router.replace(me.mfa.enrolment_required ? ENROLMENT_PATH : safeNext());
  };

  const onSubmit = handleSubmit(async (values) => {
    setProblem(null);
    try {
      signedIn(asMe(await ok(api.POST("/api/v1/auth/login/", { body: values }))));
    } catch (error) {
      if (error instanceof ApiError && error.code === "mfa_required") {
        setPending(values);
      } else if (error instanceof ApiError && error.code === "locked_out") {
        setProblem({ message: error.message, lockedOut: true });
      } else if (error instanceof ApiError && error.fields.email) {
        setError("email", { message: error.fields.email.join(" ") });
      } else {
        setProblem({ message: error instanceof Error ? error.message : String(error), lockedOut: false });
      }
    }
  });

  /** Sends the code; answers the message for the code's field, or null when signed in or shown above. */
  const submitCode = async (otp: string): Promise<string | null> => {
    if (!pending) return null;
    setProblem(null);
    try {
      signedIn(asMe(await ok(api.POST("/api/v1/auth/login/", { body: { ...pending, otp } }))));
      return null;
    } catch (error) {
      if (error instanceof ApiError && error.code === "mfa_invalid") return error.message;
      if (error instanceof ApiError && error.code === "locked_out") setProblem({ message: error.message, lockedOut: true });
      else setProblem({ message: error instanceof Error ? error.message : String(error), lockedOut: false });
      return null;
    }
  };

  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <div className="w-full max-w-sm rounded-lg border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-700 dark:bg-slate-800">
        <h1 className="mb-1 text-xl font-semibold">Sign in to Aggregator</h1>
        <p className="mb-5 text-sm text-slate-600 dark:text-slate-400">
          {pending ? `Signing in as ${pending.email}.` : "Use the email your workspace invited."}
        </p>
        {problem ? <LockoutOrError problem={problem} /> : null}
        {pending ? (
          <CodeStep
            submitCode={submitCode}
            onBack={() => {
              setPending(null);
              setProblem(null);
            }}
          />
        ) : (
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
        )}
        <p className="mt-4 text-sm">
          <Link href="/forgot-password" className="text-indigo-700 underline dark:text-indigo-300">
            Forgot your password?
          </Link>
        </p>
      </div>
    </main>
  );
}
