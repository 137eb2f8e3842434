"""One reading of the client's address for lockouts, rate limits and the audit log
(aggregator/clientip.py): a client cannot choose its address with X-Forwarded-For, with or without
trusted proxies in front."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from aggregator.clientip import client_ip
from apps.monitoring.models import AuditEntry
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("proxies", "forwarded", "remote", "expected"),
    [
        (0, None, "203.0.113.5", "203.0.113.5"),
        (0, "9.9.9.9", "203.0.113.5", "203.0.113.5"),  # no proxy: the header is the client's own words
        (1, "9.9.9.9, 198.51.100.7", "10.0.0.2", "198.51.100.7"),  # the entry the proxy appended
        (1, "198.51.100.7", "10.0.0.2", "198.51.100.7"),
        (2, "9.9.9.9, 198.51.100.7, 10.0.0.1", "10.0.0.2", "198.51.100.7"),
        (2, "198.51.100.7", "10.0.0.2", "10.0.0.2"),  # fewer entries than proxies: the socket's address
    ],
)
def test_the_client_is_counted_from_the_right(
    settings: Any, proxies: int, forwarded: str | None, remote: str, expected: str
) -> None:
    settings.AXES_IPWARE_PROXY_COUNT = proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    assert client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **extra)) == expected


def _sign_in(client: APIClient, password: str, forwarded: str) -> int:
    return client.post(
        "/api/v1/auth/token/",
        {"email": "owner@acme.test", "password": password},
        HTTP_X_FORWARDED_FOR=forwarded,
    ).status_code


def test_a_forged_header_neither_escapes_a_lockout_nor_the_sign_in_rate_limit(
    personas: Any, settings: Any
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    codes = [_sign_in(client, "bad", f"192.0.2.{n}") for n in range(3)]
    assert codes == [401, 401, 429]
    # A new forged address each time is still the same client: locked out, the right password too.
    assert _sign_in(client, DEFAULT_PASSWORD, "192.0.2.99") == 429
    # From another address the account signs in.
    assert _sign_in(APIClient(REMOTE_ADDR="198.51.100.9"), DEFAULT_PASSWORD, "192.0.2.1") == 200


def test_the_sign_in_rate_limit_counts_the_client_not_the_header(
    personas: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import cache

    from apps.users.api.views import LoginThrottle

    cache.clear()
    settings.AXES_FAILURE_LIMIT = 1000
    monkeypatch.setattr(LoginThrottle, "THROTTLE_RATES", {**LoginThrottle.THROTTLE_RATES, "login": "3/min"})
    client = APIClient(REMOTE_ADDR="203.0.113.8")
    codes = [_sign_in(client, "bad", f"192.0.2.{n}") for n in range(4)]
    cache.clear()
    assert codes == [401, 401, 401, 429]


def test_the_audit_log_records_the_client_the_proxy_saw(
    personas: Any, client_for: Any, settings: Any
) -> None:
    settings.AXES_IPWARE_PROXY_COUNT = 1
    client = APIClient(REMOTE_ADDR="10.0.0.2")
    client.force_authenticate(user=personas.owner)
    response = client.patch(
        f"/api/v1/workspaces/{personas.workspace.id}/",
        {"name": "Acme Renamed"},
        format="json",
        HTTP_X_FORWARDED_FOR="9.9.9.9, 198.51.100.7",
    )
    assert response.status_code == 200, response.json()
    entry = AuditEntry.objects.filter(object_pk=str(personas.workspace.id)).latest("id")
    assert entry.remote_addr == "198.51.100.7"
