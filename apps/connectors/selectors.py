"""Reads of connectors and connector types, always limited to what the caller may see."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.http import Http404

from aggregator.crypto import decrypt_json
from apps.users.selectors import Role, User, workspace_ids_for_user

from .base import ConnectorConfig, ConnectorKind, ConnectorType

# Connector is re-exported as the connectors app's public type, for other apps' annotations (they may not
# import connectors.models).
from .models import Connector
from .registry import UnknownConnectorType, registry

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser


def connector_type_list(*, kind: ConnectorKind | None = None) -> list[type[ConnectorType]]:
    return [connector_type for connector_type in registry.all(kind=kind) if connector_type.available()]


def connector_type_get(*, slug: str) -> type[ConnectorType]:
    try:
        return registry.get(slug)
    except UnknownConnectorType:
        raise Http404("No such connector type.") from None


def connector_list_for_user(
    *, user: User | AnonymousUser, min_role: Role = Role.VIEWER
) -> QuerySet[Connector]:
    return (
        Connector.objects.filter(workspace_id__in=workspace_ids_for_user(user=user, min_role=min_role))
        .select_related("created_by", "updated_by")
        .order_by("name", "id")
    )


def connector_get_for_user(*, user: User | AnonymousUser, connector_id: int | str) -> Connector:
    """The connector if the caller may see it; otherwise 404, whether or not it exists."""
    try:
        return connector_list_for_user(user=user).get(id=int(connector_id))
    except (Connector.DoesNotExist, ValueError, TypeError):
        raise Http404("No such connector.") from None


def connector_list_for_workspace(*, workspace_id: int) -> QuerySet[Connector]:
    """Every connector of one workspace by name, unauthorised: for a caller that has authorised the
    workspace already (the workspace export and import); not for request handlers."""
    return Connector.objects.filter(workspace_id=workspace_id).order_by("name", "id")


def connector_find_by_name(*, workspace_id: int, name: str) -> Connector | None:
    """The workspace's connector of this name, if any (names are unique in a workspace); unauthorised."""
    return Connector.objects.filter(workspace_id=workspace_id, name=name).first()


def connector_get_by_ref(*, workspace_id: int, ref: str | int) -> Connector:
    """A connector of one workspace by id or by name (how a pipeline definition names it). For the engine,
    which has already authorised the pipeline; not for request handlers."""
    queryset = Connector.objects.filter(workspace_id=workspace_id)
    try:
        if isinstance(ref, int) or str(ref).isdigit():
            found = queryset.filter(id=int(ref)).first()
            if found is not None:
                return found
        return queryset.get(name=str(ref))
    except Connector.DoesNotExist:
        raise Http404(f"No connector {ref!r} in this workspace.") from None


def connector_secrets(connector: Connector) -> dict[str, Any]:
    """The decrypted secret fields. Never log, serialise or return these."""
    if not connector.secrets_encrypted:
        return {}
    return dict(decrypt_json(connector.secrets_encrypted))


def connector_secret_status(connector: Connector) -> dict[str, dict[str, bool]]:
    """`{"password": {"is_set": true}}` for every secret field of the type: what the API shows instead."""
    try:
        secret_names = registry.get(connector.connector_type).secret_fields()
    except UnknownConnectorType:
        secret_names = []
    stored = connector_secrets(connector) if connector.secrets_encrypted else {}
    return {name: {"is_set": stored.get(name) not in (None, "")} for name in secret_names}


def connector_runtime(connector: Connector) -> tuple[ConnectorType, ConnectorConfig]:
    """The connector's type (an instance) and its validated config with secrets, ready for
    check/discover/read/write. Raises ConfigInvalid if a type's config model has tightened since."""
    connector_type = registry.get(connector.connector_type)()
    config = connector_type.validate_config({**connector.config, **connector_secrets(connector)})
    return connector_type, connector_type.bind(config, workspace_id=connector.workspace_id)
