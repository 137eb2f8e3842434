from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.pipelines.models import FINISHED_STATUSES, NodeRun, Pipeline, Run, RunStatus, RunTrigger
from apps.pipelines.services import run_start

from ._workspace import add_workspace_argument, resolve_workspace

POLL_S = 0.5


class Command(BaseCommand):
    help = "Start a run of a pipeline; with --wait, show its progress until it ends (exit 0 only on success)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="The pipeline's name.")
        add_workspace_argument(parser)
        parser.add_argument("--wait", action="store_true", help="Follow the run until it ends.")
        parser.add_argument("--full-refresh", action="store_true", help="Ignore incremental state.")
        parser.add_argument(
            "--timeout", type=float, default=None, help="Give up waiting after this many seconds."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = resolve_workspace(options["workspace"])
        pipeline = Pipeline.objects.filter(workspace=workspace, name=options["name"]).first()
        if pipeline is None:
            raise CommandError(f"No pipeline {options['name']!r} in workspace {workspace.slug}.")
        try:
            run = run_start(
                pipeline=pipeline, trigger=RunTrigger.CLI, options={"full_refresh": options["full_refresh"]}
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Run {run.id} queued.")
        if not options["wait"]:
            return
        status = self._follow(run, options["timeout"])
        run.refresh_from_db()
        self.stdout.write(
            f"Run {run.id} {status}: {run.rows_read} rows read, {run.rows_written} written, "
            f"{run.rows_rejected} rejected."
        )
        if status != RunStatus.SUCCEEDED:
            raise CommandError(run.error or f"Run {run.id} {status}.")

    def _follow(self, run: Run, timeout: float | None) -> str:
        started = time.monotonic()
        bars: dict[str, tqdm] = {}
        try:
            while True:
                run.refresh_from_db(fields=["status", "attempt"])
                for node in NodeRun.objects.filter(run=run).order_by("id"):
                    bar = bars.get(node.node_id)
                    if bar is None:
                        bar = bars[node.node_id] = tqdm(
                            desc=f"{node.node_id:>16}",
                            unit=" rows",
                            position=len(bars),
                            leave=True,
                            file=self.stderr,
                        )
                    bar.n = node.rows_out if node.kind != "destination" else node.rows_in
                    bar.set_postfix_str(node.status, refresh=False)
                    bar.refresh()
                if run.status in FINISHED_STATUSES:
                    return run.status
                if timeout is not None and time.monotonic() - started > timeout:
                    raise CommandError(f"Run {run.id} still {run.status} after {timeout:g} s.")
                time.sleep(POLL_S)
        finally:
            for bar in bars.values():
                bar.close()
