"""The REST source's config as the SDK's HTTP objects: the client with its settings, the auth scheme and
the paginator of one stream. One session (check, discover, or the read of one stream) gets its own client
and auth, so an OAuth2 token is cached for that session only."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from apps.connectors.base import secret_value
from apps.connectors.sdk.http import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    CursorPaginator,
    HttpClient,
    HttpSettings,
    LinkHeaderPaginator,
    NextUrlPaginator,
    NoAuth,
    OAuth2ClientCredentials,
    OffsetLimitPaginator,
    PageNumberPaginator,
    Paginator,
    ParamValue,
    SinglePage,
)

from .config import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    NoPagination,
    OffsetLimitPagination,
    PageNumberPagination,
    RestApiConfig,
    RestStreamConfig,
)

# Log events of the client are `rest_api_request_retry`, `rest_api_oauth_token_obtained`, ...
LOG_NAME = "rest_api"


def auth_for(config: RestApiConfig) -> Auth:
    """The scheme of `auth_type`; each names the secret field a 401 / 403 points at."""
    if config.auth_type == "basic":
        return BasicAuth(username=config.username or "", password=secret_value(config.password) or "")
    if config.auth_type == "bearer":
        return BearerAuth(token=secret_value(config.token) or "")
    if config.auth_type == "api_key":
        return ApiKeyAuth(
            key=secret_value(config.api_key) or "",
            name=config.api_key_name,
            location=config.api_key_in,
            prefix=config.api_key_prefix,
        )
    if config.auth_type == "oauth2_client_credentials":
        assert config.oauth2_token_url is not None  # the config's validator requires it
        return OAuth2ClientCredentials(
            token_url=config.oauth2_token_url,
            client_id=config.oauth2_client_id or "",
            client_secret=secret_value(config.oauth2_client_secret) or "",
            scopes=tuple(config.oauth2_scopes),
            client_auth=config.oauth2_client_auth,
        )
    return NoAuth()


def settings_for(config: RestApiConfig, **overrides: Any) -> HttpSettings:
    values: dict[str, Any] = {
        "timeout_s": config.timeout_s,
        "max_attempts": config.max_attempts,
        "backoff_base_s": config.backoff_base_s,
        "backoff_max_s": config.backoff_max_s,
        "max_retry_after_s": config.max_retry_after_s,
        "requests_per_second": config.requests_per_second,
        "max_response_bytes": config.max_response_bytes,
        "headers": dict(config.headers),
    }
    values.update(overrides)
    return HttpSettings(**values)


def client_for(
    config: RestApiConfig, *, sleep: Callable[[float], None] = time.sleep, **overrides: Any
) -> HttpClient:
    """A session for `config`; `overrides` change settings for it (the check's single attempt and shorter
    timeout)."""
    return HttpClient(
        config.base_url,
        auth=auth_for(config),
        settings=settings_for(config, **overrides),
        sleep=sleep,
        log_name=LOG_NAME,
    )


def paginator_for(
    client: HttpClient,
    config: RestApiConfig,
    stream: RestStreamConfig,
    extra_params: dict[str, ParamValue],
) -> Paginator:
    """The paginator of one read of `stream`: its own pagination or else the connector's."""
    style = stream.pagination or config.pagination
    url = client.url_for(stream.path)
    params = {**stream.params, **extra_params}
    what = f"Stream {stream.name!r}"
    if isinstance(style, PageNumberPagination):
        return PageNumberPaginator(
            client,
            url,
            params,
            what=what,
            page_param=style.page_param,
            start_page=style.start_page,
            size_param=style.size_param,
            page_size=style.page_size,
            total_pages_path=style.total_pages_path,
        )
    if isinstance(style, OffsetLimitPagination):
        return OffsetLimitPaginator(
            client,
            url,
            params,
            what=what,
            offset_param=style.offset_param,
            limit_param=style.limit_param,
            limit=style.limit,
            total_path=style.total_path,
        )
    if isinstance(style, CursorPagination):
        return CursorPaginator(
            client, url, params, what=what, cursor_path=style.cursor_path, cursor_param=style.cursor_param
        )
    if isinstance(style, NextUrlPagination):
        return NextUrlPaginator(client, url, params, what=what, next_url_path=style.next_url_path)
    if isinstance(style, LinkHeaderPagination):
        return LinkHeaderPaginator(client, url, params, what=what)
    assert isinstance(style, NoPagination), f"unknown pagination {style!r}"
    return SinglePage(client, url, params, what=what)
