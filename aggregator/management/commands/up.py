"""`manage.py up`: the whole platform on one machine, with one command, until Ctrl-C.

PostgreSQL and Redis are embedded (pip-installed binaries, data under --data-dir) unless DATABASE_URL /
REDIS_URL point at real ones. Then migrate, collectstatic and bootstrap run, and web, worker and beat run
as supervised child processes, their output prefixed with their name: one that dies once the platform is
ready is started again (aggregator/supervisor.py has the rule). One `up` per data directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import psutil
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from aggregator.embedded import (
    FROM_UP_ENV_MARKER,
    LOCAL_WAREHOUSE_ENV,
    LOCK_FILE,
    RUN_ENV_FILE,
    RUN_ENV_NAMES,
    SECRET_NAMES,
    SECRETS_FILE,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServiceError,
    kill_all,
    read_env_file,
    write_run_env,
)
from aggregator.supervisor import Child, Supervised, describe_exit

DATABASE_NAME = "aggregator"
# How long web, worker and beat get to finish what they are doing after SIGTERM, before SIGKILL.
STOP_TIMEOUT = 20.0
# How long /readyz may take: it waits up to 2 s for a Celery worker to answer a ping.
READY_PROBE_TIMEOUT = 3.0
# Every process `up` starts carries this in its environment, so processes left behind by an `up` that was
# killed (SIGKILL gives it no chance to stop them) are found and stopped by the next `up`.
DATA_DIR_MARKER = "AGGREGATOR_UP_DATA_DIR"


class _Stopped(Exception):
    """A stop signal arrived while starting."""


class _Failure(Exception):
    """Stops `up` with exit status 1; the first line of the message says why."""


def _tail_text(lines: list[str]) -> str:
    return (". Its last lines:\n" + "\n".join(f"  {line}" for line in lines)) if lines else ""


class _Console:
    """Writes the lines of every process; lines that arrive while a status line ("→ starting Redis… ") is
    open wait until its outcome is written, so each status reads as one line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        # Reentrant: the signal handler may print while the main thread is in the middle of a write.
        self._lock = threading.RLock()
        self._step_open = False
        self._held: list[str] = []

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed terminal must not stop a shutdown
            self._stream.write(text)
            self._stream.flush()

    def line(self, text: str) -> None:
        with self._lock:
            if self._step_open:
                self._held.append(text)
            else:
                self._write(text + "\n")

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        with self._lock:
            self._write(f"→ {label}… ")
            self._step_open = True
        started = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = f"ok ({time.monotonic() - started:.1f} s)"
        except _Stopped:
            outcome = "interrupted"
            raise
        finally:
            with self._lock:
                self._write(outcome + "\n")
                self._step_open = False
                for text in self._held:
                    self._write(text + "\n")
                self._held.clear()


def _connect_host(host: str) -> str:
    """Where to reach a server listening on `host`."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104


class Launcher:
    def __init__(self, *, host: str, port: int, data_dir: Path, verbosity: int, stream: TextIO) -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.verbosity = verbosity
        self.console = _Console(stream)
        self.base_dir = Path(settings.BASE_DIR)
        self.env: dict[str, str] = {}
        # Every child process alive, the setup commands included: what a shutdown stops.
        self.children: list[Child] = []
        self.apps: list[Supervised] = []
        self.services: list[EmbeddedPostgres | EmbeddedRedis] = []
        self.stop_signal: int | None = None
        self._phase = "starting"

    # --- the whole run ---------------------------------------------------------------------------------
    def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = self._acquire_lock()
        if lock_fd is None:
            return 1
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            try:
                self._start()
                return self._supervise()
            except _Stopped:
                return 0
            except (_Failure, EmbeddedServiceError) as exc:
                self._phase = "stopping"
                self.console.line(f"✗ {exc}")
                return 1
            finally:
                self._phase = "stopping"
                self._shutdown()
        finally:
            (self.data_dir / RUN_ENV_FILE).unlink(missing_ok=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.ftruncate(lock_fd, 0)
            os.close(lock_fd)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is not None:
            if self._phase == "stopping":
                self.console.line("… still stopping (processes get up to 20 s, then they are killed)")
            return
        self.stop_signal = signum
        if self._phase == "starting":
            raise _Stopped
        # Running: the supervision loop sees stop_signal within a fraction of a second.

    def _acquire_lock(self) -> int | None:
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(10):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Another manage.py command may hold a shared lock for an instant (it checks whether an
                # `up` runs); a running `up` holds it for good.
                time.sleep(0.05)
        else:
            holder = path.read_text().strip() or "unknown"
            os.close(fd)
            print(
                f"Aggregator is already running (pid {holder}) with data in {self.data_dir}; stop it first.",
                file=sys.stderr,
            )
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    # --- starting --------------------------------------------------------------------------------------
    def _start(self) -> None:
        self.env = self._base_env()
        postgres = EmbeddedPostgres(self.data_dir / "postgres", output=self._prefixed("postgres"))
        redis = EmbeddedRedis(self.data_dir / "redis", output=self._prefixed("redis"))
        # We hold the lock: whatever still runs on this data directory was left by an `up` that was killed.
        leftovers = self._leftover_processes()
        stale_servers = [server for server in (redis, postgres) if server.running_processes()]
        if leftovers or stale_servers:
            with self.console.step("stopping what an earlier run left running"):
                kill_all(leftovers, signal.SIGTERM, timeout=10)
                for server in stale_servers:
                    server.stop()
        self._check_web_port()
        self._load_secrets()

        if not self.env.get("DATABASE_URL"):
            self.services.append(postgres)
            with self.console.step("starting PostgreSQL"):
                postgres.start()
                postgres.ensure_database(DATABASE_NAME)
            self.env["DATABASE_URL"] = postgres.url(DATABASE_NAME)
            # The Local warehouse destination: databases the platform makes on its own embedded server
            # (apps/connectors/plugins/postgres/local_warehouse.py), never a host a user typed.
            self.env.setdefault(LOCAL_WAREHOUSE_ENV, postgres.url("postgres"))
        if not self.env.get("REDIS_URL"):
            self.services.append(redis)
            with self.console.step("starting Redis"):
                self.env["REDIS_URL"] = redis.start()
        write_run_env(self.data_dir, {name: self.env[name] for name in RUN_ENV_NAMES if self.env.get(name)})

        with self.console.step("applying database migrations"):
            self._manage("migrate", "--noinput")
        with self.console.step("collecting static files"):
            self._manage("collectstatic", "--noinput", "--verbosity", "0")
        with self.console.step("checking the admin user and the default workspace"):
            bootstrap_output = self._manage("bootstrap")
        for line in bootstrap_output:
            self.console.line(f"  {line}")

        python = sys.executable
        # We hold the lock, so beat's pidfile is stale whenever beat is started.
        beat_pidfile = self.data_dir / "celerybeat.pid"
        commands = {
            "web": [
                python, "-m", "uvicorn", "aggregator.asgi:application",
                "--host", self.host, "--port", str(self.port), "--lifespan", "off",
            ],
            "worker": [
                python, "-m", "celery", "-A", "aggregator", "worker",
                "-Q", "runs,default", "--concurrency", "2", "--loglevel", "INFO",
            ],
            "beat": [
                python, "-m", "celery", "-A", "aggregator", "beat",
                "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--loglevel", "INFO",
                "--schedule", str(self.data_dir / "celerybeat-schedule"),
                "--pidfile", str(beat_pidfile),
            ],
        }  # fmt: skip
        self.apps = [
            Supervised(name, args, pidfile=beat_pidfile if name == "beat" else None)
            for name, args in commands.items()
        ]
        with self.console.step("starting web, worker and beat"):
            for app in self.apps:
                self._start_app(app)

    def _check_web_port(self) -> None:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
        except OSError as exc:
            raise _Failure(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                "is something else using it? Choose another port with --port."
            ) from None

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # What settings/local.py took from ./var (keys, the URLs of an `up` running there) is not the user's
        # choice: this `up` decides from its own data directory.
        for name in env.pop(FROM_UP_ENV_MARKER, "").split(","):
            if name:
                env.pop(name, None)
        env.setdefault("DJANGO_SETTINGS_MODULE", "aggregator.settings.local")
        env.setdefault("AGGREGATOR_BASE_URL", f"http://{_connect_host(self.host)}:{self.port}")
        env["PYTHONUNBUFFERED"] = "1"
        env[DATA_DIR_MARKER] = str(self.data_dir)
        return env

    def _load_secrets(self) -> None:
        """SECRET_KEY and an encryption key, generated on the first start and kept in secrets.env (unless the
        environment gives them): sessions, tokens and encrypted connector secrets survive restarts."""
        wanted = [
            name for name in SECRET_NAMES if not self.env.get(name) and not self.env.get(f"{name}_FILE")
        ]
        if not wanted:
            return
        path = self.data_dir / SECRETS_FILE
        stored = read_env_file(path) if path.exists() else {}
        missing = [name for name in wanted if not stored.get(name)]
        if missing:
            from cryptography.fernet import Fernet

            generators = {
                "SECRET_KEY": lambda: secrets.token_urlsafe(64),
                "AGGREGATOR_ENCRYPTION_KEYS": lambda: Fernet.generate_key().decode(),
            }
            for name in missing:
                stored[name] = generators[name]()
            with self.console.step(f"generating {' and '.join(missing)} into {path}"):
                temporary = path.with_name(f".{SECRETS_FILE}.tmp")
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as file:
                    file.write(
                        "# Generated by `manage.py up`. Keep it: it decrypts the stored connector secrets.\n"
                    )
                    file.write("".join(f"{key}={value}\n" for key, value in stored.items()))
                temporary.replace(path)
        path.chmod(0o600)
        for name in wanted:
            self.env[name] = stored[name]

    def _prefixed(self, name: str) -> Callable[[str], None]:
        return lambda line: self.console.line(f"[{name}] {line}")

    def _spawn(self, name: str, args: list[str], *, echo: bool) -> Child:
        child = Child(
            name, args, env=self.env, cwd=self.base_dir, echo=self._prefixed(name) if echo else None
        )
        self.children.append(child)
        return child

    def _start_app(self, app: Supervised) -> None:
        """Start (or start again) one of web, worker and beat, with the same command and environment."""
        if app.pidfile is not None:
            app.pidfile.unlink(missing_ok=True)
        app.child = self._spawn(app.name, app.args, echo=True)

    def _manage(self, *args: str) -> list[str]:
        """Run a manage.py command to completion; its output, shown only on failure (or with -v 2)."""
        child = self._spawn(
            args[0], [sys.executable, str(self.base_dir / "manage.py"), *args], echo=self.verbosity >= 2
        )
        returncode = child.process.wait()
        child.finish_output()
        self.children.remove(child)
        if returncode != 0:
            output = "\n".join(f"  {line}" for line in child.tail(40))
            raise _Failure(f"`manage.py {' '.join(args)}` failed with exit status {returncode}:\n{output}")
        return list(child.lines)

    # --- running ---------------------------------------------------------------------------------------
    def _supervise(self) -> int:
        self._phase = "running"
        started = time.monotonic()
        next_probe = started
        ready = warned = False
        # Set at a crash, cleared when /readyz answers 200 again: to say when the platform has recovered.
        down_since: float | None = None
        while self.stop_signal is None:
            for service in self.services:
                if service.returncode is not None:
                    # Not started again: the data lives there and every child holds connections to it, and
                    # its exit is no routine crash (PostgreSQL restarts its own crashed backends; a server
                    # exits on a PANIC, a full disk, the OOM killer or someone stopping it). The next `up`
                    # starts it with its crash recovery.
                    raise _Failure(
                        f"{service.label} exited ({describe_exit(service.returncode)}); web, worker and beat "
                        "cannot work without it and it is not restarted: stopping everything"
                        + _tail_text(service.log_tail(10).splitlines())
                    )
            now = time.monotonic()
            for app in self.apps:
                if app.child is not None and not app.child.running():
                    self._crashed(app, now=now, ready=ready)
                    if down_since is None:
                        down_since = now
                elif app.child is None and now >= app.restart_at:
                    self._start_app(app)
            if now >= next_probe and not ready:
                status = self._probe("/healthz", timeout=2)
                if status == 200:
                    ready = True
                    self._banner()
                else:
                    next_probe = now + 0.5
                    if not warned and now - started > 60:
                        warned = True
                        self.console.line(f"! no answer to GET /healthz after 60 s yet (last: {status})")
            elif now >= next_probe and down_since is not None and all(app.child for app in self.apps):
                # /readyz, not /healthz: a restarted worker counts once it answers a ping.
                if self._probe("/readyz", timeout=READY_PROBE_TIMEOUT) == 200:
                    downtime = time.monotonic() - down_since
                    self.console.line(f"✓ ready again: /readyz answers 200, {downtime:.1f} s after the crash")
                    down_since = None
                else:
                    next_probe = now + 1
            time.sleep(0.2)
        self.console.line(f"→ {signal.Signals(self.stop_signal).name} received, stopping")
        return 0

    def _crashed(self, app: Supervised, *, now: float, ready: bool) -> None:
        """The process of `app` exited: schedule its restart, or raise _Failure to stop everything."""
        child = app.child
        assert child is not None
        how = describe_exit(child.kill_group())
        child.finish_output()  # its last words before ours
        self.children.remove(child)
        app.child = None
        if not ready:
            # Nothing has worked yet: a configuration or environment problem, which a restart would repeat.
            raise _Failure(
                f"{app.name} exited before the platform was ready ({how}); stopping everything"
                + _tail_text(child.tail())
            )
        delay = app.policy.crashed(up_for=now - child.started_at, now=now)
        if delay is None:
            raise _Failure(
                f"{app.name} crashed {app.policy.recent_crashes} times in {app.policy.window_s:.0f} s "
                f"(last: {how}); stopping everything" + _tail_text(child.tail())
            )
        app.restart_at = now + delay
        self.console.line(
            f"! {app.name} exited ({how}); restarting in {delay:.0f} s (restart {app.policy.restarts})"
        )

    def _probe(self, path: str, *, timeout: float) -> int | str:
        connection = http.client.HTTPConnection(_connect_host(self.host), self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__
        finally:
            connection.close()

    def _banner(self) -> None:
        url = f"http://{_connect_host(self.host)}:{self.port}"
        if ":" in _connect_host(self.host):
            url = f"http://[{_connect_host(self.host)}]:{self.port}"
        services = ", ".join(f"{s.label} on 127.0.0.1:{s.port}" for s in self.services) or "external"
        rule = "─" * 72
        lines = [
            rule,
            f"  Aggregator is running at {url}/",
            f"    sign in:         {url}/   (the admin user is printed above on the first start)",
            f"    operator admin:  {url}/admin/",
            f"    API docs:        {url}/api/docs/",
            f"    data:            {self.data_dir}   (services: {services})",
            f"  Stop with Ctrl-C, or: kill {os.getpid()}",
            rule,
        ]
        for line in lines:
            self.console.line(line)

    # --- stopping --------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        running = [child for child in self.children if child.running()]
        if running:
            started = time.monotonic()
            self.console.line(f"→ stopping {', '.join(child.name for child in running)}…")
            # SIGTERM to the main process of each, not its whole group: a Celery worker then finishes its
            # running tasks (a SIGTERM reaching its pool processes would kill the tasks midway).
            for child in running:
                child.signal(signal.SIGTERM)
            deadline = started + STOP_TIMEOUT
            while any(child.running() for child in running) and time.monotonic() < deadline:
                time.sleep(0.1)
            for child in running:
                if child.running():
                    self.console.line(f"  {child.name} did not stop within {STOP_TIMEOUT:.0f} s: killing it")
                child.kill_group()
            for child in running:
                child.finish_output()
            self.console.line(f"  stopped ({time.monotonic() - started:.1f} s)")
        for child in self.children:  # one that exited by itself as the stop began: reap it and its group
            child.kill_group()
        leftovers = self._leftover_processes()
        if leftovers:  # children of the children that outlived them, or a child spawned as a signal came
            kill_all(leftovers, signal.SIGTERM, timeout=10)
        for service in reversed(self.services):
            with self.console.step(f"stopping {service.label}"):
                service.stop()

    def _leftover_processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(DATA_DIR_MARKER) == str(self.data_dir):
                    found.append(proc)
        return found


class Command(BaseCommand):
    help = (
        "Start the platform: PostgreSQL and Redis (embedded unless DATABASE_URL / REDIS_URL are set), "
        "migrations, then web, worker and beat until Ctrl-C."
    )
    # The database may not exist before this command starts it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address the web server listens on")
        parser.add_argument("--port", type=int, default=8000, help="port of the web server")
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=Path(settings.BASE_DIR) / "var",
            help="where the embedded databases, keys and run files live (default: ./var)",
        )

    def handle(
        self, *args: Any, host: str, port: int, data_dir: Path, verbosity: int, **options: Any
    ) -> None:
        launcher = Launcher(
            host=host, port=port, data_dir=data_dir.resolve(), verbosity=verbosity, stream=sys.stdout
        )
        code = launcher.run()
        if code:
            raise SystemExit(code)
