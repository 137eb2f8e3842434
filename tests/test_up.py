"""`manage.py up` end to end (embedded PostgreSQL and Redis, web, worker, beat; a login; one `up` per data
directory; a clean stop; a restart on the same data; a killed worker started again, and what makes `up` give
up), the restart rule on its own, and the embedded servers on their own."""

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psutil
import psycopg
import pytest
import redis

from aggregator.embedded import EmbeddedPostgres, EmbeddedRedis
from aggregator.supervisor import RestartPolicy, describe_exit

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

    def wait_line(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first line of output that matches `pattern`, waiting for it to come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            time.sleep(0.05)
        pytest.fail(f"no line matching {pattern!r} after {timeout} s:\n{self.output}")

    def wait_exit(self, timeout: float) -> int:
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`up` did not exit by itself within {timeout} s:\n{self.output}")
        self._reader.join(timeout=5)
        return returncode

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


def _up_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    env["DJANGO_SETTINGS_MODULE"] = "aggregator.settings.local"
    # These tests drive the API as the admin `up` creates, whom the default MFA policy sends to set up
    # two-factor authentication first (tests/users/test_mfa.py follows that path).
    env["AGGREGATOR_MFA_REQUIRED_FOR"] = "none"
    env.update(extra)
    return env


def _kill_everything(ups: list[Up], data_dir: Path, known: set[int]) -> None:
    """Never leave servers behind a failed test."""
    for up in ups:
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait()
    for line in _processes_of(data_dir, known):
        with contextlib.suppress(psutil.Error):
            psutil.Process(int(line.split()[0])).kill()


def _worker(up: Up, other_than: int | None = None, timeout: float = 30) -> psutil.Process:
    """The main process of `up`'s Celery worker (a child of `up`; its pool processes are its children)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(up.process.pid).children():
            with contextlib.suppress(psutil.Error):
                if "celery -A aggregator worker" in " ".join(child.cmdline()) and child.pid != other_than:
                    return child
        time.sleep(0.05)
    pytest.fail(f"no new worker process after {timeout} s:\n{up.output}")


def _login(client: httpx.Client, up: Up, email: str, password: str) -> None:
    response = client.post(up.url("/api/v1/auth/token/"), json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    assert response.json()["access"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_up_starts_everything_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = _up_env()
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
        assert f"sign in:         {first.url('/')}   (the admin user" in first.output
        assert f"operator admin:  {first.url('/admin/')}" in first.output
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
        _kill_everything(ups, data_dir, known)


class _Api:
    """The public API, as the admin `up` created (with a JWT)."""

    def __init__(self, client: httpx.Client, up: Up) -> None:
        email = re.search(r"Admin email: (\S+)", up.output)
        password = re.search(r"Admin password: (\S+)", up.output)
        assert email and password, up.output
        self.client = client
        self.up = up
        response = client.post(
            up.url("/api/v1/auth/token/"), json={"email": email[1], "password": password[1]}
        )
        assert response.status_code == 200, response.text
        self.headers = {"Authorization": f"Bearer {response.json()['access']}"}

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(self.up.url(path), json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def workspace_id(self) -> int:
        """The id of the admin's one workspace."""
        response = self.client.get(self.up.url("/api/v1/workspaces/"), headers=self.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        rows = body["results"] if isinstance(body, dict) else body
        assert len(rows) == 1, body
        return int(rows[0]["id"])

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.client.get(self.up.url(f"/api/v1/runs/{run_id}/"), headers=self.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_run(
        self, run_id: int, until: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until(body := self.run(run_id)):
                return body
            time.sleep(0.2)
        pytest.fail(f"run {run_id} still {body['status']} after {timeout} s:\n{self.up.output}")

    def copy_pipeline(self, name: str, source: str, destination: str, table: str) -> int:
        """A pipeline copying one CSV file's stream into a DuckDB table; its id."""
        pipeline = self.create(
            "/api/v1/pipelines/",
            {
                "name": name,
                "retry_backoff_s": 0,  # a retried attempt starts at once
                "definition": {
                    "nodes": [
                        {"id": "source", "kind": "source", "connector": source, "stream": name},
                        {
                            "id": "warehouse",
                            "kind": "destination",
                            "connector": destination,
                            "table": table,
                            "write_mode": "append",
                        },
                    ],
                    "edges": [{"from": "source", "to": "warehouse"}],
                },
            },
        )
        return int(pipeline["id"])


def _finished(run: dict[str, Any]) -> bool:
    return run["status"] in ("succeeded", "failed", "cancelled")


# Enough rows that a run lasts several seconds here, so the worker can be killed in the middle of it.
BIG_ROWS = 4_000_000


def _write_big_csv(path: Path) -> None:
    with path.open("w") as out:
        out.write("id,carrier,dep_delay\n")
        for start in range(0, BIG_ROWS, 50_000):
            out.write(
                "".join(f"{i},{'UA' if i % 3 else 'AA'},{i % 200}\n" for i in range(start, start + 50_000))
            )


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_killed_worker_is_restarted_and_the_run_it_was_executing_still_succeeds(tmp_path: Path) -> None:
    data_dir, import_dir, warehouse_dir = tmp_path / "data", tmp_path / "import", tmp_path / "warehouse"
    env = _up_env(
        AGGREGATOR_IMPORT_DIR=str(import_dir),
        AGGREGATOR_DATA_DIR=str(warehouse_dir),
        # The run watchdog (a beat task every 30 s) retries a run whose worker is gone once its heartbeat is
        # this old: short, so the test does not wait out the default 90 s.
        AGGREGATOR_RUN_HEARTBEAT_TIMEOUT_S="10",
    )
    known: set[int] = set()
    ups: list[Up] = []
    client = httpx.Client(trust_env=False, timeout=10)
    try:
        up = Up(data_dir, _free_port(), env)
        ups.append(up)
        up.wait_ready(client)
        api = _Api(client, up)
        # A file source reads its workspace's own area of the import directory.
        workspace_id = api.workspace_id()
        area = import_dir / "workspaces" / str(workspace_id)
        area.mkdir(parents=True)
        _write_big_csv(area / "big.csv")
        (area / "small.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
        for name in ("big", "small"):
            api.create(
                "/api/v1/connectors/",
                {"name": f"{name}-files", "connector_type": "csv_file", "config": {"path": f"{name}.csv"}},
            )
        api.create(
            "/api/v1/connectors/",
            {"name": "warehouse", "connector_type": "duckdb", "config": {"database": "warehouse.duckdb"}},
        )
        big = api.copy_pipeline("big", "big-files", "warehouse", "big")
        small = api.copy_pipeline("small", "small-files", "warehouse", "small")

        run = api.create(f"/api/v1/pipelines/{big}/runs/", {})
        api.wait_run(
            run["id"],
            lambda r: _finished(r) or any(n["node_id"] == "warehouse" and n["rows_in"] for n in r["nodes"]),
            timeout=120,
        )
        worker = _worker(up)
        pool = {child.pid for child in worker.children()}
        known |= _descendants(up.process.pid)
        worker.kill()
        killed_at = time.monotonic()
        status = api.run(run["id"])["status"]
        assert status == "running", f"the run was {status} when its worker was killed, not in the middle"

        up.wait_line(r"^! worker exited \(signal SIGKILL\); restarting in 1 s \(restart 1\)$", timeout=10)
        up.wait_ready(client, timeout=60)
        back_after = time.monotonic() - killed_at
        assert back_after < 60, up.output
        up.wait_line(r"^✓ ready again: /readyz answers 200", timeout=10)
        assert not [pid for pid in pool if psutil.pid_exists(pid)]  # the dead worker's pool went with it
        assert up.output.count("Aggregator is running") == 1  # the banner is not printed again

        retried = api.wait_run(run["id"], _finished, timeout=180)
        assert (retried["status"], retried["attempt"], retried["rows_written"]) == ("succeeded", 2, BIG_ROWS)
        run = api.create(f"/api/v1/pipelines/{small}/runs/", {})
        after = api.wait_run(run["id"], _finished, timeout=60)
        assert (after["status"], after["attempt"], after["rows_written"]) == ("succeeded", 1, 3)

        # A stop while a killed worker waits for its restart: nothing is started again, nothing is left.
        worker = _worker(up)
        known |= _descendants(up.process.pid)
        worker.kill()
        up.wait_line(r"^! worker exited \(signal SIGKILL\); restarting in \d+ s \(restart 2\)$", timeout=10)
        assert up.stop() == 0, up.output
        assert "→ stopping web, beat…" in up.lines, up.output
        assert not _wait_no_processes(data_dir, known), up.output
    finally:
        client.close()
        _kill_everything(ups, data_dir, known)
    print(f"/readyz answered 200 again {back_after:.1f} s after the worker was killed")

    warehouse = duckdb.connect(
        # A DuckDB destination writes in its workspace's area of the data directory.
        str(warehouse_dir / "workspaces" / str(workspace_id) / "warehouse.duckdb"),
        read_only=True,
    )
    try:
        # Exactly once: nothing of the killed attempt is left beside the retried one.
        assert warehouse.execute("SELECT count(*), count(DISTINCT id) FROM big").fetchone() == (
            BIG_ROWS,
            BIG_ROWS,
        )
        assert warehouse.execute("SELECT count(*) FROM small").fetchone() == (3,)
    finally:
        warehouse.close()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_up_stops_when_a_child_fails_before_ready_or_keeps_crashing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    known: set[int] = set()
    ups: list[Up] = []
    client = httpx.Client(trust_env=False, timeout=10)
    try:
        # Celery's command line reads its options from CELERY_<COMMAND>_<OPTION> variables too: a bad pool
        # is a worker misconfigured in its environment, which only the worker reads, and makes it exit at
        # once with a usage error.
        failing = Up(data_dir, _free_port(), _up_env(CELERY_WORKER_POOL="nonsense"))
        ups.append(failing)
        assert failing.wait_exit(180) == 1, failing.output
        assert (
            "✗ worker exited before the platform was ready (exit status 2); stopping everything. "
            "Its last lines:" in failing.lines
        ), failing.output
        assert "Invalid value for '-P' / '--pool': 'nonsense'" in failing.output
        assert "Aggregator is running" not in failing.output
        assert not _wait_no_processes(data_dir, known), failing.output

        up = Up(data_dir, _free_port(), _up_env())
        ups.append(up)
        up.wait_ready(client)
        worker = _worker(up)
        for crash in range(1, 7):
            known |= _descendants(up.process.pid)
            worker.kill()
            if crash == 6:
                break
            delay = 2 ** (crash - 1)
            up.wait_line(
                rf"^! worker exited \(signal SIGKILL\); restarting in {delay} s \(restart {crash}\)$"
            )
            worker = _worker(up, other_than=worker.pid)
        assert up.wait_exit(60) == 1, up.output
        assert "✗ worker crashed 6 times in 60 s (last: signal SIGKILL); stopping everything" in up.output
        assert not _wait_no_processes(data_dir, known), up.output
    finally:
        client.close()
        _kill_everything(ups, data_dir, known)


def test_a_crashing_child_is_restarted_with_a_doubling_backoff_then_given_up() -> None:
    policy = RestartPolicy()
    now = 1000.0
    delays = []
    for _ in range(5):
        now += 0.5
        delays.append(policy.crashed(up_for=0.5, now=now))
        now += delays[-1] or 0
    assert delays == [1, 2, 4, 8, 16]
    assert policy.crashed(up_for=0.5, now=now + 0.5) is None  # a 6th crash within 60 s
    assert policy.recent_crashes == 6


def test_the_backoff_is_capped_and_starts_over_once_a_child_stayed_up() -> None:
    policy = RestartPolicy()
    now = 0.0
    delays = []
    for _ in range(8):
        now += 40  # never 6 crashes within 60 s, never up for 60 s
        delays.append(policy.crashed(up_for=39, now=now))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.restarts == 8
    assert policy.crashed(up_for=60, now=now + 60) == 1


def test_exit_descriptions_name_the_signal() -> None:
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(1) == "exit status 1"


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
