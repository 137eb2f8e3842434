"""Standard Webhooks signatures (https://www.standardwebhooks.com), both ways.

A secret is `whsec_` + base64 of at least 24 random bytes (we make 32). The signed content is
`"{webhook-id}.{webhook-timestamp}.{body}"`; the signature is base64 of its HMAC-SHA256 under the
decoded secret, sent as `webhook-signature: v1,<sig>`. Several space-separated signatures are allowed,
which is how a rotation's overlap works: the receiver accepts the message if any one verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24


class SignatureError(Exception):
    """A request's signature headers are missing, stale or do not verify. Messages are ours, fit for a
    401 answer: they never echo what the caller sent."""


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError("A webhook secret must hold at least 24 bytes.")
    return key


def generate_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(24)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(
    secrets_: Iterable[str], message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers, with one signature per secret (newest first)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(signature(s, message_id, ts, body) for s in secrets_),
    }


def verify(
    secrets_: Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int,
    now: float | None = None,
) -> tuple[str, int]:
    """Check a signed request; returns (webhook-id, timestamp). Replay protection (a webhook-id seen
    before within the tolerance) is the caller's, since it needs shared storage."""
    message_id = headers.get("webhook-id") or ""
    raw_timestamp = headers.get("webhook-timestamp") or ""
    raw_signatures = headers.get("webhook-signature") or ""
    if not message_id or not raw_timestamp or not raw_signatures:
        raise SignatureError("Missing webhook-id, webhook-timestamp or webhook-signature header.")
    if len(message_id) > 200:
        raise SignatureError("webhook-id is too long.")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp must be whole seconds since the epoch.") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the accepted window.")
    offered = [part.split(",", 1)[1] for part in raw_signatures.split() if part.startswith("v1,")]
    for secret in secrets_:
        expected = signature(secret, message_id, timestamp, body).split(",", 1)[1]
        # compare_digest on every offered signature: no early exit that times which one matched.
        if any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in offered):
            return message_id, timestamp
    raise SignatureError("No signature matches.")
