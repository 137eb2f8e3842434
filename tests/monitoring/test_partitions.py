"""Daily partitions: made ahead and on demand, listed, dropped whole at retention; the command."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from apps.monitoring import partitions
from apps.monitoring.metrics import RUN_COLUMNS

from .metric_helpers import drop_metric_partitions

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_partitions() -> None:
    drop_metric_partitions()  # inside the test's transaction: rolled back with it


def names(table: str = partitions.RUN_METRIC_TABLE) -> list[str]:
    return [p.name for p in partitions.list_partitions(tables=[table], with_counts=False)]


def point(ts: datetime, run_id: int = 1) -> tuple:
    return (ts, 1, 1, run_id, "", "run", "succeeded", 1, 1, 0, 10, 1.0)


@pytest.fixture
def today(monkeypatch) -> date:
    day = date(2026, 3, 10)
    monkeypatch.setattr(partitions, "today", lambda: day)
    return day


def test_ensure_ahead_makes_yesterday_through_today_plus_n_for_both_tables(today, settings):
    settings.AGGREGATOR_METRICS_PARTITIONS_AHEAD = 3
    created = partitions.ensure_ahead()
    expected_days = [today + timedelta(days=i) for i in range(-1, 4)]
    for table in partitions.PARTITIONED_TABLES:
        assert names(table) == [partitions.partition_name(table, d) for d in expected_days]
    assert len(created) == 10
    assert partitions.ensure_ahead() == []  # idempotent


def test_partition_bounds_are_utc_days(today):
    partitions.ensure_partitions(days=[today], tables=[partitions.RUN_METRIC_TABLE])
    (part,) = partitions.list_partitions(tables=[partitions.RUN_METRIC_TABLE])
    assert (part.name, part.start, part.end, part.rows) == (
        "monitoring_run_metric_p20260310",
        datetime(2026, 3, 10, tzinfo=UTC),
        datetime(2026, 3, 11, tzinfo=UTC),
        0,
    )


def test_an_insert_for_a_day_without_partition_creates_it_and_succeeds(today):
    assert names() == []
    late_night = datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC)
    written = partitions.insert_points(
        table=partitions.RUN_METRIC_TABLE,
        columns=RUN_COLUMNS,
        rows=[point(late_night), point(late_night + timedelta(seconds=2), run_id=2)],
    )
    assert written == 2
    assert names() == ["monitoring_run_metric_p20260310", "monitoring_run_metric_p20260311"]
    counts = {p.name: p.rows for p in partitions.list_partitions(tables=[partitions.RUN_METRIC_TABLE])}
    assert counts == {"monitoring_run_metric_p20260310": 1, "monitoring_run_metric_p20260311": 1}


def test_points_older_than_retention_are_not_written(today, settings):
    settings.AGGREGATOR_METRICS_RETENTION_DAYS = 30
    old = datetime(2026, 1, 1, tzinfo=UTC)
    assert (
        partitions.insert_points(table=partitions.RUN_METRIC_TABLE, columns=RUN_COLUMNS, rows=[point(old)])
        == 0
    )
    assert names() == []  # no partition remade only to be dropped again


def test_drop_expired_drops_whole_partitions_past_retention_only(today, settings):
    settings.AGGREGATOR_METRICS_RETENTION_DAYS = 5
    days = [today - timedelta(days=i) for i in range(8)]
    partitions.ensure_partitions(days=days)
    partitions.insert_points(
        table=partitions.RUN_METRIC_TABLE,
        columns=RUN_COLUMNS,
        rows=[point(datetime(2026, 3, 5, 12, tzinfo=UTC))],
    )
    dropped = partitions.drop_expired()
    # Kept: 2026-03-05 (today - 5) onwards; dropped: the 3rd and 4th, in both tables.
    assert sorted(dropped) == sorted(
        partitions.partition_name(t, date(2026, 3, d)) for t in partitions.PARTITIONED_TABLES for d in (3, 4)
    )
    assert names()[0] == "monitoring_run_metric_p20260305"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_run_metric")
        assert cursor.fetchone()[0] == 1


def test_the_command_ensures_drops_and_lists(today, settings):
    settings.AGGREGATOR_METRICS_RETENTION_DAYS = 1
    partitions.ensure_partitions(days=[today - timedelta(days=3)], tables=[partitions.RUN_METRIC_TABLE])
    out = StringIO()
    call_command("metrics_partitions", "--ensure", "--ahead", "1", "--drop-expired", "--list", stdout=out)
    text = out.getvalue()
    assert "Created 6 partition(s)" in text
    assert "Dropped 1 partition(s): monitoring_run_metric_p20260307" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("partition"))
    assert lines[header].split() == ["partition", "from", "to", "rows", "size"]
    assert lines[header + 1].split()[:6] == [
        "monitoring_run_metric_p20260309",
        "2026-03-09",
        "00:00",
        "2026-03-10",
        "00:00",
        "0",
    ]
    assert lines[-1] == "6 partition(s); retention 1 days."


def test_the_maintenance_task_ensures_and_drops(today, settings):
    from apps.monitoring.tasks import maintain_partitions_task

    settings.AGGREGATOR_METRICS_PARTITIONS_AHEAD = 0
    settings.AGGREGATOR_METRICS_RETENTION_DAYS = 1
    partitions.ensure_partitions(days=[today - timedelta(days=10)])
    result = maintain_partitions_task()
    assert len(result["created"]) == 4 and len(result["dropped"]) == 2
    assert names() == ["monitoring_run_metric_p20260309", "monitoring_run_metric_p20260310"]
