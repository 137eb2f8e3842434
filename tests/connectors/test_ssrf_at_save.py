"""A refused address is refused when a connector is saved (create and PATCH), not only when it connects:
the user learns at once. Names are still checked at connect time (what they resolve to can change)."""

from __future__ import annotations

import pytest

from apps.connectors.models import Connector

pytestmark = pytest.mark.django_db

REFUSED = {
    "127.0.0.1": "Address 127.0.0.1 of host 127.0.0.1 is not allowed (loopback)",
    "169.254.169.254": "Address 169.254.169.254 of host 169.254.169.254 is not allowed (link-local)",
    "10.0.0.1": "Address 10.0.0.1 of host 10.0.0.1 is not allowed (private)",
    "2130706433": "Address 127.0.0.1 of host 2130706433 is not allowed (loopback)",
    "0x7f000001": "Address 127.0.0.1 of host 0x7f000001 is not allowed (loopback)",
    "[::1]": "Address ::1 of host ::1 is not allowed (loopback)",
    "::ffff:10.0.0.1": "Address ::ffff:a00:1 of host ::ffff:10.0.0.1 is not allowed (IPv4-mapped private)",
    "localhost": "Host localhost is this server (loopback) and is not allowed",
}


def _database(host: str, kind: str) -> dict:
    return {"host": host, "database": "d", "user": "u"} | ({"port": 3306} if kind == "mysql" else {})


def _rest(host: str) -> dict:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in a URL
    return {"base_url": f"http://{host}/v1", "streams": [{"name": "items", "path": "/items"}]}


@pytest.mark.parametrize("host", list(REFUSED))
@pytest.mark.parametrize("kind", ["postgres", "postgres_source", "mysql", "rest_api"])
def test_a_refused_literal_address_is_refused_at_create(personas, client_for, host, kind):
    config = _rest(host) if kind == "rest_api" else _database(host, kind)
    response = client_for(personas.owner).post(
        "/api/v1/connectors/", {"name": "c", "connector_type": kind, "config": config}, format="json"
    )
    assert response.status_code == 400, response.content
    field = "config.base_url" if kind == "rest_api" else "config.host"
    assert response.json()["error"]["fields"][field] == [REFUSED[host]]
    assert not Connector.objects.exists()


def test_a_refused_address_is_refused_at_patch_and_the_connector_is_unchanged(personas, client_for):
    client = client_for(personas.owner)
    created = client.post(
        "/api/v1/connectors/",
        {"name": "pg", "connector_type": "postgres", "config": _database("db.example.com", "postgres")},
        format="json",
    )
    assert created.status_code == 201, created.content
    patched = client.patch(
        f"/api/v1/connectors/{created.json()['id']}/", {"config": {"host": "169.254.169.254"}}, format="json"
    )
    assert patched.status_code == 400
    assert patched.json()["error"]["fields"] == {"config.host": [REFUSED["169.254.169.254"]]}
    assert Connector.objects.get().config["host"] == "db.example.com"


def test_the_allow_list_lets_an_operators_address_through_at_save(personas, client_for, settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32", "10.0.0.0/8"]
    client = client_for(personas.owner)
    for name, host in (("a", "127.0.0.1"), ("b", "10.0.0.1"), ("c", "2130706433"), ("d", "localhost")):
        response = client.post(
            "/api/v1/connectors/",
            {"name": name, "connector_type": "postgres", "config": _database(host, "postgres")},
            format="json",
        )
        assert response.status_code == 201, (host, response.content)
    assert Connector.objects.count() == 4
