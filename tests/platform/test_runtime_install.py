"""What `make run` and the Docker image install — requirements/prod.txt, without the dev tools — is enough to
run the platform. `make test` cannot tell: the dev requirements bring in packages the runtime imports
without naming them (kombu's Redis transport needs `packaging`, which came only through pytest).

Both tests run another Python environment, holding requirements/prod.txt only, on a checkout of the
repository, named by the caller:

- `AGGREGATOR_RUNTIME_PYTHON`: that environment's python;
- `AGGREGATOR_RUNTIME_CHECKOUT`: the checkout it runs, a fresh `git clone` (`make smoke` and CI make both).

When both are unset, a session fixture makes them in a temporary directory: a `git clone` of this
repository's HEAD — uncommitted changes are not in it, commit them first — and a venv there from its
requirements/prod.txt (pip's cache makes a second run quick). The web app (frontend/out) is not built in
the clone: `make run` builds it, but the API does not need it.

Marked `runtime`, so the normal suite deselects them (pytest.ini); `make smoke` and `.ci/run` run them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.test_up import REPO_DIR, Up, _descendants, _free_port, _processes_of, _wait_no_processes

pytestmark = pytest.mark.runtime

# What a new user's shell holds: none of the project's variables, nor the test session's (pytest-django's
# settings module, the URLs of the test servers it started).
FRESH_SHELL_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    "TERM",
)
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Runtime:
    python: Path
    checkout: Path

    def env(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in FRESH_SHELL_VARIABLES if name in os.environ}
        # The dev venv on PATH could lend its packages to a command found by name.
        dev_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != dev_bin)
        env["DJANGO_SETTINGS_MODULE"] = "aggregator.settings.local"
        env["PYTHONUNBUFFERED"] = "1"
        # The smoke test drives the API as the admin `up` creates, whom the default MFA policy sends to
        # set up two-factor authentication first (tests/users/test_mfa.py follows that path).
        env["AGGREGATOR_MFA_REQUIRED_FOR"] = "none"
        return env


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    python = os.environ.get("AGGREGATOR_RUNTIME_PYTHON", "")
    checkout = os.environ.get("AGGREGATOR_RUNTIME_CHECKOUT", "")
    if python and checkout:
        found = Runtime(Path(python).absolute(), Path(checkout).resolve())
        assert found.python.exists(), f"AGGREGATOR_RUNTIME_PYTHON={python} does not exist"
        assert (found.checkout / "manage.py").exists(), (
            f"AGGREGATOR_RUNTIME_CHECKOUT={checkout} is no checkout"
        )
        return found
    if python or checkout:
        pytest.fail("set both AGGREGATOR_RUNTIME_PYTHON and AGGREGATOR_RUNTIME_CHECKOUT, or neither")
    root = tmp_path_factory.mktemp("runtime")
    made = Runtime(root / "checkout" / ".venv" / "bin" / "python", root / "checkout")
    subprocess.run(["git", "clone", "--quiet", str(REPO_DIR), str(made.checkout)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(made.checkout / ".venv")], check=True)
    subprocess.run(
        [str(made.python), "-m", "pip", "install", "--quiet", "-r", "requirements/prod.txt"],
        cwd=made.checkout,
        check=True,
    )
    return made


# Runs in the runtime environment, from the checkout; writes its findings as JSON to the file in argv[1].
IMPORT_CHECK = r"""
import ast, importlib, json, os, subprocess, sys, traceback
from pathlib import Path

failures = {}
checked = []

def attempt(label, action):
    checked.append(label)
    try:
        return action()
    except BaseException as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        failures[label] = lines[-1].strip()
        return None

# The test settings start the embedded test servers when imported; the runtime never loads them. The
# production settings read their secrets when settings/base.py is first imported: they get a process of
# their own below.
SETTINGS_NOT_IMPORTED = {"aggregator.settings.test", "aggregator.settings.production"}

import django
attempt("django.setup()", django.setup)

sources = [Path("manage.py"), *sorted(Path("aggregator").rglob("*.py")), *sorted(Path("apps").rglob("*.py"))]
modules = []
for path in sources[1:]:
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    modules.append(".".join(parts))
for name in modules:
    if name not in SETTINGS_NOT_IMPORTED:
        attempt(name, lambda name=name: importlib.import_module(name))

def production_settings():
    # What the Docker image runs, with stand-ins for the secrets it refuses to start without.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aggregator.settings.production",
        "SECRET_KEY": "x" * 64,
        "AGGREGATOR_ENCRYPTION_KEYS": "u3Bfm1pPmFb9m5x2WYx4kq0Nq4i6c3R0B8jC9e1qV4M=",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing",
        "EMAIL_URL": "dummymail://",
        "AGGREGATOR_BASE_URL": "https://aggregator.example.com",
    }
    code = "import django; django.setup(); import aggregator.asgi, aggregator.celery, aggregator.wsgi"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode:
        raise RuntimeError((result.stderr.strip().splitlines() or ["no output"])[-1])
attempt("aggregator.settings.production (django.setup() with it)", production_settings)

# Imports inside functions (connector plugins load their drivers on first use) do not run above. Those
# under `if TYPE_CHECKING:` and those an `except ImportError` makes optional are left out.
def guarded(node):
    if isinstance(node, ast.If):
        test = node.test
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
    if isinstance(node, ast.Try):
        for handler in node.handlers:
            names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                return True
    return False

named = {}
def collect(node, path):
    if guarded(node):
        return
    if isinstance(node, ast.Import):
        for alias in node.names:
            named.setdefault(alias.name, f"{path}:{node.lineno}")
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        named.setdefault(node.module, f"{path}:{node.lineno}")
    for child in ast.iter_child_nodes(node):
        collect(child, path)

for path in sources:
    collect(ast.parse(path.read_text(), str(path)), path)
for name, where in sorted(named.items()):
    if ".".join(name.split(".")[:3]) in SETTINGS_NOT_IMPORTED or name in sys.modules:
        continue
    attempt(f"{name} (imported at {where})", lambda name=name: importlib.import_module(name))

# What the processes `up` starts load only once they run.
from aggregator.celery import app
attempt("celery: task modules", app.loader.import_default_modules)
def beat_tasks_registered():
    unknown = sorted({entry["task"] for entry in app.conf.beat_schedule.values()} - set(app.tasks))
    if unknown:
        raise LookupError(f"beat sends tasks no module registers: {unknown}")
attempt("celery: every task beat sends is registered", beat_tasks_registered)

from kombu import Connection
# Made, not connected: the transport class of the configured broker URL and the client library it loads
# (kombu's Redis transport imports `packaging` here).
attempt("celery: broker transport", lambda: Connection(app.conf.broker_url).transport)
from celery.utils.imports import symbol_by_name
attempt("celery: beat scheduler", lambda: symbol_by_name(app.conf.beat_scheduler))
attempt("celery: worker, beat and the prefork pool", lambda: (
    app.Worker, app.Beat, symbol_by_name("celery.concurrency.prefork:TaskPool")
))

from channels.layers import get_channel_layer
attempt("channels: the Redis channel layer", get_channel_layer)
from django.core.cache import caches
# The client (and its import of redis) is made on first use; _cache makes it without connecting.
attempt("django: the Redis cache", lambda: caches["default"]._cache)

import uvicorn.config
def uvicorn_standard():
    # `up` runs uvicorn with its automatic choices; without uvicorn[standard]'s packages they fall back
    # quietly (h11, asyncio) or, for WebSockets, to none at all: /ws/ would refuse every client.
    config = uvicorn.config.Config("aggregator.asgi:application", lifespan="off")
    config.load()
    chosen = {
        "http": config.http_protocol_class.__name__,
        "ws": getattr(config.ws_protocol_class, "__name__", None),
    }
    import uvloop  # noqa: F401
    if chosen["http"] != "HttpToolsProtocol" or chosen["ws"] is None:
        raise LookupError(f"uvicorn fell back to {chosen}")
attempt("uvicorn: the app with uvicorn[standard]'s http, websockets and loop", uvicorn_standard)

report = {"failures": failures, "checked": checked, "tasks": sorted(app.tasks)}
Path(sys.argv[1]).write_text(json.dumps(report))
"""


@pytest.mark.timeout(300)
def test_every_module_and_what_the_processes_load_import_with_the_runtime_requirements(
    runtime: Runtime, tmp_path: Path
) -> None:
    report_path = tmp_path / "imports.json"
    result = subprocess.run(
        [str(runtime.python), "-c", IMPORT_CHECK, str(report_path)],
        cwd=runtime.checkout,
        env=runtime.env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0 and report_path.exists(), result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    failed = "\n".join(f"  {label}: {error}" for label, error in report["failures"].items())
    assert not report["failures"], f"{len(report['failures'])} failed in the runtime environment:\n{failed}"
    # Guards against a vacuous pass (a wrong directory finds no modules).
    assert {"apps.pipelines.executor", "apps.connectors.plugins.duckdb_dest"} <= set(report["checked"])
    assert "pipelines.run_execute" in report["tasks"]


class RuntimeUp(Up):
    """`Up` started with the runtime environment's python from its checkout (`Up` runs this session's
    python from this repository)."""

    def __init__(self, runtime: Runtime, data_dir: Path, port: int) -> None:
        self.port = port
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(runtime.python), "manage.py", "up", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=runtime.checkout,
            env=runtime.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def _orders_csv() -> tuple[str, list[dict[str, str]]]:
    rows = [
        {"id": "1", "customer": "Ada", "amount": "120.5"},
        {"id": "2", "customer": "Grace", "amount": "12"},
        {"id": "3", "customer": "Linus", "amount": ""},
        {"id": "4", "customer": "Barbara", "amount": "75"},
        {"id": "5", "customer": "Edsger", "amount": "50"},
        {"id": "6", "customer": "Margaret", "amount": "999.99"},
        {"id": "7", "customer": "Alan", "amount": "-3"},
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "customer", "amount"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue(), rows


def _api(client: httpx.Client, method: str, url: str, expected: int, **kwargs: Any) -> Any:
    response = client.request(method, url, **kwargs)
    assert response.status_code == expected, f"{method} {url}: {response.status_code} {response.text}"
    return response.json()


@pytest.mark.timeout(420)
def test_a_fresh_checkout_runs_up_and_a_pipeline_through_the_api(runtime: Runtime, tmp_path: Path) -> None:
    data_dir = tmp_path / "up"
    # The import and data directories default to var/ in the checkout; a directory of this run's own keeps
    # a reused checkout (AGGREGATOR_RUNTIME_CHECKOUT) from mixing runs. Files are per workspace: they go to
    # the default workspace's areas once its id is known.
    run_dir = f"smoke-{secrets.token_hex(4)}"
    import_dir: Path | None = None
    warehouse: Path | None = None
    text, rows = _orders_csv()
    # The filter below, on the CSV's text: an empty amount is null, which the filter drops.
    kept = sorted(
        (int(r["id"]), r["customer"], float(r["amount"]))
        for r in rows
        if r["amount"] and float(r["amount"]) > 50
    )
    assert 0 < len(kept) < len(rows)

    known: set[int] = set()
    # trust_env=False: a proxy from the environment must not be asked for 127.0.0.1.
    client = httpx.Client(trust_env=False, timeout=30)
    up = RuntimeUp(runtime, data_dir, _free_port())
    try:
        up.wait_ready(client, timeout=240)
        email = re.search(r"Admin email: (\S+)", up.output)
        password = re.search(r"Admin password: (\S+)", up.output)
        assert email and password, up.output

        # The README's "Using the API", step by step.
        tokens = _api(
            client,
            "POST",
            up.url("/api/v1/auth/token/"),
            200,
            json={"email": email[1], "password": password[1]},
        )
        bearer = {"Authorization": f"Bearer {tokens['access']}"}
        assert _api(client, "GET", up.url("/api/v1/me/"), 200, headers=bearer)["email"] == email[1]
        key = _api(
            client,
            "POST",
            up.url("/api/v1/api-keys/"),
            201,
            headers=bearer,
            json={"name": "smoke", "scopes": ["read", "write"]},
        )["key"]
        headers = {"Authorization": f"Api-Key {key}"}
        [workspace] = _api(client, "GET", up.url("/api/v1/workspaces/"), 200, headers=headers)["results"]
        area = Path("workspaces") / str(workspace["id"]) / run_dir
        import_dir = runtime.checkout / "var" / "import" / area
        warehouse = runtime.checkout / "var" / "data" / area / "warehouse.duckdb"
        import_dir.mkdir(parents=True)
        (import_dir / "orders.csv").write_text(text)
        _api(
            client,
            "POST",
            up.url("/api/v1/connectors/"),
            201,
            headers=headers,
            json={
                "name": "orders-files",
                "connector_type": "csv_file",
                "config": {"path": f"{run_dir}/orders.csv"},
            },
        )
        _api(
            client,
            "POST",
            up.url("/api/v1/connectors/"),
            201,
            headers=headers,
            json={
                "name": "warehouse",
                "connector_type": "duckdb",
                "config": {"database": f"{run_dir}/warehouse.duckdb"},
            },
        )
        definition = {
            "nodes": [
                {"id": "orders", "kind": "source", "connector": "orders-files", "stream": "orders"},
                {"id": "big", "kind": "transform", "step": "filter", "config": {"expression": "amount > 50"}},
                {"id": "warehouse", "kind": "destination", "connector": "warehouse", "table": "big_orders"},
            ],
            "edges": [{"from": "orders", "to": "big"}, {"from": "big", "to": "warehouse"}],
        }
        pipeline = _api(
            client,
            "POST",
            up.url("/api/v1/pipelines/"),
            201,
            headers=headers,
            json={"name": "big orders", "definition": definition},
        )
        run = _api(
            client, "POST", up.url(f"/api/v1/pipelines/{pipeline['id']}/runs/"), 201, headers=headers, json={}
        )
        deadline = time.monotonic() + 120
        while run["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.5)
            run = _api(client, "GET", up.url(f"/api/v1/runs/{run['id']}/"), 200, headers=headers)
        assert run["status"] == "succeeded", f"{run}\n{up.output}"
        assert (run["rows_read"], run["rows_written"], run["rows_rejected"]) == (len(rows), len(kept), 0), run

        # With the runtime's own duckdb, which wrote the file (the worker closes it after each write).
        read = subprocess.run(
            [
                str(runtime.python),
                "-c",
                "import duckdb, json, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
                "print(json.dumps(con.sql('SELECT id, customer, amount FROM main.big_orders ORDER BY id')"
                ".fetchall())); con.close()",
                str(warehouse),
            ],
            env=runtime.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert read.returncode == 0, read.stderr
        assert [tuple(row) for row in json.loads(read.stdout)] == kept

        # The first-time user's path: the default workspace got its Local warehouse (a database on the
        # embedded PostgreSQL) at the first start, and the sample pipeline loads into it.
        connectors = _api(client, "GET", up.url("/api/v1/connectors/"), 200, headers=headers)["results"]
        local = [c for c in connectors if c["connector_type"] == "local_warehouse"]
        assert [c["name"] for c in local] == ["Local warehouse"], connectors
        sample = _api(client, "POST", up.url("/api/v1/pipelines/sample/"), 201, headers=headers, json={})
        run = sample["run"]
        deadline = time.monotonic() + 120
        while run["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.5)
            run = _api(client, "GET", up.url(f"/api/v1/runs/{run['id']}/"), 200, headers=headers)
        assert run["status"] == "succeeded", f"{run}\n{up.output}"
        # 686 of the sample's 6,099 flights left more than 30 minutes late.
        assert (run["rows_read"], run["rows_written"], run["rows_rejected"]) == (6099, 686, 0), run
        [landed] = run["destinations"]
        assert (landed["connector"], landed["stream"]) == (local[0]["id"], "public.late_flights"), landed
        rows = _api(
            client,
            "GET",
            up.url(f"/api/v1/connectors/{local[0]['id']}/preview/"),
            200,
            headers=headers,
            params={"stream": "public.late_flights", "limit": 1000},
        )["rows"]
        assert len(rows) == 686
        assert all(r["dep_delay"] > 30 and r["_ag_run_id"] == str(run["id"]) for r in rows)

        assert up.process.poll() is None, up.output
        known |= _descendants(up.process.pid)
        running = "\n".join(_processes_of(data_dir, known))
        for kind in ("postgres", "redis-server", "uvicorn", "celery -A aggregator worker", "beat"):
            assert kind in running, f"no {kind} among:\n{running}\n{up.output}"

        assert up.stop() == 0, up.output
        assert not _wait_no_processes(data_dir, known), up.output
    finally:
        client.close()
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait()
        for line in _processes_of(data_dir, known):  # never leave servers behind a failed test
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(line.split()[0])).kill()
        if import_dir is not None and warehouse is not None:
            shutil.rmtree(import_dir, ignore_errors=True)
            shutil.rmtree(warehouse.parent, ignore_errors=True)
