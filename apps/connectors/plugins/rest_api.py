"""REST API source: JSON records from the endpoints of one HTTP API, one stream per endpoint.

Every request — data pages, the OAuth2 token request, redirect hops and every `next` URL the API hands
back, which could point anywhere — goes through the SSRF guard (`aggregator.ssrf`): the base URL and the
token URL are checked up front, a next URL or redirect on another origin is checked before it is
requested, and the guarded httpx transport checks each connection again and connects to the vetted
address. Credentials (auth header, API key, OAuth2 token) go only to the base URL's origin: a next URL or
a redirect to another origin is requested without them, as browsers and httpx do for redirects.

How a read goes: page after page (the stream's pagination style), the records at `records_path` of each
JSON body become an Arrow table cast to the stream's schema column by column (a record that does not fit
goes out as a RejectedRow naming the page and record, the rest carry on). Pages accumulate until
`chunk_size` rows are pending (early in a read: as many rows as were yielded before, so the first page goes
out at once), then everything pending is yielded (batches of at most `chunk_size` rows) followed by a
StateCheckpoint: a checkpoint therefore only ever covers rows already yielded, whole pages.

Incremental: the last cursor value is sent as the stream's `cursor_param` and the records are filtered to
`cursor > state` here as well, so an API that ignores the parameter (or treats it as `>=`) still yields
each record once. State is `{"cursor": <max cursor value seen>}`.

Failures: 429, 5xx and connection errors are retried with exponential backoff and jitter, honouring
`Retry-After`, up to `max_attempts`; other 4xx fail at once. Error messages carry the status code and the
URL path, never the query string (it may hold an API key) and never the response body.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import (
    DEFAULT_CHUNK_SIZE,
    Batch,
    FieldType,
    ReadItem,
    RejectedRow,
    RejectedRows,
    StateCheckpoint,
    StreamSchema,
    SyncMode,
    arrow_type_for,
    rechunk,
)
from aggregator.dataplane import Field as SchemaField
from aggregator.logging import get_logger
from aggregator.ssrf import (
    MAX_REDIRECTS,
    HostLookupError,
    SSRFBlocked,
    check_url,
    check_url_literal,
    guarded_httpx_client,
)
from apps.connectors.base import (
    CheckResult,
    ConnectorConfig,
    ConnectorError,
    ConnectorKind,
    ConnectorType,
    secret_field,
    secret_value,
)

logger = get_logger(__name__)


class _HideQueryStrings(logging.Filter):
    """httpx logs every request at INFO with its full URL, so an API key sent in the query would reach the
    logs; this filter leaves only scheme, host and path of any URL in an httpx log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                a.copy_with(query=None, fragment=None) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


def _install_log_filter() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _HideQueryStrings) for f in httpx_logger.filters):
        httpx_logger.addFilter(_HideQueryStrings())


_install_log_filter()

# A page body is held in memory while it is parsed; past this an API is sending something that is not a
# page of records (or a page size far too large), and failing beats taking the worker's memory.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# Stops a paginator that never ends (an API that keeps answering with full pages) from running forever.
DEFAULT_MAX_PAGES = 1_000_000
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "host"})

ParamValue = str | int | float | bool


# --- config --------------------------------------------------------------------------------------------


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


def _auth_field(config: RestApiConfig) -> str:
    """The field a user should look at when the API refuses the credentials."""
    return {
        "none": "auth_type",
        "basic": "password",
        "bearer": "token",
        "api_key": "api_key",
        "oauth2_client_credentials": "oauth2_client_secret",
    }[config.auth_type]


# --- JSON bodies -----------------------------------------------------------------------------------------

_MISSING = object()


def resolve_path(body: Any, path: str) -> Any:
    """The value at a dotted path (`data.items`, `results.0.id`) or _MISSING; an empty path is the body."""
    value = body
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


# --- records to Arrow --------------------------------------------------------------------------------

_ZONED = r"(Z|z|[+-]\d\d(:?\d\d)?)$"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _cast_text(arr: pa.Array, field_type: FieldType) -> pa.Array:
    """Text to a date or datetime column; values with an offset are instants, naive ones are UTC."""
    target = arrow_type_for(field_type)
    if field_type != FieldType.DATETIME:
        return pc.cast(arr, target)
    zoned = pc.fill_null(pc.match_substring_regex(arr, _ZONED), False)
    if pc.all(zoned).as_py():
        return pc.cast(arr, target)
    if not pc.any(zoned).as_py():
        return pc.cast(pc.cast(arr, pa.timestamp("us")), target)
    with_zone = pc.cast(pc.if_else(zoned, arr, None), target)
    naive = pc.cast(pc.cast(pc.if_else(zoned, None, arr), pa.timestamp("us")), target)
    return pc.if_else(zoned, with_zone, naive)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _convert_fast(values: list[Any], field_type: FieldType) -> pa.Array:
    """The column in one pass of pyarrow's converter; raises when any value does not fit the type (the
    checks on the inferred type are what keep 2.5 out of an integer and true out of a number column)."""
    target = arrow_type_for(field_type)
    if field_type == FieldType.JSON:
        return pa.array([None if v is None else _json_text(v) for v in values], type=target)
    inferred = pa.array(values, from_pandas=False)
    t = inferred.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), target)
    if field_type == FieldType.STRING and pa.types.is_string(t):
        return inferred
    if field_type == FieldType.INTEGER and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return pc.cast(inferred, target)  # a safe cast: 2.0 passes, 2.5 raises
    if field_type == FieldType.NUMBER and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return pc.cast(inferred, target)
    if field_type == FieldType.BOOLEAN and pa.types.is_boolean(t):
        return inferred
    if field_type in (FieldType.DATE, FieldType.DATETIME) and pa.types.is_string(t):
        return _cast_text(inferred, field_type)
    raise pa.ArrowInvalid(f"{t} is not {field_type}")


def _fits(value: Any, field_type: FieldType) -> bool:
    if value is None or field_type in (FieldType.STRING, FieldType.JSON):
        return True
    if isinstance(value, bool):
        return field_type == FieldType.BOOLEAN
    if field_type == FieldType.INTEGER:
        if isinstance(value, float):
            return value.is_integer() and _INT64_MIN <= value <= _INT64_MAX
        return isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX
    if field_type == FieldType.NUMBER:
        return isinstance(value, int | float)
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        if not isinstance(value, str):
            return False
        try:
            _cast_text(pa.array([value]), field_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return True
    return False


def convert_column(values: list[Any], field_type: FieldType) -> tuple[pa.Array, list[int]]:
    """One field of a page as an Arrow array of its type, and the positions of the values that do not fit
    (they are null in the array). A string field takes any scalar as its text and a nested value as JSON."""
    try:
        return _convert_fast(values, field_type), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        pass
    # Only a page with a misfit gets here: find the misfits value by value, convert the rest.
    if field_type == FieldType.STRING:
        text = [v if v is None or isinstance(v, str) else _json_text(v) for v in values]
        return pa.array(text, type=pa.string()), []
    bad = [i for i, v in enumerate(values) if not _fits(v, field_type)]
    bad_set = set(bad)
    cleaned = [None if i in bad_set else v for i, v in enumerate(values)]
    if field_type == FieldType.INTEGER:
        cleaned = [int(v) if isinstance(v, float) else v for v in cleaned]
    elif field_type == FieldType.NUMBER:
        cleaned = [None if v is None else float(v) for v in cleaned]  # ints past int64 too
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        return _cast_text(pa.array(cleaned, type=pa.string()), field_type), bad
    return pa.array(cleaned, type=arrow_type_for(field_type)), bad


def _describe(value: Any) -> str:
    text = _json_text(value)
    return text if len(text) <= 80 else text[:77] + "..."


def records_to_table(records: list[Any], schema: StreamSchema) -> tuple[pa.Table, list[tuple[int, str, Any]]]:
    """A page of records cast to the stream schema: the table of the records that fit, and
    (0-based index, reason, record) of those that do not. Fields the schema does not have are ignored."""
    rejected: dict[int, tuple[str, Any]] = {}
    objects = records
    if not all(isinstance(r, dict) for r in records):
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                rejected[i] = ("record is not a JSON object", r)
        objects = [r if isinstance(r, dict) else {} for r in records]
    columns: list[pa.Array] = []
    for field in schema.fields:
        values = [r.get(field.name) for r in objects]
        array, bad = convert_column(values, field.type)
        columns.append(array)
        for i in bad:
            reason = f"{field.name}: {_describe(values[i])} is not a valid {field.type}"
            rejected.setdefault(i, (reason, records[i]))
    table = pa.Table.from_arrays(columns, schema=schema.arrow_schema())
    if rejected:
        table = table.filter(pa.array([i not in rejected for i in range(len(records))]))
    return table, [(i, reason, raw) for i, (reason, raw) in sorted(rejected.items())]


def infer_schema(
    name: str, records: list[Any], stream: RestStreamConfig, *, supports_incremental: bool
) -> StreamSchema:
    """Field types from the records of a first page: pyarrow's inference per field over the union of the
    records' keys (in first-seen order), nested objects and arrays as JSON, mixed types as string."""
    objects = [r for r in records if isinstance(r, dict)]
    names: dict[str, None] = {}
    for record in objects:
        names.update(dict.fromkeys(record))
    for declared in (*stream.primary_key, *([stream.cursor_field] if stream.cursor_field else [])):
        if objects and declared not in names:
            raise ConnectorError(
                f"Stream {name!r}: field {declared!r} is not in the records of the first page.",
                field="streams",
            )
        names.setdefault(declared, None)
    names.update(dict.fromkeys(stream.field_types))
    arrow_fields = []
    for field_name in names:
        try:
            inferred = pa.array([r.get(field_name) for r in objects], from_pandas=False).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            inferred = pa.string()
        arrow_fields.append(pa.field(field_name, inferred))
    inferred_schema = StreamSchema.from_arrow(name, pa.schema(arrow_fields))
    fields = tuple(
        SchemaField(name=f.name, type=stream.field_types.get(f.name, f.type)) for f in inferred_schema.fields
    )
    candidates = [
        f.name
        for f in fields
        if f.type in (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME)
    ]
    if stream.cursor_field and stream.cursor_field not in candidates:
        candidates.insert(0, stream.cursor_field)
    modes = (
        (SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL) if supports_incremental else (SyncMode.FULL_REFRESH,)
    )
    return StreamSchema(
        name=name,
        fields=fields,
        primary_key=tuple(stream.primary_key),
        cursor_field=stream.cursor_field,
        cursor_candidates=tuple(candidates),
        supported_sync_modes=modes,
    )


def _json_state_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _advance_cursor(column: pa.ChunkedArray, field_type: FieldType, current: Any) -> Any:
    """The larger of the stored cursor value and the column's maximum, as a JSON value."""
    if len(column) == 0:
        return current
    page_max = pc.max(column)
    if not page_max.is_valid:
        return current
    if current is not None and not pc.greater(page_max, _cursor_scalar(current, field_type)).as_py():
        return current
    return _json_state_value(page_max.as_py())


def _cursor_scalar(value: Any, field_type: FieldType) -> pa.Scalar:
    """A stored cursor value as a scalar of the cursor column's type, to compare the column with."""
    target = arrow_type_for(field_type)
    try:
        if isinstance(value, str) and field_type in (FieldType.DATE, FieldType.DATETIME):
            return _cast_text(pa.array([value]), field_type)[0]
        return pc.cast(pa.array([value]), target)[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        raise ConnectorError(
            f"The saved cursor value is not a valid {field_type}; reset the stream's state."
        ) from None


# --- HTTP ----------------------------------------------------------------------------------------------


class RequestRefused(ConnectorError, SSRFBlocked):
    """A URL the SSRF guard refused (the base URL, the token URL, a next URL or a redirect): both a
    ConnectorError for the engine and an SSRFBlocked for callers that look for that."""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default_port


def _where(url: httpx.URL) -> str:
    """What an error message may say about a URL: host and path, never the query (it may carry a key)."""
    return f"{url.host}{url.path}"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# The clock OAuth2 token lifetimes are measured on (a module attribute so a test can move it forward).
_clock = time.monotonic


@dataclass
class _Token:
    value: str
    expires_at: float | None  # on _clock; None: until the API says otherwise (a 401)

    def fresh(self) -> bool:
        return self.expires_at is None or _clock() < self.expires_at


@dataclass(frozen=True)
class Page:
    body: Any
    url: httpx.URL
    links: dict[str, dict[str, str]]


class RestClient:
    """One API session: the guarded httpx client, the rate limit, retries and the OAuth2 token cache."""

    def __init__(
        self,
        config: RestApiConfig,
        *,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.base_url = httpx.URL(config.base_url)
        self._base_origin = _origin(self.base_url)
        self.max_attempts = max_attempts or config.max_attempts
        self._sleep = sleep
        self._min_interval = 1.0 / config.requests_per_second if config.requests_per_second else 0.0
        self._last_request_at: float | None = None
        self._token: _Token | None = None
        self.token_requests = 0
        self._guard(self.base_url, field="base_url")
        if config.auth_type == "oauth2_client_credentials":
            assert config.oauth2_token_url is not None
            self._guard(httpx.URL(config.oauth2_token_url), field="oauth2_token_url")
        self._client = guarded_httpx_client(
            timeout=httpx.Timeout(timeout_s or config.timeout_s), follow_redirects=False
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- URLs --------------------------------------------------------------------------------------

    def url_for(self, path: str) -> httpx.URL:
        base = str(self.base_url).rstrip("/")
        return httpx.URL(f"{base}/{path.lstrip('/')}")

    def _guard(self, url: httpx.URL, *, field: str | None = None, what: str = "") -> None:
        """check_url with errors the user can act on (the guarded transport checks again when it connects)."""
        label = what or f"{field}"
        try:
            check_url(str(url))
        except SSRFBlocked as exc:
            raise RequestRefused(f"{label} refused: {exc}.", field=field) from None
        except HostLookupError as exc:
            raise ConnectorError(f"{label}: {exc}.", field=field) from None

    def same_origin(self, url: httpx.URL) -> bool:
        return _origin(url) == self._base_origin

    # --- sending -------------------------------------------------------------------------------------

    def _throttle(self) -> None:
        if self._min_interval and self._last_request_at is not None:
            wait = self._last_request_at + self._min_interval - time.monotonic()
            if wait > 0:
                self._sleep(wait)
        self._last_request_at = time.monotonic()

    def _backoff(self, attempt: int) -> float:
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    def _auth_headers(self) -> dict[str, str]:
        config = self.config
        if config.auth_type == "basic":
            return {
                "Authorization": _basic_header(config.username or "", secret_value(config.password) or "")
            }
        if config.auth_type == "bearer":
            return {"Authorization": f"Bearer {secret_value(config.token)}"}
        if config.auth_type == "api_key" and config.api_key_in == "header":
            return {config.api_key_name: f"{config.api_key_prefix}{secret_value(config.api_key)}"}
        if config.auth_type == "oauth2_client_credentials":
            return {"Authorization": f"Bearer {self._access_token()}"}
        return {}

    def _build(
        self, url: httpx.URL, params: dict[str, ParamValue] | None, *, credentials: bool
    ) -> httpx.Request:
        headers = {"Accept": "application/json", **self.config.headers}
        query = {k: _param_text(v) for k, v in (params or {}).items()}
        if credentials:
            headers.update(self._auth_headers())
            if self.config.auth_type == "api_key" and self.config.api_key_in == "query":
                query[self.config.api_key_name] = secret_value(self.config.api_key) or ""
        if query:
            url = url.copy_merge_params(query)
        return self._client.build_request("GET", url, headers=headers)

    def _send_once(self, url: httpx.URL, params: dict[str, ParamValue] | None, what: str) -> httpx.Response:
        """One GET with its redirects followed by hand: each hop is guarded, and credentials only go to
        the base URL's origin (httpx would keep a custom API-key header on a cross-origin redirect)."""
        for _hop in range(MAX_REDIRECTS + 1):
            request = self._build(url, params, credentials=self.same_origin(url))
            self._throttle()
            try:
                response = self._client.send(request, stream=True)
            except SSRFBlocked as exc:
                raise RequestRefused(f"{what}: GET {_where(url)} refused: {exc}.") from None
            if response.status_code not in _REDIRECT_STATUSES or "location" not in response.headers:
                return response
            response.close()
            try:
                target = url.join(response.headers["location"])
            except httpx.InvalidURL:
                raise ConnectorError(f"{what}: GET {_where(url)} redirects to an invalid URL.") from None
            if not self.same_origin(target):
                self._guard(target, what=f"{what}: redirect from {_where(url)}")
            url, params = target, None  # the Location is the whole next URL
        raise ConnectorError(f"{what}: GET {_where(url)} redirected more than {MAX_REDIRECTS} times.")

    def get_json(self, url: httpx.URL, params: dict[str, ParamValue] | None, *, what: str) -> Page:
        """GET a JSON body, retrying 429 / 5xx / connection errors, refreshing an OAuth2 token on a 401."""
        attempt = 0
        token_refreshed = False
        while True:
            attempt += 1
            try:
                response = self._send_once(url, params, what)
                if response.status_code < 300:
                    # A body cut off half-way (timeout, reset) is retried like a failed connection.
                    return self._read_json(response, url, what)
            except httpx.TransportError as exc:
                reason = _transport_reason(exc, self.config.timeout_s)
                if attempt >= self.max_attempts:
                    raise ConnectorError(
                        f"{what}: cannot reach {url.host} ({reason}) after {attempt} attempt(s).",
                        field="base_url",
                    ) from None
                wait = self._backoff(attempt)
                self._log_retry(what, url, attempt, wait, error=type(exc).__name__)
                self._sleep(wait)
                continue
            status = response.status_code
            response.close()  # the body of an error response is never read, so never echoed
            if status == 401 and self.config.auth_type == "oauth2_client_credentials" and not token_refreshed:
                # The cached token expired early or was revoked: one new token, then the same request again.
                logger.info("rest_api_oauth_refresh_on_401", what=what, path=url.path)
                self._token = None
                token_refreshed = True
                attempt -= 1
                continue
            if status in (401, 403):
                field = _auth_field(self.config)
                raise ConnectorError(
                    f"{what}: authentication failed (HTTP {status}) for GET {_where(url)}; check {field}.",
                    field=field,
                )
            if status == 429 or status >= 500:
                if attempt >= self.max_attempts:
                    raise ConnectorError(
                        f"{what}: GET {_where(url)} failed with HTTP {status} after {attempt} attempt(s)."
                    )
                wait = self._retry_wait(response, attempt, what, url)
                self._log_retry(what, url, attempt, wait, status=status)
                self._sleep(wait)
                continue
            raise ConnectorError(f"{what}: GET {_where(url)} failed with HTTP {status}.")

    def _retry_wait(self, response: httpx.Response, attempt: int, what: str, url: httpx.URL) -> float:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            return self._backoff(attempt)
        if retry_after > self.config.max_retry_after_s:
            raise ConnectorError(
                f"{what}: GET {_where(url)} answered HTTP {response.status_code} asking to wait "
                f"{retry_after:.0f} s, longer than max_retry_after_s ({self.config.max_retry_after_s:g} s).",
                field="max_retry_after_s",
            )
        return retry_after

    def _log_retry(self, what: str, url: httpx.URL, attempt: int, wait: float, **extra: Any) -> None:
        logger.warning(
            "rest_api_request_retry",
            what=what,
            host=url.host,
            path=url.path,
            attempt=attempt,
            max_attempts=self.max_attempts,
            wait_s=round(wait, 3),
            **extra,
        )

    def _read_json(self, response: httpx.Response, url: httpx.URL, what: str) -> Page:
        limit = self.config.max_response_bytes
        try:
            declared = int(response.headers.get("content-length") or 0)
            if declared > limit:
                raise ConnectorError(
                    f"{what}: GET {_where(url)} sent {declared} bytes, more than max_response_bytes.",
                    field="max_response_bytes",
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ConnectorError(
                        f"{what}: GET {_where(url)} sent more than max_response_bytes ({limit}).",
                        field="max_response_bytes",
                    )
                chunks.append(chunk)
        finally:
            response.close()
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError):
            content_type = response.headers.get("content-type", "unknown").split(";")[0]
            raise ConnectorError(
                f"{what}: GET {_where(url)} did not answer with JSON (content type {content_type})."
            ) from None
        return Page(
            body=body, url=response.request.url, links={str(k): v for k, v in response.links.items() if k}
        )

    # --- OAuth2 client credentials ----------------------------------------------------------------------

    def _access_token(self) -> str:
        if self._token is None or not self._token.fresh():
            self._token = self._request_token()
        return self._token.value

    def _request_token(self) -> _Token:
        config = self.config
        assert config.oauth2_token_url is not None
        url = httpx.URL(config.oauth2_token_url)
        client_id = config.oauth2_client_id or ""
        client_secret = secret_value(config.oauth2_client_secret) or ""
        form = {"grant_type": "client_credentials"}
        if config.oauth2_scopes:
            form["scope"] = " ".join(config.oauth2_scopes)
        headers = {"Accept": "application/json"}
        if config.oauth2_client_auth == "basic":
            headers["Authorization"] = _basic_header(client_id, client_secret, form_encode=True)
        else:
            form.update({"client_id": client_id, "client_secret": client_secret})
        what = "OAuth2 token request"
        for attempt in range(1, self.max_attempts + 1):
            self._throttle()
            self.token_requests += 1
            try:
                response = self._client.post(url, data=form, headers=headers)
            except SSRFBlocked as exc:
                raise RequestRefused(
                    f"{what}: POST {_where(url)} refused: {exc}.", field="oauth2_token_url"
                ) from None
            except httpx.TransportError as exc:
                if attempt >= self.max_attempts:
                    reason = _transport_reason(exc, config.timeout_s)
                    raise ConnectorError(
                        f"{what}: cannot reach {url.host} ({reason}).", field="oauth2_token_url"
                    ) from None
                wait = self._backoff(attempt)
                self._log_retry(what, url, attempt, wait, error=type(exc).__name__)
                self._sleep(wait)
                continue
            status = response.status_code
            if (status == 429 or status >= 500) and attempt < self.max_attempts:
                wait = self._retry_wait(response, attempt, what, url)
                self._log_retry(what, url, attempt, wait, status=status)
                self._sleep(wait)
                continue
            if status in (400, 401, 403):
                raise ConnectorError(
                    f"{what}: authentication failed (HTTP {status}) at {_where(url)}; check oauth2_client_id "
                    "and oauth2_client_secret.",
                    field="oauth2_client_secret",
                )
            if status != 200:
                raise ConnectorError(
                    f"{what}: POST {_where(url)} failed with HTTP {status}.", field="oauth2_token_url"
                )
            try:
                payload = response.json()
                value = payload["access_token"]
            except (ValueError, KeyError, TypeError):
                raise ConnectorError(
                    f"{what}: {_where(url)} answered without an access_token.", field="oauth2_token_url"
                ) from None
            if not isinstance(value, str) or not value:
                raise ConnectorError(
                    f"{what}: {_where(url)} answered without an access_token.", field="oauth2_token_url"
                )
            expires_in = payload.get("expires_in")
            expires_at = None
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
                # Renew a little early so a token does not run out between the check and the server.
                expires_at = _clock() + expires_in - min(30.0, expires_in * 0.1)
            logger.info("rest_api_oauth_token_obtained", host=url.host, expires_in=expires_in)
            return _Token(value=value, expires_at=expires_at)
        raise AssertionError("unreachable")  # the loop returns or raises


def _basic_header(username: str, password: str, *, form_encode: bool = False) -> str:
    # RFC 7617; for OAuth2 client authentication RFC 6749 §2.3.1 wants both parts form-encoded first.
    if form_encode:
        username, password = quote_plus(username), quote_plus(password)
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _param_text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _transport_reason(exc: httpx.TransportError, timeout_s: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, httpx.ConnectError):
        # httpcore's text is the OS error ("[Errno 111] Connection refused") or the guard's lookup error;
        # neither carries the URL.
        return str(exc)[:200] or "connection failed"
    return type(exc).__name__


# --- pagination ----------------------------------------------------------------------------------------


@dataclass
class _Request:
    url: httpx.URL
    params: dict[str, ParamValue] | None


class Paginator:
    """The requests of one stream read, page after page: `first()`, then `next(page, records)` until None."""

    def __init__(
        self, client: RestClient, stream: RestStreamConfig, style: Any, extra_params: dict[str, ParamValue]
    ) -> None:
        self.client = client
        self.stream = stream
        self.style = style
        self.params: dict[str, ParamValue] = {**stream.params, **extra_params}
        self.url = client.url_for(stream.path)
        self._page_number = getattr(style, "start_page", 1)
        self._offset = 0
        self._seen_tokens: set[str] = set()
        self._seen_urls: set[str] = set()
        self._previous_records: list[Any] | None = None

    def first(self) -> _Request:
        style = self.style
        params = dict(self.params)
        if isinstance(style, PageNumberPagination):
            params[style.page_param] = self._page_number
            if style.size_param:
                params[style.size_param] = style.page_size
        elif isinstance(style, OffsetLimitPagination):
            params[style.offset_param] = self._offset
            params[style.limit_param] = style.limit
        self._seen_urls.add(str(self.url))
        return _Request(self.url, params)

    def _what(self) -> str:
        return f"Stream {self.stream.name!r}"

    def next(self, page: Page, records: list[Any]) -> _Request | None:
        style = self.style
        if isinstance(style, NoPagination):
            return None
        record_count = len(records)
        if isinstance(style, PageNumberPagination | OffsetLimitPagination):
            # An API that ignores the page parameter answers page 1 forever: stop at the first repeat.
            if records and records == self._previous_records:
                raise ConnectorError(
                    f"{self._what()}: the API returned the same records for two pages in a row; does it "
                    "support the configured page parameters?",
                    field="pagination",
                )
            self._previous_records = records
        if isinstance(style, PageNumberPagination):
            if record_count == 0 or (style.size_param and record_count < style.page_size):
                return None
            if style.total_pages_path:
                total = resolve_path(page.body, style.total_pages_path)
                if isinstance(total, int) and not isinstance(total, bool) and self._page_number >= total:
                    return None
            self._page_number += 1
            params = {**self.params, style.page_param: self._page_number}
            if style.size_param:
                params[style.size_param] = style.page_size
            return _Request(self.url, params)
        if isinstance(style, OffsetLimitPagination):
            if record_count == 0 or record_count < style.limit:
                return None
            self._offset += record_count
            if style.total_path:
                total = resolve_path(page.body, style.total_path)
                if isinstance(total, int) and not isinstance(total, bool) and self._offset >= total:
                    return None
            return _Request(
                self.url, {**self.params, style.offset_param: self._offset, style.limit_param: style.limit}
            )
        if isinstance(style, CursorPagination):
            token = resolve_path(page.body, style.cursor_path)
            if token is _MISSING or token is None or token == "" or token is False:
                return None
            if not isinstance(token, str | int | float):
                raise ConnectorError(
                    f"{self._what()}: the next-page token at {style.cursor_path!r} is not a string or a "
                    "number.",
                    field="pagination",
                )
            text = str(token)
            if text in self._seen_tokens:
                raise ConnectorError(
                    f"{self._what()}: the API returned the same next-page token twice; stopping a loop.",
                    field="pagination",
                )
            self._seen_tokens.add(text)
            return _Request(self.url, {**self.params, style.cursor_param: text})
        if isinstance(style, NextUrlPagination):
            return self._follow(resolve_path(page.body, style.next_url_path), page)
        if isinstance(style, LinkHeaderPagination):
            return self._follow(page.links.get("next", {}).get("url"), page)
        raise AssertionError(f"unknown pagination {style!r}")

    def _follow(self, target: Any, page: Page) -> _Request | None:
        """A next URL from the API: resolved against the page's URL and guarded; the request parameters
        are not added again (the URL carries them), credentials only if it stays on the base origin."""
        if target is _MISSING or target is None or target == "":
            return None
        if not isinstance(target, str):
            raise ConnectorError(f"{self._what()}: the next page URL is not a string.", field="pagination")
        try:
            url = page.url.join(target)
        except httpx.InvalidURL:
            raise ConnectorError(
                f"{self._what()}: the next page URL is not a valid URL.", field="pagination"
            ) from None
        if not self.client.same_origin(url):
            self.client._guard(url, what=f"{self._what()}: next page URL")
        key = str(url)
        if key in self._seen_urls:
            raise ConnectorError(
                f"{self._what()}: the API returned a next page URL it had already returned; stopping a loop.",
                field="pagination",
            )
        self._seen_urls.add(key)
        return _Request(url, None)


# --- the connector -------------------------------------------------------------------------------------


def _records_of(page: Page, stream: RestStreamConfig, page_number: int) -> list[Any]:
    records = resolve_path(page.body, stream.records_path)
    if records is _MISSING:
        raise ConnectorError(
            f"Stream {stream.name!r}: no {stream.records_path!r} in the body of page {page_number}; check "
            "records_path.",
            field="streams",
        )
    if records is None:
        return []
    if isinstance(records, dict):
        return [records]
    if not isinstance(records, list):
        raise ConnectorError(
            f"Stream {stream.name!r}: {stream.records_path or 'the body'!r} of page {page_number} is not a "
            "list of records; check records_path.",
            field="streams",
        )
    return records


class RestApiSource(ConnectorType):
    slug = "rest_api"
    title = "REST API"
    kind = ConnectorKind.SOURCE
    description = (
        "JSON records from the endpoints of an HTTP API, paginated, with auth, retries and rate limits."
    )
    config_model = RestApiConfig

    # Tests swap this for a recorder; the engine never does.
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def _client(self, config: RestApiConfig, **kwargs: Any) -> RestClient:
        return RestClient(config, sleep=self.sleep, **kwargs)

    def _stream_config(self, config: RestApiConfig, name: str) -> RestStreamConfig:
        for stream in config.streams:
            if stream.name == name:
                return stream
        raise ConnectorError(f"No stream {name!r} in this connector.", field="streams")

    @staticmethod
    def _style(config: RestApiConfig, stream: RestStreamConfig) -> Any:
        return stream.pagination or config.pagination

    def check(self, config: RestApiConfig) -> CheckResult:
        """One GET of the check path (default: the first stream's path with its params), one attempt,
        within the check timeout."""
        stream = config.streams[0]
        path = config.check_path or stream.path
        params = None if config.check_path else dict(stream.params)
        timeout = min(config.timeout_s, max(1.0, self.check_timeout_s - 1.0))
        with self._client(config, max_attempts=1, timeout_s=timeout) as client:
            url = client.url_for(path)
            page = client.get_json(url, params, what="Check")
        if not config.check_path:
            records = _records_of(page, stream, 1)
            return CheckResult(ok=True, message=f"GET {url.path} answered with {len(records)} record(s).")
        return CheckResult(ok=True, message=f"GET {url.path} answered.")

    def discover(self, config: RestApiConfig) -> list[StreamSchema]:
        schemas = []
        with self._client(config) as client:
            for stream in config.streams:
                paginator = Paginator(client, stream, self._style(config, stream), {})
                request = paginator.first()
                page = client.get_json(request.url, request.params, what=f"Stream {stream.name!r}")
                records = _records_of(page, stream, 1)
                if not records and not stream.field_types:
                    raise ConnectorError(
                        f"Stream {stream.name!r}: the first page has no records to infer fields from; "
                        "declare them in field_types.",
                        field="streams",
                    )
                schemas.append(
                    infer_schema(
                        stream.name, records, stream, supports_incremental=stream.cursor_field is not None
                    )
                )
        return schemas

    def read(
        self, config: RestApiConfig, stream: StreamSchema, state: dict[str, Any] | None
    ) -> Iterator[ReadItem]:
        stream_config = self._stream_config(config, stream.name)
        cursor_field = stream.cursor_field or stream_config.cursor_field
        if cursor_field is not None and cursor_field not in stream.field_names:
            raise ConnectorError(
                f"Stream {stream.name!r}: cursor field {cursor_field!r} is not in the stream's fields.",
                field="streams",
            )
        cursor_type = stream.field(cursor_field).type if cursor_field else None
        cursor_value = (state or {}).get("cursor") if cursor_field else None
        extra_params: dict[str, ParamValue] = {}
        since: pa.Scalar | None = None
        if cursor_field and cursor_type and cursor_value is not None:
            since = _cursor_scalar(cursor_value, cursor_type)
            if stream_config.cursor_param:
                extra_params[stream_config.cursor_param] = _param_text(cursor_value)
        what = f"Stream {stream.name!r}"

        with self._client(config) as client:
            paginator = Paginator(client, stream_config, self._style(config, stream_config), extra_params)
            request: _Request | None = paginator.first()
            pending: list[pa.Table] = []
            checkpointed: Any = None
            pending_rows = 0
            flushed_rows = 0
            page_number = 0
            while request is not None:
                page_number += 1
                if page_number > config.max_pages:
                    raise ConnectorError(
                        f"{what}: more than max_pages ({config.max_pages}) pages.", field="max_pages"
                    )
                page = client.get_json(request.url, request.params, what=what)
                records = _records_of(page, stream_config, page_number)
                table, rejected = records_to_table(records, stream)
                if rejected:
                    yield RejectedRows(
                        stream=stream.name,
                        rows=tuple(
                            RejectedRow(reason=reason, raw=raw, row=index + 1, source=f"page {page_number}")
                            for index, reason, raw in rejected
                        ),
                    )
                if cursor_field and cursor_type is not None and table.num_rows:
                    if since is not None:
                        table = table.filter(pc.greater(table.column(cursor_field), since))
                    cursor_value = _advance_cursor(table.column(cursor_field), cursor_type, cursor_value)
                if table.num_rows:
                    pending.append(table)
                    pending_rows += table.num_rows
                request = paginator.next(page, records)
                # Flush at chunk_size; early in a read, as soon as as many rows are pending as were yielded
                # before (1 page, 1, 2, 4, ...), so a preview gets its rows after the first page, not the
                # first 50,000, and a long read still settles at chunk_size batches.
                flush_at = max(1, min(config.chunk_size, flushed_rows))
                if pending_rows >= flush_at or (request is None and pending_rows):
                    for chunk in rechunk(pending, config.chunk_size):
                        yield Batch(chunk, stream=stream.name)
                    flushed_rows += pending_rows
                    pending, pending_rows = [], 0
                    if cursor_field and cursor_value is not None:
                        yield StateCheckpoint(stream=stream.name, state={"cursor": cursor_value})
                        checkpointed = cursor_value
            logger.info(
                "rest_api_stream_read",
                stream=stream.name,
                pages=page_number,
                oauth_requests=client.token_requests,
            )
        if cursor_field and cursor_value is not None and checkpointed != cursor_value:
            # Also when nothing was new, so the stream's state is always where its last read ended.
            yield StateCheckpoint(stream=stream.name, state={"cursor": cursor_value})
