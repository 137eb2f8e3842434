"""`manage.py up` end to end (embedded PostgreSQL and Redis, web, worker, beat; a login; one `up` per data
directory; a clean stop; a restart on the same data), and the embedded servers on their own."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
import redis

from aggregator.embedded import EmbeddedPostgres, EmbeddedRedis

REPO_DIR = Path(__file__).resolve().parent.parent
# Variables that would make `up` use something else than what it starts and generates in the data dir.
UNSET = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CHANNELS_REDIS_URL",
    "CACHE_REDIS_URL",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "AGGREGATOR_ENCRYPTION_KEYS",
    "AGGREGATOR_ENCRYPTION_KEYS_FILE",
    "AGGREGATOR_ADMIN_EMAIL",
    "AGGREGATOR_ADMIN_PASSWORD",
    "AGGREGATOR_BASE_URL",
    "AGGREGATOR_UP_DATA_DIR",
    "_AGGREGATOR_FROM_UP_ENV",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Up:
    """A `manage.py up` subprocess; its output is collected line by line."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=REPO_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, client: httpx.Client, timeout: float = 180) -> None:
        """Until /readyz answers 200: database, Redis and a Celery worker all answer."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"`up` exited with {self.process.returncode}:\n{self.output}")
            try:
                response = client.get(self.url("/readyz"), timeout=5)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        pytest.fail(f"/readyz not 200 after {timeout} s (last: {last}):\n{self.output}")

    def stop(self, timeout: float = 90) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`up` did not stop within {timeout} s:\n{self.output}")
        self._reader.join(timeout=5)
        return returncode


def _processes_of(data_dir: Path, known: set[int]) -> list[str]:
    """Live processes that belong to a run on data_dir: known descendants of `up`, or any process whose
    command line, working directory or environment mentions the directory."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cwd", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        mentions = str(data_dir) in " ".join(proc.info["cmdline"] or []) or str(data_dir) in (
            proc.info["cwd"] or ""
        )
        with contextlib.suppress(psutil.Error):
            mentions = mentions or str(data_dir) in " ".join(proc.environ().values())
        if mentions or proc.pid in known:
            found.append(f"{proc.pid} {proc.info['name']} {' '.join(proc.info['cmdline'] or [])}")
    return found


def _descendants(pid: int) -> set[int]:
    return {child.pid for child in psutil.Process(pid).children(recursive=True)}


def _wait_no_processes(data_dir: Path, known: set[int], timeout: float = 10) -> list[str]:
    # An orphan's zombie is reaped by init in its own time; give the process table a moment.
    deadline = time.monotonic() + timeout
    while (left := _processes_of(data_dir, known)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _login(client: httpx.Client, up: Up, email: str, password: str) -> None:
    response = client.post(up.url("/api/v1/auth/token/"), json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    assert response.json()["access"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_up_starts_everything_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    env["DJANGO_SETTINGS_MODULE"] = "aggregator.settings.local"
    known: set[int] = set()
    ups: list[Up] = []
    # trust_env=False: a proxy from the environment must not be asked for 127.0.0.1.
    client = httpx.Client(trust_env=False, timeout=10)
    try:
        first = Up(data_dir, _free_port(), env)
        ups.append(first)
        first.wait_ready(client)
        email = re.search(r"Admin email: (\S+)", first.output)
        password = re.search(r"Admin password: (\S+)", first.output)
        assert email and password, first.output
        _login(client, first, email[1], password[1])
        assert (data_dir / "secrets.env").stat().st_mode & 0o077 == 0
        assert "DATABASE_URL=postgres://" in (data_dir / "run.env").read_text()
        known |= _descendants(first.process.pid)
        running = "\n".join(_processes_of(data_dir, known))
        for kind in ("postgres", "redis-server", "uvicorn", "celery -A aggregator worker", "beat"):
            assert kind in running, running  # so that finding none of them after the stop means something

        second = subprocess.run(
            [sys.executable, "manage.py", "up", "--port", str(_free_port()), "--data-dir", str(data_dir)],
            cwd=REPO_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"Aggregator is already running (pid {first.process.pid})" in second.stderr
        client.get(first.url("/healthz")).raise_for_status()  # the first one did not notice

        assert first.stop() == 0, first.output
        assert not _wait_no_processes(data_dir, known), first.output
        assert not (data_dir / "run.env").exists()

        again = Up(data_dir, _free_port(), env)
        ups.append(again)
        again.wait_ready(client)
        assert "Admin password" not in again.output  # the admin from the first start is still there
        _login(client, again, email[1], password[1])
        known |= _descendants(again.process.pid)
        assert again.stop() == 0, again.output
        assert not _wait_no_processes(data_dir, known), again.output
    finally:
        client.close()
        for up in ups:
            if up.process.poll() is None:
                up.process.kill()
                up.process.wait()
        for line in _processes_of(data_dir, known):  # never leave servers behind a failed test
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(line.split()[0])).kill()


def test_embedded_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("kept", "yes")
        client.close()
    finally:
        server.stop()
    assert server.port is None
    assert _port_closed(int(url.rsplit(":", 1)[1].split("/")[0]))
    assert (tmp_path / "redis" / "dump.rdb").exists()  # saved at shutdown

    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        server.stop()


def test_embedded_redis_replaces_a_server_left_running(tmp_path: Path) -> None:
    left_behind = EmbeddedRedis(tmp_path / "redis")
    left_behind.start()
    stale_pid = left_behind.pid
    server = EmbeddedRedis(tmp_path / "redis")
    try:
        server.start()
        assert server.pid != stale_pid
        assert not psutil.pid_exists(stale_pid or 0) or psutil.Process(stale_pid).status() == "zombie"
        assert redis.Redis.from_url(server.url()).ping()
    finally:
        server.stop()
        left_behind.stop()


def test_embedded_postgres_starts_creates_a_database_and_stops(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    assert url == f"postgres://postgres@127.0.0.1:{server.port}/postgres"
    port = server.port
    try:
        server.ensure_database("aggregator")
        server.ensure_database("aggregator")  # idempotent
        with psycopg.connect(server.url("aggregator")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("aggregator",)
    finally:
        server.stop()
    assert port is not None and _port_closed(port)
    assert not server.running_processes()
