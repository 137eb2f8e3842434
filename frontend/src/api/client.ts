// Same-origin calls with the Django session cookie. Unsafe methods carry the CSRF token, fetched once from
// /api/v1/auth/csrf/ (which also sets the cookie) and again after a sign-in rotates it.

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
  const response = await fetch("/api/v1/auth/csrf/", { credentials: "same-origin" });
  const body = (await response.json()) as { csrf_token: string };
  csrfToken = body.csrf_token;
  return csrfToken;
}

export type Query = Record<string, string | number | boolean | undefined | null | (string | number)[]>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, String(v)));
    else params.set(key, String(value));
  }
  const text = params.toString();
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

export async function api<T>(
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
  path: string,
  options: { body?: unknown; query?: Query; signal?: AbortSignal } = {},
): Promise<T> {
  const url = withQuery(path.startsWith("/") ? path : `/api/v1/${path}`, options.query);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const send = async () => {
    if (method !== "GET") headers["X-CSRFToken"] = await csrf();
    return fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  };
  let response = await send();
  if (response.status === 403 && method !== "GET") {
    // A stale token (the session rotated it at sign-in): fetch a fresh one and try once more.
    const error = await toError(response.clone());
    if (/csrf/i.test(error.message)) {
      resetCsrf();
      response = await send();
    }
  }
  if (!response.ok) throw await toError(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export const get = <T>(path: string, query?: Query, signal?: AbortSignal) =>
  api<T>("GET", path, { query, signal });
export const post = <T>(path: string, body?: unknown) => api<T>("POST", path, { body });
export const patch = <T>(path: string, body?: unknown) => api<T>("PATCH", path, { body });
export const del = (path: string) => api<void>("DELETE", path);

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
