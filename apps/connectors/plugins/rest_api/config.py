"""The REST source's config: the base URL, the auth fields, the pagination styles and the streams.

The field names, types, titles and defaults are what the web app's form and saved connectors hold: they
do not change when the code under them does."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import DEFAULT_CHUNK_SIZE, FieldType
from aggregator.ssrf import SSRFBlocked, check_url_literal
from apps.connectors.base import ConnectorConfig, secret_field, secret_value
from apps.connectors.sdk.http import DEFAULT_MAX_RESPONSE_BYTES, ParamValue

# Stops a paginator that never ends (an API that keeps answering with full pages) from running forever.
DEFAULT_MAX_PAGES = 1_000_000
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "host"})


class NoPagination(ConnectorConfig):
    type: Literal["none"] = "none"


class PageNumberPagination(ConnectorConfig):
    """`?page=1&per_page=100`, then 2, 3, … until a page is empty, short, or the last of `total_pages`."""

    type: Literal["page_number"] = "page_number"
    page_param: str = Field(default="page", min_length=1, title="Page parameter")
    start_page: int = Field(default=1, ge=0, title="First page number")
    size_param: str | None = Field(
        default="per_page", title="Page size parameter", description="Empty: the API's own page size."
    )
    page_size: int = Field(default=100, ge=1, le=100_000, title="Page size")
    total_pages_path: str | None = Field(
        default=None, title="Total pages path", description="Where the body says how many pages there are."
    )


class OffsetLimitPagination(ConnectorConfig):
    """`?offset=0&limit=100`, then 100, 200, … until a page is empty, short, or `total` is reached."""

    type: Literal["offset_limit"] = "offset_limit"
    offset_param: str = Field(default="offset", min_length=1, title="Offset parameter")
    limit_param: str = Field(default="limit", min_length=1, title="Limit parameter")
    limit: int = Field(default=100, ge=1, le=100_000, title="Records per page")
    total_path: str | None = Field(
        default=None, title="Total path", description="Where the body says how many records there are."
    )


class CursorPagination(ConnectorConfig):
    """A next-page token from the body (`meta.next_cursor`) sent back as a parameter (`cursor`)."""

    type: Literal["cursor"] = "cursor"
    cursor_path: str = Field(min_length=1, title="Next token path", description="e.g. `meta.next_cursor`.")
    cursor_param: str = Field(default="cursor", min_length=1, title="Token parameter")


class NextUrlPagination(ConnectorConfig):
    """The URL of the next page from the body (`links.next`)."""

    type: Literal["next_url"] = "next_url"
    next_url_path: str = Field(min_length=1, title="Next URL path", description="e.g. `links.next`.")


class LinkHeaderPagination(ConnectorConfig):
    """The URL of the next page from the `Link` response header (`rel="next"`, RFC 8288)."""

    type: Literal["link_header"] = "link_header"


Pagination = Annotated[
    NoPagination
    | PageNumberPagination
    | OffsetLimitPagination
    | CursorPagination
    | NextUrlPagination
    | LinkHeaderPagination,
    Field(discriminator="type"),
]


def _validate_path(value: str) -> str:
    if "://" in value or value.startswith("//"):
        raise ValueError("Must be a path under the base URL (e.g. `/users`), not a URL.")
    if "?" in value or "#" in value:
        raise ValueError("Must not contain a query string: put parameters in `params`.")
    return value


class RestStreamConfig(ConnectorConfig):
    name: str = Field(title="Stream name", description="Letters, digits, `_`, `.` and `-`.")
    path: str = Field(min_length=1, max_length=2000, title="Endpoint path", description="e.g. `/users`.")
    params: dict[str, ParamValue] = Field(default_factory=dict, title="Request parameters")
    records_path: str = Field(
        default="",
        title="Records path",
        description="Dotted path to the list of records in the JSON body (`data.items`); empty when the "
        "body itself is the list.",
    )
    primary_key: list[str] = Field(default_factory=list, title="Primary key")
    cursor_field: str | None = Field(
        default=None, title="Cursor field", description="A field that grows with every change."
    )
    cursor_param: str | None = Field(
        default=None,
        title="Cursor parameter",
        description="Request parameter that receives the last cursor value (e.g. `updated_since`).",
    )
    field_types: dict[str, FieldType] = Field(
        default_factory=dict, title="Field types", description="Override the inferred type of some fields."
    )
    pagination: Pagination | None = Field(default=None, title="Pagination (overrides the connector's)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _STREAM_NAME.match(value):
            raise ValueError("Use letters, digits, `_`, `.` and `-` (up to 100 characters).")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _validate_path(value)


AuthType = Literal["none", "basic", "bearer", "api_key", "oauth2_client_credentials"]
_REQUIRED_BY_AUTH: dict[str, tuple[str, ...]] = {
    "basic": ("username", "password"),
    "bearer": ("token",),
    "api_key": ("api_key",),
    "oauth2_client_credentials": ("oauth2_token_url", "oauth2_client_id", "oauth2_client_secret"),
}


def _validate_http_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError("Not a valid URL.") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("Must be an http:// or https:// URL with a host.")
    if url.userinfo:
        raise ValueError("Must not contain credentials: use the auth fields.")
    if url.query or url.fragment:
        raise ValueError("Must not contain a query string or fragment.")
    # A refused address is refused when saved; a name is checked again at every connection.
    try:
        check_url_literal(value)
    except SSRFBlocked as exc:
        raise PydanticCustomError("address_refused", "{reason}", {"reason": str(exc)}) from None
    return value


class RestApiConfig(ConnectorConfig):
    base_url: str = Field(
        title="Base URL", description="e.g. `https://api.example.com/v1`; stream paths are appended to it."
    )
    streams: list[RestStreamConfig] = Field(min_length=1, title="Streams")
    pagination: Pagination = Field(default_factory=NoPagination, title="Pagination")

    auth_type: AuthType = Field(default="none", title="Authentication")
    username: str | None = Field(default=None, title="Username (basic auth)", validate_default=True)
    password: SecretStr | None = secret_field(
        default=None, title="Password (basic auth)", validate_default=True
    )
    token: SecretStr | None = secret_field(default=None, title="Bearer token", validate_default=True)
    api_key: SecretStr | None = secret_field(default=None, title="API key", validate_default=True)
    api_key_name: str = Field(
        default="X-API-Key", min_length=1, title="API key name", description="Header or parameter name."
    )
    api_key_in: Literal["header", "query"] = Field(default="header", title="Send the API key in")
    api_key_prefix: str = Field(
        default="", title="API key prefix", description="Put before the key in the header (e.g. `Token `)."
    )
    oauth2_token_url: str | None = Field(default=None, title="OAuth2 token URL", validate_default=True)
    oauth2_client_id: str | None = Field(default=None, title="OAuth2 client id", validate_default=True)
    oauth2_client_secret: SecretStr | None = secret_field(
        default=None, title="OAuth2 client secret", validate_default=True
    )
    oauth2_scopes: list[str] = Field(default_factory=list, title="OAuth2 scopes")
    oauth2_client_auth: Literal["basic", "body"] = Field(
        default="basic",
        title="Send the client credentials",
        description="`basic`: HTTP basic auth header (RFC 6749 §2.3.1); `body`: in the form body.",
    )

    headers: dict[str, str] = Field(
        default_factory=dict, title="Extra headers", description="Not for credentials: use the auth fields."
    )
    check_path: str | None = Field(
        default=None, title="Check path", description="Endpoint the check requests; the first stream's path."
    )
    requests_per_second: float = Field(
        default=0, ge=0, le=10_000, title="Max requests per second", description="0: no limit."
    )
    max_attempts: int = Field(default=5, ge=1, le=20, title="Attempts per request")
    backoff_base_s: float = Field(
        default=1.0, ge=0, le=60, title="Backoff base (s)", description="Waits base, 2 x base, 4 x base, …"
    )
    backoff_max_s: float = Field(default=60.0, ge=0, le=3600, title="Longest backoff (s)")
    max_retry_after_s: float = Field(
        default=300.0, ge=0, le=86_400, title="Longest Retry-After honoured (s)", description="Past it: fail."
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, title="Request timeout (s)")
    max_pages: int = Field(default=DEFAULT_MAX_PAGES, ge=1, title="Max pages per stream")
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024, le=1024 * 1024 * 1024, title="Max response size"
    )
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _validate_http_url(value)

    @field_validator("check_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        return _validate_path(value) if value else None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.strip().lower() in _CREDENTIAL_HEADERS:
                raise ValueError(f"Header {name!r} is not allowed here: use the auth fields.")
        return value

    @field_validator(
        "username",
        "password",
        "token",
        "api_key",
        "oauth2_token_url",
        "oauth2_client_id",
        "oauth2_client_secret",
    )
    @classmethod
    def _required_by_auth(cls, value: Any, info: ValidationInfo) -> Any:
        auth_type = info.data.get("auth_type", "none")
        empty = value is None or secret_value(value) == ""
        if empty and info.field_name in _REQUIRED_BY_AUTH.get(auth_type, ()):
            raise ValueError(f"Required when auth_type is {auth_type!r}.")
        if info.field_name == "oauth2_token_url" and value:
            return _validate_http_url(value)
        return value

    @model_validator(mode="after")
    def _unique_streams(self) -> RestApiConfig:
        names = [s.name for s in self.streams]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"streams: stream name {duplicates[0]!r} is used twice.")
        return self
