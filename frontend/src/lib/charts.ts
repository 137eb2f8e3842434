import { addDays, addHours, addMinutes, format, parseISO } from "date-fns";

import type { RunSeriesPoint } from "@/api/types";

export type Bucket = "minute" | "hour" | "day";

export interface ChartPoint {
  /** ISO start of the bucket (UTC) */
  bucket: string;
  label: string;
  succeeded: number;
  failed: number;
  cancelled: number;
  rows: number;
  /** null where no run finished in the bucket, so the line has a gap instead of a false zero */
  p95: number | null;
}

const step: Record<Bucket, (d: Date, n: number) => Date> = { minute: addMinutes, hour: addHours, day: addDays };

/** The UTC start of the bucket holding `date`, as the server's date_trunc computes it. */
export function truncate(date: Date, bucket: Bucket): Date {
  const d = new Date(date.getTime());
  d.setUTCSeconds(0, 0);
  if (bucket !== "minute") d.setUTCMinutes(0);
  if (bucket === "day") d.setUTCHours(0);
  return d;
}

/**
 * The metrics API returns only buckets that had runs; charts need every bucket of the window, empty ones
 * as zeros, in order. Labels are in the viewer's time zone.
 */
export function fillSeries(points: RunSeriesPoint[], since: string, until: string, bucket: Bucket): ChartPoint[] {
  const byTime = new Map(points.map((p) => [parseISO(p.bucket).getTime(), p]));
  const end = parseISO(until).getTime();
  const out: ChartPoint[] = [];
  for (let t = truncate(parseISO(since), bucket); t.getTime() < end && out.length < 5000; t = step[bucket](t, 1)) {
    const p = byTime.get(t.getTime());
    out.push({
      bucket: t.toISOString(),
      label: format(t, bucket === "day" ? "MMM d" : "HH:mm"),
      succeeded: p?.succeeded ?? 0,
      failed: p?.failed ?? 0,
      cancelled: p?.cancelled ?? 0,
      rows: p?.rows ?? 0,
      p95: p?.duration_p95_s ?? null,
    });
  }
  return out;
}

export interface Kpis {
  runs: number;
  /** succeeded / (succeeded + failed), as the API defines it; null when nothing finished */
  successRate: number | null;
  rows: number;
}

export function kpis(points: RunSeriesPoint[]): Kpis {
  const sum = (key: "runs" | "succeeded" | "failed" | "rows") => points.reduce((a, p) => a + p[key], 0);
  const finished = sum("succeeded") + sum("failed");
  return { runs: sum("runs"), successRate: finished ? sum("succeeded") / finished : null, rows: sum("rows") };
}
