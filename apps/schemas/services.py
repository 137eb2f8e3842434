"""Recording discovered schemas as versions and saying what changed between them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from aggregator.dataplane import StreamSchema
from aggregator.logging import get_logger

from .models import StreamSchemaVersion

logger = get_logger(__name__)


@dataclass
class StreamChange:
    """How one stream differs from its previous version. `kind` is added, removed, changed or unchanged."""

    stream: str
    kind: str
    version: int | None
    added_fields: list[str] = field(default_factory=list)
    removed_fields: list[str] = field(default_factory=list)
    type_changes: dict[str, dict[str, str]] = field(default_factory=dict)
    nullability_changes: dict[str, dict[str, bool]] = field(default_factory=dict)
    key_changes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "kind": self.kind,
            "version": self.version,
            "added_fields": self.added_fields,
            "removed_fields": self.removed_fields,
            "type_changes": self.type_changes,
            "nullability_changes": self.nullability_changes,
            "key_changes": self.key_changes,
        }


def schema_fingerprint(schema: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def schema_diff(*, stream: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> StreamChange:
    """The difference between two schema dicts of one stream (either may be None)."""
    if old is None and new is not None:
        return StreamChange(
            stream=stream, kind="added", version=None, added_fields=[f["name"] for f in new["fields"]]
        )
    if new is None:
        return StreamChange(stream=stream, kind="removed", version=None)
    assert old is not None
    old_fields = {f["name"]: f for f in old.get("fields", [])}
    new_fields = {f["name"]: f for f in new.get("fields", [])}
    change = StreamChange(stream=stream, kind="unchanged", version=None)
    change.added_fields = [name for name in new_fields if name not in old_fields]
    change.removed_fields = [name for name in old_fields if name not in new_fields]
    for name in new_fields.keys() & old_fields.keys():
        if old_fields[name]["type"] != new_fields[name]["type"]:
            change.type_changes[name] = {"from": old_fields[name]["type"], "to": new_fields[name]["type"]}
        if old_fields[name].get("nullable", True) != new_fields[name].get("nullable", True):
            change.nullability_changes[name] = {
                "from": old_fields[name].get("nullable", True),
                "to": new_fields[name].get("nullable", True),
            }
    for key in ("primary_key", "cursor_field"):
        if old.get(key) != new.get(key):
            change.key_changes[key] = {"from": old.get(key), "to": new.get(key)}
    if (
        change.added_fields
        or change.removed_fields
        or change.type_changes
        or change.nullability_changes
        or change.key_changes
    ):
        change.kind = "changed"
    return change


@transaction.atomic
def schema_record_discovery(*, connector: Any, streams: Iterable[StreamSchema]) -> list[StreamChange]:
    """Store what a discovery found as new versions where a stream changed, and return every stream's change
    since the previous discovery (streams no longer found are marked removed)."""
    latest: dict[str, StreamSchemaVersion] = {}
    for row in (
        StreamSchemaVersion.objects.select_for_update()
        .filter(connector=connector)
        .order_by("stream", "-version")
    ):
        latest.setdefault(row.stream, row)

    changes: list[StreamChange] = []
    seen: set[str] = set()
    for stream in streams:
        seen.add(stream.name)
        schema = stream.to_dict()
        fingerprint = schema_fingerprint(schema)
        previous = latest.get(stream.name)
        if previous is not None and not previous.is_removed and previous.fingerprint == fingerprint:
            changes.append(StreamChange(stream=stream.name, kind="unchanged", version=previous.version))
            continue
        old_schema = None if previous is None or previous.is_removed else previous.schema
        change = schema_diff(stream=stream.name, old=old_schema, new=schema)
        version = (previous.version + 1) if previous else 1
        change.version = version
        StreamSchemaVersion.objects.create(
            workspace_id=connector.workspace_id,
            connector=connector,
            stream=stream.name,
            version=version,
            schema=schema,
            fingerprint=fingerprint,
            changes=change.to_dict(),
        )
        changes.append(change)

    for name, previous in latest.items():
        if name in seen or previous.is_removed:
            continue
        change = schema_diff(stream=name, old=previous.schema, new=None)
        change.version = previous.version + 1
        StreamSchemaVersion.objects.create(
            workspace_id=connector.workspace_id,
            connector=connector,
            stream=name,
            version=change.version,
            schema=previous.schema,
            fingerprint=previous.fingerprint,
            changes=change.to_dict(),
            is_removed=True,
        )
        changes.append(change)

    changed = [c.stream for c in changes if c.kind != "unchanged"]
    if changed:
        logger.info("schema_versions_recorded", connector_id=connector.id, streams=changed)
    return changes


def schema_discover(*, connector: Any) -> list[StreamChange]:
    """Discover the connector's streams now and record them as versions; returns what changed."""
    from apps.connectors.services import connector_discover

    streams = connector_discover(connector=connector)
    return schema_record_discovery(connector=connector, streams=streams)
