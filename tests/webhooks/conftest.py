"""Webhook fixtures: a real HTTP receiver on 127.0.0.1 that verifies each request with the Standard
Webhooks reference library, and the SSRF allow-list that lets the tests reach it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as ReferenceVerifier

from tests.connectors.conftest import import_dir, pg_config, pg_schema, scratch_conn, scratch_database  # noqa: F401
from tests.pipelines.conftest import csv_connector, flights_file, pg_connector  # noqa: F401


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified_with: list[int]  # indexes of the receiver's secrets the reference library accepted

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next planned (status, body, headers), then 200 once the plan is
    used up; a planned status of None means: hang for `delay` seconds first, then answer 200."""

    url: str
    secrets: list[str] = field(default_factory=list)
    plan: list[tuple[int | None, str, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        self.plan.extend((s, body, headers or {}) for s in statuses)

    def verify(self, body: bytes, headers: dict[str, str]) -> list[int]:
        ok = []
        for index, secret in enumerate(self.secrets):
            try:
                ReferenceVerifier(secret).verify(body, headers)
            except Exception:  # noqa: S112 - a secret that does not verify is the answer, not an error
                continue
            ok.append(index)
        return ok


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = state["r"]
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with rec.lock:
                rec.requests.append(Received(self.path, headers, body, rec.verify(body, headers)))
                status, text, extra = rec.plan.pop(0) if rec.plan else (200, "ok", {})
            if status is None:
                time.sleep(rec.delay)
                status = 200
            payload = text.encode()
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["r"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def fast_retries(settings: Any) -> list[int]:
    settings.AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S = [60, 600]
    return settings.AGGREGATOR_WEBHOOK_RETRY_SCHEDULE_S
