"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Copy, Download } from "lucide-react";
import { useState, type FormEvent } from "react";

import { api, ok } from "@/api/client";
import type { components } from "@/api/schema";
import { Button, Card, ErrorNote, Field, inputClass, Loading } from "@/components/ui";
import { useSubmit } from "@/lib/forms";
import { meKey } from "@/lib/session";

type MfaStatus = components["schemas"]["MfaStatus"];
type Enrolment = components["schemas"]["MfaTotpEnrolment"];
type RecoveryCodes = components["schemas"]["MfaRecoveryCodes"];

const statusKey = ["mfa"] as const;

/** The six-digit code input: digits on phones, and the code an OS or password manager offers. */
function CodeInput(props: { id: string; "aria-invalid": boolean; "aria-describedby"?: string; value: string; onChange: (v: string) => void }) {
  const { value, onChange, ...rest } = props;
  return (
    <input
      {...rest}
      name="otp"
      inputMode="numeric"
      autoComplete="one-time-code"
      spellCheck={false}
      maxLength={20}
      value={value}
      onChange={(e) => onChange(e.target.value)}
      className={`${inputClass} max-w-[12rem] font-mono tracking-widest`}
    />
  );
}

/** The secret in groups of four, as authenticator apps ask for it when typed by hand. */
function grouped(secret: string): string {
  return secret.replace(/(.{4})/g, "$1 ").trim();
}

function RecoveryCodesOnce({ codes, onDone }: { codes: string[]; onDone: () => void }) {
  const text = `Aggregator recovery codes (each works once)\n\n${codes.join("\n")}\n`;
  const download = () => {
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = "aggregator-recovery-codes.txt";
    link.click();
    URL.revokeObjectURL(url);
  };
  return (
    <div
      role="status"
      data-testid="recovery-codes"
      className="space-y-3 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100"
    >
      <p className="font-semibold">Your recovery codes: save them now, they are shown only once.</p>
      <p>If you lose your phone, sign in with one of these instead of a code. Each works once.</p>
      <ol aria-label="Recovery codes" className="grid grid-cols-2 gap-1 font-mono text-base text-slate-900 sm:grid-cols-5 dark:text-slate-100">
        {codes.map((code) => (
          <li key={code} className="rounded bg-white px-2 py-0.5 text-center dark:bg-slate-900">
            {code}
          </li>
        ))}
      </ol>
      <div className="flex flex-wrap gap-2">
        <Button onClick={() => void navigator.clipboard?.writeText(codes.join("\n"))}>
          <Copy aria-hidden className="size-4" /> Copy
        </Button>
        <Button onClick={download}>
          <Download aria-hidden className="size-4" /> Download
        </Button>
        <Button variant="primary" onClick={onDone}>
          I have saved them
        </Button>
      </div>
    </div>
  );
}

function Enrol({ enrolment, onCancel, onEnabled }: { enrolment: Enrolment; onCancel: () => void; onEnabled: (codes: RecoveryCodes) => void }) {
  const [otp, setOtp] = useState("");
  const { busy, errors, submit } = useSubmit();
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    void submit(async () => onEnabled(await ok(api.POST("/api/v1/auth/mfa/totp/confirm/", { body: { otp } }))));
  };
  const qr = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`;
  return (
    <form onSubmit={onSubmit} noValidate aria-label="Set up two-factor authentication" className="space-y-3">
      <ol className="list-decimal space-y-3 pl-5 text-sm text-slate-800 dark:text-slate-200">
        <li>
          Scan this QR code with an authenticator app (for example Google Authenticator, Microsoft Authenticator, 1Password or
          FreeOTP).
          {/* The QR is dark on white whatever the theme: phone cameras read it best that way. */}
          <img src={qr} alt="QR code of your new authenticator key" width={180} height={180} className="mt-2 rounded bg-white p-1" data-testid="mfa-qr" />
        </li>
        <li>
          Or type this key into the app:{" "}
          <code data-testid="mfa-secret" className="rounded bg-slate-100 px-1.5 py-0.5 font-mono break-all text-slate-900 dark:bg-slate-900 dark:text-slate-100">
            {grouped(enrolment.secret)}
          </code>{" "}
          (time-based, {enrolment.digits} digits, every {enrolment.period} seconds).
        </li>
        <li>Enter the code the app shows.</li>
      </ol>
      <Field label="Code from the app" errors={errors.otp}>
        {(p) => <CodeInput {...p} value={otp} onChange={setOtp} />}
      </Field>
      <div className="flex flex-wrap gap-2">
        <Button type="submit" variant="primary" busy={busy}>
          Turn on
        </Button>
        <Button variant="ghost" onClick={onCancel}>
          Cancel
        </Button>
      </div>
    </form>
  );
}

/** A form that proves the person holds the second factor (a code, or a recovery code) for one action. */
function CodeAction({
  label,
  action,
  variant,
  run,
}: {
  label: string;
  action: string;
  variant: "secondary" | "danger";
  run: (otp: string) => Promise<void>;
}) {
  const [otp, setOtp] = useState("");
  const { busy, errors, submit } = useSubmit();
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    void submit(async () => {
      await run(otp);
      setOtp("");
    });
  };
  return (
    <form onSubmit={onSubmit} noValidate aria-label={action} className="space-y-2">
      <Field label={label} hint="A code from your app, or a recovery code." errors={errors.otp ?? errors.password}>
        {(p) => <CodeInput {...p} value={otp} onChange={setOtp} />}
      </Field>
      <Button type="submit" variant={variant} busy={busy}>
        {action}
      </Button>
    </form>
  );
}

export function TwoFactor() {
  const client = useQueryClient();
  const status = useQuery({ queryKey: statusKey, queryFn: ({ signal }) => ok(api.GET("/api/v1/auth/mfa/", { signal })) });
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const start = useSubmit();

  const refresh = (next: MfaStatus) => {
    client.setQueryData(statusKey, next);
    // The header and the sign-in redirect read the state from /me/.
    void client.invalidateQueries({ queryKey: meKey });
  };
  const enabled = (result: RecoveryCodes) => {
    setEnrolment(null);
    setCodes(result.recovery_codes);
    refresh(result.status);
  };

  let body;
  if (status.isPending) body = <Loading />;
  else if (status.isError) body = <ErrorNote error={status.error} />;
  else if (codes) body = <RecoveryCodesOnce codes={codes} onDone={() => setCodes(null)} />;
  else if (enrolment) body = <Enrol enrolment={enrolment} onCancel={() => setEnrolment(null)} onEnabled={enabled} />;
  else if (!status.data.enabled) {
    body = (
      <div className="space-y-3 text-sm text-slate-800 dark:text-slate-200">
        {status.data.required ? (
          <p role="alert" data-testid="mfa-required" className="rounded-md border border-amber-300 bg-amber-50 p-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100">
            Your role requires two-factor authentication. Set it up to continue: until then the rest of the app is closed to you.
          </p>
        ) : null}
        <p>
          Off. With it on, signing in asks for a code from an authenticator app on your phone as well as your password.
        </p>
        <Button
          variant="primary"
          busy={start.busy}
          onClick={() => void start.submit(async () => setEnrolment(await ok(api.POST("/api/v1/auth/mfa/totp/"))))}
        >
          Set up two-factor authentication
        </Button>
      </div>
    );
  } else {
    const data = status.data;
    body = (
      <div className="space-y-4 text-sm text-slate-800 dark:text-slate-200">
        <p data-testid="mfa-on">
          <span className="font-semibold">On</span>
          {data.enabled_at ? ` since ${new Date(data.enabled_at).toLocaleDateString()}` : ""}. {data.recovery_codes_left} of 10 recovery codes left.
        </p>
        <CodeAction
          label="Code for new recovery codes"
          action="Make new recovery codes"
          variant="secondary"
          run={async (otp) => enabled(await ok(api.POST("/api/v1/auth/mfa/recovery-codes/", { body: { otp } })))}
        />
        {data.required ? (
          <p>Your role requires two-factor authentication, so it cannot be turned off.</p>
        ) : (
          <CodeAction
            label="Code to turn it off"
            action="Turn off two-factor authentication"
            variant="danger"
            run={async (otp) => refresh(await ok(api.POST("/api/v1/auth/mfa/disable/", { body: { otp } })))}
          />
        )}
      </div>
    );
  }
  return <Card title="Two-factor authentication">{body}</Card>;
}
