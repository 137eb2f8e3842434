"""Browser tests against the real stack: uvicorn (HTTP + WebSocket) and a Celery worker as subprocesses on
the pytest-django test database, the built web app (frontend/out), and Debian's Chromium driven by
Playwright. Screenshots and axe reports go to var/e2e-artifacts/."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.conftest import pg_config, pg_schema, scratch_conn, scratch_database  # noqa: F401
from tests.pipelines.worker import worker_env

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("AGGREGATOR_E2E_CHROMIUM", "/usr/bin/chromium"))
BUILD = Path(os.environ.get("AGGREGATOR_FRONTEND_DIR", ROOT / "frontend" / "out"))
ARTIFACTS = ROOT / "var" / "e2e-artifacts"
# The flags Chromium needs as root on a machine without outside network (see docs/frontend.md).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SEVERE = {"serious", "critical"}


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    elif not (BUILD / "index.html").exists():
        reason = f"the web app is not built ({BUILD}): run `make frontend`"
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        # The browser tests are this directory's slow ones (test_serving.py needs neither).
        if item.get_closest_marker("slow") and Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="session")
def e2e_import_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-import")


@pytest.fixture(scope="module")
def live_server_extra_env() -> dict[str, str]:
    """More environment for the server and worker of a module; a module overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def live_server_url(
    django_db_setup: None, django_db_blocker: Any, e2e_import_dir: Path, live_server_extra_env: dict[str, str]
) -> Iterator[str]:
    """uvicorn and a Celery worker on the test database, for this module only: a worker left running would
    take the run tasks of other test modules (which start, and kill, workers of their own)."""
    with django_db_blocker.unblock():
        env = worker_env()
    env.update(
        {
            "AGGREGATOR_IMPORT_DIR": str(e2e_import_dir),
            "AGGREGATOR_ALLOWED_HOSTS": "127.0.0.1/32",
            "AGGREGATOR_FRONTEND_DIR": str(BUILD),
            **live_server_extra_env,
        }
    )
    port = _free_port()
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {"cwd": ROOT, "env": env, "start_new_session": True}
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "aggregator.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log"],
        stdout=(logs / "web.log").open("wb"), stderr=subprocess.STDOUT, **common,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aggregator", "worker", "-Q", "runs,default", "--pool", "solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"e2e-{port}@%h"],
        stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT, **common,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310 (http, ours)
                    if response.status == 200:
                        break
            except OSError:
                pass
            if web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start; see {logs / 'web.log'}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(worker)
        _stop(web)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread, which Django takes for async code and
    # refuses database calls in; the tests' own ORM calls are plain sync code. Allowed only while the
    # browser lives (module scope), so no other test module runs without Django's check.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser: Any, live_server_url: str) -> Iterator[Any]:
    """A function that opens a page in a fresh browser context (its own cookies): one per person."""
    contexts: list[Any] = []

    def make(width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(base_url=live_server_url, viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        make.pages.append(page)  # type: ignore[attr-defined]
        return page

    make.pages = []  # type: ignore[attr-defined]
    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, email: str, password: str, *, next_path: str = "/") -> None:
    page.goto(next_path)
    page.wait_for_url("**/login**")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def check_screen(page: Any, name: str) -> None:
    """Screenshot the screen and assert axe-core finds no serious or critical violation on it."""
    from axe_playwright_python.sync_playwright import Axe

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    results = Axe().run(page)
    severe = [v for v in results.response["violations"] if v.get("impact") in SEVERE]
    (ARTIFACTS / f"{name}.axe.json").write_text(json.dumps(results.response["violations"], indent=2))
    assert not severe, f"axe on {name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in severe
    )


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    """On a failure, a screenshot of every page the test had open, for the CI artifacts."""
    report = yield
    if report.when == "call" and report.failed:
        pages = getattr(item, "funcargs", {}).get("new_page")
        for index, page in enumerate(getattr(pages, "pages", [])):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            # A page already closed must not hide the test's own failure.
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}-{index}.png"), full_page=True)
    return report
