"""SQL dialects: how a database spells identifiers, which column type each field type becomes, and the run
columns' types. The one place identifier quoting is written; every SQL connector builds its statements from
fixed text plus names passed through `Dialect.quote` (values always travel as bound parameters or as bulk
data: COPY, LOAD DATA, Arrow).

PostgreSQL composes its statements with `psycopg.sql.Identifier`, the driver's own quoting (the same rule:
double quotes, inner quotes doubled); its dialect here still owns the length check and the types, and
`quote` gives the same text for the rare statement built outside psycopg.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from aggregator.dataplane import LOADED_AT_COLUMN, RUN_ID_COLUMN, FieldType
from apps.connectors.base import ConnectorError


@dataclass(frozen=True)
class Dialect:
    """What differs between SQL databases, as data.

    - `quote_char`: the identifier quote (`"` for the SQL standard, `` ` `` for MySQL); a quote inside a
      name is doubled.
    - `percent_params`: the driver %-formats statements executed with parameters (PyMySQL), so a `%` in a
      quoted name is doubled as well and every statement must be executed with a parameter tuple.
    - `max_identifier` in `identifier_unit` (bytes for PostgreSQL's NAMEDATALEN, characters elsewhere).
    - `types`: the column type each field type is created as; `run_types`: the two platform columns'.
    """

    name: str
    quote_char: str = '"'
    percent_params: bool = False
    max_identifier: int = 255
    identifier_unit: Literal["bytes", "characters"] = "characters"
    types: Mapping[FieldType, str] = field(default_factory=dict)
    run_types: tuple[str, str] = ("VARCHAR", "TIMESTAMP")

    def spelled(self, name: str) -> str:
        """`name` quoted as the server spells it (in its catalogue, in a CHECK clause it reports). A NUL or
        an empty name is refused: no database accepts one and a driver could cut the statement at it."""
        if not name or "\x00" in name:
            raise ConnectorError(f"{name!r} is not a valid identifier.")
        return self.quote_char + name.replace(self.quote_char, self.quote_char * 2) + self.quote_char

    def quote(self, name: str) -> str:
        """`name` as a quoted identifier to put in a statement this connector's driver executes."""
        quoted = self.spelled(name)
        return quoted.replace("%", "%%") if self.percent_params else quoted

    def qualified(self, *parts: str) -> str:
        """`schema.table` (or `database.table`), each part quoted."""
        return ".".join(self.quote(part) for part in parts)

    def length(self, name: str) -> int:
        return len(name.encode()) if self.identifier_unit == "bytes" else len(name)

    def fits(self, name: str) -> bool:
        return bool(name) and "\x00" not in name and self.length(name) <= self.max_identifier

    def identifier(self, name: str, field: str) -> str:
        """`name` if this database can take it as a schema, table or column name; else a ConnectorError
        pointing at the config field `field`."""
        if not self.fits(name):
            limit = f"1 to {self.max_identifier} {self.identifier_unit}"
            raise ConnectorError(f"{name!r} is not a valid {self.name} name ({limit}).", field=field)
        return name

    def column_type(self, field_type: FieldType) -> str:
        return self.types[FieldType(field_type)]

    @property
    def run_columns(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """The platform's columns every written row gets, with this database's types."""
        return ((RUN_ID_COLUMN, self.run_types[0]), (LOADED_AT_COLUMN, self.run_types[1]))


POSTGRES = Dialect(
    name="PostgreSQL",
    max_identifier=63,
    identifier_unit="bytes",
    types={
        FieldType.STRING: "text",
        FieldType.INTEGER: "bigint",
        FieldType.NUMBER: "double precision",
        FieldType.BOOLEAN: "boolean",
        FieldType.DATE: "date",
        FieldType.DATETIME: "timestamp with time zone",
        FieldType.JSON: "jsonb",
    },
    run_types=("text", "timestamp with time zone"),
)

MYSQL = Dialect(
    name="MySQL",
    quote_char="`",
    percent_params=True,
    max_identifier=64,
    types={
        FieldType.STRING: "LONGTEXT",
        FieldType.INTEGER: "BIGINT",
        FieldType.NUMBER: "DOUBLE",
        FieldType.BOOLEAN: "TINYINT(1)",
        FieldType.DATE: "DATE",
        FieldType.DATETIME: "DATETIME(6)",
        FieldType.JSON: "JSON",
    },
    run_types=("VARCHAR(64)", "DATETIME(6)"),
)

DUCKDB = Dialect(
    name="DuckDB",
    max_identifier=255,
    types={
        FieldType.STRING: "VARCHAR",
        FieldType.INTEGER: "BIGINT",
        FieldType.NUMBER: "DOUBLE",
        FieldType.BOOLEAN: "BOOLEAN",
        FieldType.DATE: "DATE",
        FieldType.DATETIME: "TIMESTAMPTZ",
        FieldType.JSON: "JSON",
    },
    run_types=("VARCHAR", "TIMESTAMPTZ"),
)

# SQLite is only read (the sqlite_file source): no types to create, names as long as the file has them.
SQLITE = Dialect(name="SQLite", max_identifier=1_000_000_000)
