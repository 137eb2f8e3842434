"""The child processes of `manage.py up`, and the rule that decides whether one that died is started again.

A child that dies after the platform was ready is started again after a backoff that doubles with each
crash (1 s, 2 s, 4 s … at most 30 s) and starts over once the child has stayed up for 60 s. A child that
crashes more than 5 times within 60 s is broken, not unlucky: the supervisor gives up.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LineSink = Callable[[str], None]

# Output lines kept per child for error messages; a worker that runs for weeks must not keep all it said.
KEPT_LINES = 2000


def describe_exit(returncode: int) -> str:
    """`exit status 1` or `signal SIGKILL`, from a Popen returncode."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class Child:
    """A subprocess in its own session: its process group can be signalled as a whole, and a Ctrl-C in
    the terminal reaches only `up`, which decides the order of the shutdown. Its stdout and stderr are
    read line by line: passed to `echo` (prefixed by the caller), and the last ones kept."""

    def __init__(
        self, name: str, args: list[str], *, env: dict[str, str], cwd: Path, echo: LineSink | None
    ) -> None:
        self.name = name
        self.lines: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self.started_at = time.monotonic()
        self._echo = echo
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments, no shell
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, name=f"{name} output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as stream:
            for raw in stream:
                line = raw.rstrip("\n")
                self.lines.append(line)
                if self._echo is not None:
                    self._echo(line)

    def running(self) -> bool:
        """Whether the process has not exited yet. An exited one is left unreaped: while its zombie exists
        its pid, which is also the id of its process group, cannot be reused, so `kill_group` can still
        reach what it left behind without any risk of hitting a stranger."""
        if self.process.returncode is not None:
            return False
        try:
            state = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already
            self.process.poll()
            return False
        return state is None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def kill_group(self) -> int:
        """SIGKILL the whole process group (a dead worker's pool processes too), then reap the child;
        returns its exit status."""
        # Only while the leader is unreaped: its pid (the group id) cannot have been reused yet.
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def finish_output(self) -> None:
        self._reader.join(timeout=5)

    def tail(self, count: int = 15) -> list[str]:
        return list(self.lines)[-count:]


@dataclass
class RestartPolicy:
    """When a child that crashed is started again, or whether to give up on it."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    # A child that stayed up this long before crashing starts its backoff over from the first delay.
    steady_after_s: float = 60.0
    # More than max_restarts crashes within window_s: give up.
    window_s: float = 60.0
    max_restarts: int = 5
    restarts: int = 0
    _streak: int = 0
    _crashes: collections.deque[float] = field(default_factory=collections.deque)

    def crashed(self, *, up_for: float, now: float) -> float | None:
        """Record a crash of a child that had been running for `up_for` seconds. Returns the delay before
        starting it again, or None to give up."""
        if up_for >= self.steady_after_s:
            self._streak = 0
        self._streak += 1
        self._crashes.append(now)
        while self._crashes[0] < now - self.window_s:
            self._crashes.popleft()
        if len(self._crashes) > self.max_restarts:
            return None
        self.restarts += 1
        # The exponent is capped: the delay is at its maximum long before, and 2**n would not fit a float.
        return min(self.first_delay_s * 2 ** min(self._streak - 1, 16), self.max_delay_s)

    @property
    def recent_crashes(self) -> int:
        """Crashes within the last window_s seconds (as of the last crash)."""
        return len(self._crashes)


@dataclass
class Supervised:
    """A long-running child of `up` (web, worker, beat): how to start it, and its current process."""

    name: str
    args: list[str]
    # Deleted before every start: beat refuses to start over a pidfile whose pid is alive, and the pid of
    # a crashed beat may belong to another process by now.
    pidfile: Path | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    child: Child | None = None
    # While `child` is None (between a crash and the restart): when to start it again.
    restart_at: float = 0.0
