"""First-start setup used by `manage.py up`: the admin user and the default workspace. Idempotent."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from apps.users.services import platform_bootstrap

DEFAULT_ADMIN_EMAIL = "admin@example.com"


class Command(BaseCommand):
    help = "Create the admin user and the default workspace if they do not exist yet."

    def handle(self, *args: Any, **options: Any) -> None:
        email = os.environ.get("AGGREGATOR_ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL
        password = os.environ.get("AGGREGATOR_ADMIN_PASSWORD") or None
        user, workspace, generated = platform_bootstrap(admin_email=email, admin_password=password)
        if generated:
            self.stdout.write("Created the admin user and the default workspace.")
            self.stdout.write(f"Admin email: {user.email}")
            self.stdout.write(f"Admin password: {generated}")
            self.stdout.write("Keep this password: it is shown only this once.")
        else:
            self.stdout.write(f"Admin email: {user.email} (workspace: {workspace.name})")
