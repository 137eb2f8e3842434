"""Recording discovered schemas as versions, saying what changed between them, and holding streams to
their contracts (evolve, freeze, discard the value, discard the row) on discovery and at the start of
every run's read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from aggregator.dataplane import StreamSchema
from aggregator.logging import get_logger
from apps.connectors.selectors import connector_type_get
from apps.connectors.services import connector_discover
from apps.monitoring import events

from .contracts import ContractDecision, Settlement, contract_conformer, drift_dimensions
from .models import (
    DEFAULT_CONTRACT,
    ContractPolicy,
    SchemaChange,
    SchemaChangeStatus,
    StreamContract,
    StreamSchemaVersion,
)
from .selectors import stream_contract_effective

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
    since the previous discovery (streams no longer found are marked removed). Each new version is held to
    the stream's contract (accepted, or a pending change under freeze) and, unless it is the connector's
    first discovery, announced as `schema.drift_detected`."""
    latest: dict[str, StreamSchemaVersion] = {}
    for row in (
        StreamSchemaVersion.objects.select_for_update()
        .filter(connector=connector)
        .order_by("stream", "-version")
    ):
        latest.setdefault(row.stream, row)
    first_discovery = not latest

    changes: list[StreamChange] = []
    recorded: list[tuple[StreamChange, StreamSchemaVersion]] = []
    seen: set[str] = set()
    for stream in streams:
        seen.add(stream.name)
        schema = stream.to_dict()
        fingerprint = schema_fingerprint(schema)
        previous = latest.get(stream.name)
        if previous is not None and not previous.is_removed and previous.fingerprint == fingerprint:
            changes.append(StreamChange(stream=stream.name, kind="unchanged", version=previous.version))
            if not previous.is_accepted:
                # Held back by its contract before: the contract may have changed since.
                _settle(connector=connector, latest=previous)
            continue
        old_schema = None if previous is None or previous.is_removed else previous.schema
        change = schema_diff(stream=stream.name, old=old_schema, new=schema)
        version = (previous.version + 1) if previous else 1
        change.version = version
        row = StreamSchemaVersion.objects.create(
            workspace_id=connector.workspace_id,
            connector=connector,
            stream=stream.name,
            version=version,
            schema=schema,
            fingerprint=fingerprint,
            changes=change.to_dict(),
            is_accepted=False,
        )
        changes.append(change)
        recorded.append((change, row))

    for name, previous in latest.items():
        if name in seen or previous.is_removed:
            continue
        change = schema_diff(stream=name, old=previous.schema, new=None)
        change.version = previous.version + 1
        row = StreamSchemaVersion.objects.create(
            workspace_id=connector.workspace_id,
            connector=connector,
            stream=name,
            version=change.version,
            schema=previous.schema,
            fingerprint=previous.fingerprint,
            changes=change.to_dict(),
            is_removed=True,
            is_accepted=False,
        )
        changes.append(change)
        recorded.append((change, row))

    for change, row in recorded:
        settlement = _settle(connector=connector, latest=row, first_discovery=first_discovery)
        if not first_discovery:
            events.emit(
                "schema.drift_detected",
                connector.workspace_id,
                connector,
                {
                    "connector": connector.id,
                    "connector_name": connector.name,
                    "stream": row.stream,
                    "version": row.version,
                    "changes": change.to_dict(),
                    "contract": settlement.status,
                    "schema_change": settlement.change.id if settlement.change else None,
                },
            )

    changed = [c.stream for c in changes if c.kind != "unchanged"]
    if changed:
        logger.info("schema_versions_recorded", connector_id=connector.id, streams=changed)
    return changes


def schema_discover(*, connector: Any) -> list[StreamChange]:
    """Discover the connector's streams now and record them as versions; returns what changed."""
    streams = connector_discover(connector=connector)
    return schema_record_discovery(connector=connector, streams=streams)


# --- contracts -----------------------------------------------------------------------------------------


def _latest_accepted(*, connector_id: int, stream: str) -> StreamSchemaVersion | None:
    return (
        StreamSchemaVersion.objects.filter(connector_id=connector_id, stream=stream, is_accepted=True)
        .order_by("-version")
        .first()
    )


def _accept(row: StreamSchemaVersion) -> None:
    StreamSchemaVersion.objects.filter(pk=row.pk).update(is_accepted=True)
    row.is_accepted = True
    # Whatever was waiting for a decision about an older version is moot now.
    SchemaChange.objects.filter(
        connector_id=row.connector_id, stream=row.stream, status=SchemaChangeStatus.PENDING
    ).exclude(to_version=row.version).update(status=SchemaChangeStatus.SUPERSEDED)


def _settle(*, connector: Any, latest: StreamSchemaVersion, first_discovery: bool = False) -> Settlement:
    """Hold the stream's latest version to its contract: accept it, keep the accepted one in force
    (discard), or stop the stream behind a pending change (freeze). Idempotent: called on every discovery
    that records a version and at the start of every run's read, so a changed contract takes effect at
    once."""
    if latest.is_accepted:
        return Settlement(status="accepted")
    if latest.is_removed or first_discovery:
        # A vanished stream is not a contract matter (runs reading it fail for want of the stream).
        _accept(latest)
        return Settlement(status="accepted")
    accepted = _latest_accepted(connector_id=latest.connector_id, stream=latest.stream)
    accepted_schema = None if accepted is None or accepted.is_removed else accepted.schema
    diff = schema_diff(stream=latest.stream, old=accepted_schema, new=latest.schema)
    contract = stream_contract_effective(connector_id=latest.connector_id, stream=latest.stream)
    policies = {dim: contract[dim] for dim in drift_dimensions(diff)}
    if all(policy == ContractPolicy.EVOLVE for policy in policies.values()):
        _accept(latest)
        return Settlement(status="accepted", diff=diff, policies=policies)
    frozen = [dim for dim, policy in policies.items() if policy == ContractPolicy.FREEZE]
    if not frozen:
        return Settlement(status="discarded", diff=diff, policies=policies, accepted=accepted)
    change, created = SchemaChange.objects.get_or_create(
        connector_id=latest.connector_id,
        stream=latest.stream,
        to_version=latest.version,
        defaults={
            "workspace_id": latest.workspace_id,
            "from_version": accepted.version if accepted is not None else None,
            "changes": diff.to_dict(),
            "frozen": frozen,
        },
    )
    if created:
        SchemaChange.objects.filter(
            connector_id=latest.connector_id, stream=latest.stream, status=SchemaChangeStatus.PENDING
        ).exclude(pk=change.pk).update(status=SchemaChangeStatus.SUPERSEDED)
        logger.info(
            "schema_change_pending",
            connector_id=latest.connector_id,
            stream=latest.stream,
            change_id=change.id,
        )
    return Settlement(
        status=str(change.status), diff=diff, policies=policies, accepted=accepted, change=change
    )


class SchemaContractViolation(ValidationError):
    """A run may not read a stream: its contract froze a change nobody has approved (or someone rejected)."""


def _describe_diff(diff: StreamChange) -> str:
    parts = []
    if diff.kind == "added":
        parts.append("a new stream")
    if diff.added_fields and diff.kind != "added":
        parts.append("new column(s) " + ", ".join(f"'{n}'" for n in diff.added_fields))
    if diff.type_changes:
        parts.append(
            "type change(s) "
            + ", ".join(f"'{n}' {c['from']} → {c['to']}" for n, c in diff.type_changes.items())
        )
    return "; ".join(parts) or "a change"


# Connector types whose discovery is not re-run at each run's start: it costs remote calls (an API's first
# page of every stream) and infers types from a sample that varies between calls, so every run would risk
# a spurious version. Their versions still come from explicit discoveries, and their contracts still hold
# (a pending change blocks). A connector type may say otherwise with a `discover_on_run` class attribute.
NO_DISCOVERY_ON_RUN = frozenset({"rest_api", "push_stream"})


def _discovers_on_run(slug: str) -> bool:
    from django.http import Http404

    try:
        declared = getattr(connector_type_get(slug=slug), "discover_on_run", None)
    except Http404:
        return False
    return bool(declared) if declared is not None else slug not in NO_DISCOVERY_ON_RUN


def schema_refresh(*, connector: Any) -> list[StreamChange]:
    """Discover the connector now and record what changed (cheap for files and databases; skipped for the
    types in NO_DISCOVERY_ON_RUN). Returns each stream's change, or [] when skipped or when the discovery
    failed: the read itself meets the same failure and reports (or retries) it properly, and a pending
    change recorded before still blocks the run."""
    if not _discovers_on_run(connector.connector_type):
        return []
    try:
        return schema_record_discovery(connector=connector, streams=connector_discover(connector=connector))
    except ValidationError as exc:
        logger.warning("schema_refresh_failed", connector_id=connector.id, error=exc.messages)
        return []


def schema_contract_check(*, connector: Any, stream: StreamSchema, discover: bool = True) -> ContractDecision:
    """At the start of a run's read of `stream` (the schema the run was planned with): unless the run has
    just done so (`discover=False`), discover the connector (schema_refresh), hold the stream to its
    contract and say how to read it. Raises SchemaContractViolation, naming the stream and the pending
    change, when a frozen change stands in the way."""
    if discover:
        schema_refresh(connector=connector)
    latest = (
        StreamSchemaVersion.objects.filter(connector_id=connector.id, stream=stream.name)
        .order_by("-version")
        .first()
    )
    if latest is None or latest.is_removed:
        return ContractDecision(read_schema=stream)
    settlement = _settle(connector=connector, latest=latest)
    if settlement.change is not None:
        change = settlement.change
        frozen = ", ".join(change.frozen)
        what = _describe_diff(settlement.diff) if settlement.diff is not None else "a change"
        if change.status == SchemaChangeStatus.REJECTED:
            message = (
                f"Stream '{stream.name}' of connector '{connector.name}' changed ({what}) and schema change "
                f"#{change.id} was rejected: runs fail until the source returns to the accepted schema or "
                f"the contract ({frozen}: freeze) changes."
            )
        else:
            message = (
                f"Stream '{stream.name}' of connector '{connector.name}' has pending schema change "
                f"#{change.id} ({what}); its contract freezes {frozen}, so an editor must approve or "
                "reject it first."
            )
        raise SchemaContractViolation(message, code="schema_contract")
    if settlement.status == "discarded":
        assert settlement.diff is not None
        return contract_conformer(
            planned=stream,
            discovered=StreamSchema.from_dict(latest.schema),
            diff=settlement.diff,
            policies=settlement.policies,
        )
    return ContractDecision(read_schema=stream)


@transaction.atomic
def stream_contract_set(
    *,
    connector: Any,
    stream: str,
    user: Any,
    new_columns: str = ContractPolicy.EVOLVE,
    type_changes: str = DEFAULT_CONTRACT["type_changes"],
    new_tables: str = ContractPolicy.EVOLVE,
) -> StreamContract:
    """Create or replace the contract of a connector's stream (`stream=""`: the connector's default)."""
    values = {"new_columns": new_columns, "type_changes": type_changes, "new_tables": new_tables}
    for key, value in values.items():
        if value not in ContractPolicy.values:
            raise ValidationError({key: [f"Must be one of {', '.join(ContractPolicy.values)}."]})
    contract, _ = StreamContract.objects.update_or_create(
        connector=connector,
        stream=stream,
        defaults={**values, "workspace_id": connector.workspace_id, "updated_by": user},
    )
    events.emit(
        "schema.contract_updated",
        connector.workspace_id,
        connector,
        {"connector": connector.id, "stream": stream, **values},
    )
    logger.info("schema_contract_set", connector_id=connector.id, stream=stream, **values)
    return contract


@transaction.atomic
def stream_contract_delete(*, contract: StreamContract) -> None:
    events.emit(
        "schema.contract_deleted",
        contract.workspace_id,
        ("connector", contract.connector_id),
        {"connector": contract.connector_id, "stream": contract.stream},
    )
    contract.delete()


def _decide(*, change: SchemaChange, user: Any, status: str) -> SchemaChange:
    locked = SchemaChange.objects.select_for_update().get(pk=change.pk)
    if locked.status != SchemaChangeStatus.PENDING:
        raise ValidationError({"status": [f"Schema change #{locked.id} is {locked.status}, not pending."]})
    locked.status = status
    locked.decided_by = user
    locked.decided_at = timezone.now()
    locked.save(update_fields=["status", "decided_by", "decided_at"])
    events.emit(
        f"schema.change_{status}",
        locked.workspace_id,
        locked,
        {"connector": locked.connector_id, "stream": locked.stream, "version": locked.to_version},
    )
    logger.info(f"schema_change_{status}", change_id=locked.id, connector_id=locked.connector_id)
    return locked


@transaction.atomic
def schema_change_approve(*, change: SchemaChange, user: Any) -> SchemaChange:
    """Accept the change: its version becomes the one pipelines are planned with and runs continue."""
    decided = _decide(change=change, user=user, status=SchemaChangeStatus.APPROVED)
    row = StreamSchemaVersion.objects.get(
        connector_id=decided.connector_id, stream=decided.stream, version=decided.to_version
    )
    _accept(row)
    return decided


@transaction.atomic
def schema_change_reject(*, change: SchemaChange, user: Any) -> SchemaChange:
    """Refuse the change: runs keep failing until the source returns to the accepted schema (a new
    discovery finds no drift) or the contract stops freezing what changed."""
    return _decide(change=change, user=user, status=SchemaChangeStatus.REJECTED)
