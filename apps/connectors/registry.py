"""The registry of connector types: the built-in plugins (a module `apps/connectors/plugins/<name>.py`, or a
package `apps/connectors/plugins/<name>/` exporting its types from its `__init__`) and whatever installed
packages expose in the entry-point group `aggregator.connectors`, e.g. in a plugin's pyproject.toml:

    [project.entry-points."aggregator.connectors"]
    my_api = "my_package.connector:MyApiConnector"

Loaded once, lazily, on first use. A built-in type wins over an entry point with the same slug (a package
cannot replace a native connector by accident); a plugin module or entry point that fails to import is
logged and skipped, so one broken plugin cannot take the others down.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from importlib.metadata import entry_points
from types import ModuleType

from aggregator.logging import get_logger

from .base import ConnectorKind, ConnectorType

logger = get_logger(__name__)

ENTRY_POINT_GROUP = "aggregator.connectors"
PLUGIN_PACKAGE = "apps.connectors.plugins"


class UnknownConnectorType(LookupError):
    pass


def _is_connector_type(obj: object) -> bool:
    return (
        isinstance(obj, type)
        and issubclass(obj, ConnectorType)
        and obj is not ConnectorType
        and isinstance(getattr(obj, "slug", None), str)
    )


class ConnectorRegistry:
    def __init__(
        self, *, plugin_package: str | None = PLUGIN_PACKAGE, entry_point_group: str = ENTRY_POINT_GROUP
    ):
        self._plugin_package = plugin_package
        self._group = entry_point_group
        self._types: dict[str, type[ConnectorType]] = {}
        self._origins: dict[str, str] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def register(self, connector_type: type[ConnectorType], *, origin: str = "code") -> None:
        if not _is_connector_type(connector_type):
            raise TypeError(f"{connector_type!r} is not a ConnectorType subclass with a slug.")
        slug = connector_type.slug
        existing = self._types.get(slug)
        if existing is not None and existing is not connector_type:
            logger.warning("connector_type_slug_taken", slug=slug, kept=self._origins[slug], ignored=origin)
            return
        self._types[slug] = connector_type
        self._origins[slug] = origin

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            if self._plugin_package:
                package = importlib.import_module(self._plugin_package)
                for info in pkgutil.iter_modules(package.__path__):
                    try:
                        module = importlib.import_module(f"{self._plugin_package}.{info.name}")
                    except Exception as exc:
                        # One broken plugin must not take every other connector type down with it.
                        logger.error("connector_plugin_import_failed", plugin=info.name, error=repr(exc))
                        continue
                    self._register_module(module, origin=f"builtin:{info.name}")
            for ep in entry_points(group=self._group):
                try:
                    loaded = ep.load()
                except Exception as exc:  # a broken plugin package must not take the platform down
                    logger.warning("connector_entry_point_failed", entry_point=ep.name, error=repr(exc))
                    continue
                origin = f"entry_point:{ep.value}"
                if isinstance(loaded, ModuleType):
                    self._register_module(loaded, origin=origin)
                elif _is_connector_type(loaded):
                    self.register(loaded, origin=origin)
                else:
                    logger.warning("connector_entry_point_not_a_type", entry_point=ep.name)
            self._loaded = True

    def _register_module(self, module: ModuleType, *, origin: str) -> None:
        # A plugin is a module or a package (`plugins/postgres/`): a package registers the types it exports
        # from its own modules, never one it merely imported from elsewhere.
        inside = module.__name__ + "." if hasattr(module, "__path__") else None
        for obj in vars(module).values():
            if _is_connector_type(obj) and (
                obj.__module__ == module.__name__ or (inside and obj.__module__.startswith(inside))
            ):
                self.register(obj, origin=origin)

    def get(self, slug: str) -> type[ConnectorType]:
        self._load()
        try:
            return self._types[slug]
        except KeyError:
            raise UnknownConnectorType(f"No connector type {slug!r}.") from None

    def all(self, *, kind: ConnectorKind | None = None) -> list[type[ConnectorType]]:
        self._load()
        types = sorted(self._types.values(), key=lambda t: t.slug)
        if kind is None:
            return types
        return [t for t in types if t.kind in (kind, ConnectorKind.BOTH)]

    def origin(self, slug: str) -> str:
        self._load()
        return self._origins[slug]

    def __contains__(self, slug: object) -> bool:
        self._load()
        return slug in self._types


registry = ConnectorRegistry()


def get_connector_type(slug: str) -> type[ConnectorType]:
    return registry.get(slug)
