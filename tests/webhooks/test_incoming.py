"""Incoming webhooks: a pipeline's signed trigger URL starts a run; a push stream's signed ingestion URL
appends records that the push_stream connector (and a pipeline through it) reads back. Requests are signed
with the standardwebhooks reference library."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook as ReferenceSigner

from aggregator.dataplane import Batch, StateCheckpoint
from apps.connectors.base import ConnectorError
from apps.connectors.selectors import connector_runtime
from apps.connectors.services import connector_create
from apps.pipelines.models import Run
from apps.pipelines.services import pipeline_create
from apps.webhooks.models import PipelineTrigger, PushRecord, PushStream
from apps.webhooks.services import pipeline_trigger_create, push_stream_create
from tests.pipelines.conftest import flights_definition

pytestmark = pytest.mark.django_db


def signed(secret: str, body: bytes, *, msg_id: str | None = None, at: dt.datetime | None = None) -> dict:
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    at = at or timezone.now()
    return {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(at.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": ReferenceSigner(secret).sign(msg_id, at, body.decode()),
    }


def post(path: str, body: bytes, headers: dict, content_type: str = "application/json"):
    return Client().post(path, data=body, content_type=content_type, **headers)


# --- pipeline trigger ------------------------------------------------------------------------------------


@pytest.fixture
def pipeline(personas, csv_connector, pg_connector):
    return pipeline_create(
        workspace=personas.workspace,
        name="late flights",
        definition=flights_definition(),
        user=personas.owner,
    )


@pytest.fixture
def trigger(pipeline):
    trigger, secret = pipeline_trigger_create(pipeline=pipeline, user=None)
    trigger.secret = secret  # type: ignore[attr-defined]
    return trigger


def trigger_path(trigger: PipelineTrigger) -> str:
    return f"/hooks/pipelines/{trigger.token}/trigger"


def test_a_signed_trigger_starts_a_run_with_the_payload_options(
    trigger, pipeline, django_capture_on_commit_callbacks
):
    body = json.dumps({"full_refresh": True, "streams": ["flights"]}).encode()
    with django_capture_on_commit_callbacks(execute=False):
        response = post(trigger_path(trigger), body, signed(trigger.secret, body))
    assert response.status_code == 202, response.json()
    run = Run.objects.get()
    assert response.json() == {
        "run": run.id,
        "status": "queued",
        "pipeline": pipeline.id,
        "options": {"full_refresh": True, "streams": ["flights"]},
    }
    assert (run.pipeline_id, run.trigger, run.options) == (
        pipeline.id,
        "webhook",
        {"full_refresh": True, "streams": ["flights"]},
    )
    trigger.refresh_from_db()
    assert trigger.last_triggered_at is not None


def test_an_empty_body_starts_a_plain_run(trigger):
    response = post(trigger_path(trigger), b"", signed(trigger.secret, b""))
    assert response.status_code == 202
    assert Run.objects.get().options == {}


def test_a_bad_signature_starts_nothing(trigger):
    body = b'{"full_refresh": true}'
    other_secret = "whsec_" + "A" * 44
    for headers in (
        signed(other_secret, body),
        {},
        {**signed(trigger.secret, body), "HTTP_WEBHOOK_SIGNATURE": "v1,xx"},
    ):
        response = post(trigger_path(trigger), body, headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_signature"
    # A signature over other bytes does not cover this body.
    response = post(trigger_path(trigger), b'{"full_refresh": false}', signed(trigger.secret, body))
    assert response.status_code == 401
    assert not Run.objects.exists()


def test_an_old_timestamp_is_refused(trigger):
    body = b"{}"
    old = timezone.now() - dt.timedelta(minutes=6)
    response = post(trigger_path(trigger), body, signed(trigger.secret, body, at=old))
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "invalid_signature", "message": "webhook-timestamp is outside the accepted window."}
    }
    assert not Run.objects.exists()


def test_a_replayed_webhook_id_is_refused(trigger):
    body = b"{}"
    headers = signed(trigger.secret, body, msg_id="msg_once")
    assert post(trigger_path(trigger), body, headers).status_code == 202
    replay = post(trigger_path(trigger), body, headers)
    assert replay.status_code == 401
    assert replay.json()["error"]["message"] == "This webhook-id was received already."
    assert Run.objects.count() == 1


def test_unknown_options_and_unknown_tokens_are_refused(trigger):
    body = b'{"drop_tables": true}'
    response = post(trigger_path(trigger), body, signed(trigger.secret, body))
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"drop_tables": ["Unknown run option."]}
    body = b'{"streams": ["nope"]}'
    response = post(trigger_path(trigger), body, signed(trigger.secret, body))
    assert response.status_code == 400
    assert "not a source node" in response.json()["error"]["message"]
    assert (
        post("/hooks/pipelines/no-such-token/trigger", b"{}", signed(trigger.secret, b"{}")).status_code
        == 404
    )
    assert Client().get(trigger_path(trigger)).status_code == 405
    assert not Run.objects.exists()


def test_triggers_api_for_the_personas(personas, client_for, pipeline):
    response = client_for(personas.editor).post(
        "/api/v1/pipeline-triggers/", {"pipeline": pipeline.id}, format="json"
    )
    assert response.status_code == 201
    trigger = PipelineTrigger.objects.get()
    body = response.json()
    secret = body.pop("signing_secret")
    assert secret.startswith("whsec_")
    expected = {
        "id": trigger.id,
        "workspace": personas.workspace.id,
        "pipeline": pipeline.id,
        "url": f"http://127.0.0.1:8000/hooks/pipelines/{trigger.token}/trigger",
        "is_active": True,
        "last_triggered_at": None,
        "created_at": trigger.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert body == expected
    assert client_for(personas.viewer).get("/api/v1/pipeline-triggers/").json()["results"] == [expected]
    assert (
        client_for(personas.viewer)
        .post("/api/v1/pipeline-triggers/", {"pipeline": pipeline.id}, format="json")
        .status_code
        == 403
    )
    outsider = client_for(personas.outsider)
    assert (
        outsider.post("/api/v1/pipeline-triggers/", {"pipeline": pipeline.id}, format="json").status_code
        == 404
    )
    assert outsider.get(f"/api/v1/pipeline-triggers/{trigger.id}/").status_code == 404
    assert outsider.delete(f"/api/v1/pipeline-triggers/{trigger.id}/").status_code == 404
    assert client_for(personas.editor).delete(f"/api/v1/pipeline-triggers/{trigger.id}/").status_code == 204
    assert not PipelineTrigger.objects.exists()


# --- push ingestion --------------------------------------------------------------------------------------


@pytest.fixture
def push(personas):
    stream, secret, read_key = push_stream_create(workspace=personas.workspace, user=None, name="orders")
    stream.secret = secret  # type: ignore[attr-defined]
    stream.read_key = read_key  # type: ignore[attr-defined]
    return stream


def ingest_path(stream: PushStream) -> str:
    return f"/hooks/ingest/{stream.token}"


def test_records_are_appended_from_an_array_and_from_json_lines(push):
    body = json.dumps([{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3}]).encode()
    response = post(ingest_path(push), body, signed(push.secret, body))
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "first_seq": 1, "last_seq": 2}

    lines = b'{"id": 3, "amount": 1.25, "tags": ["a"]}\n\n{"id": 4}\n'
    response = post(ingest_path(push), lines, signed(push.secret, lines), content_type="application/x-ndjson")
    assert response.json() == {"accepted": 2, "first_seq": 3, "last_seq": 4}
    stored = list(PushRecord.objects.filter(stream=push).values_list("seq", "data"))
    assert stored == [
        (1, {"id": 1, "amount": 9.5}),
        (2, {"id": 2, "amount": 3}),
        (3, {"id": 3, "amount": 1.25, "tags": ["a"]}),
        (4, {"id": 4}),
    ]
    push.refresh_from_db()
    assert push.last_seq == 4


def test_bad_pushes_are_refused_and_store_nothing(push, settings):
    settings.AGGREGATOR_PUSH_MAX_BYTES = 100
    cases = [
        (b'[{"id": 1}]', signed("whsec_" + "B" * 44, b'[{"id": 1}]'), 401, "invalid_signature"),
        (b"[1, 2]", signed(push.secret, b"[1, 2]"), 400, "validation_error"),
        (b'{"id": 1}\nnot json\n', signed(push.secret, b'{"id": 1}\nnot json\n'), 400, "validation_error"),
        (b"[]", signed(push.secret, b"[]"), 400, "validation_error"),
        (b'[{"a": "x\\u0000"}]', signed(push.secret, b'[{"a": "x\\u0000"}]'), 400, "validation_error"),
        (b"[" + b'{"a":1},' * 20 + b'{"a":1}]', {}, 413, "too_large"),
    ]
    for body, headers, status, code in cases:
        response = post(ingest_path(push), body, headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    assert not PushRecord.objects.exists()


def push_connector(personas, push, read_key=None, workspace=None):
    return connector_create(
        workspace=workspace or personas.workspace,
        user=None,
        name=f"orders-in-{secrets.token_hex(2)}",
        connector_type="push_stream",
        config={"stream_id": push.id, "read_key": read_key or push.read_key, "chunk_size": 2},
    )


def test_the_push_stream_connector_reads_records_back_incrementally(personas, push):
    body = b'[{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3}, {"id": 3, "amount": "oops"}]'
    assert post(ingest_path(push), body, signed(push.secret, body)).status_code == 202
    connector_type, config = connector_runtime(push_connector(personas, push))
    assert connector_type.check(config).ok
    (schema,) = connector_type.discover(config)
    assert [(f.name, str(f.type)) for f in schema.fields] == [
        ("_push_seq", "integer"),
        ("_push_received_at", "datetime"),
        ("id", "integer"),
        ("amount", "string"),  # numbers mixed with a string: text
    ]
    assert schema.cursor_field == "_push_seq"

    items = list(connector_type.read(config, schema, None))
    batches = [i for i in items if isinstance(i, Batch)]
    assert [b.table.column("id").to_pylist() for b in batches] == [[1, 2], [3]]
    assert [i.state for i in items if isinstance(i, StateCheckpoint)] == [{"cursor": 2}, {"cursor": 3}]

    more = b'[{"id": 4, "amount": "1"}]'
    assert post(ingest_path(push), more, signed(push.secret, more)).status_code == 202
    again = list(connector_type.read(config, schema, {"cursor": 3}))
    assert [b.table.column("_push_seq").to_pylist() for b in again if isinstance(b, Batch)] == [[4]]
    assert [i.state for i in again if isinstance(i, StateCheckpoint)] == [{"cursor": 4}]


@pytest.mark.django_db(transaction=True)
def test_the_connector_check_service_finds_the_stream(personas, push):
    # Committed data: run_check calls `check` on its own thread, with its own database connection.
    from apps.connectors.services import connector_check

    checked = connector_check(connector=push_connector(personas, push))
    assert (checked.last_check_status, checked.last_check_message) == (
        "succeeded",
        "Push stream 'orders' holds records up to #0.",
    )


def test_another_workspace_cannot_read_a_push_stream_without_its_key(personas, push):
    connector_type, config = connector_runtime(
        push_connector(personas, push, read_key="prk_wrong", workspace=personas.other_workspace)
    )
    with pytest.raises(ConnectorError) as caught:
        connector_type.check(config)
    assert caught.value.message == "No push stream with this id and read key."


def test_push_streams_api_shows_the_secrets_once(personas, client_for):
    response = client_for(personas.editor).post("/api/v1/push-streams/", {"name": "events"}, format="json")
    assert response.status_code == 201
    body = response.json()
    stream = PushStream.objects.get()
    assert body.pop("signing_secret").startswith("whsec_")
    assert body.pop("read_key").startswith("prk_")
    expected = {
        "id": stream.id,
        "workspace": personas.workspace.id,
        "name": "events",
        "url": f"http://127.0.0.1:8000/hooks/ingest/{stream.token}",
        "last_seq": 0,
        "is_active": True,
        "created_at": stream.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert body == expected
    assert client_for(personas.viewer).get(f"/api/v1/push-streams/{stream.id}/").json() == expected
    assert (
        client_for(personas.viewer).post("/api/v1/push-streams/", {"name": "x"}, format="json").status_code
        == 403
    )
    assert client_for(personas.outsider).get(f"/api/v1/push-streams/{stream.id}/").status_code == 404
    duplicate = client_for(personas.editor).post("/api/v1/push-streams/", {"name": "events"}, format="json")
    assert duplicate.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_pushed_records_flow_through_a_pipeline_to_postgresql(
    personas, pg_connector, scratch_conn, pg_schema
):
    from apps.pipelines.executor import run_execute
    from apps.pipelines.services import run_start

    stream, secret, read_key = push_stream_create(workspace=personas.workspace, user=None, name="orders")
    connector_create(
        workspace=personas.workspace,
        user=None,
        name="orders-in",
        connector_type="push_stream",
        config={"stream_id": stream.id, "read_key": read_key},
    )
    first = b'[{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3.0}]'
    assert post(f"/hooks/ingest/{stream.token}", first, signed(secret, first)).status_code == 202
    pipeline = pipeline_create(
        workspace=personas.workspace,
        name="orders",
        user=None,
        definition={
            "nodes": [
                {
                    "id": "orders",
                    "kind": "source",
                    "connector": "orders-in",
                    "stream": "orders",
                    "sync_mode": "incremental",
                    "cursor_field": "_push_seq",
                },
                {
                    "id": "warehouse",
                    "kind": "destination",
                    "connector": "warehouse-pg",
                    "table": "orders",
                    "write_mode": "append",
                },
            ],
            "edges": [{"from": "orders", "to": "warehouse"}],
        },
    )
    run = run_start(pipeline=pipeline)
    assert run_execute(run_id=run.id, attempt=1) == "succeeded"
    second = b'{"id": 3, "amount": 1.5}\n'
    assert post(f"/hooks/ingest/{stream.token}", second, signed(secret, second)).status_code == 202
    run = run_start(pipeline=pipeline)
    assert run_execute(run_id=run.id, attempt=1) == "succeeded"
    assert Run.objects.get(id=run.id).rows_written == 1  # incremental: only the new record

    rows = scratch_conn.execute(
        f'SELECT _push_seq, id, amount FROM "{pg_schema}".orders ORDER BY _push_seq'
    ).fetchall()
    assert rows == [(1, 1, 9.5), (2, 2, 3.0), (3, 3, 1.5)]
