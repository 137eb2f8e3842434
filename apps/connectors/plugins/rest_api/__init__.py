"""REST API source: JSON records from the endpoints of one HTTP API, one stream per endpoint.

A protocol adapter over the connector SDK's HTTP layer (`apps.connectors.sdk.http`): the client with its
retries, rate limit and SSRF guard, the auth schemes and the pagination strategies are the SDK's; this
package maps its config onto them (`session.py`), turns the pages' JSON records into Arrow (`records.py`)
and holds the config (`config.py`), whose shape the web app's form and saved connectors rely on.

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
`Retry-After`, up to `max_attempts`, and are transient when they persist; other 4xx fail at once. Error
messages carry the status code and the URL path, never the query string (it may hold an API key) and never
the response body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import (
    Batch,
    ReadItem,
    RejectedRow,
    RejectedRows,
    StateCheckpoint,
    StreamSchema,
    rechunk,
)
from aggregator.logging import get_logger
from apps.connectors.base import CheckResult, ConnectorError, ConnectorKind, ConnectorType
from apps.connectors.sdk.http import HttpClient, ParamValue, Request, param_text, parse_retry_after

from .config import RestApiConfig, RestStreamConfig
from .records import advance_cursor, convert_column, cursor_scalar, infer_schema, records_of, records_to_table
from .session import client_for, paginator_for

__all__ = ["RestApiConfig", "RestApiSource", "convert_column", "parse_retry_after"]

logger = get_logger(__name__)


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

    def _client(self, config: RestApiConfig, **overrides: Any) -> HttpClient:
        return client_for(config, sleep=self.sleep, **overrides)

    def _stream_config(self, config: RestApiConfig, name: str) -> RestStreamConfig:
        for stream in config.streams:
            if stream.name == name:
                return stream
        raise ConnectorError(f"No stream {name!r} in this connector.", field="streams")

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
            records = records_of(page, stream, 1)
            return CheckResult(ok=True, message=f"GET {url.path} answered with {len(records)} record(s).")
        return CheckResult(ok=True, message=f"GET {url.path} answered.")

    def discover(self, config: RestApiConfig) -> list[StreamSchema]:
        schemas = []
        with self._client(config) as client:
            for stream in config.streams:
                paginator = paginator_for(client, config, stream, {})
                request = paginator.first()
                page = client.get_json(request.url, request.params, what=f"Stream {stream.name!r}")
                records = records_of(page, stream, 1)
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
            since = cursor_scalar(cursor_value, cursor_type)
            if stream_config.cursor_param:
                extra_params[stream_config.cursor_param] = param_text(cursor_value)
        what = f"Stream {stream.name!r}"

        with self._client(config) as client:
            paginator = paginator_for(client, config, stream_config, extra_params)
            request: Request | None = paginator.first()
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
                records = records_of(page, stream_config, page_number)
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
                    cursor_value = advance_cursor(table.column(cursor_field), cursor_type, cursor_value)
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
                oauth_requests=client.auth.requests,
            )
        if cursor_field and cursor_value is not None and checkpointed != cursor_value:
            # Also when nothing was new, so the stream's state is always where its last read ended.
            yield StateCheckpoint(stream=stream.name, state={"cursor": cursor_value})
