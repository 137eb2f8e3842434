"""Incoming webhooks: no session, no API key, no CSRF — the Standard Webhooks signature with the
trigger's (or push stream's) own secret is the authentication, checked over the raw body before anything
is parsed. Answers use the API's one error body."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from aggregator.api.exceptions import error_body
from aggregator.logging import get_logger
from apps.webhooks import selectors, services
from apps.webhooks.signing import SignatureError

logger = get_logger(__name__)

# A trigger's body is a handful of run options; anything bigger is not one.
TRIGGER_MAX_BYTES = 64 * 1024


def _error(status: int, code: str, message: str, fields: dict[str, list[str]] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code=code, message=message, fields=fields), status=status)


def _validation_error(exc: ValidationError) -> JsonResponse:
    fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    first, messages = next(iter(fields.items()))
    return _error(400, "validation_error", f"{first}: {messages[0]}", fields)


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    try:
        if int(declared) > limit:
            return None
    except ValueError:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _not_found() -> JsonResponse:
    return _error(404, "not_found", "Not found.")


@csrf_exempt
@require_POST
def pipeline_trigger(request: HttpRequest, token: str) -> JsonResponse:
    """POST /hooks/pipelines/<token>/trigger — a signed JSON object of run options → 202 with the run."""
    trigger = selectors.trigger_by_token(token=token)
    if trigger is None:
        return _not_found()
    body = _read_body(request, TRIGGER_MAX_BYTES)
    if body is None:
        return _error(413, "too_large", f"The body may hold at most {TRIGGER_MAX_BYTES} bytes.")
    try:
        services.verify_incoming(
            kind="trigger",
            owner_id=trigger.id,
            secret=services.trigger_secret(trigger),
            headers=request.headers,
            body=body,
        )
    except SignatureError as exc:
        logger.warning("pipeline_trigger_refused", trigger_id=trigger.id, reason=str(exc))
        return _error(401, "invalid_signature", str(exc))
    try:
        payload: Any = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "validation_error", "The body is not valid JSON.")
    try:
        run = services.pipeline_trigger_fire(trigger=trigger, payload=payload)
    except ValidationError as exc:
        return _validation_error(exc)
    return JsonResponse(
        {"run": run.id, "status": run.status, "pipeline": run.pipeline_id, "options": run.options}, status=202
    )


@csrf_exempt
@require_POST
def push_ingest(request: HttpRequest, token: str) -> JsonResponse:
    """POST /hooks/ingest/<token> — a signed JSON array of objects or JSON Lines → 202 with the sequence
    numbers given to the records."""
    stream = selectors.push_stream_by_token(token=token)
    if stream is None:
        return _not_found()
    limit = int(getattr(settings, "AGGREGATOR_PUSH_MAX_BYTES", services.DEFAULT_PUSH_MAX_BYTES))
    body = _read_body(request, limit)
    if body is None:
        return _error(413, "too_large", f"The body may hold at most {limit} bytes.")
    try:
        services.verify_incoming(
            kind="ingest",
            owner_id=stream.id,
            secret=services.push_stream_secret(stream),
            headers=request.headers,
            body=body,
        )
    except SignatureError as exc:
        logger.warning("push_ingest_refused", push_stream_id=stream.id, reason=str(exc))
        return _error(401, "invalid_signature", str(exc))
    try:
        records = services.parse_push_body(body, request.content_type or "")
    except UnicodeDecodeError:
        return _error(400, "validation_error", "The body is not UTF-8.")
    except ValidationError as exc:
        return _validation_error(exc)
    first, last = services.push_records_append(stream=stream, records=records)
    return JsonResponse({"accepted": len(records), "first_seq": first, "last_seq": last}, status=202)
