"""A real HTTP API for the REST source tests: a threaded `http.server` on a loopback address, port 0.

Endpoints (all JSON; every one but /oauth/token checks the configured auth):

- `/page?page=&per_page=[&updated_since=]` -> `{"data": {"items": [...]}, "meta": {"total_pages": n}}`
- `/offset?offset=&limit=` -> `{"results": [...], "total": n}`
- `/cursor?[cursor=]&limit=` -> `{"items": [...], "meta": {"next_cursor": token | null}}`
- `/next?start=&limit=` -> `{"items": [...], "links": {"next": url | null}}` (`next_base` picks the host)
- `/link?page=&limit=` -> `[...]` with a `Link: <...>; rel="next"` header
- `/bad` -> records that do not fit the inferred schema; `/missing` -> 404; `/redirect?to=` -> 302
- `POST /oauth/token` -> client credentials grant: tokens that stop working after `token_uses` requests

Counts: `hits[key]` every answer to a page (errors included), `served[key]` the 200s, `requests` every
request with its headers; a page key is the path and its query without the API key, params sorted.
`failures[key]` is a list of (status, headers) answered before the real page, `delays[key]` stalls
between the headers and the body of the page (one per request).
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

BODY_MARKER = "REMOTE-BODY-MARKER"


def make_records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"item {i}",
            "score": i * 1.5,
            "active": i % 2 == 0,
            "updated_at": f"2024-01-{i:02d}T00:00:00Z",
            "meta": {"rank": i, "group": "odd" if i % 2 else "even"},
            "tags": ["t", str(i)],
        }
        for i in range(1, count + 1)
    ]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class RestTestServer:
    host: str = "127.0.0.1"
    port: int = 0
    records: list[dict[str, Any]] = field(default_factory=lambda: make_records(23))
    # "none", "basic", "bearer", "api_key_header", "api_key_query", "oauth2"
    auth: str = "none"
    username: str = "reader"
    password: str = "pw"
    bearer: str = "bearer-token"
    api_key_name: str = "X-API-Key"
    api_key: str = "key"
    client_id: str = "client"
    client_secret: str = "client-secret"
    token_uses: int = 1000
    token_expires_in: int = 3600
    next_base: str | None = None  # where /next points; None: this server
    next_override: str | None = None  # a fixed `next` for /next (SSRF tests)
    link_override: str | None = None  # a fixed rel="next" target for /link (SSRF tests)
    hits: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    delays: dict[str, list[float]] = field(default_factory=dict)  # seconds to stall before answering
    requests: list[Request] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)  # token -> uses left
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def page_key(self, path: str, query: dict[str, str]) -> str:
        kept = sorted((k, v) for k, v in query.items() if k != self.api_key_name)
        return f"{path}?{urlencode(kept)}" if kept else path

    def served_keys(self) -> list[str]:
        return [r for r, n in self.served.items() for _ in range(n)]


def _slice(records: list[dict[str, Any]], start: int, size: int) -> list[dict[str, Any]]:
    return records[start : start + size]


def _handler(state: RestTestServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms a request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # --- helpers ---------------------------------------------------------------------------

        def _send(
            self, status: int, body: Any, headers: dict[str, str] | None = None, stall: float = 0.0
        ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            try:
                if stall:  # the headers are out, the body comes late: a read timeout half-way
                    self.wfile.flush()
                    time.sleep(stall)
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting

        def _error(self, status: int, headers: dict[str, str] | None = None) -> None:
            # The body echoes what a careless API might: the connector must never repeat it.
            self._send(status, {"error": f"{BODY_MARKER} {self.path}"}, headers)

        def _authorised(self, query: dict[str, str]) -> bool:
            auth = state.auth
            header = self.headers.get("Authorization", "")
            if auth == "none":
                return True
            if auth == "basic":
                expected = base64.b64encode(f"{state.username}:{state.password}".encode()).decode()
                return header == f"Basic {expected}"
            if auth == "bearer":
                return header == f"Bearer {state.bearer}"
            if auth == "api_key_header":
                return self.headers.get(state.api_key_name) == state.api_key
            if auth == "api_key_query":
                return query.get(state.api_key_name) == state.api_key
            if auth == "oauth2":
                token = header.removeprefix("Bearer ")
                with state.lock:
                    left = state.tokens.get(token, 0)
                    if left <= 0:
                        return False
                    state.tokens[token] = left - 1
                return True
            raise AssertionError(auth)

        # --- routes ----------------------------------------------------------------------------

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            state.requests.append(Request("POST", parts.path, form, dict(self.headers)))
            if parts.path != "/oauth/token":
                self._error(404)
                return
            client_id, secret = form.get("client_id"), form.get("client_secret")
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                decoded = base64.b64decode(header.removeprefix("Basic ")).decode()
                raw_id, _, raw_secret = decoded.partition(":")
                client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            with state.lock:
                state.token_requests.append(form)
                number = len(state.token_requests)
            if form.get("grant_type") != "client_credentials" or (client_id, secret) != (
                state.client_id,
                state.client_secret,
            ):
                self._send(401, {"error": "invalid_client", "detail": BODY_MARKER})
                return
            token = f"access-{number}"
            with state.lock:
                state.tokens[token] = state.token_uses
            self._send(
                200, {"access_token": token, "token_type": "Bearer", "expires_in": state.token_expires_in}
            )

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            state.requests.append(Request("GET", parts.path, query, dict(self.headers)))
            key = state.page_key(parts.path, query)
            with state.lock:
                state.hits[key] += 1
                planned = state.failures.get(key)
                failure = planned.pop(0) if planned else None
                stalls = state.delays.get(key)
                stall = stalls.pop(0) if stalls else 0.0
            if failure is not None:
                self._error(failure[0], failure[1])
                return
            if parts.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", query["to"])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not self._authorised(query):
                self._error(401)
                return
            route = getattr(self, "route_" + parts.path.strip("/").replace("/", "_"), None)
            if route is None:
                self._error(404)
                return
            status, body, headers = route(query)
            if status == 200:
                with state.lock:
                    state.served[key] += 1
            self._send(status, body, headers, stall)

        def route_page(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
            page, size = int(q.get("page", 1)), int(q.get("per_page", 10))
            records = state.records
            if "updated_since" in q:  # inclusive on purpose: the connector must still not repeat a row
                records = [r for r in records if r["updated_at"] >= q["updated_since"]]
            total_pages = -(-len(records) // size)
            items = _slice(records, (page - 1) * size, size)
            return 200, {"data": {"items": items}, "meta": {"total_pages": total_pages}}, {}

        def route_offset(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
            offset, limit = int(q.get("offset", 0)), int(q.get("limit", 10))
            return 200, {"results": _slice(state.records, offset, limit), "total": len(state.records)}, {}

        def route_cursor(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
            start = int(base64.urlsafe_b64decode(q["cursor"]).decode()) if q.get("cursor") else 0
            limit = int(q.get("limit", 5))
            end = start + limit
            token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(state.records) else None
            return 200, {"items": _slice(state.records, start, limit), "meta": {"next_cursor": token}}, {}

        def route_next(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
            start, limit = int(q.get("start", 0)), int(q.get("limit", 5))
            end = start + limit
            nxt: str | None = None
            if state.next_override is not None:
                nxt = state.next_override
            elif end < len(state.records):
                # Relative from this server, absolute when pointing elsewhere: both must work.
                base = state.next_base or ""
                nxt = f"{base}/next?start={end}&limit={limit}"
            return 200, {"items": _slice(state.records, start, limit), "links": {"next": nxt}}, {}

        def route_link(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
            page, limit = int(q.get("page", 1)), int(q.get("limit", 5))
            headers = {}
            last = -(-len(state.records) // limit)
            links = [f'<{state.url}/link?page={last}&limit={limit}>; rel="last"']
            if state.link_override is not None:
                links.insert(0, f'<{state.link_override}>; rel="next"')
            elif page < last:
                links.insert(0, f'<{state.url}/link?page={page + 1}&limit={limit}>; rel="next"')
            headers["Link"] = ", ".join(links)
            return 200, _slice(state.records, (page - 1) * limit, limit), headers

        def route_bad(self, q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
            return 200, {"items": state.records}, {}

    return Handler


def serve(state: RestTestServer) -> Iterator[RestTestServer]:
    server = http.server.ThreadingHTTPServer((state.host, state.port), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
