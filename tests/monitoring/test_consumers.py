"""`/ws/` through the whole ASGI stack (origin check, session middleware, the consumer) on the real Redis
channel layer, with WebsocketCommunicator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from aggregator.asgi import application
from apps.monitoring import consumers, events
from apps.pipelines.models import LogLevel, RunLog
from apps.pipelines.services import pipeline_create, run_start
from apps.users.models import Membership
from tests.pipelines.conftest import (  # noqa: F401  (fixtures)
    csv_connector,
    flights_definition,
    flights_file,
    import_dir,
    pg_config,
    pg_connector,
    pg_schema,
    scratch_database,
)

# The consumer reads through its own database connection (another thread): data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def socket(*headers: tuple[bytes, bytes], origin: tuple[bytes, bytes] = ORIGIN) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/", headers=[origin, (b"host", b"localhost"), *headers])


def _session_cookie(user: Any) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)  # a real session row and cookie, as a browser signed in would have
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.fixture
def session_cookie(personas: Any) -> Any:
    # Made here, in sync code: logging in writes the session to the database.
    cookies = {user.id: _session_cookie(user) for user in (personas.owner, personas.viewer)}
    return lambda user: cookies[user.id]


def jwt_for(user: Any) -> str:
    return str(AccessToken.for_user(user))


async def connected(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    communicator = socket(*headers)
    ok, _ = await communicator.connect()
    assert ok
    return communicator


async def signed_in(user: Any) -> WebsocketCommunicator:
    communicator = await connected()
    await communicator.send_json_to({"type": "auth", "token": jwt_for(user)})
    assert await communicator.receive_json_from() == {
        "type": "authenticated",
        "user": {"id": user.id, "email": user.email},
    }
    return communicator


async def subscribe(communicator: WebsocketCommunicator, channel: str, ident: int) -> dict[str, Any]:
    await communicator.send_json_to({"type": "subscribe", "channel": channel, "id": ident})
    return await communicator.receive_json_from()


@database_sync_to_async
def emit_committed(type: str, workspace: Any, subject: Any = None, payload: Any = None) -> int:
    with transaction.atomic():
        event = events.emit(type, workspace, subject, payload)
    return event.id


@database_sync_to_async
def emit_rolled_back(type: str, workspace: Any, subject: Any = None) -> None:
    try:
        with transaction.atomic():
            events.emit(type, workspace, subject, {})
            raise RuntimeError("roll back")
    except RuntimeError:
        pass


@pytest.fixture
def run(personas: Any, csv_connector: Any, pg_connector: Any) -> Any:  # noqa: F811
    pipeline = pipeline_create(
        workspace=personas.workspace,
        name="late flights",
        definition=flights_definition(),
        user=personas.owner,
    )
    return run_start(pipeline=pipeline, user=None)


# --- authentication and origin --------------------------------------------------------------------------


async def test_session_cookie_authenticates_without_an_auth_message(personas, session_cookie):
    communicator = await connected(session_cookie(personas.viewer))
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    assert await subscribe(communicator, "workspace", personas.workspace.id) == {
        "type": "subscribed",
        "channel": "workspace",
        "id": personas.workspace.id,
    }
    await communicator.disconnect()


async def test_jwt_auth_message_authenticates(personas):
    communicator = await signed_in(personas.viewer)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


@pytest.fixture
def bad_tokens(personas: Any) -> dict[str, str]:
    from rest_framework_simplejwt.tokens import RefreshToken

    expired = AccessToken.for_user(personas.viewer)
    expired.set_exp(lifetime=timedelta(seconds=-1))
    return {
        "garbage": "not.a.jwt",
        "expired": str(expired),
        "refresh": str(RefreshToken.for_user(personas.viewer)),  # a refresh token is not an access token
    }


@pytest.mark.parametrize("kind", ["garbage", "expired", "refresh"])
async def test_a_bad_or_expired_token_is_refused_and_the_socket_closed(personas, bad_tokens, kind):
    token = bad_tokens[kind]
    communicator = await connected()
    await communicator.send_json_to({"type": "auth", "token": token})
    assert await communicator.receive_json_from() == {
        "type": "error",
        "code": "invalid_token",
        "message": "The token is invalid or expired.",
    }
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_an_anonymous_socket_can_do_nothing_but_authenticate(personas):
    communicator = await connected()
    await communicator.send_json_to(
        {"type": "subscribe", "channel": "workspace", "id": personas.workspace.id}
    )
    assert (await communicator.receive_json_from())["code"] == "unauthenticated"
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_an_anonymous_socket_is_closed_after_the_auth_timeout(personas, settings):
    settings.AGGREGATOR_WS_AUTH_TIMEOUT_S = 0.2
    communicator = await connected()
    assert await communicator.receive_json_from() == {
        "type": "error",
        "code": "auth_timeout",
        "message": "Not authenticated in time.",
    }
    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_a_foreign_origin_is_refused(personas, session_cookie):
    communicator = socket(session_cookie(personas.owner), origin=(b"origin", b"https://evil.example"))
    ok, _ = await communicator.connect()
    assert ok is False


async def test_a_missing_origin_is_refused(personas):
    communicator = WebsocketCommunicator(application, "/ws/", headers=[(b"host", b"localhost")])
    ok, _ = await communicator.connect()
    assert ok is False


# --- authorisation: the outsider ------------------------------------------------------------------------


async def test_outsider_cannot_subscribe_to_another_workspace_and_receives_nothing(personas):
    communicator = await signed_in(personas.outsider)
    assert await subscribe(communicator, "workspace", personas.workspace.id) == {
        "type": "error",
        "code": "not_found",
        "message": "No such workspace.",
    }
    await emit_committed("pipeline.created", personas.workspace, ("pipeline", 1), {"name": "x"})
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_outsider_cannot_subscribe_to_another_workspaces_run_and_receives_nothing(personas, run):
    communicator = await signed_in(personas.outsider)
    missing = await subscribe(communicator, "run", run.id)
    assert missing == {"type": "error", "code": "not_found", "message": "No such run."}
    # Exactly what an id that does not exist answers.
    assert await subscribe(communicator, "run", run.id + 10_000) == missing
    await emit_committed("run.started", personas.workspace, run, {"pipeline": run.pipeline_id})
    await database_sync_to_async(events.publish)("run.progress", personas.workspace.id, ("run", run.id), {})
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


# --- delivery -------------------------------------------------------------------------------------------


async def test_member_receives_events_after_commit_and_never_a_rolled_back_one(personas):
    communicator = await signed_in(personas.viewer)
    await subscribe(communicator, "workspace", personas.workspace.id)

    await emit_rolled_back("pipeline.created", personas.workspace, ("pipeline", 5))
    assert await communicator.receive_nothing(timeout=0.3)

    event_id = await emit_committed("pipeline.created", personas.workspace, ("pipeline", 5), {"name": "p"})
    message = await communicator.receive_json_from()
    created_at = message["event"].pop("created_at")
    assert created_at[:2] == "20"
    assert message == {
        "type": "event",
        "event": {
            "id": event_id,
            "type": "pipeline.created",
            "workspace": personas.workspace.id,
            "subject": {"type": "pipeline", "id": "5"},
            "payload": {"name": "p"},
        },
    }
    await communicator.disconnect()


async def test_unsubscribe_stops_delivery(personas):
    communicator = await signed_in(personas.viewer)
    await subscribe(communicator, "workspace", personas.workspace.id)
    await communicator.send_json_to(
        {"type": "unsubscribe", "channel": "workspace", "id": personas.workspace.id}
    )
    assert await communicator.receive_json_from() == {
        "type": "unsubscribed",
        "channel": "workspace",
        "id": personas.workspace.id,
    }
    await emit_committed("pipeline.created", personas.workspace, ("pipeline", 6), {})
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@database_sync_to_async
def write_log(run: Any, message: str) -> RunLog:
    return RunLog.objects.create(run=run, level=LogLevel.INFO, node_id="flights", message=message)


async def test_a_run_subscription_sends_the_log_so_far_then_progress_and_live_lines(personas, run):
    first = await write_log(run, "Run started")
    communicator = await signed_in(personas.viewer)
    assert await subscribe(communicator, "run", run.id) == {
        "type": "subscribed",
        "channel": "run",
        "id": run.id,
    }
    backlog = await communicator.receive_json_from()
    assert backlog == {"type": "log", "line": consumers.log_line(first)}

    progress = {"run": run.id, "status": "running", "nodes": {"flights": {"rows_out": 7}}}
    await database_sync_to_async(events.publish)(
        "run.progress", personas.workspace.id, ("run", run.id), progress
    )
    message = await communicator.receive_json_from()
    assert (message["type"], message["event"]["type"], message["event"]["payload"]) == (
        "event",
        "run.progress",
        progress,
    )

    # What the executor's log() publishes for each line it writes (see docs/monitoring.md).
    second = await write_log(run, "flights: 7 rows read")
    publish_log = database_sync_to_async(events.publish)
    await publish_log("run.log", personas.workspace.id, ("run", run.id), consumers.log_line(first))
    await publish_log("run.log", personas.workspace.id, ("run", run.id), consumers.log_line(second))
    assert await communicator.receive_json_from() == {"type": "log", "line": consumers.log_line(second)}
    assert await communicator.receive_nothing(timeout=0.3)  # the first line was sent already, once
    await communicator.disconnect()


async def test_log_lines_are_not_sent_to_workspace_subscribers(personas, run):
    communicator = await signed_in(personas.viewer)
    await subscribe(communicator, "workspace", personas.workspace.id)
    line = {"id": 1, "message": "x"}
    await database_sync_to_async(events.publish)("run.log", personas.workspace.id, ("run", run.id), line)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_an_event_reaches_a_socket_in_both_its_groups_once(personas, run):
    communicator = await signed_in(personas.viewer)
    await subscribe(communicator, "workspace", personas.workspace.id)
    await subscribe(communicator, "run", run.id)
    await emit_committed("run.started", personas.workspace, run, {"attempt": 1})
    assert (await communicator.receive_json_from())["event"]["type"] == "run.started"
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_removed_member_stops_receiving_at_the_next_check(personas, monkeypatch):
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", 0.2)
    communicator = await signed_in(personas.viewer)
    await subscribe(communicator, "workspace", personas.workspace.id)
    await database_sync_to_async(Membership.objects.filter(user=personas.viewer).delete)()
    assert await communicator.receive_json_from(timeout=3) == {
        "type": "error",
        "code": "subscription_revoked",
        "message": f"You can no longer see workspace {personas.workspace.id}.",
    }
    await emit_committed("pipeline.created", personas.workspace, ("pipeline", 8), {})
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_sockets_of_one_process_share_one_hub_and_each_gets_an_event_once(personas, run):
    viewer, editor = await signed_in(personas.viewer), await signed_in(personas.editor)
    await subscribe(viewer, "workspace", personas.workspace.id)
    await subscribe(editor, "run", run.id)
    await subscribe(editor, "workspace", personas.workspace.id)
    assert set(consumers.hub().members) == {f"workspace.{personas.workspace.id}", f"run.{run.id}"}
    await emit_committed("run.started", personas.workspace, run, {"attempt": 1})
    for communicator in (viewer, editor):
        assert (await communicator.receive_json_from())["event"]["type"] == "run.started"
        assert await communicator.receive_nothing(timeout=0.2)
    await viewer.disconnect()
    await editor.disconnect()
    assert consumers.hub().members == {} and consumers.hub()._tasks == []  # stopped with the last socket


# --- the protocol's errors ------------------------------------------------------------------------------


async def test_malformed_messages_get_typed_errors_and_the_socket_stays_open(personas):
    communicator = await signed_in(personas.viewer)
    await communicator.send_to(text_data="{not json")
    assert (await communicator.receive_json_from())["code"] == "bad_message"
    for message, code in [
        ({"no": "type"}, "bad_message"),
        ({"type": "dance"}, "unknown_type"),
        ({"type": "subscribe", "channel": "pipeline", "id": 1}, "bad_message"),
        ({"type": "subscribe", "channel": "run", "id": "1"}, "bad_message"),
        ({"type": "unsubscribe", "channel": "run", "id": 1}, "not_subscribed"),
        ({"type": "auth", "token": "again"}, "already_authenticated"),
    ]:
        await communicator.send_json_to(message)
        assert (await communicator.receive_json_from())["code"] == code, message
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


async def test_subscribing_twice_is_one_subscription_and_their_number_is_capped(personas, run, monkeypatch):
    monkeypatch.setattr(consumers, "MAX_SUBSCRIPTIONS", 1)
    communicator = await signed_in(personas.viewer)
    subscribed = {"type": "subscribed", "channel": "workspace", "id": personas.workspace.id}
    assert await subscribe(communicator, "workspace", personas.workspace.id) == subscribed
    assert await subscribe(communicator, "workspace", personas.workspace.id) == subscribed
    assert (await subscribe(communicator, "run", run.id))["code"] == "too_many_subscriptions"
    await emit_committed("pipeline.created", personas.workspace, ("pipeline", 9), {})
    assert (await communicator.receive_json_from())["event"]["type"] == "pipeline.created"
    assert await communicator.receive_nothing(timeout=0.3)  # once, not once per subscribe
    await communicator.disconnect()
