"""The HTTP client of the connector SDK: one API session over the SSRF-guarded httpx client.

Every request goes through the SSRF guard (`aggregator.ssrf`): the base URL (and an auth's token URL) is
checked when the session starts, a redirect hop or a URL on another origin is checked before it is
requested, and the guarded transport checks each connection again and connects to the vetted address.
Credentials go only to the base URL's origin: a redirect or a next-page URL to another origin is requested
without them, as browsers and httpx do for redirects.

429, 5xx and transport errors are retried with exponential backoff and jitter, honouring `Retry-After`,
up to `max_attempts`; other 4xx fail at once. What is still failing after the last attempt is a
`ConnectorError(transient=True)`. Error messages carry the status code and the URL's host and path, never
the query string (it may hold an API key) and never the response body.

Error `field`s name the settings below (`base_url`, `max_retry_after_s`, `max_response_bytes`) and the
auth's own fields, so a source whose config uses these names gets errors that point at its form.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from aggregator.logging import get_logger
from aggregator.ssrf import MAX_REDIRECTS, HostLookupError, SSRFBlocked, check_url, guarded_httpx_client
from apps.connectors.base import ConnectorError

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

# A body is held in memory while it is parsed; past this an API is sending something that is not a page of
# records (or a page size far too large), and failing beats taking the worker's memory.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

ParamValue = str | int | float | bool
Params = Mapping[str, ParamValue]


class RequestRefused(ConnectorError, SSRFBlocked):
    """A URL the SSRF guard refused (the base URL, a token URL, a next URL or a redirect): both a
    ConnectorError for the engine and an SSRFBlocked for callers that look for that."""


@dataclass(frozen=True)
class HttpSettings:
    """How a session sends: the knobs a source exposes in its config (the REST source's fields of the same
    names)."""

    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0  # waits base, 2 x base, 4 x base, ... times a jitter in [0.5, 1]
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0  # a longer Retry-After fails at once instead of holding a worker
    requests_per_second: float = 0.0  # 0: no limit
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    headers: Mapping[str, str] = field(default_factory=dict)  # non-secret headers sent with every request


@dataclass(frozen=True)
class Page:
    """A JSON body, the URL that answered it (after redirects) and its parsed `Link` header."""

    body: Any
    url: httpx.URL
    links: dict[str, dict[str, str]]


def param_text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default_port


def where(url: httpx.URL) -> str:
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


def transport_reason(exc: httpx.TransportError, timeout_s: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, httpx.ConnectError):
        # httpcore's text is the OS error ("[Errno 111] Connection refused") or the guard's lookup error;
        # neither carries the URL.
        return str(exc)[:200] or "connection failed"
    return type(exc).__name__


class Auth:
    """How a session authenticates; this base sends no credentials. The schemes are in `auth.py`.

    Credentials are added only to requests on the base URL's origin."""

    # The config field a 401 / 403 points the user at.
    field: str = "auth_type"
    # Token requests made in this session (0 for schemes without tokens).
    requests: int = 0

    def urls(self) -> list[tuple[httpx.URL, str]]:
        """URLs of the scheme's own (a token endpoint) with the field naming each: guarded up front."""
        return []

    def headers(self, client: HttpClient) -> dict[str, str]:
        return {}

    def query(self) -> dict[str, str]:
        return {}

    def renew(self) -> bool:
        """Forget a cached token after a 401; True when asking again with a new one may succeed."""
        return False


def guard(url: httpx.URL, *, field: str | None = None, what: str = "") -> None:
    """check_url with errors the user can act on (the guarded transport checks again when it connects)."""
    label = what or f"{field}"
    try:
        check_url(str(url))
    except SSRFBlocked as exc:
        raise RequestRefused(f"{label} refused: {exc}.", field=field) from None
    except HostLookupError as exc:
        raise ConnectorError(f"{label}: {exc}.", field=field) from None


class HttpClient:
    """One API session: the guarded httpx client, the rate limit, retries and the auth's credentials.

    `log_name` prefixes the log events (`<log_name>_request_retry`), so each source's lines keep its name.
    `sleep` is what waits between attempts and for the rate limit (tests record it)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        settings: HttpSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        log_name: str = "http",
    ) -> None:
        self.base_url = httpx.URL(base_url)
        self.auth = auth or Auth()
        self.settings = settings or HttpSettings()
        self.max_attempts = self.settings.max_attempts
        self.sleep = sleep
        self.log_name = log_name
        self._base_origin = origin(self.base_url)
        rate = self.settings.requests_per_second
        self._min_interval = 1.0 / rate if rate else 0.0
        self._last_request_at: float | None = None
        guard(self.base_url, field="base_url")
        for url, url_field in self.auth.urls():
            guard(url, field=url_field)
        self.http = guarded_httpx_client(
            timeout=httpx.Timeout(self.settings.timeout_s), follow_redirects=False
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- URLs --------------------------------------------------------------------------------------

    def url_for(self, path: str) -> httpx.URL:
        base = str(self.base_url).rstrip("/")
        return httpx.URL(f"{base}/{path.lstrip('/')}")

    def same_origin(self, url: httpx.URL) -> bool:
        return origin(url) == self._base_origin

    # --- pacing --------------------------------------------------------------------------------------

    def throttle(self) -> None:
        """Space every request (pages, retries, redirect hops, token requests) by the rate limit."""
        if self._min_interval and self._last_request_at is not None:
            wait = self._last_request_at + self._min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        self._last_request_at = time.monotonic()

    def backoff(self, attempt: int) -> float:
        delay = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    def retry_wait(self, response: httpx.Response, attempt: int, what: str, url: httpx.URL) -> float:
        """How long to wait before the next attempt: Retry-After when the answer has one, else the backoff."""
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            return self.backoff(attempt)
        longest = self.settings.max_retry_after_s
        if retry_after > longest:
            raise ConnectorError(
                f"{what}: GET {where(url)} answered HTTP {response.status_code} asking to wait "
                f"{retry_after:.0f} s, longer than max_retry_after_s ({longest:g} s).",
                field="max_retry_after_s",
            )
        return retry_after

    def log_retry(self, what: str, url: httpx.URL, attempt: int, wait: float, **extra: Any) -> None:
        logger.warning(
            f"{self.log_name}_request_retry",
            what=what,
            host=url.host,
            path=url.path,
            attempt=attempt,
            max_attempts=self.max_attempts,
            wait_s=round(wait, 3),
            **extra,
        )

    # --- sending -------------------------------------------------------------------------------------

    def _build(self, url: httpx.URL, params: Params | None, *, credentials: bool) -> httpx.Request:
        headers = {"Accept": "application/json", **self.settings.headers}
        query = {k: param_text(v) for k, v in (params or {}).items()}
        if credentials:
            headers.update(self.auth.headers(self))
            query.update(self.auth.query())
        if query:
            url = url.copy_merge_params(query)
        return self.http.build_request("GET", url, headers=headers)

    def _send_once(self, url: httpx.URL, params: Params | None, what: str) -> httpx.Response:
        """One GET with its redirects followed by hand: each hop is guarded, and credentials only go to
        the base URL's origin (httpx would keep a custom API-key header on a cross-origin redirect)."""
        for _hop in range(MAX_REDIRECTS + 1):
            request = self._build(url, params, credentials=self.same_origin(url))
            self.throttle()
            try:
                response = self.http.send(request, stream=True)
            except SSRFBlocked as exc:
                raise RequestRefused(f"{what}: GET {where(url)} refused: {exc}.") from None
            if response.status_code not in _REDIRECT_STATUSES or "location" not in response.headers:
                return response
            response.close()
            try:
                target = url.join(response.headers["location"])
            except httpx.InvalidURL:
                raise ConnectorError(f"{what}: GET {where(url)} redirects to an invalid URL.") from None
            if not self.same_origin(target):
                guard(target, what=f"{what}: redirect from {where(url)}")
            url, params = target, None  # the Location is the whole next URL
        raise ConnectorError(f"{what}: GET {where(url)} redirected more than {MAX_REDIRECTS} times.")

    def get_json(self, url: httpx.URL, params: Params | None, *, what: str) -> Page:
        """GET a JSON body, retrying 429 / 5xx / transport errors, renewing the auth's token on a 401."""
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            try:
                response = self._send_once(url, params, what)
                if response.status_code < 300:
                    # A body cut off half-way (timeout, reset) is retried like a failed connection.
                    return self._read_json(response, url, what)
            except httpx.TransportError as exc:
                reason = transport_reason(exc, self.settings.timeout_s)
                if attempt >= self.max_attempts:
                    raise ConnectorError(
                        f"{what}: cannot reach {url.host} ({reason}) after {attempt} attempt(s).",
                        field="base_url",
                        transient=True,
                    ) from None
                wait = self.backoff(attempt)
                self.log_retry(what, url, attempt, wait, error=type(exc).__name__)
                self.sleep(wait)
                continue
            status = response.status_code
            response.close()  # the body of an error response is never read, so never echoed
            if status == 401 and not renewed and self.auth.renew():
                # The cached token expired early or was revoked: one new token, then the same request again.
                logger.info(f"{self.log_name}_oauth_refresh_on_401", what=what, path=url.path)
                renewed = True
                attempt -= 1
                continue
            if status in (401, 403):
                auth_field = self.auth.field
                raise ConnectorError(
                    f"{what}: authentication failed (HTTP {status}) for GET {where(url)}; "
                    f"check {auth_field}.",
                    field=auth_field,
                )
            if status == 429 or status >= 500:
                if attempt >= self.max_attempts:
                    raise ConnectorError(
                        f"{what}: GET {where(url)} failed with HTTP {status} after {attempt} attempt(s).",
                        transient=True,
                    )
                wait = self.retry_wait(response, attempt, what, url)
                self.log_retry(what, url, attempt, wait, status=status)
                self.sleep(wait)
                continue
            raise ConnectorError(f"{what}: GET {where(url)} failed with HTTP {status}.")

    def _read_json(self, response: httpx.Response, url: httpx.URL, what: str) -> Page:
        limit = self.settings.max_response_bytes
        try:
            declared = int(response.headers.get("content-length") or 0)
            if declared > limit:
                raise ConnectorError(
                    f"{what}: GET {where(url)} sent {declared} bytes, more than max_response_bytes.",
                    field="max_response_bytes",
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ConnectorError(
                        f"{what}: GET {where(url)} sent more than max_response_bytes ({limit}).",
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
                f"{what}: GET {where(url)} did not answer with JSON (content type {content_type})."
            ) from None
        return Page(
            body=body, url=response.request.url, links={str(k): v for k, v in response.links.items() if k}
        )
