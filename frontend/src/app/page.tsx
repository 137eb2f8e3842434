"use client";

import { AppShell } from "@/components/AppShell";

export default function DashboardPage() {
  return (
    <AppShell>
      <h1>Dashboard</h1>
    </AppShell>
  );
}
