"""Production: no default secret anywhere; the process refuses to start without one."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import AGGREGATOR_ENCRYPTION_KEYS, SECRET_KEY, env, env_secret

if not SECRET_KEY or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured(
        "SECRET_KEY (or SECRET_KEY_FILE) must be set to at least 50 random characters."
    )
if not AGGREGATOR_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "AGGREGATOR_ENCRYPTION_KEYS (or AGGREGATOR_ENCRYPTION_KEYS_FILE) must hold at least one Fernet key."
    )
if not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured("DATABASE_URL must be set in production.")
# Password-reset links, invitations and alerts go by email: a missing mail server would lose them quietly.
if not (env_secret("EMAIL_URL") or env.str("EMAIL_BACKEND", default="")):
    raise ImproperlyConfigured(
        "EMAIL_URL (or EMAIL_URL_FILE) must be set in production, "
        "e.g. smtp+tls://user:password@smtp.example.com:587."
    )
# The links in those emails point here; the development default (127.0.0.1) would reach nobody.
if not env.str("AGGREGATOR_BASE_URL", default=""):
    raise ImproperlyConfigured(
        "AGGREGATOR_BASE_URL must be set in production to the site's public address, "
        "e.g. https://aggregator.example.com."
    )

DEBUG = False
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
AGGREGATOR_PUBLIC_API_DOCS = env.bool("AGGREGATOR_PUBLIC_API_DOCS", default=False)
