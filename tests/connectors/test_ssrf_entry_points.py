"""The SSRF guard at every entry point of a connector with a network address: the database host of
`postgres`, `postgres_source` and `mysql`, the base URL and a next link of `rest_api`.

Every refused spelling is refused by `check` (and by read / write) with the guard's message, naming the
field, before any connection is attempted: the drivers' connect calls and Python's socket connect are
watched, and fail the test if reached. The allow-list (`127.0.0.1/32`) lets 127.0.0.1 through to the real
PostgreSQL, MariaDB and a local HTTP API.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import psycopg
import pymysql
import pytest

from aggregator.dataplane import Field, FieldType, StreamSchema, WriteMode
from aggregator.ssrf import SSRFBlocked
from apps.connectors.base import ConfigInvalid, ConnectorError, ConnectorType, run_check
from apps.connectors.plugins.mysql import MySqlConnector
from apps.connectors.plugins.postgres import PostgresDestination, PostgresSource
from apps.connectors.plugins.rest_api import RestApiSource
from tests.connectors.rest_server import RestTestServer, serve

# (host as configured, the guard's message)
REFUSED = [
    ("127.0.0.1", "Address 127.0.0.1 of host 127.0.0.1 is not allowed (loopback)"),
    ("169.254.169.254", "Address 169.254.169.254 of host 169.254.169.254 is not allowed (link-local)"),
    ("10.0.0.1", "Address 10.0.0.1 of host 10.0.0.1 is not allowed (private)"),
    ("::1", "Address ::1 of host ::1 is not allowed (loopback)"),
    ("0x7f000001", "Address 127.0.0.1 of host 0x7f000001 is not allowed (loopback)"),
    ("localhost", "Address 127.0.0.1 of host localhost is not allowed (loopback)"),
]
REFUSED_IDS = [host for host, _ in REFUSED]
TABLE = StreamSchema(name="public.items", fields=(Field("id", FieldType.INTEGER),))


@dataclass(frozen=True)
class EntryPoint:
    """One connector type with a network address: how to configure it for a host, the field that holds
    the address, and the message the guard's refusal becomes."""

    connector_type: type[ConnectorType]
    field: str
    config: Callable[[str], dict[str, Any]]
    message: Callable[[str], str]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


ENTRY_POINTS = {
    "postgres": EntryPoint(
        PostgresDestination,
        "host",
        lambda host: {
            "host": host,
            "port": 5432,
            "database": "postgres",
            "user": "postgres",
            "sslmode": "disable",
        },
        lambda guard: f"host: {guard}",
    ),
    "postgres_source": EntryPoint(
        PostgresSource,
        "host",
        lambda host: {
            "host": host,
            "port": 5432,
            "database": "postgres",
            "user": "postgres",
            "sslmode": "disable",
            "schema": "public",
        },
        lambda guard: f"host: {guard}",
    ),
    "mysql": EntryPoint(
        MySqlConnector,
        "host",
        lambda host: {
            "host": host,
            "port": 3306,
            "database": "mysql",
            "user": "root",
            "ssl_mode": "disabled",
        },
        lambda guard: guard,
    ),
    "rest_api": EntryPoint(
        RestApiSource,
        "base_url",
        lambda host: {
            "base_url": f"http://{_url_host(host)}:8080/api",
            "streams": [{"name": "items", "path": "/items"}],
            "max_attempts": 1,
            "timeout_s": 2,
        },
        lambda guard: f"base_url refused: {guard}.",
    ),
}


@pytest.fixture
def connection_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection a driver starts: psycopg (libpq), PyMySQL, httpx's transport and any Python socket.
    Each is recorded and then let through (a refused case asserts the list stays empty)."""
    attempts: list[str] = []

    def spy(name: str, original: Callable[..., Any], describe: Callable[..., str]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name} {describe(*args, **kwargs)}")
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        psycopg, "connect", spy("psycopg", psycopg.connect, lambda *a, **k: str(k.get("hostaddr")))
    )
    monkeypatch.setattr(
        pymysql.connections.Connection,
        "connect",
        spy("pymysql", pymysql.connections.Connection.connect, lambda self, *a, **k: str(self.host)),
    )
    monkeypatch.setattr(
        httpcore.SyncBackend,
        "connect_tcp",
        spy("httpcore", httpcore.SyncBackend.connect_tcp, lambda self, host, port, *a, **k: f"{host}:{port}"),
    )
    monkeypatch.setattr(
        socket.socket, "connect", spy("socket", socket.socket.connect, lambda self, address: str(address))
    )
    return attempts


def _operations(name: str, connector: ConnectorType, config: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
    """The operations of the type that open a connection: check always, and read / write / discover."""
    yield "check", lambda: connector.check(config)
    if connector.is_source():
        yield "discover", lambda: connector.discover(config)
        stream = TABLE if name != "rest_api" else StreamSchema(name="items", fields=TABLE.fields)
        yield "read", lambda: list(connector.read(config, stream, None))
    if connector.is_destination():
        yield (
            "write",
            lambda: connector.write(config, TABLE, [], WriteMode.APPEND, None, "run-1", table="items"),
        )
        yield "remove_run_rows", lambda: connector.remove_run_rows(config, "items", "run-1")


@pytest.mark.parametrize(("host", "guard"), REFUSED, ids=REFUSED_IDS)
@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_a_refused_address_is_refused_everywhere_without_connecting(
    name: str, host: str, guard: str, settings: Any, connection_attempts: list[str]
) -> None:
    # A config saved while an operator allowed everything (a save refuses these addresses now), checked
    # again at every connection after the allow-list was emptied.
    settings.AGGREGATOR_ALLOWED_HOSTS = ["0.0.0.0/0", "::/0", "localhost"]
    entry = ENTRY_POINTS[name]
    connector = entry.connector_type()
    config = connector.validate_config(entry.config(host))
    settings.AGGREGATOR_ALLOWED_HOSTS = []

    for operation, call in _operations(name, connector, config):
        with pytest.raises(ConnectorError) as error:
            call()
        assert (operation, error.value.message, error.value.field) == (
            operation,
            entry.message(guard),
            entry.field,
        )
    # The check as the API runs it (bounded by the type's timeout) reports the same message.
    result = run_check(connector, config)
    assert (result.ok, result.message) == (False, entry.message(guard))
    assert connection_attempts == []


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_the_allow_list_lets_127_0_0_1_through(
    name: str, settings: Any, connection_attempts: list[str], scratch_database: str
) -> None:
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    entry = ENTRY_POINTS[name]
    connector = entry.connector_type()
    server = None
    if name == "rest_api":
        running = serve(RestTestServer())
        server = next(running)
        raw = {
            **entry.config("127.0.0.1"),
            "base_url": server.url,
            "streams": [{"name": "items", "path": "/page"}],
        }
    else:
        raw = entry.config("127.0.0.1")
    try:
        result = run_check(connector, connector.validate_config(raw))
        assert result.ok, result.message
        assert connection_attempts  # it did connect, to the allowed address
        assert all("127.0.0.1" in attempt for attempt in connection_attempts), connection_attempts
        # Other refused addresses stay refused with the allow-list in place, from the save on.
        with pytest.raises(ConfigInvalid) as refused:
            connector.validate_config(entry.config("169.254.169.254"))
        assert refused.value.errors == {
            entry.field: ["Address 169.254.169.254 of host 169.254.169.254 is not allowed (link-local)"]
        }
    finally:
        if server is not None:
            running.close()


# With 127.0.0.1/32 allow-listed, the spellings of 127.0.0.1 (0x7f000001, localhost) are allowed too: the
# allow-list is about addresses, not spellings. The others stay refused.
NEXT_REFUSED = [r for r in REFUSED if r[0] in ("169.254.169.254", "10.0.0.1", "::1")]


@pytest.mark.parametrize(("next_host", "guard"), NEXT_REFUSED, ids=[r[0] for r in NEXT_REFUSED])
@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_a_next_link_to_a_refused_address_is_not_followed(
    next_host: str, guard: str, style: str, settings: Any, connection_attempts: list[str]
) -> None:
    # The API itself is allowed; only the next page points somewhere refused.
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    running = serve(RestTestServer(records=[{"id": i} for i in range(1, 8)]))
    api = next(running)
    refused_url = f"http://{_url_host(next_host)}/latest/meta-data/"
    api.next_override = refused_url
    api.link_override = refused_url
    try:
        path, pagination = (
            ("/next", {"type": "next_url", "next_url_path": "links.next"})
            if style == "next_url"
            else ("/link", {"type": "link_header"})
        )
        stream = {"name": "items", "path": path, "params": {"limit": 3}, "pagination": pagination}
        if style == "next_url":
            stream["records_path"] = "items"
        source = RestApiSource()
        config = source.validate_config({"base_url": api.url, "streams": [stream], "max_attempts": 1})
        schema = StreamSchema(name="items", fields=(Field("id", FieldType.INTEGER),))
        with pytest.raises(SSRFBlocked) as error:
            list(source.read(config, schema, None))
        assert isinstance(error.value, ConnectorError)
        assert error.value.message == f"Stream 'items': next page URL refused: {guard}."
        assert error.value.field is None
        assert api.served_keys() == [f"{path}?limit=3"]
        assert connection_attempts and all("127.0.0.1" in a for a in connection_attempts), connection_attempts
    finally:
        running.close()
