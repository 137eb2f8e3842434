#!/usr/bin/env bash
# Regenerates the API types from the backend: manage.py spectacular (test settings) -> frontend/openapi.yaml,
# then openapi-typescript -> frontend/src/api/schema.d.ts. Both files are committed.
# With --check, writes to a temporary directory and fails when the committed files differ (the drift check
# `make test` runs). Warnings are tests/platform/test_schema.py's business, not this script's.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
# BACKEND_ROOT: generate from another checkout of the backend (e.g. a clean `git archive` of HEAD).
root="${BACKEND_ROOT:-$(cd "$here/.." && pwd)}"
python="${PYTHON:-$here/../.venv/bin/python}"
out_yaml="$here/openapi.yaml"
out_ts="$here/src/api/schema.d.ts"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if [[ "${1:-}" == "--check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp" "$log"' EXIT
  out_yaml="$tmp/openapi.yaml"
  out_ts="$tmp/schema.d.ts"
fi
# The schema needs no database: a placeholder URL keeps the test settings from starting embedded servers.
(cd "$root" && DJANGO_SETTINGS_MODULE=aggregator.settings.test \
  DATABASE_URL="${DATABASE_URL:-postgres://unused@127.0.0.1:1/unused}" \
  REDIS_URL="${REDIS_URL:-redis://127.0.0.1:1/0}" \
  "$python" manage.py spectacular --file "$out_yaml" 2>"$log") || { cat "$log" >&2; exit 1; }
(cd "$here" && node_modules/.bin/openapi-typescript "$out_yaml" -o "$out_ts" --alphabetize >/dev/null)
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -q "$here/openapi.yaml" "$out_yaml" >/dev/null || ! diff -q "$here/src/api/schema.d.ts" "$out_ts" >/dev/null; then
    diff -u "$here/openapi.yaml" "$out_yaml" | head -40 || true
    echo "The API schema changed: run frontend/scripts/gen-types.sh and commit openapi.yaml and schema.d.ts." >&2
    exit 1
  fi
  echo "API types are up to date."
fi
