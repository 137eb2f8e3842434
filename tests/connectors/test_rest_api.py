"""The REST API source against a real local HTTP API (tests/connectors/rest_server.py): every pagination
style and auth method, retries and Retry-After, incremental reads, the SSRF guard on next URLs and
redirects, rejected records, and secrets kept out of errors and logs."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import pyarrow as pa
import pytest

from aggregator.dataplane import (
    Batch,
    FieldType,
    RejectedRows,
    StateCheckpoint,
    StreamSchema,
    SyncMode,
)
from aggregator.ssrf import SSRFBlocked
from apps.connectors.base import ConfigInvalid, ConnectorError, run_check
from apps.connectors.plugins.rest_api import RestApiConfig, RestApiSource, convert_column, parse_retry_after
from apps.connectors.registry import registry
from tests.connectors.rest_server import BODY_MARKER, RestTestServer, make_records, serve

ALL_IDS = list(range(1, 24))


@pytest.fixture(autouse=True)
def _allow_loopback(settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]


@pytest.fixture
def api() -> Iterator[RestTestServer]:
    yield from serve(RestTestServer())


@pytest.fixture
def source() -> RestApiSource:
    """A source whose waits are recorded and shortened, so retry tests stay fast and can assert them."""
    instance = RestApiSource()
    instance.waits = []  # type: ignore[attr-defined]

    def sleep(seconds: float) -> None:
        instance.waits.append(seconds)  # type: ignore[attr-defined]
        time.sleep(min(seconds, 0.01))

    instance.sleep = sleep  # type: ignore[method-assign]
    return instance


PAGE_STREAM = {
    "name": "items",
    "path": "/page",
    "records_path": "data.items",
    "primary_key": ["id"],
    "pagination": {"type": "page_number", "page_size": 5},
}


def make_config(server: RestTestServer, streams: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "base_url": server.url,
        "streams": streams or [PAGE_STREAM],
        "backoff_base_s": 0.001,
        "max_attempts": 3,
        "timeout_s": 5,
        **extra,
    }
    return RestApiSource.validate_config(raw)


def read_stream(
    source: RestApiSource, config: RestApiConfig, name: str = "items", state: dict[str, Any] | None = None
) -> tuple[pa.Table, list[Any]]:
    schema = next(s for s in source.discover(config) if s.name == name)
    items = list(source.read(config, schema, state))
    batches = [i for i in items if isinstance(i, Batch)]
    table = pa.concat_tables([b.table for b in batches]) if batches else schema.arrow_schema().empty_table()
    return table, items


def ids(table: pa.Table) -> list[int]:
    return table.column("id").to_pylist()


# --- registry and config -------------------------------------------------------------------------------


def test_rest_api_is_a_registered_source_with_its_secrets_marked():
    connector_type = registry.get("rest_api")
    assert connector_type is RestApiSource
    assert connector_type.is_source() and not connector_type.is_destination()
    assert set(connector_type.secret_fields()) == {"password", "token", "api_key", "oauth2_client_secret"}
    properties = connector_type.json_schema()["properties"]
    assert properties["api_key"]["writeOnly"] is True
    assert properties["oauth2_client_secret"]["secret"] is True


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"auth_type": "basic", "username": "u"}, "password"),
        ({"auth_type": "bearer"}, "token"),
        ({"auth_type": "api_key", "api_key": ""}, "api_key"),
        (
            {"auth_type": "oauth2_client_credentials", "oauth2_client_id": "c", "oauth2_client_secret": "s"},
            "oauth2_token_url",
        ),
        ({"base_url": "ftp://example.com"}, "base_url"),
        ({"base_url": "https://user:pw@example.com"}, "base_url"),
        ({"base_url": "https://example.com/?key=1"}, "base_url"),
        ({"streams": [{"name": "x", "path": "http://169.254.169.254/"}]}, "streams.0.path"),
        ({"streams": [{"name": "x", "path": "//evil.example/x"}]}, "streams.0.path"),
        ({"headers": {"Authorization": "Bearer x"}}, "headers"),
        ({"pagination": {"type": "cursor"}}, "pagination.cursor.cursor_path"),
        ({"streams": []}, "streams"),
    ],
)
def test_bad_config_is_refused_naming_the_field(raw, field):
    base = {"base_url": "https://api.example.com/v1", "streams": [{"name": "x", "path": "/x"}]}
    with pytest.raises(ConfigInvalid) as excinfo:
        RestApiSource.validate_config({**base, **raw})
    assert field in excinfo.value.errors


def test_duplicate_stream_names_are_refused():
    streams = [{"name": "x", "path": "/a"}, {"name": "x", "path": "/b"}]
    with pytest.raises(ConfigInvalid, match="'x' is used twice"):
        RestApiSource.validate_config({"base_url": "https://api.example.com", "streams": streams})


# --- discovery -----------------------------------------------------------------------------------------


def test_discover_infers_types_from_the_first_page_and_honours_the_declared_keys(source, api):
    streams = [{**PAGE_STREAM, "cursor_field": "updated_at", "cursor_param": "updated_since"}]
    [schema] = source.discover(make_config(api, streams))
    assert schema.name == "items"
    assert {f.name: f.type for f in schema.fields} == {
        "id": FieldType.INTEGER,
        "name": FieldType.STRING,
        "score": FieldType.NUMBER,
        "active": FieldType.BOOLEAN,
        "updated_at": FieldType.STRING,
        "meta": FieldType.JSON,
        "tags": FieldType.JSON,
    }
    assert schema.primary_key == ("id",)
    assert schema.cursor_field == "updated_at"
    assert schema.cursor_candidates == ("updated_at", "id", "score")
    assert schema.supported_sync_modes == (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL)
    assert api.served_keys() == ["/page?page=1&per_page=5"]


def test_discover_applies_field_type_overrides(source, api):
    streams = [{**PAGE_STREAM, "field_types": {"updated_at": "datetime", "id": "string"}}]
    [schema] = source.discover(make_config(api, streams))
    assert schema.field("updated_at").type == FieldType.DATETIME
    assert schema.field("id").type == FieldType.STRING
    table, _ = read_stream(source, make_config(api, streams))
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("id").to_pylist()[:2] == ["1", "2"]
    assert str(table.column("updated_at")[22].as_py()) == "2024-01-23 00:00:00+00:00"


def test_discover_names_a_declared_key_missing_from_the_records(source, api):
    streams = [{**PAGE_STREAM, "primary_key": ["uuid"]}]
    with pytest.raises(ConnectorError, match="Stream 'items': field 'uuid' is not in the records"):
        source.discover(make_config(api, streams))


def test_a_wrong_records_path_is_named(source, api):
    streams = [{**PAGE_STREAM, "records_path": "data.rows"}]
    with pytest.raises(ConnectorError, match=r"no 'data.rows' in the body of page 1; check records_path"):
        source.discover(make_config(api, streams))


# --- pagination ----------------------------------------------------------------------------------------


def test_page_number_pagination_reads_every_record_once_in_order(source, api):
    table, items = read_stream(source, make_config(api, chunk_size=7))
    assert ids(table) == ALL_IDS
    assert table.column("name").to_pylist()[:3] == ["item 1", "item 2", "item 3"]
    assert table.column("score").to_pylist()[-1] == 34.5
    assert table.column("active").to_pylist()[:4] == [False, True, False, True]
    assert json.loads(table.column("meta")[4].as_py()) == {"rank": 5, "group": "odd"}
    assert json.loads(table.column("tags")[0].as_py()) == ["t", "1"]
    batches = [i for i in items if isinstance(i, Batch)]
    # Page 1 at once, page 2 (as many as before), then pages 3-4 cut at chunk_size, then page 5.
    assert [b.num_rows for b in batches] == [5, 5, 7, 3, 3]
    assert all(b.stream == "items" for b in batches)
    # Pages 1-5 (the 5th is short, so no 6th); discovery fetched page 1 once more.
    assert api.served == {f"/page?page={p}&per_page=5": 2 if p == 1 else 1 for p in range(1, 6)}


def test_page_number_pagination_stops_on_an_empty_page_or_on_total_pages(source, api):
    api.records = make_records(20)  # 4 full pages of 5
    table, _ = read_stream(source, make_config(api))
    assert ids(table) == list(range(1, 21))
    assert api.served["/page?page=5&per_page=5"] == 1  # the empty page that ends the read

    api.served.clear()
    streams = [
        {**PAGE_STREAM, "pagination": {**PAGE_STREAM["pagination"], "total_pages_path": "meta.total_pages"}}
    ]
    table, _ = read_stream(source, make_config(api, streams))
    assert ids(table) == list(range(1, 21))
    assert "/page?page=5&per_page=5" not in api.served


def test_an_api_that_ignores_the_page_parameter_is_stopped(source, api):
    streams = [{**PAGE_STREAM, "pagination": {"type": "page_number", "page_param": "p", "page_size": 5}}]
    with pytest.raises(ConnectorError, match="same records for two pages in a row") as excinfo:
        read_stream(source, make_config(api, streams))
    assert excinfo.value.field == "pagination"
    assert api.hits["/page?p=2&per_page=5"] == 1 and "/page?p=3&per_page=5" not in api.hits


def test_offset_limit_pagination(source, api):
    stream = {
        "name": "items",
        "path": "/offset",
        "records_path": "results",
        "pagination": {"type": "offset_limit", "limit": 5, "total_path": "total"},
    }
    table, _ = read_stream(source, make_config(api, [stream]))
    assert ids(table) == ALL_IDS
    assert api.served == {f"/offset?limit=5&offset={o}": 2 if o == 0 else 1 for o in (0, 5, 10, 15, 20)}


def test_cursor_pagination_passes_the_token_from_the_body(source, api):
    stream = {
        "name": "items",
        "path": "/cursor",
        "records_path": "items",
        "params": {"limit": 4},
        "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor", "cursor_param": "cursor"},
    }
    table, _ = read_stream(source, make_config(api, [stream]))
    assert ids(table) == ALL_IDS
    cursor_requests = [r.query.get("cursor") for r in api.requests if r.path == "/cursor"]
    assert cursor_requests[0] is None and cursor_requests[1] is None  # discovery, then the read's first page
    assert len(cursor_requests) == 1 + 6 and len(set(cursor_requests[2:])) == 5


def test_next_url_from_the_body(source, api):
    stream = {
        "name": "items",
        "path": "/next",
        "records_path": "items",
        "params": {"limit": 6},
        "pagination": {"type": "next_url", "next_url_path": "links.next"},
    }
    table, _ = read_stream(source, make_config(api, [stream]))
    assert ids(table) == ALL_IDS
    assert api.served["/next?limit=6"] == 2
    assert [api.served[f"/next?limit=6&start={s}"] for s in (6, 12, 18)] == [1, 1, 1]


def test_next_url_from_the_link_header(source, api):
    stream = {"name": "items", "path": "/link", "params": {"limit": 5}, "pagination": {"type": "link_header"}}
    table, _ = read_stream(source, make_config(api, [stream]))
    assert ids(table) == ALL_IDS
    assert [api.served[f"/link?limit=5&page={p}"] for p in range(2, 6)] == [1, 1, 1, 1]
    assert "/link?limit=5&page=6" not in api.hits


def test_a_next_url_on_another_allowed_origin_is_followed_without_credentials(source, api):
    other = RestTestServer()
    with_other = serve(other)
    next(with_other)
    try:
        api.next_base = other.url
        api.auth = "bearer"
        stream = {
            "name": "items",
            "path": "/next",
            "records_path": "items",
            "pagination": {"type": "next_url", "next_url_path": "links.next"},
        }
        config = make_config(api, [stream], auth_type="bearer", token="bearer-token")
        table, _ = read_stream(source, config)
    finally:
        with_other.close()
    assert ids(table) == ALL_IDS
    assert all(r.headers.get("Authorization") == "Bearer bearer-token" for r in api.requests)
    assert other.requests and all("Authorization" not in r.headers for r in other.requests)


# --- auth ----------------------------------------------------------------------------------------------

AUTH_CASES = {
    "basic": {"auth_type": "basic", "username": "reader", "password": "pw"},
    "bearer": {"auth_type": "bearer", "token": "bearer-token"},
    "api_key_header": {"auth_type": "api_key", "api_key": "key", "api_key_name": "X-API-Key"},
    "api_key_query": {
        "auth_type": "api_key",
        "api_key": "key",
        "api_key_name": "X-API-Key",
        "api_key_in": "query",
    },
}
WRONG = {
    "basic": {"password": "nope"},
    "bearer": {"token": "nope"},
    "api_key_header": {"api_key": "nope"},
    "api_key_query": {"api_key": "nope"},
}


@pytest.mark.parametrize("auth", list(AUTH_CASES))
def test_each_auth_method_is_accepted_by_the_server(source, api, auth):
    api.auth = auth
    config = make_config(api, **AUTH_CASES[auth])
    assert source.check(config).ok
    table, _ = read_stream(source, config)
    assert ids(table) == ALL_IDS
    assert sum(api.served.values()) == 1 + 1 + 5  # check, discovery, the five pages


@pytest.mark.parametrize("auth", list(AUTH_CASES))
def test_wrong_credentials_fail_the_check_naming_the_field(source, api, auth):
    api.auth = auth
    config = make_config(api, **{**AUTH_CASES[auth], **WRONG[auth]})
    result = run_check(source, config)
    assert not result.ok
    field = {"basic": "password", "bearer": "token"}.get(auth, "api_key")
    assert result.message == f"Check: authentication failed (HTTP 401) for GET 127.0.0.1/page; check {field}."
    assert "nope" not in result.message
    assert api.hits == {"/page": 1}


def test_missing_credentials_point_at_auth_type(source, api):
    api.auth = "bearer"
    result = run_check(source, make_config(api))
    assert (
        result.message == "Check: authentication failed (HTTP 401) for GET 127.0.0.1/page; check auth_type."
    )


def oauth_config(api: RestTestServer, **extra: Any) -> Any:
    oauth = {
        "auth_type": "oauth2_client_credentials",
        "oauth2_token_url": f"{api.url}/oauth/token",
        "oauth2_client_id": "client",
        "oauth2_client_secret": "client-secret",
        "oauth2_scopes": ["read", "items"],
    }
    return make_config(api, **{**oauth, **extra})


@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_oauth2_token_is_cached_and_refreshed_when_the_server_expires_it(source, api, client_auth):
    api.auth = "oauth2"
    api.token_uses = 3  # the server stops accepting a token after 3 requests, long before expires_in
    api.client_secret = "secret with spaces&symbols"
    config = oauth_config(api, oauth2_client_auth=client_auth, oauth2_client_secret=api.client_secret)
    schema = source.discover(config)[0]  # token 1: used once
    assert len(api.token_requests) == 1
    items = list(source.read(config, schema, None))
    table = pa.concat_tables([i.table for i in items if isinstance(i, Batch)])
    assert ids(table) == ALL_IDS
    # The read is a new session: token 2 serves pages 1-3, page 4 gets a 401, token 3 serves pages 4-5.
    assert len(api.token_requests) == 3
    assert all(
        t["grant_type"] == "client_credentials" and t["scope"] == "read items" for t in api.token_requests
    )
    assert api.hits["/page?page=4&per_page=5"] == 2
    assert all(api.served[f"/page?page={p}&per_page=5"] == 1 for p in range(2, 6))


def test_oauth2_token_is_renewed_before_it_expires(source, api, monkeypatch):
    from apps.connectors.sdk.http import auth

    api.auth = "oauth2"
    api.token_expires_in = 3600  # renewed 30 s early: after 3570 s on the token clock
    ticks = iter(range(1000, 100_000, 1000))  # every look at the clock is 1000 s later
    monkeypatch.setattr(auth, "_clock", lambda: next(ticks))
    config = oauth_config(api)
    schema = source.discover(config)[0]
    api.token_requests.clear()
    table, _ = read_stream(source, config)
    assert ids(table) == ALL_IDS
    # Discovery (inside read_stream) takes token 1 and is done; the read's token 2 is obtained at 2000 s,
    # used at 3000, 4000, 5000 and renewed at 6000 s (page 4): no 401 was needed.
    assert len(api.token_requests) == 3
    assert sum(api.hits.values()) == sum(api.served.values())
    assert schema.name == "items"


def test_a_page_cut_off_by_a_timeout_is_retried(source, api):
    api.delays["/page?page=2&per_page=5"] = [2.0]
    table, _ = read_stream(source, make_config(api, timeout_s=0.5))
    assert ids(table) == ALL_IDS
    assert api.hits["/page?page=2&per_page=5"] == 2  # the cut-off answer, then the whole one
    assert len(source.waits) == 1


def test_oauth2_bad_client_secret_names_the_field(source, api):
    api.auth = "oauth2"
    result = run_check(source, oauth_config(api, oauth2_client_secret="wrong-secret"))
    assert not result.ok
    assert result.message == (
        "OAuth2 token request: authentication failed (HTTP 401) at 127.0.0.1/oauth/token; check "
        "oauth2_client_id and oauth2_client_secret."
    )
    assert api.hits == {}


# --- retries, rate limits, errors ----------------------------------------------------------------------


def test_a_503_page_is_retried_with_backoff_and_no_page_is_fetched_twice(api):
    real = RestApiSource()  # real sleeps: the backoff is tiny but actually waited
    api.failures["/page?page=3&per_page=5"] = [(503, {}), (502, {})]
    config = make_config(api, backoff_base_s=0.02)
    schema = real.discover(config)[0]
    started = time.monotonic()
    table = pa.concat_tables([i.table for i in real.read(config, schema, None) if isinstance(i, Batch)])
    elapsed = time.monotonic() - started
    assert ids(table) == ALL_IDS
    assert api.hits["/page?page=3&per_page=5"] == 3
    assert api.served == {f"/page?page={p}&per_page=5": 2 if p == 1 else 1 for p in range(1, 6)}
    assert elapsed >= 0.01 + 0.02  # two backoffs with jitter: >= base/2 + 2*base/2


def test_429_retry_after_seconds_and_http_date_are_honoured(source, api):
    api.failures["/page?page=2&per_page=5"] = [(429, {"Retry-After": "1"})]
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    api.failures["/page?page=4&per_page=5"] = [(429, {"Retry-After": when})]
    table, _ = read_stream(source, make_config(api))
    assert ids(table) == ALL_IDS
    assert source.waits[0] == 1.0
    assert 0.5 <= source.waits[1] <= 2.0
    assert api.hits["/page?page=2&per_page=5"] == 2 and api.served["/page?page=2&per_page=5"] == 1


def test_a_retry_after_longer_than_allowed_fails_clearly(source, api):
    api.failures["/page?page=2&per_page=5"] = [(503, {"Retry-After": "3600"})]
    with pytest.raises(
        ConnectorError, match=r"asking to wait 3600 s, longer than max_retry_after_s"
    ) as excinfo:
        read_stream(source, make_config(api, max_retry_after_s=60))
    assert excinfo.value.field == "max_retry_after_s"


def test_retries_are_bounded(source, api):
    api.failures["/page?page=2&per_page=5"] = [(500, {})] * 10
    with pytest.raises(ConnectorError) as excinfo:
        read_stream(source, make_config(api, max_attempts=3))
    assert (
        excinfo.value.message == "Stream 'items': GET 127.0.0.1/page failed with HTTP 500 after 3 attempt(s)."
    )
    assert api.hits["/page?page=2&per_page=5"] == 3
    assert len(source.waits) == 2 and source.waits[1] > source.waits[0] * 0.9  # grows (jitter 0.5-1.0)


def test_a_404_fails_fast_without_the_body_or_the_query(source, api):
    stream = {"name": "missing", "path": "/missing", "params": {"q": "x"}}
    config = make_config(api, [stream], auth_type="api_key", api_key="k-123", api_key_in="query")
    with pytest.raises(ConnectorError) as excinfo:
        source.discover(config)
    assert excinfo.value.message == "Stream 'missing': GET 127.0.0.1/missing failed with HTTP 404."
    assert api.hits == {"/missing?q=x": 1}
    assert source.waits == []


def test_connection_errors_are_retried_then_reported(source):
    closed = RestTestServer()
    stop = serve(closed)
    next(stop)
    stop.close()  # the port is now closed
    config = make_config(closed, max_attempts=2)
    with pytest.raises(
        ConnectorError, match=r"cannot reach 127\.0\.0\.1 \(.*\) after 2 attempt\(s\)"
    ) as excinfo:
        source.discover(config)
    assert excinfo.value.field == "base_url"
    assert len(source.waits) == 1
    result = run_check(source, config)
    assert not result.ok and "cannot reach 127.0.0.1" in result.message


def test_requests_per_second_spaces_the_requests(api):
    real = RestApiSource()
    config = make_config(api, requests_per_second=25)
    schema = real.discover(config)[0]
    started = time.monotonic()
    list(real.read(config, schema, None))
    assert time.monotonic() - started >= 4 * 0.04 * 0.95  # 5 requests, 4 gaps of 40 ms


def test_parse_retry_after():
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(
        30, abs=1
    )
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- incremental ----------------------------------------------------------------------------------------


def test_incremental_read_passes_the_cursor_and_returns_only_newer_records(source, api):
    streams = [{**PAGE_STREAM, "cursor_field": "updated_at", "cursor_param": "updated_since"}]
    config = make_config(api, streams, chunk_size=10)
    table, items = read_stream(source, config)
    assert ids(table) == ALL_IDS
    checkpoints = [i for i in items if isinstance(i, StateCheckpoint)]
    # A checkpoint after each flush (pages 1-2, 3-4, then the rest), each covering only yielded rows.
    # Flushes after page 1, page 2 (as many rows as yielded before), pages 3-4 (chunk_size), the rest.
    assert [c.state for c in checkpoints] == [
        {"cursor": "2024-01-05T00:00:00Z"},
        {"cursor": "2024-01-10T00:00:00Z"},
        {"cursor": "2024-01-20T00:00:00Z"},
        {"cursor": "2024-01-23T00:00:00Z"},
    ]
    kinds = [type(i).__name__ if isinstance(i, StateCheckpoint) else i.num_rows for i in items]
    assert kinds == [5, "StateCheckpoint", 5, "StateCheckpoint", 10, "StateCheckpoint", 3, "StateCheckpoint"]

    api.records = make_records(25)
    api.requests.clear()
    table, items = read_stream(source, config, state=checkpoints[-1].state)
    # The server answers `>=` (records 23-25); the connector keeps only what is newer than the state.
    assert ids(table) == [24, 25]
    assert [i.state for i in items if isinstance(i, StateCheckpoint)] == [{"cursor": "2024-01-25T00:00:00Z"}]
    read_requests = [r for r in api.requests if "updated_since" in r.query]
    assert [r.query["updated_since"] for r in read_requests] == ["2024-01-23T00:00:00Z"]

    table, items = read_stream(source, config, state={"cursor": "2024-01-25T00:00:00Z"})
    assert table.num_rows == 0
    assert [i.state for i in items if isinstance(i, StateCheckpoint)] == [{"cursor": "2024-01-25T00:00:00Z"}]


def test_incremental_on_a_datetime_cursor_filters_client_side_without_a_param(source, api):
    streams = [{**PAGE_STREAM, "cursor_field": "updated_at", "field_types": {"updated_at": "datetime"}}]
    config = make_config(api, streams)
    table, items = read_stream(source, config, state={"cursor": "2024-01-20T00:00:00+00:00"})
    assert ids(table) == [21, 22, 23]
    assert [i.state for i in items if isinstance(i, StateCheckpoint)] == [
        {"cursor": "2024-01-23T00:00:00+00:00"}
    ]
    assert all("updated_since" not in r.query for r in api.requests)


# --- SSRF -------------------------------------------------------------------------------------------------


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


def test_a_next_url_to_the_metadata_address_is_refused_and_not_requested(source, api, connects):
    api.next_override = "http://169.254.169.254/latest/meta-data/iam/"
    stream = {
        "name": "items",
        "path": "/next",
        "records_path": "items",
        "pagination": {"type": "next_url", "next_url_path": "links.next"},
    }
    config = make_config(api, [stream])
    schema = source.discover(config)[0]
    reader = source.read(config, schema, None)
    with pytest.raises(SSRFBlocked) as excinfo:
        list(reader)
    assert isinstance(excinfo.value, ConnectorError)
    assert "next page URL refused" in str(excinfo.value)
    assert "169.254.169.254 is not allowed (link-local)" in str(excinfo.value)
    assert set(connects) == {"127.0.0.1"}


@pytest.fixture
def refused_server(api) -> Iterator[RestTestServer]:
    """A server on 127.0.0.2 (not allow-listed) at the same port."""
    yield from serve(RestTestServer(host="127.0.0.2", port=api.port))


def test_redirects_keep_credentials_on_the_base_origin_only(source, api):
    other = RestTestServer()
    with_other = serve(other)
    next(with_other)
    try:
        api.auth = "api_key_header"
        same = {
            "name": "same",
            "path": "/redirect",
            "params": {"to": "/page?per_page=3"},
            "records_path": "data.items",
        }
        elsewhere = {
            "name": "elsewhere",
            "path": "/redirect",
            "params": {"to": f"{other.url}/page?per_page=4"},
            "records_path": "data.items",
        }
        config = make_config(api, [same, elsewhere], auth_type="api_key", api_key="key")
        tables = {
            s.name: pa.concat_tables([b.table for b in source.read(config, s, None) if isinstance(b, Batch)])
            for s in source.discover(config)
        }
    finally:
        with_other.close()
    assert ids(tables["same"]) == [1, 2, 3] and ids(tables["elsewhere"]) == [1, 2, 3, 4]
    assert all(r.headers.get("X-API-Key") == "key" for r in api.requests)
    assert len(other.requests) == 2 and all("X-API-Key" not in r.headers for r in other.requests)


def test_a_redirect_to_a_refused_address_is_not_followed(source, api, refused_server, connects):
    stream = {"name": "items", "path": "/redirect", "params": {"to": f"{refused_server.url}/page"}}
    with pytest.raises(SSRFBlocked, match=r"Address 127\.0\.0\.2 of host 127\.0\.0\.2 is not allowed"):
        source.discover(make_config(api, [stream]))
    assert refused_server.requests == []
    assert "127.0.0.2" not in connects


def test_a_next_url_to_a_refused_host_is_not_requested(source, api, refused_server):
    api.next_base = refused_server.url
    stream = {
        "name": "items",
        "path": "/next",
        "records_path": "items",
        "pagination": {"type": "next_url", "next_url_path": "links.next"},
    }
    config = make_config(api, [stream])
    schema = source.discover(config)[0]
    items: list[Any] = []
    with pytest.raises(SSRFBlocked):
        items.extend(source.read(config, schema, None))
    assert refused_server.requests == []


def test_the_base_url_must_pass_the_guard(source, api, settings):
    config = make_config(api)  # saved while the allow-list let 127.0.0.1 through
    settings.AGGREGATOR_ALLOWED_HOSTS = []
    result = run_check(source, config)
    assert not result.ok
    assert (
        result.message == "base_url refused: Address 127.0.0.1 of host 127.0.0.1 is not allowed (loopback)."
    )
    assert api.requests == []


# --- rejected records ------------------------------------------------------------------------------------


def test_records_that_do_not_fit_the_schema_are_rejected_not_dropped(source, api):
    stream = {"name": "items", "path": "/bad", "records_path": "items"}
    config = make_config(api, [stream])
    schema = source.discover(config)[0]  # inferred from the good records
    api.records = [
        {"id": 1, "name": "ok", "score": 1.5, "active": True},
        {"id": "abc", "name": "bad id", "score": 2.0, "active": False},
        {"id": 3, "name": 42, "score": 3, "active": None},  # a number where text was seen: kept as text
        {"id": 4.5, "name": "fraction", "score": 4.0, "active": True},
        ["not", "an", "object"],
        {"id": 6, "name": "bad score", "score": "high", "active": True},
        {"id": 7, "name": {"nested": 1}, "active": "yes"},
    ]
    items = list(source.read(config, schema, None))
    [batch] = [i for i in items if isinstance(i, Batch)]
    assert batch.table.column("id").to_pylist() == [1, 3]
    assert batch.table.column("name").to_pylist() == ["ok", "42"]
    assert batch.table.column("score").to_pylist() == [1.5, 3.0]
    [rejected] = [i for i in items if isinstance(i, RejectedRows)]
    assert [(r.row, r.source, r.reason) for r in rejected.rows] == [
        (2, "page 1", 'id: "abc" is not a valid integer'),
        (4, "page 1", "id: 4.5 is not a valid integer"),
        (5, "page 1", "record is not a JSON object"),
        (6, "page 1", 'score: "high" is not a valid number'),
        (7, "page 1", 'active: "yes" is not a valid boolean'),
    ]
    assert rejected.rows[0].raw == {"id": "abc", "name": "bad id", "score": 2.0, "active": False}


@pytest.mark.parametrize(
    ("values", "field_type", "expected", "bad"),
    [
        ([1, 2.0, None], FieldType.INTEGER, [1, 2, None], []),
        ([1, 2**63, True], FieldType.INTEGER, [1, None, None], [1, 2]),
        ([1, 2**70, 2.5], FieldType.NUMBER, [1.0, float(2**70), 2.5], []),
        ([1.5, "2", None], FieldType.NUMBER, [1.5, None, None], [1]),
        ([True, 1, None], FieldType.BOOLEAN, [True, None, None], [1]),
        (["a", 1, 2.5, True, {"k": [1]}], FieldType.STRING, ["a", "1", "2.5", "true", '{"k":[1]}'], []),
        ([{"k": "é"}, [1, None], "x", None], FieldType.JSON, ['{"k":"é"}', "[1,null]", '"x"', None], []),
        (["2024-05-01", "May 1st", 20240501], FieldType.DATE, ["2024-05-01", None, None], [1, 2]),
    ],
)
def test_convert_column_keeps_what_fits_and_names_what_does_not(values, field_type, expected, bad):
    array, misfits = convert_column(values, field_type)
    got = array.to_pylist()
    if field_type == FieldType.DATE:
        got = [None if v is None else v.isoformat() for v in got]
    assert got == expected
    assert misfits == bad


# --- check, and secrets ---------------------------------------------------------------------------------


def test_check_requests_the_first_stream_once_or_the_check_path(source, api):
    result = run_check(source, make_config(api))
    assert result.ok and result.message == "GET /page answered with 10 record(s)."
    assert api.hits == {"/page": 1}
    result = run_check(source, make_config(api, check_path="/offset"))
    assert result.ok and result.message == "GET /offset answered."
    result = run_check(source, make_config(api, check_path="/nowhere"))
    assert not result.ok and result.message == "Check: GET 127.0.0.1/nowhere failed with HTTP 404."


def test_a_canary_secret_never_reaches_an_error_or_a_log_line(source, api, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    # httpx is held at WARNING project-wide (its INFO lines carry URLs); open it up to check the filter too.
    caplog.set_level(logging.DEBUG, logger="httpx")
    canary_key, canary_password = "CANARY-KEY-7f3a9c", "CANARY-PW-51d2e8"
    messages: list[str] = []
    api.auth = "api_key_query"
    api.api_key = canary_key
    key_config = {"auth_type": "api_key", "api_key": canary_key, "api_key_in": "query", "api_key_name": "key"}
    api.api_key_name = "key"
    api.failures["/page?page=2&per_page=5"] = [(503, {})] * 5
    for config in (
        make_config(api, **key_config),  # 503 until attempts run out
        make_config(api, [{"name": "m", "path": "/missing"}], **key_config),  # 404
        make_config(api, **{**key_config, "api_key": canary_key + "-wrong"}),  # 401
        make_config(api, auth_type="basic", username="reader", password=canary_password),  # 401
    ):
        with pytest.raises(ConnectorError) as excinfo:
            read_stream(source, config)
        messages.append(str(excinfo.value))
        messages.append(repr(config))
        messages.append(run_check(source, config).message)
    captured = capsys.readouterr()
    everything = "\n".join([*messages, caplog.text, captured.out, captured.err])
    assert "rest_api_request_retry" in caplog.text  # the retries were logged, httpx logged each request...
    assert "HTTP Request: GET http://127.0.0.1" in caplog.text
    for secret in (canary_key, canary_password, BODY_MARKER):
        assert secret not in everything  # ...without the key, the password, or what the server said
    assert "failed with HTTP 503 after 3 attempt(s)" in messages[0]


def test_read_of_an_unknown_stream_is_named(source, api):
    schema = StreamSchema(name="nope", fields=())
    with pytest.raises(ConnectorError, match="No stream 'nope' in this connector"):
        list(source.read(make_config(api), schema, None))


# --- through the connectors services (encrypted secrets, check, preview) --------------------------------


def test_a_stored_rest_connector_keeps_its_key_encrypted_and_works(personas, api):
    from apps.connectors.models import Connector
    from apps.connectors.services import connector_check, connector_create, connector_preview

    canary = "CANARY-STORED-KEY-2b8e"
    api.auth, api.api_key = "api_key_header", canary
    connector = connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="items-api",
        connector_type="rest_api",
        config={
            "base_url": api.url,
            "auth_type": "api_key",
            "api_key": canary,
            "streams": [PAGE_STREAM],
            "backoff_base_s": 0.001,
        },
    )
    stored = Connector.objects.values("config", "secrets_encrypted").get(id=connector.id)
    assert canary not in json.dumps(stored["config"]) and canary not in stored["secrets_encrypted"]
    assert stored["config"]["streams"][0]["pagination"] == {
        "type": "page_number",
        "page_param": "page",
        "start_page": 1,
        "size_param": "per_page",
        "page_size": 5,
        "total_pages_path": None,
    }
    checked = connector_check(connector=connector)
    assert (checked.last_check_status, checked.last_check_message) == (
        "succeeded",
        "GET /page answered with 10 record(s).",
    )
    preview = connector_preview(connector=connector, stream="items", limit=7)
    assert [row["id"] for row in preview["rows"]] == [1, 2, 3, 4, 5, 6, 7]
    assert preview["rows"][0]["meta"] == '{"rank":1,"group":"odd"}'
    # Preview stops reading once it has its rows: the check, discovery's page 1, pages 1 and 2 of the read.
    assert api.served == {"/page": 1, "/page?page=1&per_page=5": 2, "/page?page=2&per_page=5": 1}
