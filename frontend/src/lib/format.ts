import { formatDistanceToNowStrict, format, parseISO } from "date-fns";

export function ago(iso: string | null | undefined): string {
  if (!iso) return "—";
  return `${formatDistanceToNowStrict(parseISO(iso))} ago`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "—";
  return format(parseISO(iso), "yyyy-MM-dd HH:mm:ss");
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
export const count = (n: number | null | undefined) => (n === null || n === undefined ? "—" : n.toLocaleString("en"));
export const short = (n: number) => compact.format(n);

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A cell of a row grid: ∅ for a missing value, JSON for an object. */
export const cellText = (v: unknown) => (v === null || v === undefined ? "∅" : typeof v === "object" ? JSON.stringify(v) : String(v));
