"""Re-encrypt every stored secret with the first of AGGREGATOR_ENCRYPTION_KEYS.

Rotation: put a new key in front of AGGREGATOR_ENCRYPTION_KEYS (keep the old ones after it), deploy, run
this command, then remove the old keys. Idempotent: secrets already sealed with the first key are left
alone, so a second run (or a run interrupted and started again) changes nothing it does not need to.

A project command because the secrets live in several apps: each app re-encrypts its own rows through its
services (connectors: connector secrets; webhooks: webhook, trigger and push-stream secrets), and no app
reads another's tables.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from aggregator.logging import get_logger
from apps.connectors.services import connector_secrets_reencrypt
from apps.webhooks.services import secrets_reencrypt as webhook_secrets_reencrypt

logger = get_logger(__name__)

PROGRESS_BAR_FROM = 500


class Command(BaseCommand):
    help = "Re-encrypt stored connector and webhook secrets with the first key of AGGREGATOR_ENCRYPTION_KEYS."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; write nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        quiet = options.get("verbosity", 1) == 0
        bar: tqdm[Any] | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if quiet or total < PROGRESS_BAR_FROM:
                return
            if bar is None:
                bar = tqdm(total=total, unit="connector", file=sys.stderr)
            bar.update(done - bar.n)

        try:
            counts = connector_secrets_reencrypt(dry_run=dry_run, progress=progress)
        finally:
            if bar is not None:
                bar.close()
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(
            f"Connectors: {verb} {counts['rotated']}, already current {counts['current']}, "
            f"undecryptable {counts['failed']}."
        )
        hooks = webhook_secrets_reencrypt(dry_run=dry_run)
        self.stdout.write(
            f"Webhooks: {verb} {hooks['rotated']}, already current {hooks['current']}, "
            f"undecryptable {hooks['failed']}."
        )
        failed = counts["failed"] + hooks["failed"]
        logger.info("encryption_keys_rotated", dry_run=dry_run, failed=failed)
        if failed:
            raise CommandError(
                f"{failed} secret(s) could not be decrypted with any configured key; "
                "they must be entered again."
            )
