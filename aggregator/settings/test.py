"""Tests run on real PostgreSQL and Redis: DATABASE_URL / REDIS_URL when set (CI sets the machine's own),
otherwise embedded servers started for the test session under var/test/."""

from __future__ import annotations

import os

if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
    from aggregator.embedded import ensure_test_services

    ensure_test_services()

from .base import *  # noqa: F403
from .base import BASE_DIR, env, mfa_policy

DEBUG = False
SECRET_KEY = "test-secret-key-not-for-production"  # noqa: S105
AGGREGATOR_ENCRYPTION_KEYS = ["u3Bfm1pPmFb9m5x2WYx4kq0Nq4i6c3R0B8jC9e1qV4M="]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Most tests (and the browser tests' servers) sign in as staff and workspace admins without a second
# factor; the MFA tests turn the policy on themselves (settings, or live_server_extra_env for a server).
AGGREGATOR_MFA_REQUIRED_FOR = mfa_policy(env.str("AGGREGATOR_MFA_REQUIRED_FOR", default="none"))
# Mail stays in django.core.mail.outbox. The browser tests' server and worker are other processes, so they
# write each message to a file in AGGREGATOR_TEST_EMAIL_DIR instead, for the test to read.
if env.str("AGGREGATOR_TEST_EMAIL_DIR", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = env.str("AGGREGATOR_TEST_EMAIL_DIR")
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = BASE_DIR / "var" / "test" / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
LOG_FORMAT = "console"
LOG_LEVEL = env.str("LOG_LEVEL", default="WARNING")

from aggregator.logging import configure_logging  # noqa: E402

LOGGING = configure_logging(log_format=LOG_FORMAT, level=LOG_LEVEL)
