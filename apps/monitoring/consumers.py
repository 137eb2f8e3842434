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
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
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
# A subscription's authorisation is checked again when an event arrives this long after the last check,
# so a member removed from a workspace stops receiving its events within this bound (one query per
# subscription per interval, not one per event).
RECHECK_EVERY_S = 60.0
# Events reach a socket once per group it is in (a run event goes to the workspace and the run groups);
# this many recent fingerprints are remembered to deliver each one once.
DEDUPE_WINDOW = 256


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LiveStatusConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.user: Any = None
        # group name → (channel, id, monotonic time of the last authorisation)
        self.subscriptions: dict[str, tuple[str, int, float]] = {}
        self.log_seen: dict[int, int] = {}  # run id → the last log line id sent
        self._recent: deque[str] = deque(maxlen=DEDUPE_WINDOW)
        self._recent_set: set[str] = set()
        self._auth_timer: asyncio.Task[None] | None = None
        await self.accept()
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self.user = user
        else:
            self._auth_timer = asyncio.create_task(self._close_if_still_anonymous())

    async def disconnect(self, code: int) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        for group in list(getattr(self, "subscriptions", {})):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.subscriptions = {}

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
        self.user = user
        if self._auth_timer is not None:
            self._auth_timer.cancel()
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
        # Join before reading the log backlog: a line written in between arrives live and is dropped as
        # already seen, instead of falling between the backlog and the first live message.
        await self.channel_layer.group_add(group, self.channel_name)
        self.subscriptions[group] = (channel, ident, time.monotonic())
        await self.send_json({"type": "subscribed", "channel": channel, "id": ident})
        if channel == "run":
            lines = await _log_backlog(ident)
            for line in lines:
                await self.send_json({"type": "log", "line": line})
            self.log_seen[ident] = max((line["id"] for line in lines), default=0)

    async def on_unsubscribe(self, content: dict[str, Any]) -> None:
        channel, ident = _target(content)
        group = group_name(channel, ident)
        if self.subscriptions.pop(group, None) is None:
            raise ProtocolError("not_subscribed", f"Not subscribed to {channel} {ident}.")
        await self.channel_layer.group_discard(group, self.channel_name)
        if channel == "run":
            self.log_seen.pop(ident, None)
        await self.send_json({"type": "unsubscribed", "channel": channel, "id": ident})

    # --- channel layer messages (events.emit / events.publish) ----------------------------------------

    async def event_message(self, message: dict[str, Any]) -> None:
        body = message["message"]
        event = body.get("event") or {}
        run_id = _run_id_of(event)
        run_group = group_name("run", run_id) if run_id is not None else None
        groups = [g for g in (group_name("workspace", event.get("workspace")), run_group) if g]
        # A message queued before an unsubscribe can still arrive after it; only live subscriptions count.
        if not any(g in self.subscriptions for g in groups):
            return
        if not self._first_time(event):
            return
        if not await self._still_allowed(groups):
            return
        if event.get("type") == "run.log":
            await self._deliver_log(run_id, run_group, event.get("payload") or {})
            return
        await self.send_json(body)

    async def _deliver_log(self, run_id: int | None, run_group: str | None, line: dict[str, Any]) -> None:
        # Log lines go to the run's subscribers only: a workspace dashboard does not want every line.
        if run_id is None or run_group not in self.subscriptions:
            return
        line_id = line.get("id")
        if isinstance(line_id, int):
            if line_id <= self.log_seen.get(run_id, 0):
                return
            self.log_seen[run_id] = line_id
        await self.send_json({"type": "log", "line": line})

    def _first_time(self, event: dict[str, Any]) -> bool:
        if event.get("id") is not None:
            fingerprint = f"id:{event['id']}"
        else:
            raw = json.dumps(event, sort_keys=True, default=str).encode()
            fingerprint = "h:" + hashlib.blake2b(raw, digest_size=12).hexdigest()
        if fingerprint in self._recent_set:
            return False
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(fingerprint)
        self._recent_set.add(fingerprint)
        return True

    async def _still_allowed(self, groups: list[str]) -> bool:
        now = time.monotonic()
        allowed = False
        for group in groups:
            entry = self.subscriptions.get(group)
            if entry is None:
                continue
            channel, ident, checked_at = entry
            if now - checked_at < RECHECK_EVERY_S:
                allowed = True
                continue
            if await _may_see(self.user, channel, ident):
                self.subscriptions[group] = (channel, ident, now)
                allowed = True
            else:
                del self.subscriptions[group]
                await self.channel_layer.group_discard(group, self.channel_name)
                await self.send_error("subscription_revoked", f"You can no longer see {channel} {ident}.")
        return allowed

    # --- helpers -----------------------------------------------------------------------------------------

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    async def _close_if_still_anonymous(self) -> None:
        await asyncio.sleep(settings.AGGREGATOR_WS_AUTH_TIMEOUT_S)
        if self.user is None:
            await self.send_error("auth_timeout", "Not authenticated in time.")
            await self.close(code=CLOSE_UNAUTHENTICATED)


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
