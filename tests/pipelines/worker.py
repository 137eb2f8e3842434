"""A real Celery worker process for tests, on the test database and the test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "aggregator.settings.test",
            # The test database pytest-django made, so the worker sees what the test committed.
            "DATABASE_URL": f"postgres://{db['USER']}{password}@{host}:{port}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "AGGREGATOR_IMPORT_DIR": str(settings.AGGREGATOR_IMPORT_DIR),
            "AGGREGATOR_ALLOWED_HOSTS": ",".join(settings.AGGREGATOR_ALLOWED_HOSTS),
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


class Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "aggregator",
                "worker",
                "-Q",
                "runs,default",
                "--pool",
                "solo",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"test-{time.monotonic_ns()}@%h",
            ],
            cwd=ROOT,
            env=worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would: no cleanup of any kind."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False
