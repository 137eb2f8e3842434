"""Daily RANGE partitions of the metric tables: made ahead, made on demand, listed, dropped at retention.

One partition per UTC day, named `<table>_pYYYYMMDD`. There is no DEFAULT partition, on purpose:

- a DEFAULT partition is scanned by every query whose range it cannot be proven not to hold, so EXPLAIN of a
  dashboard query would list it beside the days in range;
- creating a day's partition later has to scan the DEFAULT one under an exclusive lock, and fails if rows of
  that day are already there — they would have to be moved out first ("splitting").

Instead partitions are made `AGGREGATOR_METRICS_PARTITIONS_AHEAD` days ahead by an hourly beat task, and an
insert that still finds no partition (a beat that has been down for days, a clock far off) creates the one
it needs and retries (`insert_points`). Creation is serialised by an advisory lock so two writers racing
for the same new day make it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from aggregator.logging import get_logger

logger = get_logger(__name__)

RUN_METRIC_TABLE = "monitoring_run_metric"
SYSTEM_METRIC_TABLE = "monitoring_system_metric"
PARTITIONED_TABLES = (RUN_METRIC_TABLE, SYSTEM_METRIC_TABLE)

# Any constant shared by every process; only partition DDL takes it, and only for the DDL's transaction.
_DDL_LOCK_KEY = 0x6D6F6E5F70617274  # "mon_part"
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    start: datetime | None
    end: datetime | None
    rows: int
    size_bytes: int


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def today() -> date:
    return timezone.now().astimezone(UTC).date()


def ensure_partitions(*, days: Iterable[date], tables: Iterable[str] = PARTITIONED_TABLES) -> list[str]:
    """Create the partitions of these days that do not exist yet; returns the names created."""
    wanted = sorted(set(days))
    tables = list(tables)
    if not wanted:
        return []
    existing = {p.name for p in list_partitions(tables=tables, with_counts=False)}
    missing = [(t, d) for t in tables for d in wanted if partition_name(t, d) not in existing]
    if not missing:
        return []
    created: list[str] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK_KEY])
        for table, day in missing:
            name = partition_name(table, day)
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
            if cursor.fetchone()[0]:
                continue  # made by someone who held the lock before us
            # Names and bounds come from our own constants and a `date`, never from input.
            cursor.execute(
                f'CREATE TABLE "{name}" PARTITION OF "{table}" '
                f"FOR VALUES FROM ('{day_start(day).isoformat()}') "
                f"TO ('{day_start(day + timedelta(days=1)).isoformat()}')"
            )
            created.append(name)
    if created:
        logger.info("metrics_partitions_created", partitions=created)
    return created


def ensure_ahead(*, ahead: int | None = None, start: date | None = None) -> list[str]:
    """Yesterday (late points of a run that finished at midnight) through today + `ahead` days."""
    ahead = settings.AGGREGATOR_METRICS_PARTITIONS_AHEAD if ahead is None else ahead
    first = (start or today()) - timedelta(days=1)
    return ensure_partitions(days=[first + timedelta(days=i) for i in range(ahead + 2)])


def oldest_kept_day(*, retention_days: int | None = None) -> date:
    retention_days = settings.AGGREGATOR_METRICS_RETENTION_DAYS if retention_days is None else retention_days
    return today() - timedelta(days=retention_days)


def drop_expired(*, retention_days: int | None = None) -> list[str]:
    """Drop, whole, every partition that ends on or before the first kept day. DROP of a partition is a
    catalog operation: no DELETE, no dead rows, no vacuum afterwards."""
    cutoff = day_start(oldest_kept_day(retention_days=retention_days))
    expired = [p for p in list_partitions(with_counts=False) if p.end is not None and p.end <= cutoff]
    dropped: list[str] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK_KEY])
        for partition in expired:
            cursor.execute(f'DROP TABLE IF EXISTS "{partition.name}"')
            dropped.append(partition.name)
    if dropped:
        logger.info("metrics_partitions_dropped", partitions=dropped)
    return dropped


def list_partitions(
    *, tables: Iterable[str] = PARTITIONED_TABLES, with_counts: bool = True
) -> list[Partition]:
    """The partitions of the metric tables, oldest first, with their bounds, size and (exact) row counts."""
    tables = list(tables)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT parent.relname, child.relname, pg_get_expr(child.relpartbound, child.oid),
                   pg_total_relation_size(child.oid)
            FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = ANY(%s) AND child.relkind = 'r'
            ORDER BY parent.relname, child.relname
            """,
            [tables],
        )
        rows = cursor.fetchall()
        result = []
        for table, name, bound, size in rows:
            start = end = None
            match = _BOUND.search(bound or "")
            if match:
                start, end = (datetime.fromisoformat(v) for v in match.groups())
            count = 0
            if with_counts:
                cursor.execute(f'SELECT count(*) FROM "{name}"')  # noqa: S608 - a catalog name
                count = cursor.fetchone()[0]
            result.append(Partition(table, name, start, end, count, size))
    return result


def _is_missing_partition(exc: BaseException) -> bool:
    cause: Any = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) == "23514" and "no partition" in str(cause)


def insert_points(*, table: str, columns: list[str], rows: list[tuple[Any, ...]], ts_index: int = 0) -> int:
    """Insert rows; if a day has no partition yet, make it and try once more. Rows older than the retention
    period are dropped here (their partition is gone, and remaking it would only be dropped again)."""
    from django.db import IntegrityError

    cutoff = day_start(oldest_kept_day())
    kept = [row for row in rows if row[ts_index] >= cutoff]
    if len(kept) < len(rows):
        logger.warning("metrics_points_past_retention", table=table, dropped=len(rows) - len(kept))
    if not kept:
        return 0
    placeholders = ", ".join(["%s"] * len(columns))
    sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({placeholders})'  # noqa: S608
    for attempt in (1, 2):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(sql, kept)
            return len(kept)
        except IntegrityError as exc:
            if attempt == 2 or not _is_missing_partition(exc):
                raise
            days = {row[ts_index].astimezone(UTC).date() for row in kept}
            ensure_partitions(days=days, tables=[table])
    return 0  # pragma: no cover - the loop returns or raises
