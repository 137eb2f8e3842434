"""`/ws/`: live status. One consumer, a small typed JSON protocol (docs/monitoring.md, "Live status").

Client → server                                   Server → client
  {"type": "auth", "token": "<JWT access>"}         {"type": "authenticated", "user": {...}}
  {"type": "subscribe", "channel": "workspace"|"run", "id": 3}
                                                    {"type": "subscribed", "channel": ..., "id": ...}
  {"type": "unsubscribe", "channel": ..., "id": ...} {"type": "unsubscribed", ...}
  {"type": "ping"}                                  {"type": "pong"}
                                                    {"type": "event", "event": {...}}  (as emit made it)
                                                    {"type": "log", "line": {...}}     (a run's log line)
                                                    {"type": "error", "code": ..., "message": ...}

A socket is authenticated by the Django session cookie (AuthMiddlewareStack) or by a JWT access token in
an `auth` message — never in the URL, where proxies and browser history would keep it. Until then it may
only send `auth`, and it is closed after AGGREGATOR_WS_AUTH_TIMEOUT_S. Every subscription is authorised
with the same selector as the REST API (`workspace_ids_for_user`), so another workspace's run answers
`not_found` exactly like an id that does not exist, and no group is joined.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import OrderedDict
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.apps import apps
from django.conf import settings
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from aggregator.logging import get_logger
from apps.users.selectors import workspace_ids_for_user

from .events import group_name

logger = get_logger(__name__)

# Close codes in the 4000-4999 range the protocol leaves to applications, modelled on HTTP statuses.
CLOSE_UNAUTHENTICATED = 4401
CHANNELS = ("workspace", "run")
MAX_SUBSCRIPTIONS = 50
# Log lines sent on `subscribe run`: the tail, so a client joining a long run is not flooded.
LOG_BACKLOG = 500
# Every subscription's authorisation is checked again this often (with jitter, so 500 sockets do not query
# at once): a member removed from a workspace stops receiving its events within this bound.
RECHECK_EVERY_S = 60.0
# channels_redis forgets a group member after a day (its group_expiry); the hub renews its groups well
# before that.
GROUP_RENEW_EVERY_S = 3600.0
# A run event reaches the hub once per group it joined (the workspace's and the run's); a message seen
# again within this window is the second copy, not news.
DEDUPE_WINDOW_S = 2.0
DEDUPE_MAX = 1024
RETRY_AFTER_S = 0.5
# Not configured, on purpose: get_channel_layer() returns None for it, so a socket never receives from
# Redis itself — the process's hub (below) does, once for all of them.
NO_CHANNEL_LAYER = "live-status-sockets-receive-through-the-hub"


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LiveStatusConsumer(AsyncJsonWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        self.user: Any = None
        self.subscriptions: dict[str, tuple[str, int]] = {}  # group name → (channel, id)
        self.log_seen: dict[int, int] = {}  # run id → the last log line id sent
        self._held_logs: dict[int, list[dict[str, Any]]] = {}  # run id → live lines held during the backlog
        self._tasks: list[asyncio.Task[None]] = []
        await self.accept()
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self._authenticated(user)
        else:
            self._tasks.append(asyncio.create_task(self._close_if_still_anonymous()))

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "_tasks", []):
            task.cancel()
        if getattr(self, "subscriptions", None):
            await hub().leave_all(self)
            self.subscriptions = {}

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch closes stale database connections before every handler: a thread hop per
        # message. Every query here already goes through database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- client messages ---------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = json.loads(text_data or (bytes_data or b"").decode("utf-8", "replace"))
        except ValueError:
            await self.send_error("bad_message", "Messages are JSON objects.")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if not isinstance(kind, str):
            await self.send_error("bad_message", 'Messages are JSON objects with a "type".')
            return
        if self.user is None and kind != "auth":
            await self.send_error("unauthenticated", "Authenticate first: send {type: auth, token}.")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        handler = {
            "auth": self.on_auth,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "ping": self.on_ping,
        }.get(kind)
        if handler is None:
            await self.send_error("unknown_type", f"Unknown message type {kind[:40]!r}.")
            return
        try:
            await handler(content)
        except ProtocolError as error:
            await self.send_error(error.code, error.message)

    async def on_auth(self, content: dict[str, Any]) -> None:
        if self.user is not None:
            raise ProtocolError("already_authenticated", "This connection is already authenticated.")
        token = content.get("token")
        user = await _user_for_token(token) if isinstance(token, str) and token else None
        if user is None:
            await self.send_error("invalid_token", "The token is invalid or expired.")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        for task in self._tasks:
            task.cancel()  # the auth timeout
        self._authenticated(user)
        await self.send_json({"type": "authenticated", "user": {"id": user.pk, "email": user.email}})

    async def on_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def on_subscribe(self, content: dict[str, Any]) -> None:
        channel, ident = _target(content)
        group = group_name(channel, ident)
        if group in self.subscriptions:
            await self.send_json({"type": "subscribed", "channel": channel, "id": ident})
            return
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise ProtocolError("too_many_subscriptions", f"At most {MAX_SUBSCRIPTIONS} per connection.")
        if not await _may_see(self.user, channel, ident):
            raise ProtocolError("not_found", f"No such {channel}.")
        # Join before reading the log backlog, and hold back the live lines that arrive while it is read: a
        # line written in between is then neither lost between backlog and live nor sent twice.
        self.subscriptions[group] = (channel, ident)
        if channel == "run":
            self._held_logs[ident] = []
        await hub().join(group, self)
        await self.send_json({"type": "subscribed", "channel": channel, "id": ident})
        if channel == "run":
            lines = await _log_backlog(ident)
            for line in lines:
                await self.send_json({"type": "log", "line": line})
            self.log_seen[ident] = max((line["id"] for line in lines), default=0)
            for line in self._held_logs.pop(ident, []):
                await self.deliver_log(ident, line)

    async def on_unsubscribe(self, content: dict[str, Any]) -> None:
        channel, ident = _target(content)
        group = group_name(channel, ident)
        if self.subscriptions.pop(group, None) is None:
            raise ProtocolError("not_subscribed", f"Not subscribed to {channel} {ident}.")
        await hub().leave(group, self)
        if channel == "run":
            self.log_seen.pop(ident, None)
        await self.send_json({"type": "unsubscribed", "channel": channel, "id": ident})

    # --- deliveries from the hub ---------------------------------------------------------------------------

    async def deliver(self, text: str) -> None:
        """An event, serialised once by the hub for every socket it goes to."""
        await self.send(text_data=text)

    async def deliver_log(self, run_id: int, line: dict[str, Any]) -> None:
        held = self._held_logs.get(run_id)
        if held is not None:  # the backlog is being sent
            held.append(line)
            return
        line_id = line.get("id")
        if isinstance(line_id, int):
            if line_id <= self.log_seen.get(run_id, 0):
                return
            self.log_seen[run_id] = line_id
        await self.send_json({"type": "log", "line": line})

    # --- helpers -----------------------------------------------------------------------------------------

    def _authenticated(self, user: Any) -> None:
        self.user = user
        self._tasks.append(asyncio.create_task(self._recheck_forever()))

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_EVERY_S * random.uniform(0.9, 1.1))  # noqa: S311 (jitter, not a secret)
            for group, (channel, ident) in list(self.subscriptions.items()):
                if await _may_see(self.user, channel, ident):
                    continue
                if self.subscriptions.pop(group, None) is not None:
                    await hub().leave(group, self)
                    await self.send_error("subscription_revoked", f"You can no longer see {channel} {ident}.")

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    async def _close_if_still_anonymous(self) -> None:
        await asyncio.sleep(settings.AGGREGATOR_WS_AUTH_TIMEOUT_S)
        if self.user is None:
            await self.send_error("auth_timeout", "Not authenticated in time.")
            await self.close(code=CLOSE_UNAUTHENTICATED)


class Hub:
    """The process's one receiver of live events, for all its sockets.

    Each socket receiving from the channel layer itself costs channels_redis a lock hand-off and two asyncio
    tasks per socket per message: with 500 sockets on one event that was most of the fan-out's time. Here
    one channel joins each group once (whoever of the local sockets subscribed), receives each message once,
    serialises it once and writes it to the subscribed sockets in order. The groups are the same ones
    events.emit publishes to, so emitters notice no difference. The hub runs while any socket of its event
    loop has a subscription, and stops with the last one."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel = ""
        self.members: dict[str, set[LiveStatusConsumer]] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def join(self, group: str, consumer: LiveStatusConsumer) -> None:
        async with self._lock:
            if not self._tasks:
                await self._start()
            if group not in self.members:
                self.members[group] = set()
                await self.layer.group_add(group, self.channel)
            self.members[group].add(consumer)

    async def leave(self, group: str, consumer: LiveStatusConsumer) -> None:
        async with self._lock:
            await self._leave(group, consumer)
            if not self.members:
                await self._stop()

    async def leave_all(self, consumer: LiveStatusConsumer) -> None:
        async with self._lock:
            for group in [g for g, sockets in self.members.items() if consumer in sockets]:
                await self._leave(group, consumer)
            if not self.members:
                await self._stop()

    async def _leave(self, group: str, consumer: LiveStatusConsumer) -> None:
        sockets = self.members.get(group)
        if sockets is None:
            return
        sockets.discard(consumer)
        if not sockets:
            del self.members[group]
            await self.layer.group_discard(group, self.channel)

    async def _start(self) -> None:
        self.channel = await self.layer.new_channel()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # Receiving and writing are separate tasks, so slow sockets never leave messages waiting in Redis
        # (where a channel holds at most its capacity).
        self._tasks = [
            asyncio.create_task(self._receive(queue)),
            asyncio.create_task(self._deliver(queue)),
            asyncio.create_task(self._renew_groups()),
        ]

    async def _stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            try:
                queue.put_nowait(await self.layer.receive(self.channel))
            except Exception:  # Redis away for a moment: keep trying, or every socket here goes silent
                logger.warning("live_status_receive_failed", exc_info=True)
                await asyncio.sleep(RETRY_AFTER_S)

    async def _renew_groups(self) -> None:
        while True:
            await asyncio.sleep(GROUP_RENEW_EVERY_S)
            try:
                for group in list(self.members):
                    await self.layer.group_add(group, self.channel)
            except Exception:
                logger.warning("live_status_group_renew_failed", exc_info=True)

    async def _deliver(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            message = await queue.get()
            try:
                await self._fan_out(message)
            except Exception:  # one bad message must not stop live status for the whole process
                logger.exception("live_status_delivery_failed")

    async def _fan_out(self, message: dict[str, Any]) -> None:
        body = message.get("message") or {}
        event = body.get("event") or {}
        if not self._first_time(event):
            return
        run_id = _run_id_of(event)
        run_group = group_name("run", run_id) if run_id is not None else None
        if event.get("type") == "run.log":
            # Log lines go to the run's subscribers only: a workspace dashboard does not want every line.
            line = event.get("payload") or {}
            for consumer in list(self.members.get(run_group or "", ())):
                await _quietly(consumer.deliver_log(run_id or 0, line))
            return
        targets = set(self.members.get(group_name("workspace", event.get("workspace")), ()))
        if run_group is not None:
            targets.update(self.members.get(run_group, ()))
        if not targets:
            return
        text = json.dumps(body)
        for consumer in targets:
            await _quietly(consumer.deliver(text))

    def _first_time(self, event: dict[str, Any]) -> bool:
        if event.get("id") is not None:
            fingerprint = f"id:{event['id']}"
        else:
            raw = json.dumps(event, sort_keys=True, default=str).encode()
            fingerprint = "h:" + hashlib.blake2b(raw, digest_size=12).hexdigest()
        now = time.monotonic()
        while self._seen and (
            len(self._seen) > DEDUPE_MAX or next(iter(self._seen.values())) < now - DEDUPE_WINDOW_S
        ):
            self._seen.popitem(last=False)
        if fingerprint in self._seen:
            return False
        self._seen[fingerprint] = now
        return True


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop (one in a server process; tests run a loop each)."""
    loop = asyncio.get_running_loop()
    for old in [other for other in _hubs if other.is_closed()]:
        del _hubs[old]
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]


async def _quietly(delivery: Any) -> None:
    try:
        await delivery
    except Exception:  # a socket that went away meanwhile; its disconnect() removes it from the hub
        logger.debug("live_status_send_failed")


def _target(content: dict[str, Any]) -> tuple[str, int]:
    channel, ident = content.get("channel"), content.get("id")
    if channel not in CHANNELS:
        raise ProtocolError("bad_message", 'channel must be "workspace" or "run".')
    if isinstance(ident, bool) or not isinstance(ident, int) or ident <= 0:
        raise ProtocolError("bad_message", "id must be a positive integer.")
    return str(channel), ident


def _run_id_of(event: dict[str, Any]) -> int | None:
    subject = event.get("subject") or {}
    if subject.get("type") != "run":
        return None
    try:
        return int(subject.get("id") or "")
    except (TypeError, ValueError):
        return None


@database_sync_to_async
def _user_for_token(raw: str) -> Any:
    """simplejwt's own validation (signature, expiry, token type, active user), as for REST requests."""
    authentication = JWTAuthentication()
    try:
        return authentication.get_user(authentication.get_validated_token(raw.encode()))
    except (InvalidToken, TokenError, AuthenticationFailed):
        return None


@database_sync_to_async
def _may_see(user: Any, channel: str, ident: int) -> bool:
    visible = workspace_ids_for_user(user=user)
    if channel == "workspace":
        return ident in visible
    # By label, not by import: monitoring never imports the apps that emit into it.
    run_model = apps.get_model("pipelines", "Run")
    return bool(run_model.objects.filter(id=ident, workspace_id__in=visible).exists())


@database_sync_to_async
def _log_backlog(run_id: int) -> list[dict[str, Any]]:
    log_model = apps.get_model("pipelines", "RunLog")
    rows = log_model.objects.filter(run_id=run_id).order_by("-id")[:LOG_BACKLOG]
    return [log_line(row) for row in reversed(list(rows))]


def log_line(row: Any) -> dict[str, Any]:
    """A log line as the REST API's run logs show it; `run.log` events carry the same shape."""
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "level": row.level,
        "node": row.node_id,
        "message": row.message,
        "context": row.context,
    }
