"""Reading a destination's existing tables for a person (the API's `connectors/{id}/tables/`), so fields can
be mapped onto a real table. Read-only: nothing is created, not even a DuckDB file.

Kept beside `services.py` (the other operations that run a connector for a person) with the same error
rules: a config that no longer validates is a 400 on `config.<field>`, a connector error on its field; a
bad table name is a 400 on `table`; a type that has no tables is a 400 on `connector`.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from aggregator.logging import get_logger

from .base import ConfigInvalid, ConnectorConfig, ConnectorError, ConnectorType, TableDescription
from .models import Connector
from .selectors import connector_runtime
from .services import connector_error

logger = get_logger(__name__)


def _table_runtime(connector: Connector) -> tuple[ConnectorType, ConnectorConfig]:
    try:
        connector_type, config = connector_runtime(connector)
    except ConfigInvalid as exc:
        raise ValidationError({f"config.{path}": messages for path, messages in exc.errors.items()}) from None
    if not (connector_type.is_destination() and connector_type.describes_tables):
        raise ValidationError(
            {"connector": [f"{connector_type.title} connectors have no tables to describe."]}
        )
    return connector_type, config


def _namespace(config: ConnectorConfig) -> str:
    # Where the built-in destinations write: a schema (PostgreSQL, DuckDB) or, for MySQL, the database.
    return str(getattr(config, "db_schema", None) or getattr(config, "database", None) or "")


def connector_table_list(*, connector: Connector) -> tuple[str, list[str]]:
    """The schema (or database) the destination writes to, and the names of the tables in it."""
    connector_type, config = _table_runtime(connector)
    try:
        tables = connector_type.list_tables(config)
    except ConnectorError as exc:
        raise connector_error(exc, top_level=("table", "connector")) from None
    logger.info("connector_tables_listed", connector_id=connector.id, tables=len(tables))
    return _namespace(config), tables


def connector_table_describe(*, connector: Connector, table: str) -> TableDescription | None:
    """One existing table of the destination with its columns, or None when it does not exist (yet)."""
    connector_type, config = _table_runtime(connector)
    try:
        description = connector_type.describe_table(config, table)
    except ConnectorError as exc:
        raise connector_error(exc, top_level=("table", "connector")) from None
    logger.info("connector_table_described", connector_id=connector.id, found=description is not None)
    return description
