"""`/ws/` on the real ASGI server: uvicorn in a subprocess on the test database and Redis, a real WebSocket
client (`websockets`), a JWT obtained from the server itself, and a real pipeline run executed here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from apps.pipelines import executor
from apps.pipelines.executor import run_execute
from apps.pipelines.models import RunStatus
from apps.pipelines.services import pipeline_create, run_start
from tests.factories import DEFAULT_PASSWORD
from tests.pipelines.conftest import (  # noqa: F401  (fixtures)
    csv_connector,
    flights_definition,
    flights_file,
    import_dir,
    pg_config,
    pg_connector,
    pg_schema,
    scratch_database,
)
from tests.pipelines.worker import ROOT, worker_env

# The server reads what this test writes through its own connections: data must be committed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class UvicornServer:
    """`python -m uvicorn aggregator.asgi:application` on a free loopback port, on the test database."""

    def __init__(self, *, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/"
        self.origin = self.base
        env = {**worker_env(), **(extra_env or {})}
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (the server's stderr, kept to show if it fails)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "aggregator.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "off",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}: {self._stderr_tail()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not start in time: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def jwt(self, email: str) -> str:
        response = httpx.post(
            f"{self.base}/api/v1/auth/token/", json={"email": email, "password": DEFAULT_PASSWORD}, timeout=10
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access"])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()

    def __enter__(self) -> UvicornServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=timeout)))


@pytest.fixture
def pipeline(personas: Any, csv_connector: Any, pg_connector: Any) -> Any:  # noqa: F811
    return pipeline_create(
        workspace=personas.workspace,
        name="late flights",
        definition=flights_definition(),
        user=personas.owner,
    )


def test_a_client_follows_a_real_run_over_a_real_websocket(personas, pipeline, monkeypatch):
    # Progress is published every heartbeat; a seven-row run is over well within the default second.
    monkeypatch.setattr(executor, "HEARTBEAT_EVERY_S", 0.02)
    with UvicornServer() as server:
        token = server.jwt("viewer@acme.test")
        with connect(server.ws_url, origin=server.origin, open_timeout=10) as ws:
            send(ws, {"type": "auth", "token": token})
            assert recv(ws)["type"] == "authenticated"

            run = run_start(pipeline=pipeline, user=personas.owner)
            send(ws, {"type": "subscribe", "channel": "run", "id": run.id})
            assert recv(ws) == {"type": "subscribed", "channel": "run", "id": run.id}

            assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED

            received: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                message = recv(ws)
                received.append(message)
                if message.get("type") == "event" and message["event"]["type"] == "run.succeeded":
                    break
            types = [m["event"]["type"] for m in received if m["type"] == "event"]
            assert types[0] == "run.started", types
            assert types[-1] == "run.succeeded", types
            assert {"run.progress", "node.started"} & set(types), types
            events_only = [m for m in received if m["type"] == "event"]
            assert all(m["event"]["subject"] == {"type": "run", "id": str(run.id)} for m in events_only)
            # Log lines arrive live as the executor writes them.
            log_lines = [m["line"]["message"] for m in received if m["type"] == "log"]
            assert any(line.startswith("Run started") for line in log_lines), log_lines
            succeeded = received[-1]["event"]
            assert succeeded["workspace"] == personas.workspace.id and succeeded["id"] is not None


def test_the_audit_log_names_the_credential_and_address_under_the_asgi_server(personas, pipeline):
    from apps.monitoring.models import AuditEntry

    with UvicornServer() as server:
        token = server.jwt("owner@acme.test")
        response = httpx.patch(
            f"{server.base}/api/v1/pipelines/{pipeline.id}/",
            json={"description": "late flights, nightly"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
    updates = AuditEntry.objects.filter(
        content_type__model="pipeline", object_pk=str(pipeline.id), action=AuditEntry.Action.UPDATE
    )
    # (The other update is pipeline_create's own version bump, made by the fixture outside any request.)
    (entry,) = [e for e in updates if "description" in e.changes]
    assert (entry.actor_id, entry.credential, entry.remote_addr) == (personas.owner.id, "jwt", "127.0.0.1")
    assert entry.changes["description"] == ["", "late flights, nightly"]


def test_the_real_server_refuses_a_foreign_origin(personas):
    from websockets.exceptions import InvalidStatus

    with UvicornServer() as server:
        with pytest.raises(InvalidStatus) as refused:
            connect(server.ws_url, origin="https://evil.example", open_timeout=10)
        assert refused.value.response.status_code == 403
