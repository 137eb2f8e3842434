#!/usr/bin/env node
// First-load JavaScript of a built page, gzipped: the scripts its HTML loads before anything else
// (Next 16 no longer prints this in `next build`). Usage: node scripts/bundle-size.mjs [page.html ...]
// Default: the dashboard (out/index.html). Exits 1 when a page exceeds BUDGET_KB (default 250).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const out = new URL("../out/", import.meta.url).pathname;
const budget = Number(process.env.BUDGET_KB ?? 250);
const pages = process.argv.slice(2).length ? process.argv.slice(2) : ["index.html"];
let failed = false;
for (const page of pages) {
  const html = readFileSync(join(out, page), "utf8");
  const scripts = [...new Set([...html.matchAll(/<script[^>]+src="([^"]+\.js)"/g)].map((m) => m[1]))];
  let raw = 0;
  let gz = 0;
  for (const src of scripts) {
    const body = readFileSync(join(out, src.replace(/^\//, "")));
    raw += body.length;
    gz += gzipSync(body, { level: 9 }).length;
  }
  const kb = (n) => (n / 1024).toFixed(1);
  const over = gz / 1024 > budget;
  failed ||= over;
  console.log(`${page}: first-load JS ${kb(gz)} KB gzipped (${kb(raw)} KB raw, ${scripts.length} files; budget ${budget} KB)${over ? "  OVER BUDGET" : ""}`);
}
process.exit(failed ? 1 : 0);
