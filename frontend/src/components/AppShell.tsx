"use client";

import { useQueryClient } from "@tanstack/react-query";
import { Activity, CircleUser, Database, GitBranch, LayoutDashboard, LogOut, Moon, Network, Sun, Table2, Users, Webhook } from "lucide-react";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { useId, type ReactNode } from "react";

import { ErrorNote, Loading } from "@/components/ui";
import { ENROLMENT_PATH, useRequireMe, useSignOut, useWorkspace } from "@/lib/session";
import { useUi } from "@/lib/store";
import { useLive, useWorkspaceLive } from "@/lib/live";

const nav = [
  { href: "/", label: "Dashboard", Icon: LayoutDashboard },
  { href: "/pipelines", label: "Pipelines", Icon: GitBranch },
  { href: "/connectors", label: "Connectors", Icon: Database },
  { href: "/schemas", label: "Schemas", Icon: Table2 },
  { href: "/lineage", label: "Lineage", Icon: Network },
  { href: "/monitoring", label: "Monitoring", Icon: Activity },
  { href: "/webhooks", label: "Webhooks", Icon: Webhook },
  { href: "/team", label: "Team", Icon: Users },
];

function WorkspaceSwitcher() {
  const { workspaces, current } = useWorkspace();
  const setWorkspace = useUi((s) => s.setWorkspace);
  const client = useQueryClient();
  const id = useId();
  if (workspaces.length === 0) return null;
  return (
    <div className="flex items-center gap-2">
      {/* Visible while the navigation has a line of its own (sm–lg); from xl everything shares one line. */}
      <label htmlFor={id} className="sr-only sm:not-sr-only sm:text-sm sm:text-slate-300 xl:sr-only">
        Workspace
      </label>
      <select
        id={id}
        value={current?.id ?? ""}
        onChange={(e) => {
          setWorkspace(Number(e.target.value));
          // Lists are per workspace: drop what was loaded for the other one.
          void client.invalidateQueries({ predicate: (q) => q.queryKey[0] !== "me" });
        }}
        title="Workspace"
        className="max-w-[9rem] rounded-md border border-slate-600 bg-slate-800 px-2 py-1 text-sm text-white"
      >
        {workspaces.map((w) => (
          <option key={w.id} value={w.id}>
            {w.name} ({w.role})
          </option>
        ))}
      </select>
    </div>
  );
}

function ThemeToggle() {
  const theme = useUi((s) => s.theme);
  const setTheme = useUi((s) => s.setTheme);
  const dark = theme === "dark" || (theme === "system" && typeof window !== "undefined" && matchMedia("(prefers-color-scheme: dark)").matches);
  return (
    <button
      type="button"
      onClick={() => setTheme(dark ? "light" : "dark")}
      aria-label={dark ? "Use the light theme" : "Use the dark theme"}
      className="rounded-md p-1.5 text-slate-200 hover:bg-slate-800"
    >
      {dark ? <Sun aria-hidden className="size-5" /> : <Moon aria-hidden className="size-5" />}
    </button>
  );
}

/** Subscribes to the workspace's events and says whether updates arrive live (else screens poll). */
function LiveSubscriber({ workspaceId }: { workspaceId: number }) {
  useWorkspaceLive(workspaceId);
  const connected = useLive();
  return (
    <span data-testid="live" data-live={connected} className="flex items-center gap-1.5 text-xs text-slate-300" title={connected ? "Updates arrive live" : "Not connected: refreshing periodically"}>
      <span aria-hidden className={`size-2 rounded-full ${connected ? "bg-green-400" : "bg-slate-500"}`} />
      <span className="xl:sr-only">{connected ? "Live" : "Offline"}</span>
    </span>
  );
}

/** The frame of every signed-in screen: the user must be signed in, else the sign-in page (with `next`). */
export function AppShell({ children }: { children: ReactNode }) {
  const me = useRequireMe();
  const signOut = useSignOut();
  const pathname = usePathname();
  const { id: workspaceId } = useWorkspace();

  return (
    <>
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:px-3 focus:py-2 focus:text-slate-900">
        Skip to content
      </a>
      <header className="bg-slate-900 text-white">
        {/* One line from xl (1280 px) up: the nav's labels stay, the controls on the right turn to icons
            (their names stay for screen readers); below, the nav takes a line of its own. */}
        <div className="mx-auto flex max-w-7xl flex-wrap items-center gap-x-4 gap-y-2 px-3 py-2 sm:px-6 xl:flex-nowrap xl:gap-x-3" data-testid="app-header">
          <Link href="/" className="text-lg font-bold tracking-tight">
            Aggregator
          </Link>
          <nav aria-label="Main" className="order-last w-full sm:order-none sm:w-auto">
            <ul className="flex flex-wrap gap-1 xl:flex-nowrap xl:gap-0.5">
              {nav.map(({ href, label, Icon }) => {
                const active = href === "/" ? pathname === "/" : pathname.startsWith(href);
                return (
                  <li key={href}>
                    <Link
                      href={href}
                      aria-current={active ? "page" : undefined}
                      className={`flex items-center gap-1.5 rounded-md px-2.5 py-1.5 text-sm whitespace-nowrap xl:gap-1 xl:px-2 ${active ? "bg-slate-700 font-semibold" : "text-slate-200 hover:bg-slate-800"}`}
                    >
                      <Icon aria-hidden className="size-4" />
                      {label}
                    </Link>
                  </li>
                );
              })}
            </ul>
          </nav>
          <div className="ml-auto flex shrink-0 items-center gap-2">
            {workspaceId ? <LiveSubscriber workspaceId={workspaceId} /> : null}
            <WorkspaceSwitcher />
            <ThemeToggle />
            {me.data ? (
              <Link
                href="/account"
                aria-current={pathname.startsWith("/account") ? "page" : undefined}
                className={`flex items-center gap-1 rounded-md px-2 py-1.5 text-sm text-slate-200 hover:bg-slate-800 ${pathname.startsWith("/account") ? "bg-slate-700" : ""}`}
                title={`Your account (${me.data.email})`}
              >
                <CircleUser aria-hidden className="size-4" />
                <span className="sr-only sm:not-sr-only xl:sr-only">Account</span>
              </Link>
            ) : null}
            {me.data ? (
              <button
                type="button"
                onClick={() => void signOut()}
                className="flex items-center gap-1 rounded-md px-2 py-1.5 text-sm text-slate-200 hover:bg-slate-800"
                title={me.data.email}
              >
                <LogOut aria-hidden className="size-4" />
                <span className="xl:sr-only">Sign out</span>
              </button>
            ) : null}
          </div>
        </div>
      </header>
      <main id="main" className="mx-auto max-w-7xl px-3 py-5 sm:px-6">
        {me.isPending ? (
          <Loading />
        ) : me.isError ? (
          <ErrorNote error={me.error} />
        ) : me.data.mfa.enrolment_required && !pathname.startsWith(ENROLMENT_PATH) ? (
          // On its way to the account page: the server refuses this screen's requests until then.
          <Loading label="Two-factor authentication must be set up first…" />
        ) : (
          children
        )}
      </main>
    </>
  );
}
