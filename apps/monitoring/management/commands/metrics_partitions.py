"""`manage.py metrics_partitions [--ensure] [--drop-expired] [--list]`: show and maintain the daily partitions
of the metric tables (the hourly beat task does --ensure and --drop-expired by itself)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.monitoring import partitions


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TB"


class Command(BaseCommand):
    help = "Show and maintain the daily partitions of the metric tables."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--ensure",
            action="store_true",
            help=f"Create partitions from yesterday to today + AGGREGATOR_METRICS_PARTITIONS_AHEAD "
            f"({settings.AGGREGATOR_METRICS_PARTITIONS_AHEAD}) days.",
        )
        parser.add_argument("--ahead", type=int, default=None, help="Days ahead for --ensure.")
        parser.add_argument(
            "--drop-expired",
            action="store_true",
            help=f"Drop partitions older than AGGREGATOR_METRICS_RETENTION_DAYS "
            f"({settings.AGGREGATOR_METRICS_RETENTION_DAYS}).",
        )
        parser.add_argument("--list", action="store_true", help="List partitions (the default).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["ensure"]:
            created = partitions.ensure_ahead(ahead=options["ahead"])
            self.stdout.write(
                f"Created {len(created)} partition(s)" + (": " + ", ".join(created) if created else ".")
            )
        if options["drop_expired"]:
            dropped = partitions.drop_expired()
            self.stdout.write(
                f"Dropped {len(dropped)} partition(s)" + (": " + ", ".join(dropped) if dropped else ".")
            )
        if options["list"] or not (options["ensure"] or options["drop_expired"]):
            self._list()

    def _list(self) -> None:
        rows = partitions.list_partitions()
        header = ("partition", "from", "to", "rows", "size")
        table = [
            (
                p.name,
                p.start.strftime("%Y-%m-%d %H:%M") if p.start else "?",
                p.end.strftime("%Y-%m-%d %H:%M") if p.end else "?",
                f"{p.rows:,}",
                _size(p.size_bytes),
            )
            for p in rows
        ]
        widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
        line = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
        self.stdout.write(line.format(*header))
        for row in table:
            self.stdout.write(line.format(*row))
        self.stdout.write(
            f"{len(rows)} partition(s); retention {settings.AGGREGATOR_METRICS_RETENTION_DAYS} days."
        )
