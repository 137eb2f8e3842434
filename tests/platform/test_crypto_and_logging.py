from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
import structlog
from cryptography.fernet import Fernet

from aggregator import crypto
from aggregator.logging import configure_logging


def test_encrypt_round_trip_and_ciphertext_hides_the_value():
    token = crypto.encrypt_json({"password": "canary-Pa55"})
    assert "canary" not in token
    assert crypto.decrypt_json(token) == {"password": "canary-Pa55"}


def test_rotation_keeps_old_secrets_readable_and_reencrypts_with_the_new_key(settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.AGGREGATOR_ENCRYPTION_KEYS = [old_key]
    token = crypto.encrypt("s3cret")
    assert crypto.is_current(token)

    settings.AGGREGATOR_ENCRYPTION_KEYS = [new_key, old_key]
    assert not crypto.is_current(token)
    assert crypto.decrypt(token) == "s3cret"
    rotated = crypto.rotate(token)
    assert crypto.is_current(rotated)

    settings.AGGREGATOR_ENCRYPTION_KEYS = [new_key]
    assert crypto.decrypt(rotated) == "s3cret"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)


def test_bad_keys_are_a_clear_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.AGGREGATOR_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match="Fernet keys"):
        crypto.encrypt("x")


@pytest.fixture
def json_log_stream(settings):
    """Log output as production writes it (JSON lines), captured in memory."""
    logging.config.dictConfig(configure_logging(log_format="json", level="INFO"))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)
    logging.config.dictConfig(settings.LOGGING)


def test_json_logs_carry_context_and_never_a_secret(json_log_stream):
    log = structlog.get_logger("tests.secrets")
    structlog.contextvars.bind_contextvars(request_id="rid-1")
    try:
        log.info("connector_checked", connector_id=7, password="canary-Pa55", api_key="agk_x.y", token="t0k")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in json_log_stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "connector_checked"
    assert line["connector_id"] == 7
    assert line["request_id"] == "rid-1"
    assert line["password"] == line["api_key"] == line["token"] == "[redacted]"
    assert "canary" not in json.dumps(line)


def test_request_lines_keep_their_path_but_not_a_token_in_the_query(json_log_stream):
    log = structlog.get_logger("tests.secrets")
    log.info("request_started", request="GET /reset-password?uid=MTI&token=cb2-canary0123&next=/x")
    log.info("request_started", request="GET /accept-invitation?token=inv-canary")
    log.info("request_started", request="GET /api/v1/runs/?limit=5&api_key=agk_canary&x_signature=s1canary")
    requests = [json.loads(line)["request"] for line in json_log_stream.getvalue().splitlines()]
    assert requests == [
        "GET /reset-password?uid=MTI&token=[redacted]&next=/x",
        "GET /accept-invitation?token=[redacted]",
        "GET /api/v1/runs/?limit=5&api_key=[redacted]&x_signature=[redacted]",
    ]
