"""Development on one machine: `manage.py up` fills DATABASE_URL, REDIS_URL and the keys it keeps in var/."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from aggregator.embedded import load_up_env

# While `manage.py up` runs on ./var, other commands (shell, dbshell, createsuperuser…) use its PostgreSQL
# and Redis, and the keys it keeps there, for whichever of those variables the environment leaves unset.
load_up_env(Path(__file__).resolve().parent.parent.parent / "var")

from .base import *  # noqa: E402,F403
from .base import AGGREGATOR_ENCRYPTION_KEYS, email_settings, env, env_secret  # noqa: E402

DEBUG = env.bool("DEBUG", default=True)
# A fixed development key only when none is given: `up` writes a random one to var/secrets.env.
SECRET_KEY = env_secret("SECRET_KEY") or "local-development-only-not-secret"
if not AGGREGATOR_ENCRYPTION_KEYS:
    AGGREGATOR_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    ]
# Mail goes to the console unless EMAIL_URL says otherwise (filemail://var/mail keeps each message as a
# file under ./var/mail instead).
vars().update(email_settings("consolemail://"))
LOG_FORMAT = env.str("LOG_FORMAT", default="console")

from aggregator.logging import configure_logging  # noqa: E402

LOGGING = configure_logging(log_format=LOG_FORMAT, level=env.str("LOG_LEVEL", default="INFO"))
