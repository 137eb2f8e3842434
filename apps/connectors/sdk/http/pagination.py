"""Pagination strategies of the SDK's HTTP client: the requests of one read, page after page.

A paginator is made for one read of one endpoint (it remembers the tokens, URLs and records it has seen,
to stop an API that loops): `first()` is the first request, then `next(page, records)` gives the next one
from the page just read, or None when the read is done. The request parameters given to it are sent with
every page it builds; a next URL handed over by the API is requested as it is (it carries them).

- `SinglePage`: one request.
- `PageNumberPaginator`: `page_param`=`start_page`, then +1; `size_param`=`page_size` (None: the API's own
  size). Stops at an empty page, a page shorter than `page_size`, or the last of `total_pages_path`.
- `OffsetLimitPaginator`: `offset_param`=0, then + the records read; `limit_param`=`limit`. Stops at an
  empty or short page, or when the offset reaches `total_path`.
- `CursorPaginator`: the token at `cursor_path` in the body sent back as `cursor_param`. Stops when the
  token is missing, null, false or empty.
- `NextUrlPaginator`: the URL at `next_url_path` in the body; `LinkHeaderPaginator`: the
  `Link: <...>; rel="next"` header (RFC 8288). Stop when there is none.

A loop is an error naming `pagination`, not an endless read: a token or URL seen twice, or (page number
and offset) the same records on two pages in a row, which is what an API that ignores the page parameters
answers. A next URL is resolved against the page's URL, checked by the SSRF guard when it leaves the base
origin, and requested without credentials there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from apps.connectors.base import ConnectorError

from .client import HttpClient, Page, Params, ParamValue, guard

# What `resolve_path` answers for a path that is not in the body (None is a value: JSON null).
MISSING: Any = object()


def resolve_path(body: Any, path: str) -> Any:
    """The value at a dotted path (`data.items`, `results.0.id`) or MISSING; an empty path is the body."""
    value = body
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part, MISSING)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Request:
    """One page request: the URL, and the parameters to add to it (None: the URL is the whole request)."""

    url: httpx.URL
    params: dict[str, ParamValue] | None


class Paginator:
    """The base of the strategies below: one request and no more. `what` opens its error messages
    (`Stream 'orders'`)."""

    def __init__(self, client: HttpClient, url: httpx.URL, params: Params, *, what: str) -> None:
        self.client = client
        self.url = url
        self.params: dict[str, ParamValue] = dict(params)
        self.what = what
        self._seen_urls: set[str] = set()
        self._previous_records: list[Any] | None = None

    def first(self) -> Request:
        self._seen_urls.add(str(self.url))
        return Request(self.url, {**self.params, **self._first_params()})

    def next(self, page: Page, records: list[Any]) -> Request | None:
        return None

    def _first_params(self) -> dict[str, ParamValue]:
        return {}

    def _error(self, message: str) -> ConnectorError:
        return ConnectorError(f"{self.what}: {message}", field="pagination")

    def _refuse_repeated_records(self, records: list[Any]) -> None:
        # An API that ignores the page parameter answers page 1 forever: stop at the first repeat.
        if records and records == self._previous_records:
            raise self._error(
                "the API returned the same records for two pages in a row; does it support the configured "
                "page parameters?"
            )
        self._previous_records = records

    def _follow(self, target: Any, page: Page) -> Request | None:
        """A next URL from the API: resolved against the page's URL and guarded; the request parameters
        are not added again (the URL carries them), credentials only if it stays on the base origin."""
        if target is MISSING or target is None or target == "":
            return None
        if not isinstance(target, str):
            raise self._error("the next page URL is not a string.")
        try:
            url = page.url.join(target)
        except httpx.InvalidURL:
            raise self._error("the next page URL is not a valid URL.") from None
        if not self.client.same_origin(url):
            guard(url, what=f"{self.what}: next page URL")
        key = str(url)
        if key in self._seen_urls:
            raise self._error("the API returned a next page URL it had already returned; stopping a loop.")
        self._seen_urls.add(key)
        return Request(url, None)


class SinglePage(Paginator):
    """One request: an endpoint that answers everything at once."""


class PageNumberPaginator(Paginator):
    def __init__(
        self,
        client: HttpClient,
        url: httpx.URL,
        params: Params,
        *,
        what: str,
        page_param: str = "page",
        start_page: int = 1,
        size_param: str | None = "per_page",
        page_size: int = 100,
        total_pages_path: str | None = None,
    ) -> None:
        super().__init__(client, url, params, what=what)
        self.page_param = page_param
        self.size_param = size_param
        self.page_size = page_size
        self.total_pages_path = total_pages_path
        self._page_number = start_page

    def _first_params(self) -> dict[str, ParamValue]:
        params: dict[str, ParamValue] = {self.page_param: self._page_number}
        if self.size_param:
            params[self.size_param] = self.page_size
        return params

    def next(self, page: Page, records: list[Any]) -> Request | None:
        self._refuse_repeated_records(records)
        if not records or (self.size_param and len(records) < self.page_size):
            return None
        if self.total_pages_path:
            total = resolve_path(page.body, self.total_pages_path)
            if _whole_number(total) and self._page_number >= total:
                return None
        self._page_number += 1
        return Request(self.url, {**self.params, **self._first_params()})


class OffsetLimitPaginator(Paginator):
    def __init__(
        self,
        client: HttpClient,
        url: httpx.URL,
        params: Params,
        *,
        what: str,
        offset_param: str = "offset",
        limit_param: str = "limit",
        limit: int = 100,
        total_path: str | None = None,
    ) -> None:
        super().__init__(client, url, params, what=what)
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.limit = limit
        self.total_path = total_path
        self._offset = 0

    def _first_params(self) -> dict[str, ParamValue]:
        return {self.offset_param: self._offset, self.limit_param: self.limit}

    def next(self, page: Page, records: list[Any]) -> Request | None:
        self._refuse_repeated_records(records)
        if not records or len(records) < self.limit:
            return None
        self._offset += len(records)
        if self.total_path:
            total = resolve_path(page.body, self.total_path)
            if _whole_number(total) and self._offset >= total:
                return None
        return Request(self.url, {**self.params, **self._first_params()})


class CursorPaginator(Paginator):
    def __init__(
        self,
        client: HttpClient,
        url: httpx.URL,
        params: Params,
        *,
        what: str,
        cursor_path: str,
        cursor_param: str = "cursor",
    ) -> None:
        super().__init__(client, url, params, what=what)
        self.cursor_path = cursor_path
        self.cursor_param = cursor_param
        self._seen_tokens: set[str] = set()

    def next(self, page: Page, records: list[Any]) -> Request | None:
        token = resolve_path(page.body, self.cursor_path)
        if token is MISSING or token is None or token == "" or token is False:
            return None
        if not isinstance(token, str | int | float):
            raise self._error(f"the next-page token at {self.cursor_path!r} is not a string or a number.")
        text = str(token)
        if text in self._seen_tokens:
            raise self._error("the API returned the same next-page token twice; stopping a loop.")
        self._seen_tokens.add(text)
        return Request(self.url, {**self.params, self.cursor_param: text})


class NextUrlPaginator(Paginator):
    def __init__(
        self, client: HttpClient, url: httpx.URL, params: Params, *, what: str, next_url_path: str
    ) -> None:
        super().__init__(client, url, params, what=what)
        self.next_url_path = next_url_path

    def next(self, page: Page, records: list[Any]) -> Request | None:
        return self._follow(resolve_path(page.body, self.next_url_path), page)


class LinkHeaderPaginator(Paginator):
    def next(self, page: Page, records: list[Any]) -> Request | None:
        return self._follow(page.links.get("next", {}).get("url"), page)
