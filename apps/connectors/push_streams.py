"""Where the `push_stream` source reads the records outside systems pushed.

The ingestion endpoint and its rows (PushStream, PushRecord) belong to the webhooks app, which receives
the signed requests; the connector that reads them back belongs here. So that connectors does not import
the app above it, the webhooks app hands its reader to this module when it starts
(`WebhooksConfig.ready`), and the plugin asks this module for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class PushedStream(Protocol):
    """What the source needs of a push stream."""

    @property
    def name(self) -> str: ...

    @property
    def last_seq(self) -> int: ...


class PushedRecord(Protocol):
    """One pushed record: its sequence number (commits in order), its data and when it arrived."""

    @property
    def seq(self) -> int: ...

    @property
    def data(self) -> Any: ...

    @property
    def received_at(self) -> dt.datetime: ...


class PushStreamReader(Protocol):
    def stream_for_reader(self, *, stream_id: int, read_key: str) -> PushedStream:
        """The stream, if the read key is right; LookupError otherwise (the same for an unknown id)."""
        ...

    def records_after(
        self, *, stream: Any, after_seq: int, chunk: int
    ) -> Iterator[Sequence[PushedRecord]]: ...

    def records_sample(self, *, stream: Any, limit: int) -> list[dict[str, Any]]: ...


_reader: PushStreamReader | None = None


def push_stream_reader_register(reader: PushStreamReader) -> None:
    global _reader
    _reader = reader


def push_stream_reader() -> PushStreamReader:
    if _reader is None:
        raise LookupError("Push streams are not available: the webhooks app is not installed.")
    return _reader
