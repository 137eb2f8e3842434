// A fetch stub for tests that answer API calls by method and path, under the real typed client (its
// transport, CSRF and error handling run as in the app).
import { vi, type Mock } from "vitest";

import { ApiError } from "@/api/client";

type Handler = Mock<(path: string, arg?: unknown) => unknown>;

/**
 * Answers `fetch` from the handlers: `get(path, query?)`, `post(path, body?)`, `patch(path, body?)`,
 * `del(path)`, the path relative to `/api/v1/` ("auth/mfa/totp/"), the query as an object (only when the
 * URL has one), the body parsed (only when sent). A handler's value is the 200 answer (undefined: 204); an
 * ApiError it throws becomes that status with the API's error body; anything else it throws makes fetch
 * reject (a network error). The CSRF token is answered here.
 */
export function stubApi(handlers: Partial<Record<"get" | "post" | "patch" | "del", Handler>>) {
  const fetchMock = vi.fn(async (request: Request) => {
    const url = new URL(request.url);
    const path = url.pathname.replace(/^\/api\/v1\//, "");
    if (path === "auth/csrf/") return json(200, { csrf_token: "t" });
    const method = request.method === "DELETE" ? "del" : (request.method.toLowerCase() as "get" | "post" | "patch");
    const handler = handlers[method];
    if (!handler) throw new Error(`no ${request.method} handler for ${path}`);
    const text = method === "get" ? "" : await request.text();
    const query = Object.fromEntries(url.searchParams);
    const args: [string, unknown?] = [path];
    if (text) args.push(JSON.parse(text));
    else if (url.search) args.push(query);
    try {
      const value = await handler(...args);
      return value === undefined ? new Response(null, { status: 204 }) : json(200, value);
    } catch (error) {
      if (error instanceof ApiError) return json(error.status, { error: { code: error.code, message: error.message, fields: error.fields } });
      throw error;
    }
  });
  vi.stubGlobal("fetch", fetchMock);
  return fetchMock;
}

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}
