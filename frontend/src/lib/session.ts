"use client";

import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useRouter } from "next/navigation";
import { useEffect } from "react";

import { ApiError, api, ok, resetCsrf } from "@/api/client";
import { asMe, type Role } from "@/api/types";
import { useUi } from "@/lib/store";

export const meKey = ["me"] as const;

export function useMe() {
  return useQuery({
    queryKey: meKey,
    queryFn: async ({ signal }) => asMe(await ok(api.GET("/api/v1/me/", { signal }))),
    retry: (count, error) => !(error instanceof ApiError && error.status < 500) && count < 2,
    staleTime: 60_000,
  });
}

/** The page where a user whose role requires two-factor authentication sets it up. */
export const ENROLMENT_PATH = "/account";

/**
 * The signed-in user, or a redirect to the sign-in page (with `next` so a deep link survives it). A user
 * who must still set up two-factor authentication is sent to their account page: the server refuses
 * everything else (403 `mfa_enrolment_required`) until then.
 */
export function useRequireMe() {
  const me = useMe();
  const router = useRouter();
  const unauthenticated = me.error instanceof ApiError && (me.error.status === 401 || me.error.status === 403);
  const mustEnrol = me.data?.mfa.enrolment_required === true;
  useEffect(() => {
    if (unauthenticated) {
      const next = window.location.pathname + window.location.search;
      router.replace(`/login?next=${encodeURIComponent(next)}`);
    } else if (mustEnrol && window.location.pathname !== ENROLMENT_PATH) {
      router.replace(ENROLMENT_PATH);
    }
  }, [unauthenticated, mustEnrol, router]);
  return me;
}

/** The workspace chosen in the switcher (kept in local storage), falling back to the first one. */
export function useWorkspace() {
  const { data: me } = useMe();
  const chosen = useUi((s) => s.workspaceId);
  const workspaces = me?.workspaces ?? [];
  const current = workspaces.find((w) => w.id === chosen) ?? workspaces[0] ?? null;
  return { workspaces, current, id: current?.id ?? null, role: (current?.role ?? null) as Role | null };
}

const rank: Record<Role, number> = { viewer: 0, editor: 1, admin: 2 };

/** The caller's role in a workspace is at least `role` (the server checks again; this only hides buttons). */
export function useCan(role: Role, workspaceId?: number | null): boolean {
  const { data: me } = useMe();
  const current = useWorkspace();
  const id = workspaceId ?? current.id;
  const mine = me?.workspaces.find((w) => w.id === id)?.role as Role | undefined;
  return mine !== undefined && rank[mine] >= rank[role];
}

export function useSignOut() {
  const client = useQueryClient();
  const router = useRouter();
  return async () => {
    try {
      await ok(api.POST("/api/v1/auth/logout/"));
    } finally {
      resetCsrf();
      client.clear();
      router.replace("/login");
    }
  };
}
