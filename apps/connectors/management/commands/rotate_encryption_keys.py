"""Re-encrypt every connector's secrets with the first of AGGREGATOR_ENCRYPTION_KEYS.

Rotation: put a new key in front of AGGREGATOR_ENCRYPTION_KEYS (keep the old ones after it), deploy, run
this command, then remove the old keys. Idempotent: secrets already sealed with the first key are left
alone, so a second run (or a run interrupted and started again) changes nothing it does not need to.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from aggregator.crypto import DecryptionError, is_current, rotate
from aggregator.logging import get_logger
from apps.connectors.models import Connector

logger = get_logger(__name__)

# Rows re-encrypted per transaction: small enough that a lock on a connector being edited is short,
# large enough that a big installation is not one round trip per row.
BATCH_SIZE = 200
PROGRESS_BAR_FROM = 500


class Command(BaseCommand):
    help = "Re-encrypt stored connector secrets with the first key of AGGREGATOR_ENCRYPTION_KEYS."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; write nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        ids = list(
            Connector.objects.exclude(secrets_encrypted="").order_by("id").values_list("id", flat=True)
        )
        counts = {"rotated": 0, "current": 0, "failed": 0}
        show_bar = len(ids) >= PROGRESS_BAR_FROM and options.get("verbosity", 1) > 0
        with tqdm(total=len(ids), disable=not show_bar, unit="connector", file=sys.stderr) as bar:
            for start in range(0, len(ids), BATCH_SIZE):
                self._rotate_batch(ids[start : start + BATCH_SIZE], counts, dry_run)
                bar.update(len(ids[start : start + BATCH_SIZE]))
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(
            f"Connectors: {verb} {counts['rotated']}, already current {counts['current']}, "
            f"undecryptable {counts['failed']}."
        )
        logger.info("encryption_keys_rotated", dry_run=dry_run, **counts)
        # Webhook, trigger and push-stream secrets are sealed with the same keys.
        from apps.webhooks.services import secrets_reencrypt

        hooks = secrets_reencrypt(dry_run=dry_run)
        self.stdout.write(
            f"Webhooks: {verb} {hooks['rotated']}, already current {hooks['current']}, "
            f"undecryptable {hooks['failed']}."
        )
        counts["failed"] += hooks["failed"]
        if counts["failed"]:
            raise CommandError(
                f"{counts['failed']} connector(s) could not be decrypted with any configured key; "
                "their secrets must be entered again."
            )

    @staticmethod
    def _rotate_batch(ids: list[int], counts: dict[str, int], dry_run: bool) -> None:
        with transaction.atomic():
            # Locked so an edit saving new secrets at the same moment is not overwritten with old ones.
            for connector in (
                Connector.objects.select_for_update().filter(id__in=ids).only("id", "secrets_encrypted")
            ):
                token = connector.secrets_encrypted
                if not token:
                    continue
                if is_current(token):
                    counts["current"] += 1
                    continue
                try:
                    rotated = rotate(token)
                except DecryptionError:
                    counts["failed"] += 1
                    logger.warning("connector_secret_undecryptable", connector_id=connector.id)
                    continue
                counts["rotated"] += 1
                if not dry_run:
                    Connector.objects.filter(id=connector.id).update(secrets_encrypted=rotated)
