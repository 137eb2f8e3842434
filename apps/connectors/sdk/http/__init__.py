"""The HTTP layer of the connector SDK, shared by the REST source and the SaaS sources to come.

- `client.HttpClient`: one API session over the SSRF-guarded httpx client, with the rate limit, retries
  (429 / 5xx / transport errors, exponential backoff with jitter, `Retry-After` honoured up to a bound),
  redirects followed by hand with each hop guarded, credentials kept to the base origin, and a cap on the
  size of a body. `HttpSettings` holds the knobs.
- `auth`: the schemes (`NoAuth`, `BasicAuth`, `BearerAuth`, `ApiKeyAuth`, `OAuth2ClientCredentials`).
- `pagination`: the strategies (`SinglePage`, `PageNumberPaginator`, `OffsetLimitPaginator`,
  `CursorPaginator`, `NextUrlPaginator`, `LinkHeaderPaginator`) and `resolve_path` for dotted paths into
  a JSON body.

docs/connectors.md, "Connector SDK" / "HTTP", says how a source uses them.
"""

from .auth import ApiKeyAuth, BasicAuth, BearerAuth, NoAuth, OAuth2ClientCredentials
from .client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Auth,
    HttpClient,
    HttpSettings,
    Page,
    ParamValue,
    RequestRefused,
    param_text,
    parse_retry_after,
)
from .pagination import (
    MISSING,
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetLimitPaginator,
    PageNumberPaginator,
    Paginator,
    Request,
    SinglePage,
    resolve_path,
)

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MISSING",
    "ApiKeyAuth",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "CursorPaginator",
    "HttpClient",
    "HttpSettings",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "NoAuth",
    "OAuth2ClientCredentials",
    "OffsetLimitPaginator",
    "Page",
    "PageNumberPaginator",
    "Paginator",
    "ParamValue",
    "Request",
    "RequestRefused",
    "SinglePage",
    "param_text",
    "parse_retry_after",
    "resolve_path",
]
