from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from apps.pipelines.portability import dump_yaml, export_workspace

from ._workspace import add_workspace_argument, resolve_workspace


class Command(BaseCommand):
    help = "Write a workspace's connectors and pipelines as YAML (secrets as ${ENV_VAR} references)."

    def add_arguments(self, parser: Any) -> None:
        add_workspace_argument(parser)
        parser.add_argument("--output", "-o", help="File to write; standard output when absent.")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = resolve_workspace(options["workspace"])
        text = dump_yaml(export_workspace(workspace=workspace))
        if options["output"]:
            Path(options["output"]).write_text(text)
            self.stderr.write(f"Wrote {options['output']}.")
        else:
            self.stdout.write(text, ending="")
