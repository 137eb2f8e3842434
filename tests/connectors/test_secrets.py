"""Secrets at rest and in transit: encrypted in the row, never returned or logged, kept on update, and
still usable after key rotation."""

from __future__ import annotations

import logging
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from aggregator.crypto import decrypt_json, is_current
from apps.connectors.models import Connector
from apps.connectors.selectors import connector_runtime
from apps.connectors.services import connector_check

from .conftest import CANARY_PASSWORD

pytestmark = pytest.mark.django_db


def _stored_row(connector_id: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT row_to_json(c)::text FROM connectors_connector c WHERE id = %s", [connector_id])
        return cur.fetchone()[0]


def test_canary_password_is_never_stored_returned_or_logged(
    personas: Any,
    client_for: Any,
    pg_config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(personas.editor)
    created = client.post(
        "/api/v1/connectors/",
        {
            "name": "warehouse",
            "connector_type": "postgres",
            "config": {**pg_config, "password": CANARY_PASSWORD},
        },
    )
    assert created.status_code == 201, created.json()
    connector_id = created.json()["id"]
    url = f"/api/v1/connectors/{connector_id}/"
    responses = [
        created,
        client.get("/api/v1/connectors/"),
        client.get(url),
        client.patch(url, {"config": {"connect_timeout": 5}}),
        client.post(f"{url}check/"),
        client.patch(url, {"config": {"port": "bad"}}),
    ]
    for response in responses:
        assert CANARY_PASSWORD not in response.content.decode()
    assert created.json()["config"]["password"] == {"is_set": True}
    assert responses[4].json()["ok"] is True

    row = _stored_row(connector_id)
    assert CANARY_PASSWORD not in row
    connector = Connector.objects.get(id=connector_id)
    assert "password" not in connector.config
    assert decrypt_json(connector.secrets_encrypted) == {"password": CANARY_PASSWORD}

    captured = capsys.readouterr()
    assert CANARY_PASSWORD not in caplog.text
    assert CANARY_PASSWORD not in captured.out + captured.err
    assert all(CANARY_PASSWORD not in str(record.msg) for record in caplog.records)


def test_patch_without_secret_keeps_it_and_null_clears_it(
    personas: Any, client_for: Any, pg_connector: Connector
) -> None:
    client = client_for(personas.editor)
    url = f"/api/v1/connectors/{pg_connector.id}/"

    kept = client.patch(url, {"config": {"connect_timeout": 3}})
    assert kept.json()["config"]["password"] == {"is_set": True}
    echoed = client.patch(url, {"config": {"password": {"is_set": True}, "sslmode": "require"}})
    assert echoed.json()["config"]["password"] == {"is_set": True}
    replaced = client.put(url, {"name": "warehouse", "config": {**pg_connector.config, "connect_timeout": 4}})
    assert replaced.status_code == 200, replaced.json()
    assert replaced.json()["config"]["password"] == {"is_set": True}
    _, config = connector_runtime(Connector.objects.get(id=pg_connector.id))
    assert config.password.get_secret_value() == CANARY_PASSWORD
    assert config.connect_timeout == 4

    cleared = client.patch(url, {"config": {"password": None}})
    assert cleared.json()["config"]["password"] == {"is_set": False}
    assert Connector.objects.get(id=pg_connector.id).secrets_encrypted == ""


def test_key_rotation_keeps_connectors_working_and_is_idempotent(
    settings: Any, pg_connector: Connector, personas: Any
) -> None:
    old_key = settings.AGGREGATOR_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.AGGREGATOR_ENCRYPTION_KEYS = [new_key, old_key]
    before = Connector.objects.get(id=pg_connector.id).secrets_encrypted
    assert not is_current(before)

    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert out.getvalue().splitlines()[0] == "Connectors: re-encrypted 1, already current 0, undecryptable 0."
    after = Connector.objects.get(id=pg_connector.id).secrets_encrypted
    assert after != before and is_current(after)

    again = StringIO()
    call_command("rotate_encryption_keys", stdout=again)
    assert (
        again.getvalue().splitlines()[0] == "Connectors: re-encrypted 0, already current 1, undecryptable 0."
    )
    assert Connector.objects.get(id=pg_connector.id).secrets_encrypted == after

    settings.AGGREGATOR_ENCRYPTION_KEYS = [new_key]  # the old key retired
    connector = Connector.objects.get(id=pg_connector.id)
    _, config = connector_runtime(connector)
    assert config.password.get_secret_value() == CANARY_PASSWORD
    assert connector_check(connector=connector).last_check_status == "succeeded"


def test_rotation_dry_run_writes_nothing(settings: Any, pg_connector: Connector) -> None:
    settings.AGGREGATOR_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.AGGREGATOR_ENCRYPTION_KEYS,
    ]
    before = Connector.objects.get(id=pg_connector.id).secrets_encrypted
    out = StringIO()
    call_command("rotate_encryption_keys", "--dry-run", stdout=out)
    assert "would re-encrypt 1" in out.getvalue()
    assert Connector.objects.get(id=pg_connector.id).secrets_encrypted == before


def test_check_errors_name_the_field_and_no_secret(pg_connector: Connector, settings: Any) -> None:
    Connector.objects.filter(id=pg_connector.id).update(
        config={**pg_connector.config, "database": "no_such_db"}
    )
    checked = connector_check(connector=Connector.objects.get(id=pg_connector.id))
    assert checked.last_check_status == "failed"
    assert checked.last_check_message == (
        f'Cannot connect to 127.0.0.1:{pg_connector.config["port"]}: database "no_such_db" does not exist'
    )
    assert CANARY_PASSWORD not in checked.last_check_message


def test_check_refuses_a_loopback_host_without_the_allow_list(pg_connector: Connector, settings: Any) -> None:
    settings.AGGREGATOR_ALLOWED_HOSTS = []
    checked = connector_check(connector=Connector.objects.get(id=pg_connector.id))
    assert checked.last_check_status == "failed"
    # Saved while the operator allowed 127.0.0.1: the stored host is refused as soon as it is read again.
    assert checked.last_check_message == (
        "The stored config is no longer valid: host: Address 127.0.0.1 of host 127.0.0.1 is not allowed "
        "(loopback)"
    )
    assert CANARY_PASSWORD not in checked.last_check_message
