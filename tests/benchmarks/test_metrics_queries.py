"""The dashboard's metric queries over 30 days x 200,000 points a day, partitioned vs one plain table.

Data: 50,000 runs a day (one run point + three node points each = 200,000 points a day, 6 million in all),
over 20 workspaces of 10 pipelines, loaded with COPY into the day-partitioned `monitoring_run_metric` and
copied into an unpartitioned table with the same dashboard indexes (the reference, measured in the same
run). Statuses 90 %
succeeded / 8 % failed / 2 % cancelled, log-normal durations, random row counts.

Measured, best of REPEAT, for one workspace (what the API runs for a member of it): the hourly series and
the per-pipeline summary over the last 24 hours, the daily series and the per-pipeline summary over 30 days;
plus, for scale, the 30-day summary over every workspace. Printed: milliseconds for both tables and the
partitions EXPLAIN lists. Asserted: only the partitions in range are planned (no timing asserts).
Target (issue 5): each dashboard query under 100 ms.
"""

from __future__ import annotations

import io
import os
import re
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from django.db import connection

from apps.monitoring import metrics, partitions

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

DAYS = int(os.environ.get("BENCH_METRICS_DAYS", "30"))
POINTS_PER_DAY = 200_000
NODES_PER_RUN = 3
RUNS_PER_DAY = POINTS_PER_DAY // (NODES_PER_RUN + 1)
WORKSPACES = 20
PIPELINES_PER_WORKSPACE = 10
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
FLAT = "bench_run_metric_flat"
DASHBOARD_INDEXES = ["monitoring_run_metric_ws_run", "monitoring_run_metric_pl_run"]
COLUMNS = list(metrics.RUN_COLUMNS)


def _day_frame(day: datetime, first_run_id: int, rng: np.random.Generator) -> pd.DataFrame:
    n = RUNS_PER_DAY
    ts = pd.to_datetime(day) + pd.to_timedelta(np.sort(rng.integers(0, 86_400_000_000, n)), unit="us")
    pipeline = rng.integers(0, WORKSPACES * PIPELINES_PER_WORKSPACE, n)
    status = rng.choice(np.array(["succeeded", "failed", "cancelled"]), n, p=[0.90, 0.08, 0.02])
    duration = rng.lognormal(3.0, 1.0, n).round(3)
    rows = rng.integers(0, 100_000, n)
    run = pd.DataFrame(
        {
            "ts": ts,
            "workspace_id": pipeline // PIPELINES_PER_WORKSPACE + 1,
            "pipeline_id": pipeline + 1,
            "run_id": np.arange(first_run_id, first_run_id + n),
            "node_id": "",
            "kind": "run",
            "status": status,
            "rows_in": rows,
            "rows_out": rows,
            "rows_rejected": 0,
            "bytes": rows * 120,
            "duration_s": duration,
        }
    )
    frames = [run]
    for node_id, kind in (("src", "source"), ("xf", "transform"), ("dst", "destination")):
        frames.append(run.assign(node_id=node_id, kind=kind, duration_s=(duration / 3).round(3)))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def _copy(conn: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    from pyarrow import csv

    buffer = io.BytesIO()
    # pyarrow's CSV writer: several times faster than DataFrame.to_csv; timestamps as ISO 8601 with "Z".
    csv.write_csv(
        pa.Table.from_pandas(frame, preserve_index=False), buffer, csv.WriteOptions(include_header=False)
    )
    copy_sql = (
        f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (node_id), FREEZE)"
    )
    with conn.cursor().copy(copy_sql) as copy:
        copy.write(buffer.getvalue())


def _best_ms(sql: str, params: list) -> float:
    """As the API runs it (metrics.fetch: its work_mem, no JIT), best of REPEAT."""
    best = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        metrics.fetch(sql, params)
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def _scanned(sql: str, params: list) -> list[str]:
    return sorted(set(re.findall(rf"{partitions.RUN_METRIC_TABLE}_p\d{{8}}", metrics.explain(sql, params))))


def _clone_indexes(conn: psycopg.Connection) -> None:
    """The dashboard's two indexes of the partitioned table, built once on the loaded plain table."""
    for name, definition in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname = ANY(%s)",
        [partitions.RUN_METRIC_TABLE, DASHBOARD_INDEXES],
    ).fetchall():
        # "ON ONLY" is how the index of a partitioned table reads.
        clone = re.sub(
            rf"INDEX {name} ON (ONLY )?public\.{partitions.RUN_METRIC_TABLE} ",
            f"INDEX {name.replace(partitions.RUN_METRIC_TABLE, FLAT)} ON public.{FLAT} ",
            definition,
        )
        assert f"ON public.{FLAT} " in clone, clone
        conn.execute(clone)


@pytest.fixture
def loaded():
    """PostgreSQL's bulk-load path for a partitioned table: each day is COPYed (with FREEZE) into a standalone
    table made in the same transaction, then ATTACHed, so its indexes are built once instead of row by row and
    its rows are already all-visible for index-only scans. The plain table is filled from the day tables with
    INSERT … SELECT, gets the two indexes the dashboard's queries use (the primary key and the run_id index
    serve no query measured here), and is VACUUMed for its visibility map, as autovacuum would after a
    load."""
    settings_dict = connection.settings_dict
    dsn = {
        "dbname": settings_dict["NAME"],
        "host": settings_dict.get("HOST") or "127.0.0.1",
        "port": settings_dict.get("PORT") or 5432,
        "user": settings_dict.get("USER") or "postgres",
        "password": settings_dict.get("PASSWORD") or None,
    }
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    started = time.perf_counter()
    rng = np.random.default_rng(5)
    table = partitions.RUN_METRIC_TABLE
    with psycopg.connect(autocommit=True, **dsn) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(f"DROP TABLE IF EXISTS {FLAT}")
        conn.execute(f"CREATE TABLE {FLAT} (LIKE {table} INCLUDING DEFAULTS)")
        for i, day in enumerate(days):
            name = partitions.partition_name(table, day.date())
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            with conn.transaction():
                conn.execute(f'CREATE TABLE "{name}" (LIKE {table} INCLUDING DEFAULTS)')
                _copy(conn, f'"{name}"', _day_frame(day, i * RUNS_PER_DAY + 1, rng))
            conn.execute(f'INSERT INTO {FLAT} SELECT * FROM "{name}"')
            conn.execute(
                f'ALTER TABLE {table} ATTACH PARTITION "{name}" '
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
            )
        copied_s = time.perf_counter() - started
        _clone_indexes(conn)
        loaded_s = time.perf_counter() - started
        conn.execute(f"VACUUM ANALYZE {FLAT}")
        conn.execute(f"ANALYZE {table}")
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    print(
        f"\n{count:,} points COPYed into partitions, attached, copied to the plain table: {copied_s:.1f} s; "
        f"plain table indexed: {loaded_s:.1f} s; vacuumed and analysed: {time.perf_counter() - started:.1f} s"
    )
    assert count == DAYS * POINTS_PER_DAY
    yield today + timedelta(days=1)
    if os.environ.get("BENCH_KEEP"):
        return
    with psycopg.connect(autocommit=True, **dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {FLAT}")
        for partition in partitions.list_partitions(tables=[table], with_counts=False):
            conn.execute(f'DROP TABLE "{partition.name}"')


def test_dashboard_queries_partitioned_vs_flat(loaded):
    end = loaded
    last_day = metrics.Window(end - timedelta(hours=24), end)
    last_30 = metrics.Window(end - timedelta(days=DAYS), end)
    one = [3]
    every = list(range(1, WORKSPACES + 1))
    series, summary = metrics.run_series_sql, metrics.run_summary_sql
    per_pipeline = {"group_by": "pipeline"}
    cases = [
        ("24 h, hourly series, 1 workspace", series, last_day, one, {"bucket": "hour"}),
        ("24 h, per-pipeline summary, 1 workspace", summary, last_day, one, per_pipeline),
        ("30 d, daily series, 1 workspace", series, last_30, one, {"bucket": "day"}),
        ("30 d, per-pipeline summary, 1 workspace", summary, last_30, one, per_pipeline),
        ("30 d, per-pipeline summary, all 20 workspaces", summary, last_30, every, per_pipeline),
    ]
    print(f"\n{'query':<48} {'partitioned':>12} {'flat table':>11}  partitions planned")
    for label, build, window, workspaces, extra in cases:
        sql, params = build(workspace_ids=workspaces, pipeline_id=None, window=window, **extra)
        flat_sql = sql.replace(partitions.RUN_METRIC_TABLE, FLAT)
        partitioned_ms, flat_ms = _best_ms(sql, params), _best_ms(flat_sql, params)
        scanned = _scanned(sql, params)
        expected_days = {
            (window.since + timedelta(days=i)).date() for i in range((window.until - window.since).days)
        }
        expected = sorted(
            partitions.partition_name(partitions.RUN_METRIC_TABLE, d) for d in expected_days if d < end.date()
        )
        shown = f"{len(scanned)}: {scanned[0][-8:]}..{scanned[-1][-8:]}" if scanned else "0"
        print(f"{label:<48} {partitioned_ms:>9.1f} ms {flat_ms:>8.1f} ms  {shown}")
        assert scanned == expected, label
