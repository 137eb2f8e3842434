import { describe, expect, it } from "vitest";

import type { RunSeriesPoint } from "@/api/types";

import { fillSeries, kpis, truncate } from "./charts";

const point = (bucket: string, over: Partial<RunSeriesPoint> = {}): RunSeriesPoint => ({
  bucket,
  runs: 0,
  succeeded: 0,
  failed: 0,
  cancelled: 0,
  rows: 0,
  success_rate: null,
  duration_p50_s: null,
  duration_p95_s: null,
  ...over,
});

describe("chart data shaping", () => {
  it("fills the buckets without runs with zeros and keeps p95 gaps", () => {
    const series = fillSeries(
      [point("2026-11-25T10:00:00Z", { runs: 3, succeeded: 2, failed: 1, rows: 500, duration_p95_s: 4.2 })],
      "2026-11-25T08:30:00Z",
      "2026-11-25T12:00:00Z",
      "hour",
    );
    expect(series.map((p) => p.bucket)).toEqual([
      "2026-11-25T08:00:00.000Z",
      "2026-11-25T09:00:00.000Z",
      "2026-11-25T10:00:00.000Z",
      "2026-11-25T11:00:00.000Z",
    ]);
    expect(series[2]).toMatchObject({ succeeded: 2, failed: 1, cancelled: 0, rows: 500, p95: 4.2 });
    expect(series[0]).toMatchObject({ succeeded: 0, failed: 0, rows: 0, p95: null });
  });

  it("truncates like date_trunc in UTC", () => {
    expect(truncate(new Date("2026-11-25T13:47:12.5Z"), "day").toISOString()).toBe("2026-11-25T00:00:00.000Z");
    expect(truncate(new Date("2026-11-25T13:47:12.5Z"), "minute").toISOString()).toBe("2026-11-25T13:47:00.000Z");
  });

  it("computes the success rate over finished runs only, as the API does", () => {
    const result = kpis([
      point("2026-11-25T10:00:00Z", { runs: 4, succeeded: 3, failed: 0, cancelled: 1, rows: 10 }),
      point("2026-11-25T11:00:00Z", { runs: 1, failed: 1, rows: 5 }),
    ]);
    expect(result).toEqual({ runs: 5, successRate: 0.75, rows: 15 });
    expect(kpis([]).successRate).toBeNull();
  });
});
