"""Push stream source: the records outside systems POSTed to a push stream's ingestion URL
(`/hooks/ingest/<token>`, see docs/webhooks.md), read back in the order they arrived. The webhooks app
receives and stores them and hands this module its reader (`apps/connectors/push_streams.py`).

Access: the config names the push stream by id and carries its read key (shown once when the stream was
made). The key is what stops a connector in one workspace from reading another workspace's stream by
guessing its id; a wrong key and an unknown id give the same error.

Records are stored as jsonb rows with a per-stream sequence number (`_push_seq`) that commits in order,
so it is an exact incremental cursor: state `{"cursor": <last seq read>}`, a checkpoint after every batch.
Every row also carries `_push_received_at`. Other fields are inferred by discovery from the first
`sample_records` records (the JSON file source's inference: booleans, integers, numbers, ISO dates and
datetimes, strings, `json` for objects and arrays); a value that does not convert to its field's type
rejects its record with the reason; keys not in the schema are ignored until the stream is discovered again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from pydantic import Field, SecretStr

from aggregator.dataplane import (
    DEFAULT_CHUNK_SIZE,
    Batch,
    FieldType,
    ReadItem,
    RejectedRow,
    StateCheckpoint,
    StreamSchema,
    SyncMode,
)
from aggregator.dataplane import Field as StreamField
from apps.connectors.base import (
    CheckResult,
    ConnectorConfig,
    ConnectorError,
    ConnectorKind,
    ConnectorType,
    secret_field,
    secret_value,
)
from apps.connectors.push_streams import PushedStream, push_stream_reader
from apps.connectors.sdk.files import rejected
from apps.connectors.sdk.records import build_schema, records_to_table, short_repr

SEQ_FIELD = "_push_seq"
RECEIVED_FIELD = "_push_received_at"


class PushStreamConfig(ConnectorConfig):
    stream_id: int = Field(title="Push stream id", ge=1)
    read_key: SecretStr = secret_field(
        title="Read key", description="Shown once when the push stream was made."
    )
    sample_records: int = Field(default=1000, ge=1, le=100_000, title="Records sampled by discovery")
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=1_000_000, title="Rows per batch")


def _stream(config: PushStreamConfig) -> PushedStream:
    try:
        return push_stream_reader().stream_for_reader(
            stream_id=config.stream_id, read_key=secret_value(config.read_key) or ""
        )
    except LookupError as exc:
        raise ConnectorError(str(exc), field="read_key") from None


class PushStreamSource(ConnectorType):
    slug = "push_stream"
    title = "Push stream (webhook ingestion)"
    kind = ConnectorKind.SOURCE
    description = "JSON records pushed to a signed ingestion URL, read in arrival order."
    config_model = PushStreamConfig

    def check(self, config: PushStreamConfig) -> CheckResult:
        try:
            stream = _stream(config)
        finally:
            if threading.current_thread().name.startswith("connector-check"):
                # run_check calls this on a throwaway thread: the ORM opened a connection for that thread
                # alone, and nothing else would close it.
                from django.db import connection

                connection.close()
        return CheckResult(
            ok=True, message=f"Push stream '{stream.name}' holds records up to #{stream.last_seq}."
        )

    def discover(self, config: PushStreamConfig) -> list[StreamSchema]:
        stream = _stream(config)
        sample = push_stream_reader().records_sample(stream=stream, limit=config.sample_records)
        columns: dict[str, list[Any]] = {}
        for record in sample:
            for key in record:
                if key not in (SEQ_FIELD, RECEIVED_FIELD):
                    columns.setdefault(key, [])
        for key, values in columns.items():
            values.extend(record.get(key) for record in sample)
        inferred = build_schema(stream.name, columns, {})
        fields = (
            StreamField(name=SEQ_FIELD, type=FieldType.INTEGER, nullable=False),
            StreamField(name=RECEIVED_FIELD, type=FieldType.DATETIME, nullable=False),
            *inferred.fields,
        )
        return [
            StreamSchema(
                name=stream.name,
                fields=fields,
                primary_key=(SEQ_FIELD,),
                cursor_field=SEQ_FIELD,
                cursor_candidates=(SEQ_FIELD,),
                supported_sync_modes=(SyncMode.FULL_REFRESH, SyncMode.INCREMENTAL),
            )
        ]

    def read(
        self, config: PushStreamConfig, stream: StreamSchema, state: dict[str, Any] | None
    ) -> Iterator[ReadItem]:
        push_stream = _stream(config)
        after = int((state or {}).get("cursor") or 0)
        pages = push_stream_reader().records_after(
            stream=push_stream, after_seq=after, chunk=config.chunk_size
        )
        for page in pages:
            rows = [{**r.data, SEQ_FIELD: r.seq, RECEIVED_FIELD: r.received_at} for r in page]
            table, bad = records_to_table(rows, stream)
            if table.num_rows:
                yield Batch(table, stream=stream.name)
            yield from rejected(
                stream,
                [
                    RejectedRow(reason=reason, raw=short_repr(page[index].data, 10_000), row=page[index].seq)
                    for index, reason in sorted(bad.items())
                ],
            )
            # Sequence numbers commit in order, so everything up to this page's last one has been read.
            yield StateCheckpoint(stream=stream.name, state={"cursor": page[-1].seq})
