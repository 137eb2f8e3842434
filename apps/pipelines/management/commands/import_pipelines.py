from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.pipelines.portability import import_workspace

from ._workspace import add_workspace_argument, resolve_workspace


class Command(BaseCommand):
    help = "Create or update connectors and pipelines from a YAML export, by name. Idempotent."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="The YAML file, or - for standard input.")
        add_workspace_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = resolve_workspace(options["workspace"])
        text = sys.stdin.read() if options["file"] == "-" else Path(options["file"]).read_text()
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CommandError(f"Not valid YAML: {exc}") from None
        try:
            report = import_workspace(workspace=workspace, document=document)
        except ValidationError as exc:
            problems = "\n".join(f"  {key}: {'; '.join(msgs)}" for key, msgs in exc.message_dict.items())
            raise CommandError(f"Nothing was imported:\n{problems}") from None
        for line in report.lines():
            self.stdout.write(line)
        counts = (len(report.created), len(report.updated), len(report.unchanged))
        self.stdout.write("{} created, {} updated, {} unchanged.".format(*counts))
