"""Auth schemes of the SDK's HTTP client: none, HTTP basic, bearer token, API key (header or query) and
OAuth2 client credentials (RFC 6749 §4.4) with a token cached for the session.

Each scheme names the config field a 401 / 403 points at (`field`), so the error tells the user what to
fix. Secrets are plain strings here: the source takes them out of its `SecretStr` fields when it builds the
scheme for one session, and they never reach a log line or an error message.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_plus

import httpx

from aggregator.logging import get_logger
from aggregator.ssrf import SSRFBlocked
from apps.connectors.base import ConnectorError

from .client import Auth, HttpClient, RequestRefused, transport_reason, where

logger = get_logger(__name__)

# The clock OAuth2 token lifetimes are measured on (a module attribute so a test can move it forward).
_clock = time.monotonic


def basic_header(username: str, password: str, *, form_encode: bool = False) -> str:
    # RFC 7617; for OAuth2 client authentication RFC 6749 §2.3.1 wants both parts form-encoded first.
    if form_encode:
        username, password = quote_plus(username), quote_plus(password)
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class NoAuth(Auth):
    """No credentials: a 401 / 403 points at the auth type."""


@dataclass
class BasicAuth(Auth):
    username: str
    password: str
    field: str = "password"

    def headers(self, client: HttpClient) -> dict[str, str]:
        return {"Authorization": basic_header(self.username, self.password)}


@dataclass
class BearerAuth(Auth):
    token: str
    field: str = "token"

    def headers(self, client: HttpClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class ApiKeyAuth(Auth):
    """The key in a header (`X-API-Key: <prefix><key>`) or a query parameter (`?<name>=<key>`)."""

    key: str
    name: str = "X-API-Key"
    location: Literal["header", "query"] = "header"
    prefix: str = ""
    field: str = "api_key"

    def headers(self, client: HttpClient) -> dict[str, str]:
        return {self.name: f"{self.prefix}{self.key}"} if self.location == "header" else {}

    def query(self) -> dict[str, str]:
        return {self.name: self.key} if self.location == "query" else {}


@dataclass
class _Token:
    value: str
    expires_at: float | None  # on _clock; None: until the API says otherwise (a 401)

    def fresh(self) -> bool:
        return self.expires_at is None or _clock() < self.expires_at


@dataclass
class OAuth2ClientCredentials(Auth):
    """A bearer token from the token endpoint, cached for the session and renewed shortly before
    `expires_in` runs out (10 % of the lifetime, at most 30 s early), or at once after a 401.

    The token request is a POST that follows no redirect, retried like a page (429 / 5xx / transport
    errors) within the client's attempts and rate limit; the client credentials go in an HTTP basic
    header (`client_auth="basic"`, RFC 6749 §2.3.1) or in the form body (`"body"`)."""

    token_url: str
    client_id: str
    client_secret: str
    scopes: Sequence[str] = ()
    client_auth: Literal["basic", "body"] = "basic"
    field: str = "oauth2_client_secret"
    token_url_field: str = "oauth2_token_url"  # noqa: S105 - a field name, not a secret
    client_id_field: str = "oauth2_client_id"
    requests: int = 0
    _token: _Token | None = dataclasses.field(default=None, init=False, repr=False)

    def urls(self) -> list[tuple[httpx.URL, str]]:
        return [(httpx.URL(self.token_url), self.token_url_field)]

    def headers(self, client: HttpClient) -> dict[str, str]:
        if self._token is None or not self._token.fresh():
            self._token = self._request_token(client)
        return {"Authorization": f"Bearer {self._token.value}"}

    def renew(self) -> bool:
        self._token = None
        return True

    def _request_token(self, client: HttpClient) -> _Token:
        url = httpx.URL(self.token_url)
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            headers["Authorization"] = basic_header(self.client_id, self.client_secret, form_encode=True)
        else:
            form.update({"client_id": self.client_id, "client_secret": self.client_secret})
        what = "OAuth2 token request"
        url_field = self.token_url_field
        for attempt in range(1, client.max_attempts + 1):
            client.throttle()
            self.requests += 1
            try:
                response = client.http.post(url, data=form, headers=headers)
            except SSRFBlocked as exc:
                raise RequestRefused(f"{what}: POST {where(url)} refused: {exc}.", field=url_field) from None
            except httpx.TransportError as exc:
                if attempt >= client.max_attempts:
                    reason = transport_reason(exc, client.settings.timeout_s)
                    raise ConnectorError(
                        f"{what}: cannot reach {url.host} ({reason}).", field=url_field, transient=True
                    ) from None
                wait = client.backoff(attempt)
                client.log_retry(what, url, attempt, wait, error=type(exc).__name__)
                client.sleep(wait)
                continue
            status = response.status_code
            if (status == 429 or status >= 500) and attempt < client.max_attempts:
                wait = client.retry_wait(response, attempt, what, url)
                client.log_retry(what, url, attempt, wait, status=status)
                client.sleep(wait)
                continue
            if status in (400, 401, 403):
                raise ConnectorError(
                    f"{what}: authentication failed (HTTP {status}) at {where(url)}; check "
                    f"{self.client_id_field} and {self.field}.",
                    field=self.field,
                )
            if status != 200:
                raise ConnectorError(
                    f"{what}: POST {where(url)} failed with HTTP {status}.",
                    field=url_field,
                    transient=status == 429 or status >= 500,
                )
            return self._token_of(response, url, client.log_name)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _token_of(self, response: httpx.Response, url: httpx.URL, log_name: str) -> _Token:
        missing = f"OAuth2 token request: {where(url)} answered without an access_token."
        try:
            payload = response.json()
            value = payload["access_token"]
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(missing, field=self.token_url_field) from None
        if not isinstance(value, str) or not value:
            raise ConnectorError(missing, field=self.token_url_field)
        expires_in = payload.get("expires_in")
        expires_at = None
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
            # Renew a little early so a token does not run out between the check and the server.
            expires_at = _clock() + expires_in - min(30.0, expires_in * 0.1)
        logger.info(f"{log_name}_oauth_token_obtained", host=url.host, expires_in=expires_in)
        return _Token(value=value, expires_at=expires_at)
