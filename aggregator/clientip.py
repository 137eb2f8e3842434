"""The client's address, one reading for every part that keys on it (django-axes lockouts, the API's rate
limits, the audit log).

Behind `AXES_PROXY_COUNT` trusted reverse proxies, each proxy appends the address it got the request from to
`X-Forwarded-For`, so the client is that many entries from the right. Whatever a client writes into the
header itself sits further left and is never read. With no proxy (the default) the header is ignored and
the socket's address (`REMOTE_ADDR`) is the client's. Left-most readings (ipware's, and DRF's without
`NUM_PROXIES`) would let a client choose its own address, and so a fresh lockout or rate-limit bucket per
request.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str | None:
    """`request`: a Django HttpRequest, or a DRF Request wrapping one. None when the request carries no
    address at all (one made in code)."""
    meta = getattr(request, "META", None) or request._request.META
    remote = meta.get("REMOTE_ADDR") or None
    count = int(settings.AXES_IPWARE_PROXY_COUNT)
    if count <= 0:
        return remote
    chain = [part.strip() for part in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if part.strip()]
    return chain[-count] if len(chain) >= count else remote
