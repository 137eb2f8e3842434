"""Settings shared by every environment. Everything a deployment changes comes from the environment
(12-factor, django-environ); a `<NAME>_FILE` variable reads that secret from a file instead."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# An optional .env beside manage.py, for local overrides; real deployments use the environment.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def env_secret(name: str, default: str | None = None) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env_secret("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys for secrets at rest (connector credentials, webhook secrets). Comma-separated, the first one
# encrypts, all of them decrypt: add a new key in front, run `manage.py rotate_encryption_keys`, then drop
# the old one.
AGGREGATOR_ENCRYPTION_KEYS = [k for k in (env_secret("AGGREGATOR_ENCRYPTION_KEYS") or "").split(",") if k]

INSTALLED_APPS = [
    "aggregator",
    # The admin site that asks for a second factor (apps/users/admin_site.py) in place of Django's own.
    "apps.users.apps.OtpAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "guardian",
    "axes",
    "django_celery_beat",
    "channels",
    "django_structlog",
    "auditlog",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "apps.users",
    "apps.connectors",
    "apps.schemas",
    "apps.transformations",
    "apps.pipelines",
    "apps.monitoring",
    "apps.webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "aggregator.middleware.RequestCacheMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Marks a session user as verified when the session passed a second factor (the admin site and the
    # API's MFA gate read it).
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "aggregator.middleware.RequestIdHeaderMiddleware",
    # Remembers the request so audit entries name the actor, address and credential of a change.
    "apps.monitoring.audit.AuditContextMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "aggregator.urls"
WSGI_APPLICATION = "aggregator.wsgi.application"
ASGI_APPLICATION = "aggregator.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/aggregator")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = [
    # django-axes first, so a locked-out address never reaches the password check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"


def email_settings(default_url: str) -> dict[str, object]:
    """EMAIL_* settings from EMAIL_URL (or EMAIL_URL_FILE: an SMTP URL carries a password), in
    django-environ's forms: smtp://host:25, smtp+tls://user:password@smtp.example.com:587,
    smtps://… (implicit TLS), consolemail://, filemail:///var/mail (a directory relative to BASE_DIR;
    filemail:////srv/mail for an absolute one), memorymail://, dummymail://. EMAIL_BACKEND, when set, names
    another backend class and wins over the URL's scheme."""
    parsed = environ.Env.email_url_config(env_secret("EMAIL_URL") or default_url)
    # What the URL leaves out (a port, a user) keeps Django's default rather than None.
    config: dict[str, object] = {key: value for key, value in parsed.items() if value not in (None, "")}
    if "EMAIL_FILE_PATH" in config:
        config["EMAIL_FILE_PATH"] = BASE_DIR / str(config["EMAIL_FILE_PATH"])
    config["EMAIL_BACKEND"] = env.str("EMAIL_BACKEND", default=str(config["EMAIL_BACKEND"]))
    return config


# Production must name its mail server (production.py refuses to start otherwise); this default only
# serves a machine with a local MTA.
vars().update(email_settings("smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="aggregator@localhost")
# How long a password-reset link works (Django's default_token_generator reads it). The token is also
# spent by the password change it allows, and by a sign-in in between (both change what it hashes).
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=60 * 60)
AGGREGATOR_BASE_URL = env.str("AGGREGATOR_BASE_URL", default="http://127.0.0.1:8000")
AGGREGATOR_INVITATION_TTL = timedelta(days=env.int("AGGREGATOR_INVITATION_TTL_DAYS", default=7))

# --- REST API ---------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # DRF's throttles read the client the way aggregator/clientip.py does: AXES_PROXY_COUNT entries from the
    # right of X-Forwarded-For, or REMOTE_ADDR with no proxy (unset, DRF would trust the whole header).
    "NUM_PROXIES": env.int("AXES_PROXY_COUNT", default=0),
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.users.authentication.ApiKeyAuthentication",
        # simplejwt's and DRF's own, plus the MFA gate (apps/users/authentication.py).
        "apps.users.authentication.MfaJWTAuthentication",
        "apps.users.authentication.MfaSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "aggregator.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # Bodies are JSON: pipeline definitions, connector configs and the rest nest objects and lists, which
    # form encodings cannot carry. The upload endpoint takes multipart on its own.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # drf-spectacular's, plus the error responses of every operation (aggregator/api/schema.py).
    "DEFAULT_SCHEMA_CLASS": "aggregator.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "aggregator.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "login": env.str("AGGREGATOR_LOGIN_THROTTLE", default="30/min"),
        # Password-reset requests: per email address asked about (whoever asks), and per client address.
        "password_reset_email": env.str("AGGREGATOR_PASSWORD_RESET_EMAIL_THROTTLE", default="5/hour"),
        "password_reset_ip": env.str("AGGREGATOR_PASSWORD_RESET_IP_THROTTLE", default="20/hour"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
AGGREGATOR_API_MAX_LIMIT = 500

SPECTACULAR_SETTINGS = {
    "TITLE": "Aggregator API",
    "DESCRIPTION": "Connect sources and destinations, build pipelines, run and watch them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "apps.users.models.Role",
        "RunStatusEnum": "apps.pipelines.models.RunStatus",
        "CheckStatusEnum": "apps.connectors.models.CheckStatus",
        # A contract's three settings share one choice set: one enum rather than three names for it.
        "ContractPolicyEnum": "apps.schemas.models.ContractPolicy",
    },
}
# The schema and Swagger UI are public in development; production settings require a login.
AGGREGATOR_PUBLIC_API_DOCS = env.bool("AGGREGATOR_PUBLIC_API_DOCS", default=True)

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "USER_ID_FIELD": "id",
    "AUTH_HEADER_TYPES": ("Bearer",),
}

# --- Brute-force protection (django-axes) ------------------------------------------------------------
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "email"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ADMIN = True
AXES_LOCKOUT_CALLABLE = "apps.users.lockout.lockout_response"
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)
# One reading of the client's address for lockouts, rate limits and the audit log (aggregator/clientip.py).
AXES_CLIENT_IP_CALLABLE = "aggregator.clientip.client_ip"

# --- Two-factor authentication (django-otp: TOTP devices, recovery codes as static tokens) -------------
MFA_POLICY_CHOICES = ("staff", "admins", "all", "none")


def mfa_policy(value: str) -> list[str]:
    """AGGREGATOR_MFA_REQUIRED_FOR: comma-separated `staff` (Django staff users), `admins` (admins of any
    workspace), or `all` / `none` alone. A typo must not quietly turn the requirement off."""
    from django.core.exceptions import ImproperlyConfigured

    parts = [p.strip().lower() for p in value.split(",") if p.strip()]
    unknown = [p for p in parts if p not in MFA_POLICY_CHOICES]
    if unknown or not parts or (len(parts) > 1 and ({"all", "none"} & set(parts))):
        raise ImproperlyConfigured(
            f"AGGREGATOR_MFA_REQUIRED_FOR={value!r}: use `staff`, `admins` or both (comma-separated), "
            "or `all`, or `none`."
        )
    return parts


# Who must use a second factor: they can sign in without one, but every API call other than enrolling
# (and /me/, sign-out, password change) answers 403 `mfa_enrolment_required` until they have it.
AGGREGATOR_MFA_REQUIRED_FOR = mfa_policy(env.str("AGGREGATOR_MFA_REQUIRED_FOR", default="staff,admins"))
# The name authenticator apps show beside the account.
OTP_TOTP_ISSUER = env.str("AGGREGATOR_MFA_ISSUER", default="Aggregator")
# The device admin pages never show a TOTP key or its QR code, nor recovery codes' values.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- Object permissions (django-guardian) ------------------------------------------------------------
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

# --- Celery ------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60 * 60 + 300)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Runs get their own queue so a long load never sits behind (or in front of) webhooks and housekeeping.
CELERY_TASK_ROUTES = {"pipelines.run_execute": {"queue": "runs"}}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# Periodic tasks, declared in one place; beat's database scheduler picks them up at start.
# (Pipeline schedules are database entries owned by their pipelines, not listed here.)
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "pipelines-watchdog": {"task": "pipelines.watchdog", "schedule": 30.0},
    "monitoring-audit-prune": {"task": "monitoring.audit_prune", "schedule": 24 * 60 * 60.0},
}
# A running run whose worker has not beaten for this long is retried or failed by the watchdog.
AGGREGATOR_RUN_HEARTBEAT_TIMEOUT_S = env.int("AGGREGATOR_RUN_HEARTBEAT_TIMEOUT_S", default=90)
# A queued run not picked up for this long (its message lost) is enqueued again; claiming is idempotent.
AGGREGATOR_RUN_QUEUED_RESEND_S = env.int("AGGREGATOR_RUN_QUEUED_RESEND_S", default=600)

# --- What one transform may produce (apps/transformations/limits.py, docs/transformations.md "Limits") ---
# Bytes of one text value an expression's concat() or replace() may build.
AGGREGATOR_EXPRESSION_MAX_STRING = env.int("AGGREGATOR_EXPRESSION_MAX_STRING", default=1024 * 1024)
# What one step may output from one batch: the larger of these bytes and GROWTH times the batch's bytes.
AGGREGATOR_STEP_OUTPUT_BYTES = env.int("AGGREGATOR_STEP_OUTPUT_BYTES", default=256 * 1024 * 1024)
AGGREGATOR_STEP_OUTPUT_GROWTH = env.float("AGGREGATOR_STEP_OUTPUT_GROWTH", default=16.0)
# Wall time one step may spend on one batch (or at the end of its input, for the steps that hold it).
AGGREGATOR_STEP_BATCH_SECONDS = env.float("AGGREGATOR_STEP_BATCH_SECONDS", default=300.0)
# A preview runs in a child process: this much address space above what it inherits, for this long.
AGGREGATOR_PREVIEW_MEMORY_BYTES = env.int("AGGREGATOR_PREVIEW_MEMORY_BYTES", default=1024 * 1024 * 1024)
AGGREGATOR_PREVIEW_TIMEOUT_S = env.float("AGGREGATOR_PREVIEW_TIMEOUT_S", default=30.0)

# --- Channels ----------------------------------------------------------------------------------------
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [env.str("CHANNELS_REDIS_URL", default=REDIS_URL)]},
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("CACHE_REDIS_URL", default=REDIS_URL),
    }
}

# --- Logging (structlog) -----------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="json")  # json | console
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = True
# An X-Request-ID from the proxy in front (or the caller) is kept, so one id follows a request everywhere.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = env.bool("TRUST_UPSTREAM_REQUEST_ID", default=True)

from aggregator.logging import configure_logging  # noqa: E402

LOGGING = configure_logging(log_format=LOG_FORMAT, level=LOG_LEVEL)

# --- Aggregator --------------------------------------------------------------------------------------
# Outbound addresses the SSRF guard (aggregator/ssrf.py) lets through although they are internal: exact host
# names and CIDRs, e.g. "127.0.0.1/32" for a database on this host. Empty: only public addresses.
AGGREGATOR_ALLOWED_HOSTS = env.list("AGGREGATOR_ALLOWED_HOSTS", default=[])

# Files, one area per workspace (apps/connectors/file_areas.py): a file source's `path` (or glob) is relative
# to IMPORT_DIR/workspaces/<workspace id>/ (uploads go to its uploads/) and can never leave it (symlinks
# resolved); DuckDB and file outputs are written under DATA_DIR/workspaces/<workspace id>/.
AGGREGATOR_IMPORT_DIR = Path(env.str("AGGREGATOR_IMPORT_DIR", default=str(BASE_DIR / "var" / "import")))
AGGREGATOR_DATA_DIR = Path(env.str("AGGREGATOR_DATA_DIR", default=str(BASE_DIR / "var" / "data")))
# Directories of IMPORT_DIR/shared/ that workspaces may read as shared/<name>/…: `name` (every workspace) or
# `name=3,7` (those workspaces), separated by `;`. Empty: none.
AGGREGATOR_SHARED_IMPORT_DIRS = env.str("AGGREGATOR_SHARED_IMPORT_DIRS", default="")
# The Local warehouse destination (apps/connectors/plugins/postgres/local_warehouse.py): the admin URL of a
# PostgreSQL server where the platform makes one database and role per workspace. `manage.py up` sets it to
# its embedded server; empty (the default elsewhere) leaves the destination unavailable. Those databases are
# named <prefix><workspace id>.
AGGREGATOR_LOCAL_WAREHOUSE_URL = env_secret("AGGREGATOR_LOCAL_WAREHOUSE_URL") or ""
AGGREGATOR_LOCAL_WAREHOUSE_DB_PREFIX = env.str("AGGREGATOR_LOCAL_WAREHOUSE_DB_PREFIX", default="warehouse_")
# The largest file an upload may send (bytes); larger uploads are refused while streaming, not after.
AGGREGATOR_UPLOAD_MAX_BYTES = env.int("AGGREGATOR_UPLOAD_MAX_BYTES", default=1024 * 1024 * 1024)

# --- Audit log (django-auditlog with the workspace-aware entry of apps/monitoring) --------------------
AUDITLOG_LOGENTRY_MODEL = "monitoring.AuditEntry"
# The library's own migrations would create its stock table, unused once the model is swapped (and its
# foreign keys block flushing the database): AuditEntry's migrations in monitoring own the schema.
MIGRATION_MODULES = {"auditlog": None}
AUDITLOG_STORE_JSON_CHANGES = True
# Entries older than this are deleted by the daily `monitoring.audit_prune` beat task.
AGGREGATOR_AUDIT_RETENTION_DAYS = env.int("AGGREGATOR_AUDIT_RETENTION_DAYS", default=365)
# A WebSocket that has not authenticated (session cookie or a JWT `auth` message) is closed after this.
AGGREGATOR_WS_AUTH_TIMEOUT_S = env.float("AGGREGATOR_WS_AUTH_TIMEOUT_S", default=5.0)

# Called with each Event after the emitting transaction commits (apps/monitoring/events.py); dotted paths.
AGGREGATOR_EVENT_HANDLERS = [
    "apps.connectors.services.handle_event",
    "apps.webhooks.delivery.handle_event",
]
# Webhook deliveries whose task message was lost (or whose worker died mid-send) are enqueued again.
CELERY_BEAT_SCHEDULE["webhooks-resend-lost"] = {"task": "webhooks.deliveries_resend_lost", "schedule": 60.0}
# Finished webhook deliveries older than AGGREGATOR_WEBHOOK_DELIVERY_RETENTION_DAYS (default 30) are deleted.
CELERY_BEAT_SCHEDULE["webhooks-prune"] = {"task": "webhooks.deliveries_prune", "schedule": 24 * 60 * 60.0}

# --- Metrics, health and alerts (apps/monitoring) ----------------------------------------------------
# Added to whatever handlers are listed above: finished runs become metric points, then alert evaluation.
AGGREGATOR_EVENT_HANDLERS = [
    *vars().get("AGGREGATOR_EVENT_HANDLERS", []),
    "apps.monitoring.metrics.handle_event",
    "apps.monitoring.alerts.handle_event",
]
# First, so the HTTP latency it records for /metrics covers every other middleware too.
MIDDLEWARE.insert(0, "apps.monitoring.prometheus.HttpMetricsMiddleware")
CELERY_BEAT_SCHEDULE.update(
    {
        # Also the beat heartbeat the health endpoint reads.
        "monitoring-sample-system-metrics": {"task": "monitoring.sample_system_metrics", "schedule": 60.0},
        # Idempotent and cheap, so hourly rather than daily: a beat down at midnight costs nothing.
        "monitoring-maintain-partitions": {"task": "monitoring.maintain_partitions", "schedule": 3600.0},
        "monitoring-check-freshness": {"task": "monitoring.check_freshness", "schedule": 300.0},
    }
)
# Metric points older than this many days are dropped, a whole daily partition at a time.
AGGREGATOR_METRICS_RETENTION_DAYS = env.int("AGGREGATOR_METRICS_RETENTION_DAYS", default=90)
AGGREGATOR_METRICS_PARTITIONS_AHEAD = env.int("AGGREGATOR_METRICS_PARTITIONS_AHEAD", default=7)
# /metrics wants `Authorization: Bearer <token>`; empty (the default) means /metrics answers 404.
AGGREGATOR_METRICS_TOKEN = env_secret("AGGREGATOR_METRICS_TOKEN") or ""
AGGREGATOR_METRICS_CACHE_S = env.int("AGGREGATOR_METRICS_CACHE_S", default=5)
# Health: beat is stale after this long without a tick (its sample task runs every 60 s).
AGGREGATOR_BEAT_STALE_S = env.int("AGGREGATOR_BEAT_STALE_S", default=180)
AGGREGATOR_QUEUE_BACKLOG_WARN = env.int("AGGREGATOR_QUEUE_BACKLOG_WARN", default=1000)
AGGREGATOR_DISK_MIN_FREE_BYTES = env.int("AGGREGATOR_DISK_MIN_FREE_BYTES", default=1024**3)
# "kind" is also a connector's and a node's field: name the alert rule's enum explicitly.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["AlertKindEnum"] = "apps.monitoring.models.AlertKind"  # type: ignore[index]

# --- Web app (Next.js static export, served by aggregator/frontend.py and WhiteNoise) ---------------------
# `make frontend` builds it into frontend/out; without a build, `/` shows the small home page instead.
AGGREGATOR_FRONTEND_DIR = Path(env.str("AGGREGATOR_FRONTEND_DIR", default=str(BASE_DIR / "frontend" / "out")))
# WhiteNoise serves the export's assets (/_next/static/…) from here; unset when not built, so no warning.
WHITENOISE_ROOT = AGGREGATOR_FRONTEND_DIR if AGGREGATOR_FRONTEND_DIR.is_dir() else None
# Next's assets carry a content hash in their names, as do collectstatic's: both may be cached forever.
WHITENOISE_IMMUTABLE_FILE_TEST = r"^/(_next/static/.+|static/.+\.[0-9a-f]{12}\.\w+)$"

# --- Uploads and archives (apps/connectors/uploads.py, POST /api/v1/uploads/) ----------------------------
# Request bodies held in memory: non-file form fields and JSON bodies (an upload's file is not counted here;
# AGGREGATOR_UPLOAD_MAX_BYTES bounds it). Django's default, stated so it is a decision.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
# An uploaded file larger than this is spooled to a temporary file while the request is parsed, so memory
# per upload in flight stays at this size whatever AGGREGATOR_UPLOAD_MAX_BYTES allows.
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
# Zip and gzip inputs (uploads and file sources): entries per archive, decompressed bytes per archive (all
# entries together, counted while reading, whatever the headers claim) and decompressed / compressed ratio
# of an entry or an archive above which it is refused as a decompression bomb.
AGGREGATOR_ARCHIVE_MAX_ENTRIES = env.int("AGGREGATOR_ARCHIVE_MAX_ENTRIES", default=10_000)
AGGREGATOR_ARCHIVE_MAX_BYTES = env.int("AGGREGATOR_ARCHIVE_MAX_BYTES", default=16 * 1024**3)
AGGREGATOR_ARCHIVE_MAX_RATIO = env.float("AGGREGATOR_ARCHIVE_MAX_RATIO", default=200.0)

# Key of the PII `hash` step's salts (HMAC per namespace). Empty: SECRET_KEY. Changing it changes every
# hash, so set it before hashing data that must stay joinable across runs.
AGGREGATOR_PII_HASH_KEY = env_secret("AGGREGATOR_PII_HASH_KEY") or ""
