"""Incoming webhooks on the Webhooks screen, in a real browser against the real server and worker: an editor
makes a push stream (its signing secret and read key shown once) and the source connector that reads it; an
outside system pushes signed records to the URL; the editor makes a trigger for a pipeline reading that
stream; the outside system calls the signed trigger URL, and the worker loads the pushed records into
PostgreSQL. axe-core checks both tabs (var/e2e-artifacts/)."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook as ReferenceSigner

from apps.connectors.models import Connector
from apps.connectors.services import connector_create
from apps.pipelines.models import Run
from apps.pipelines.services import pipeline_create
from apps.webhooks.models import PipelineTrigger, PushStream
from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def _signed_post(base_url: str, shown_url: str, secret: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST `body` to the path of the URL the screen showed, signed as a Standard Webhooks sender does."""
    msg_id = f"msg_{secrets.token_hex(8)}"
    at = timezone.now()
    request = urllib.request.Request(  # noqa: S310 (http, the test's own server)
        base_url + urlparse(shown_url).path,
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": ReferenceSigner(secret).sign(msg_id, at, body.decode()),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, json.loads(response.read())


def _secret(page: Any, label: str) -> str:
    box = page.get_by_test_id("secret-once").filter(has_text=label)
    return str(box.locator("code").inner_text()).strip()


def test_an_editor_makes_a_push_stream_and_a_trigger_and_pushed_records_reach_postgresql(
    personas: Any, new_page: Any, live_server_url: str, pg_config: dict[str, Any], scratch_conn: Any,
    pg_schema: str,
) -> None:  # fmt: skip
    connector_create(workspace=personas.workspace, name="warehouse-pg", connector_type="postgres",
                     config=pg_config, user=personas.owner)  # fmt: skip
    page = new_page(width=1400, height=1000)
    sign_in(page, personas.editor.email, DEFAULT_PASSWORD, next_path="/webhooks")
    page.get_by_role("tab", name="Push streams").click()
    page.get_by_text("No push streams yet").wait_for()

    # A push stream: URL, signing secret and read key shown once; then the connector that reads it.
    page.get_by_label("Stream name").fill("orders")
    page.get_by_role("button", name="Add push stream").click()
    signing = _secret(page, "Signing secret of orders")
    read_key = _secret(page, "Read key of orders")
    stream = PushStream.objects.get(workspace=personas.workspace, name="orders")
    assert signing.startswith("whsec_") and read_key.startswith("prk_")
    shown_url = page.get_by_test_id("push-stream-list").locator("code").first.inner_text()
    assert shown_url.endswith(f"/hooks/ingest/{stream.token}")
    page.get_by_role("button", name="Add a source connector for it").click()
    page.get_by_role("link", name="orders (push)").wait_for()
    reader = Connector.objects.get(workspace=personas.workspace, name="orders (push)")
    assert reader.connector_type == "push_stream"
    # The read key is a secret: sealed in secrets_encrypted, never in the plain config.
    assert read_key not in json.dumps(reader.config) and reader.secrets_encrypted
    check_screen(page, "40-webhooks-push-streams")

    # An outside system pushes three signed records; the list counts them.
    body = b'[{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3.0}, {"id": 3, "amount": 1.25}]'
    assert _signed_post(live_server_url, shown_url, signing, body) == (
        202, {"accepted": 3, "first_seq": 1, "last_seq": 3},
    )  # fmt: skip
    page.get_by_role("button", name="Done").first.click()
    page.reload()
    page.get_by_role("tab", name="Push streams").click()
    page.get_by_test_id(f"push-stream-{stream.id}-count").filter(has_text="3 records received").wait_for()

    # A pipeline reading the stream, and a trigger for it made on the screen.
    pipeline = pipeline_create(
        workspace=personas.workspace, name="orders to warehouse", user=personas.owner,
        definition={
            "nodes": [
                {"id": "orders", "kind": "source", "connector": "orders (push)", "stream": "orders",
                 "sync_mode": "incremental", "cursor_field": "_push_seq"},
                {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg", "table": "orders",
                 "write_mode": "append"},
            ],
            "edges": [{"from": "orders", "to": "warehouse"}],
        },
    )  # fmt: skip
    page.get_by_role("tab", name="Pipeline triggers").click()
    page.get_by_text("No triggers yet").wait_for()
    page.get_by_label("Pipeline", exact=True).select_option(label="orders to warehouse")
    page.get_by_role("button", name="Add trigger").click()
    trigger_secret = _secret(page, "Signing secret of the trigger for orders to warehouse")
    trigger = PipelineTrigger.objects.get(pipeline=pipeline)
    trigger_url = page.get_by_test_id("trigger-list").locator("code").first.inner_text()
    assert trigger_url.endswith(f"/hooks/pipelines/{trigger.token}/trigger")
    check_screen(page, "41-webhooks-pipeline-triggers")

    # The outside system calls the trigger; the worker runs the pipeline.
    status, answer = _signed_post(live_server_url, trigger_url, trigger_secret, b"{}")
    assert status == 202 and answer["pipeline"] == pipeline.id
    deadline = time.monotonic() + 120
    run = Run.objects.get(id=answer["run"])
    while run.status not in {"succeeded", "failed", "cancelled"} and time.monotonic() < deadline:
        time.sleep(0.5)
        run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.trigger == "webhook"
    rows = scratch_conn.execute(
        f'SELECT _push_seq, id, amount FROM "{pg_schema}".orders ORDER BY _push_seq'
    ).fetchall()
    assert rows == [(1, 1, 9.5), (2, 2, 3.0), (3, 3, 1.25)]

    # The screen shows the call; a wrong signature is refused and starts nothing.
    page.reload()
    page.get_by_role("tab", name="Pipeline triggers").click()
    page.get_by_test_id("trigger-list").get_by_text("last called").wait_for()
    with pytest.raises(urllib.error.HTTPError) as refused:
        _signed_post(live_server_url, trigger_url, "whsec_" + "A" * 32, b"{}")
    assert refused.value.code == 401
    assert Run.objects.filter(pipeline=pipeline).count() == 1

    # Deleting the trigger (confirmed in a dialog) turns its URL off.
    page.get_by_role("button", name="Delete the trigger of orders to warehouse").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_text("No triggers yet").wait_for()
    assert not PipelineTrigger.objects.filter(pipeline=pipeline).exists()
    with pytest.raises(urllib.error.HTTPError) as gone:
        _signed_post(live_server_url, trigger_url, trigger_secret, b"{}")
    assert gone.value.code == 404
