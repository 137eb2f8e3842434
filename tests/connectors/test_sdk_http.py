"""The connector SDK's HTTP layer on its own, against the real local API of tests/connectors/rest_server.py:
retries and Retry-After, the bound on attempts and what is transient after them, the SSRF guard at the
start of a session, on redirects and on next URLs, credentials kept to the base origin, the auth schemes
and each pagination strategy."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpcore
import pytest

from aggregator.ssrf import SSRFBlocked
from apps.connectors.base import ConnectorError
from apps.connectors.sdk.http import (
    MISSING,
    ApiKeyAuth,
    Auth,
    BearerAuth,
    CursorPaginator,
    HttpClient,
    HttpSettings,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OAuth2ClientCredentials,
    OffsetLimitPaginator,
    Page,
    PageNumberPaginator,
    Paginator,
    Request,
    RequestRefused,
    SinglePage,
    parse_retry_after,
    resolve_path,
)
from tests.connectors.rest_server import RestTestServer, serve

ALL_IDS = list(range(1, 24))


@pytest.fixture(autouse=True)
def _allow_loopback(settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]


@pytest.fixture
def api() -> Iterator[RestTestServer]:
    yield from serve(RestTestServer())


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_client(api, waits) -> Iterator[Callable[..., HttpClient]]:
    """A client of the test API whose waits are recorded, not waited."""
    made: list[HttpClient] = []

    def make(auth: Auth | None = None, base_url: str | None = None, **settings: Any) -> HttpClient:
        values: dict[str, Any] = {"max_attempts": 3, "backoff_base_s": 0.001, "timeout_s": 5, **settings}
        client = HttpClient(
            base_url or api.url, auth=auth, settings=HttpSettings(**values), sleep=waits.append
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def connects(monkeypatch) -> list[str]:
    """Every TCP connection the HTTP client opens (after the guard), by address."""
    seen: list[str] = []
    original = httpcore.SyncBackend.connect_tcp

    def record(self, host, port, *args, **kwargs):
        seen.append(host)
        return original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", record)
    return seen


@pytest.fixture
def refused_server(api) -> Iterator[RestTestServer]:
    """A server on 127.0.0.2 (not allow-listed) at the same port."""
    yield from serve(RestTestServer(host="127.0.0.2", port=api.port))


def read_all(client: HttpClient, paginator: Paginator, records_path: str) -> list[int]:
    ids: list[int] = []
    request: Request | None = paginator.first()
    while request is not None:
        page = client.get_json(request.url, request.params, what="Stream 'items'")
        records = resolve_path(page.body, records_path)
        ids.extend(r["id"] for r in records)
        request = paginator.next(page, records)
    return ids


# --- retries -------------------------------------------------------------------------------------------


def test_retry_after_in_seconds_and_as_an_http_date_is_honoured(api, make_client, waits):
    api.failures["/page?page=1"] = [(429, {"Retry-After": "7"})]
    api.failures["/page?page=2"] = [
        (503, {"Retry-After": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 20))})
    ]
    client = make_client()
    for number in (1, 2):
        page = client.get_json(client.url_for("/page"), {"page": number}, what="Page")
        assert resolve_path(page.body, "data.items.0.id") == (number - 1) * 10 + 1
    assert waits[0] == 7.0
    assert 15 <= waits[1] <= 20
    assert api.hits == {"/page?page=1": 2, "/page?page=2": 2}


def test_without_retry_after_the_backoff_grows_within_its_cap(api, make_client, waits):
    api.failures["/page?page=1"] = [(500, {})] * 4
    client = make_client(max_attempts=5, backoff_base_s=1.0, backoff_max_s=3.0)
    client.get_json(client.url_for("/page"), {"page": 1}, what="Page")
    # base x 2^(attempt-1) capped at 3 s, times a jitter in [0.5, 1]
    for wait, full in zip(waits, [1.0, 2.0, 3.0, 3.0], strict=True):
        assert full * 0.5 <= wait <= full


def test_retries_are_bounded_and_what_persists_is_transient(api, make_client, waits):
    api.failures["/page?page=1"] = [(502, {})] * 10
    client = make_client(max_attempts=3)
    with pytest.raises(ConnectorError) as excinfo:
        client.get_json(client.url_for("/page"), {"page": 1}, what="Page")
    assert excinfo.value.message == "Page: GET 127.0.0.1/page failed with HTTP 502 after 3 attempt(s)."
    assert excinfo.value.transient is True
    assert api.hits["/page?page=1"] == 3
    assert len(waits) == 2


def test_a_retry_after_past_the_bound_fails_at_once_and_is_not_waited(api, make_client, waits):
    api.failures["/page?page=1"] = [(429, {"Retry-After": "3600"})]
    client = make_client(max_retry_after_s=60)
    with pytest.raises(ConnectorError, match="asking to wait 3600 s") as excinfo:
        client.get_json(client.url_for("/page"), {"page": 1}, what="Page")
    assert excinfo.value.field == "max_retry_after_s"
    assert waits == [] and api.hits["/page?page=1"] == 1


def test_other_4xx_fail_at_once_and_are_not_transient(api, make_client, waits):
    client = make_client()
    with pytest.raises(ConnectorError) as excinfo:
        client.get_json(client.url_for("/missing"), {"q": "secret"}, what="Page")
    assert excinfo.value.message == "Page: GET 127.0.0.1/missing failed with HTTP 404."
    assert excinfo.value.transient is False
    assert waits == []


def test_an_unreachable_host_is_retried_then_transient_naming_base_url(make_client, waits):
    closed = RestTestServer()
    stop = serve(closed)
    next(stop)
    stop.close()
    client = make_client(base_url=closed.url, max_attempts=2)
    with pytest.raises(ConnectorError, match=r"cannot reach 127\.0\.0\.1 \(.*\) after 2 attempt") as excinfo:
        client.get_json(client.url_for("/page"), None, what="Page")
    assert excinfo.value.field == "base_url" and excinfo.value.transient is True
    assert len(waits) == 1


def test_a_body_past_max_response_bytes_is_refused(api, make_client):
    client = make_client(max_response_bytes=1024)
    with pytest.raises(ConnectorError, match="more than max_response_bytes") as excinfo:
        client.get_json(client.url_for("/page"), {"per_page": 20}, what="Page")
    assert excinfo.value.field == "max_response_bytes"


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=400.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- the SSRF guard and credentials --------------------------------------------------------------------


def test_the_base_url_is_guarded_when_the_session_starts(settings, api):
    settings.AGGREGATOR_ALLOWED_HOSTS = []
    with pytest.raises(RequestRefused, match=r"base_url refused: .*127\.0\.0\.1.* \(loopback\)") as excinfo:
        HttpClient(api.url)
    assert excinfo.value.field == "base_url"


def test_a_token_url_is_guarded_when_the_session_starts(api):
    auth = OAuth2ClientCredentials(token_url="http://169.254.169.254/token", client_id="c", client_secret="s")
    with pytest.raises(RequestRefused, match="link-local") as excinfo:
        HttpClient(api.url, auth=auth)
    assert excinfo.value.field == "oauth2_token_url"


def test_a_redirect_to_a_refused_address_is_not_followed(api, make_client, refused_server, connects):
    client = make_client()
    with pytest.raises(SSRFBlocked, match=r"redirect from 127\.0\.0\.1/redirect refused") as excinfo:
        client.get_json(client.url_for("/redirect"), {"to": f"{refused_server.url}/page"}, what="Page")
    assert isinstance(excinfo.value, ConnectorError)
    assert refused_server.requests == []
    assert "127.0.0.2" not in connects


def test_a_redirect_keeps_credentials_on_the_base_origin_only(api, make_client):
    other = RestTestServer()
    with_other = serve(other)
    next(with_other)
    try:
        api.auth = other.auth = "bearer"
        client = make_client(auth=BearerAuth(token=api.bearer))
        client.get_json(client.url_for("/redirect"), {"to": "/page?per_page=3"}, what="Page")
        with pytest.raises(ConnectorError, match=r"HTTP 401\) .*check token"):
            client.get_json(client.url_for("/redirect"), {"to": f"{other.url}/page"}, what="Page")
    finally:
        with_other.close()
    assert all(r.headers.get("Authorization") == "Bearer bearer-token" for r in api.requests)
    assert len(other.requests) == 1 and "Authorization" not in other.requests[0].headers


def test_a_next_url_to_the_metadata_address_is_refused_and_not_requested(api, make_client, connects):
    api.next_override = "http://169.254.169.254/latest/meta-data/"
    client = make_client()
    paginator = NextUrlPaginator(
        client, client.url_for("/next"), {}, what="Stream 'x'", next_url_path="links.next"
    )
    with pytest.raises(RequestRefused, match=r"Stream 'x': next page URL refused: .*link-local"):
        read_all(client, paginator, "items")
    assert set(connects) == {"127.0.0.1"}


def test_an_api_key_in_the_query_goes_to_the_base_origin(api, make_client):
    api.auth = "api_key_query"
    client = make_client(auth=ApiKeyAuth(key=api.api_key, name=api.api_key_name, location="query"))
    page = client.get_json(client.url_for("/page"), {"per_page": 2}, what="Page")
    assert resolve_path(page.body, "data.items.1.id") == 2
    assert "key" not in str(page.url.path)


def test_oauth2_token_is_cached_for_the_session_and_renewed_after_a_401(api, make_client):
    api.auth = "oauth2"
    api.token_uses = 2
    auth = OAuth2ClientCredentials(
        token_url=f"{api.url}/oauth/token", client_id=api.client_id, client_secret=api.client_secret
    )
    client = make_client(auth=auth)
    for number in range(1, 4):
        client.get_json(client.url_for("/page"), {"page": number}, what="Page")
    # The first token serves pages 1-2; page 3 gets a 401, one new token, the same request again.
    assert auth.requests == 2 and len(api.token_requests) == 2
    assert api.hits["/page?page=3"] == 2


# --- pagination ----------------------------------------------------------------------------------------


def test_page_number_pagination_stops_at_a_short_page(api, make_client):
    client = make_client()
    paginator = PageNumberPaginator(client, client.url_for("/page"), {}, what="Stream 'items'", page_size=5)
    assert read_all(client, paginator, "data.items") == ALL_IDS
    assert list(api.served) == [f"/page?page={p}&per_page=5" for p in range(1, 6)]


def test_page_number_pagination_stops_at_total_pages(api, make_client):
    api.records = api.records[:20]  # 4 full pages: only total_pages stops it before an empty fifth
    client = make_client()
    paginator = PageNumberPaginator(
        client,
        client.url_for("/page"),
        {},
        what="Stream 'items'",
        page_size=5,
        total_pages_path="meta.total_pages",
    )
    assert read_all(client, paginator, "data.items") == list(range(1, 21))
    assert len(api.served) == 4


def test_a_paginator_stops_an_api_that_ignores_the_page_parameter(api, make_client):
    client = make_client()
    paginator = PageNumberPaginator(
        client, client.url_for("/page"), {}, what="Stream 'items'", page_param="p", size_param=None
    )
    with pytest.raises(ConnectorError, match="same records for two pages in a row") as excinfo:
        read_all(client, paginator, "data.items")
    assert excinfo.value.field == "pagination"


def test_offset_limit_pagination(api, make_client):
    client = make_client()
    paginator = OffsetLimitPaginator(
        client, client.url_for("/offset"), {}, what="Stream 'items'", limit=10, total_path="total"
    )
    assert read_all(client, paginator, "results") == ALL_IDS
    assert list(api.served) == [f"/offset?limit=10&offset={o}" for o in (0, 10, 20)]


def test_cursor_pagination_and_a_repeated_token(api, make_client):
    client = make_client()
    paginator = CursorPaginator(
        client, client.url_for("/cursor"), {"limit": 5}, what="Stream 'items'", cursor_path="meta.next_cursor"
    )
    assert read_all(client, paginator, "items") == ALL_IDS
    looping = CursorPaginator(client, client.base_url, {}, what="Stream 'items'", cursor_path="next")
    page = Page(body={"next": "abc"}, url=client.base_url, links={})
    assert looping.next(page, [1]) is not None
    with pytest.raises(ConnectorError, match="same next-page token twice"):
        looping.next(page, [1])


def test_next_url_and_link_header_pagination(api, make_client):
    client = make_client()
    by_body = NextUrlPaginator(
        client, client.url_for("/next"), {"limit": 5}, what="Stream 'items'", next_url_path="links.next"
    )
    assert read_all(client, by_body, "items") == ALL_IDS
    by_header = LinkHeaderPaginator(client, client.url_for("/link"), {"limit": 4}, what="Stream 'items'")
    assert read_all(client, by_header, "") == ALL_IDS


def test_a_next_url_seen_before_stops_the_read(make_client):
    client = make_client()
    paginator = NextUrlPaginator(
        client, client.url_for("/next"), {}, what="Stream 'items'", next_url_path="n"
    )
    first = paginator.first()
    page = Page(body={"n": str(first.url)}, url=first.url, links={})
    with pytest.raises(ConnectorError, match="already returned"):
        paginator.next(page, [])


def test_a_single_page_is_one_request(make_client):
    client = make_client()
    paginator = SinglePage(client, client.url_for("/x"), {"a": 1}, what="Stream 'items'")
    first = paginator.first()
    assert first.params == {"a": 1}
    assert paginator.next(Page(body=[], url=first.url, links={}), [{"id": 1}]) is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", {"a": [1, {"b": None}]}),
        ("a.1.b", None),
        ("a.-1.b", None),
        ("a.0", 1),
        ("a.5", MISSING),
        ("x", MISSING),
    ],
)
def test_resolve_path(path, expected):
    found = resolve_path({"a": [1, {"b": None}]}, path)
    assert found is MISSING if expected is MISSING else found == expected


def test_query_strings_are_kept_out_of_httpx_log_lines(api, make_client, caplog):
    caplog.set_level("INFO", logger="httpx")
    client = make_client(auth=ApiKeyAuth(key="canary-key-123", location="query"))
    client.get_json(client.url_for("/page"), {"per_page": 1}, what="Page")
    assert "/page" in caplog.text and "canary-key-123" not in caplog.text
