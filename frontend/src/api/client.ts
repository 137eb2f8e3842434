// Same-origin calls with the Django session cookie. Unsafe methods carry the CSRF token, fetched once from
// /api/v1/auth/csrf/ (which also sets the cookie) and again after a sign-in rotates it.
import createClient from "openapi-fetch";

import type { paths } from "./schema";

export interface ErrorBody {
  code: string;
  message: string;
  fields?: Record<string, string[]>;
  retry_after?: number;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: Record<string, string[]>;

  constructor(status: number, body: ErrorBody) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code;
    this.fields = body.fields ?? {};
  }
}

let csrfToken: string | null = null;

export function resetCsrf(): void {
  csrfToken = null;
}

async function csrf(): Promise<string> {
  if (csrfToken) return csrfToken;
  // A GET, so the transport asks for no token: no loop.
  const body = await ok(api.GET("/api/v1/auth/csrf/"));
  csrfToken = body.csrf_token;
  return csrfToken;
}

export type Query = Record<string, string | number | boolean | undefined | null | (string | number)[]>;

/** `a=1&b=x&b=y`: undefined, null and empty values are left out, arrays repeat the key. */
export function queryString(query?: Query): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, String(v)));
    else params.set(key, String(value));
  }
  return params.toString();
}

export function withQuery(path: string, query?: Query): string {
  const text = queryString(query);
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

async function toError(response: Response): Promise<ApiError> {
  try {
    const body = (await response.json()) as { error?: ErrorBody };
    if (body.error) return new ApiError(response.status, body.error);
  } catch {
    // not JSON: a proxy's page or an HTML 500
  }
  return new ApiError(response.status, {
    code: `http_${response.status}`,
    message: response.status >= 500 ? "The server failed; try again in a moment." : response.statusText,
  });
}

/**
 * The transport under the typed client: unsafe methods carry the CSRF token (a 403 naming CSRF — the
 * session rotated it at sign-in — fetches a fresh one and sends once more), and every non-2xx answer is
 * thrown as an ApiError, so a call resolves only with the success body. `globalThis.fetch` is looked up at
 * each call (tests stub it).
 */
async function send(request: Request): Promise<Response> {
  const unsafe = request.method !== "GET";
  const again = unsafe ? request.clone() : null;
  if (unsafe) request.headers.set("X-CSRFToken", await csrf());
  let response = await globalThis.fetch(request);
  if (response.status === 403 && again) {
    const error = await toError(response.clone());
    if (/csrf/i.test(error.message)) {
      resetCsrf();
      again.headers.set("X-CSRFToken", await csrf());
      response = await globalThis.fetch(again);
    }
  }
  if (!response.ok) throw await toError(response);
  return response;
}

/**
 * The API client: openapi-fetch over the types generated from the backend's OpenAPI schema, so each
 * path, path parameter, query and body is checked by the compiler and each answer has its schema's type.
 * Paths are the schema's (`/api/v1/pipelines/{id}/`). Unwrap a call with `ok()`:
 *
 *     const pipeline = await ok(api.GET("/api/v1/pipelines/{id}/", { params: { path: { id } }, signal }));
 */
export const api = createClient<paths>({
  // An absolute base: Request needs one outside a browser (Vitest); in the browser it is the page's origin.
  baseUrl: typeof location === "undefined" ? "" : location.origin,
  fetch: send,
  querySerializer: (query) => queryString(query as Query),
  headers: { Accept: "application/json" },
  credentials: "same-origin",
});

/**
 * The success body of a typed call (errors were thrown as ApiError by the transport; a 204 gives
 * undefined, which is what the schema's no-content responses are typed as).
 */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data } = await call;
  return data as T;
}

/**
 * A body of server defaults (`{}`). openapi-typescript types a field that has a default as required, so an
 * empty body that takes every default (`full_refresh`, `overlap_seconds`) is written `body: serverDefaults()`.
 */
export function serverDefaults<T>(): T {
  return {} as T;
}

/**
 * Query parameters the backend reads but its schema does not declare (the `workspace` filter of the scoped
 * list endpoints, and the like): spread into a typed call's `query`, they are sent as they are. Each use
 * names a gap in the backend's schema; declare the parameter there and this goes away.
 */
export function undeclared(query: Query): Record<never, never> {
  return query;
}

export interface StoredUpload {
  path: string;
  size: number;
  sha256: string;
  format: string;
  original_name: string;
}

/**
 * Uploads a file for the file sources (multipart, `POST /api/v1/uploads/`), reporting progress. XHR and
 * not fetch: fetch cannot report upload progress.
 */
export async function uploadFile(
  file: File,
  workspace: number | null,
  onProgress: (fraction: number) => void,
): Promise<StoredUpload> {
  const token = await csrf();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", withQuery("/api/v1/uploads/", { workspace }));
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.withCredentials = true;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // not JSON
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body as StoredUpload);
      else {
        const error = (body as { error?: ErrorBody } | null)?.error;
        reject(new ApiError(xhr.status, error ?? { code: `http_${xhr.status}`, message: xhr.statusText || "The upload failed." }));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, { code: "network", message: "The upload was interrupted." }));
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}
