"use client";

import { Area, AreaChart, Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

import { Card } from "@/components/ui";
import type { ChartPoint } from "@/lib/charts";
import { duration, short } from "@/lib/format";

// Colours with enough contrast on white and on slate-800 (the dark cards).
const COLORS = { succeeded: "#15803d", failed: "#dc2626", cancelled: "#d97706", rows: "#4f46e5", p95: "#0891b2" };

function Figure({ title, summary, children }: { title: string; summary: string; children: React.ReactElement }) {
  return (
    <Card title={title}>
      {/* The chart is a picture; the summary says what it shows for screen readers. */}
      <figure aria-label={`${title}: ${summary}`}>
        <div className="h-56 w-full" aria-hidden>
          <ResponsiveContainer width="100%" height="100%">
            {children}
          </ResponsiveContainer>
        </div>
        <figcaption className="sr-only">{summary}</figcaption>
      </figure>
    </Card>
  );
}

export default function RunCharts({ data }: { data: ChartPoint[] }) {
  const totals = data.reduce((a, p) => ({ s: a.s + p.succeeded, f: a.f + p.failed, c: a.c + p.cancelled, r: a.r + p.rows }), { s: 0, f: 0, c: 0, r: 0 });
  const p95s = data.map((p) => p.p95).filter((v): v is number => v !== null);
  const axis = { fontSize: 11, fill: "currentColor" };
  return (
    <div className="grid gap-4 lg:grid-cols-3" data-testid="charts">
      <Figure title="Runs by status" summary={`${totals.s} succeeded, ${totals.f} failed, ${totals.c} cancelled`}>
        <BarChart data={data} accessibilityLayer={false}>
          <CartesianGrid strokeDasharray="3 3" strokeOpacity={0.3} />
          <XAxis dataKey="label" tick={axis} minTickGap={16} />
          <YAxis allowDecimals={false} tick={axis} width={32} />
          <Tooltip />
          <Legend />
          <Bar dataKey="succeeded" stackId="s" fill={COLORS.succeeded} isAnimationActive={false} />
          <Bar dataKey="failed" stackId="s" fill={COLORS.failed} isAnimationActive={false} />
          <Bar dataKey="cancelled" stackId="s" fill={COLORS.cancelled} isAnimationActive={false} />
        </BarChart>
      </Figure>
      <Figure title="Rows moved" summary={`${totals.r.toLocaleString("en")} rows written`}>
        <AreaChart data={data} accessibilityLayer={false}>
          <CartesianGrid strokeDasharray="3 3" strokeOpacity={0.3} />
          <XAxis dataKey="label" tick={axis} minTickGap={16} />
          <YAxis tickFormatter={short} tick={axis} width={40} />
          <Tooltip />
          <Area dataKey="rows" stroke={COLORS.rows} fill={COLORS.rows} fillOpacity={0.25} isAnimationActive={false} />
        </AreaChart>
      </Figure>
      <Figure title="p95 duration" summary={p95s.length ? `highest ${duration(Math.max(...p95s))}` : "no finished runs"}>
        <LineChart data={data} accessibilityLayer={false}>
          <CartesianGrid strokeDasharray="3 3" strokeOpacity={0.3} />
          <XAxis dataKey="label" tick={axis} minTickGap={16} />
          <YAxis tickFormatter={(v: number) => `${v}s`} tick={axis} width={40} />
          <Tooltip />
          <Line dataKey="p95" stroke={COLORS.p95} dot={{ r: 3 }} connectNulls={false} isAnimationActive={false} />
        </LineChart>
      </Figure>
    </div>
  );
}
