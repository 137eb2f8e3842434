"""PostgreSQL: a destination (`postgres`, `destination.py`: bulk loads with COPY, one transaction per write),
a source (`postgres_source`, `source.py`) and the Local warehouse (`local_warehouse`, `local_warehouse.py`),
a PostgreSQL database per workspace on the platform's own server that reads and writes through the other
two. Connection settings and sessions are in `connection.py`, the COPY encoding in `loading.py`, the type
mapping in `types.py`; identifier rules, the reserved columns and the cursor policy are the SDK's
(`apps/connectors/sdk/`).

The registry registers the connector types this package exports (`apps/connectors/registry.py`)."""

from .connection import CustomQuery, ManagedPostgresConfig, PostgresConfig, PostgresSourceConfig
from .destination import PostgresDestination
from .local_warehouse import LocalWarehouse, LocalWarehouseConfig
from .source import PostgresSource

__all__ = [
    "CustomQuery",
    "LocalWarehouse",
    "LocalWarehouseConfig",
    "ManagedPostgresConfig",
    "PostgresConfig",
    "PostgresDestination",
    "PostgresSource",
    "PostgresSourceConfig",
]
