"""MySQL / MariaDB (`mysql`): one connector type that is both a source and a destination.

- `connector.py`: the type (check, discovery, reads, writes, table descriptions);
- `config.py`: its config model, custom queries and limits;
- `session.py`: connections (SSRF guard, TLS, timeouts), error translation, the guarded LOAD DATA LOCAL
  INFILE connection;
- `types.py`: column types, server text as Arrow, cursor values;
- `writer.py`: the destination's scratch-table write with its undo list.

Identifier quoting, the reserved platform columns and the incremental-cursor policy are the SDK's
(`apps/connectors/sdk/`)."""

from apps.connectors.sdk.cursor import CursorTracker

from .config import CustomQuery, MySqlConfig, SslMode, validate_select
from .connector import MySqlConnector
from .session import LOAD_DATA_GUARD_AVAILABLE, quote_ident
from .types import column_to_arrow, field_type_for, rows_to_table

__all__ = [
    "LOAD_DATA_GUARD_AVAILABLE",
    "CursorTracker",
    "CustomQuery",
    "MySqlConfig",
    "MySqlConnector",
    "SslMode",
    "column_to_arrow",
    "field_type_for",
    "quote_ident",
    "rows_to_table",
    "validate_select",
]
