"""Existing destination tables: `describe_table` / `list_tables` of the PostgreSQL, MySQL/MariaDB and DuckDB
destinations against real tables (NOT NULL, defaults, identity, primary keys), and the API over them:
the personas, names that try to inject SQL, a table not made yet, a server that cannot be reached."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from aggregator.dataplane import FieldType
from apps.connectors.base import ConnectorError, TableColumn
from apps.connectors.plugins.duckdb_dest import DuckDbDestination
from apps.connectors.plugins.mysql import MySqlConnector
from apps.connectors.plugins.postgres import PostgresDestination
from apps.connectors.services import connector_create
from tests.connectors.conftest import CANARY_PASSWORD, bound

pytestmark = pytest.mark.django_db

INJECTIONS = [
    'people"; DROP TABLE victims; --',
    "people' OR '1'='1",
    "people`; DROP TABLE victims; --",
    "people; DROP TABLE victims",
]


def _col(name: str, type_: FieldType, *, nullable: bool, default: bool = False, pk: bool = False) -> Any:
    return (name, type_, nullable, default, pk)


def _summary(columns: tuple[TableColumn, ...]) -> list[Any]:
    return [(c.name, c.type, c.nullable, c.has_default, c.primary_key) for c in columns]


# --- PostgreSQL ----------------------------------------------------------------------------------------

PG_TABLE = """
CREATE TABLE {schema}.people (
    tenant text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    name text NOT NULL,
    nickname varchar(40),
    score numeric(6, 2) NOT NULL DEFAULT 0,
    active boolean NOT NULL DEFAULT true,
    born date,
    seen_at timestamptz NOT NULL DEFAULT now(),
    tags jsonb,
    ref uuid,
    PRIMARY KEY (id, tenant)
)
"""


@pytest.fixture
def pg_tables(scratch_conn: psycopg.Connection[Any], pg_schema: str) -> Iterator[None]:
    scratch_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    scratch_conn.execute(PG_TABLE.format(schema=f'"{pg_schema}"'))
    scratch_conn.execute(f'CREATE TABLE "{pg_schema}".victims (id int)')
    scratch_conn.execute(f'CREATE VIEW "{pg_schema}".people_view AS SELECT name FROM "{pg_schema}".people')
    yield
    scratch_conn.execute(f'DROP SCHEMA "{pg_schema}" CASCADE')


def test_postgres_describes_types_nullability_defaults_and_the_primary_key(
    pg_config: dict[str, Any], pg_tables: None
) -> None:
    dest = PostgresDestination()
    config = dest.validate_config(pg_config)
    table = dest.describe_table(config, "people")
    assert table is not None
    assert (table.schema, table.name) == (pg_config["schema"], "people")
    assert table.primary_key == ("id", "tenant")  # the key's order, not the columns'
    assert _summary(table.columns) == [
        _col("tenant", FieldType.STRING, nullable=False, pk=True),
        _col("id", FieldType.INTEGER, nullable=False, default=True, pk=True),  # identity
        _col("name", FieldType.STRING, nullable=False),
        _col("nickname", FieldType.STRING, nullable=True),
        _col("score", FieldType.NUMBER, nullable=False, default=True),
        _col("active", FieldType.BOOLEAN, nullable=False, default=True),
        _col("born", FieldType.DATE, nullable=True),
        _col("seen_at", FieldType.DATETIME, nullable=False, default=True),
        _col("tags", FieldType.JSON, nullable=True),
        _col("ref", FieldType.STRING, nullable=True),
    ]
    assert [c.name for c in table.columns if c.required] == ["tenant", "name"]
    assert {c.name: c.db_type for c in table.columns}["ref"] == "uuid"
    assert dest.list_tables(config) == ["people", "victims"]  # views are not write targets


def test_postgres_unknown_tables_views_and_injections_are_not_found(
    pg_config: dict[str, Any], pg_tables: None, scratch_conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    dest = PostgresDestination()
    config = dest.validate_config(pg_config)
    assert dest.describe_table(config, "nope") is None
    assert dest.describe_table(config, "people_view") is None
    for name in INJECTIONS:
        assert dest.describe_table(config, name) is None
    with pytest.raises(ConnectorError) as excinfo:
        dest.describe_table(config, "x" * 64)
    assert excinfo.value.field == "table"
    count = scratch_conn.execute(f'SELECT count(*) FROM "{pg_schema}".victims').fetchone()
    assert count == (0,)


def test_postgres_schema_that_does_not_exist_has_no_tables(pg_config: dict[str, Any]) -> None:
    dest = PostgresDestination()
    config = dest.validate_config(pg_config)
    assert dest.list_tables(config) == []
    assert dest.describe_table(config, "people") is None


# --- MySQL / MariaDB -------------------------------------------------------------------------------------


def _mysql_root() -> Any:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)


@pytest.fixture
def mysql_database(settings: Any) -> Iterator[str]:
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    database = f"ag_tables_{uuid.uuid4().hex[:10]}"
    conn = _mysql_root()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(
            f"CREATE TABLE `{database}`.people ("
            "  id BIGINT NOT NULL AUTO_INCREMENT,"
            "  tenant VARCHAR(20) NOT NULL,"
            "  name VARCHAR(100) NOT NULL,"
            "  nickname VARCHAR(40) NULL,"
            "  score DECIMAL(6,2) NOT NULL DEFAULT 0,"
            "  active TINYINT(1) NOT NULL DEFAULT 1,"
            "  born DATE NULL,"
            "  seen_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
            "  tags JSON NULL,"
            "  label VARCHAR(10) NOT NULL DEFAULT 'NULL',"
            "  PRIMARY KEY (tenant, id), KEY (id))"
        )
        cur.execute(f"CREATE TABLE `{database}`.victims (id INT)")
        cur.execute(f"CREATE VIEW `{database}`.people_view AS SELECT name FROM `{database}`.people")
    try:
        yield database
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


def _mysql_config(database: str) -> Any:
    return MySqlConnector.validate_config(
        {"host": "127.0.0.1", "port": 3306, "user": "root", "database": database, "ssl_mode": "disabled"}
    )


def test_mysql_describes_types_nullability_defaults_and_the_primary_key(mysql_database: str) -> None:
    dest = MySqlConnector()
    config = _mysql_config(mysql_database)
    table = dest.describe_table(config, "people")
    assert table is not None
    assert (table.schema, table.name) == (mysql_database, "people")
    assert table.primary_key == ("tenant", "id")
    assert _summary(table.columns) == [
        _col("id", FieldType.INTEGER, nullable=False, default=True, pk=True),  # auto-increment
        _col("tenant", FieldType.STRING, nullable=False, pk=True),
        _col("name", FieldType.STRING, nullable=False),
        _col("nickname", FieldType.STRING, nullable=True),
        _col("score", FieldType.NUMBER, nullable=False, default=True),
        _col("active", FieldType.BOOLEAN, nullable=False, default=True),
        _col("born", FieldType.DATE, nullable=True),
        _col("seen_at", FieldType.DATETIME, nullable=False, default=True),
        _col("tags", FieldType.JSON, nullable=True),  # MariaDB: LONGTEXT with a json_valid check
        _col("label", FieldType.STRING, nullable=False, default=True),  # the text 'NULL' is a default
    ]
    assert [c.name for c in table.columns if c.required] == ["tenant", "name"]
    assert dest.list_tables(config) == ["people", "victims"]


def test_mysql_unknown_tables_views_and_injections_are_not_found(mysql_database: str) -> None:
    dest = MySqlConnector()
    config = _mysql_config(mysql_database)
    assert dest.describe_table(config, "nope") is None
    assert dest.describe_table(config, "people_view") is None
    for name in INJECTIONS:
        assert dest.describe_table(config, name) is None
    with pytest.raises(ConnectorError) as excinfo:
        dest.describe_table(config, "x" * 65)
    assert excinfo.value.field == "table"
    conn = _mysql_root()
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{mysql_database}`.victims")
        assert cur.fetchone() == (0,)
    conn.close()


# --- DuckDB ----------------------------------------------------------------------------------------------


def test_duckdb_describes_a_table_and_never_creates_the_file(data_dir: Path) -> None:
    dest = DuckDbDestination()
    config = bound(dest, {"database": "wh.duckdb"})
    assert dest.list_tables(config) == []
    assert dest.describe_table(config, "people") is None
    assert not (data_dir / "wh.duckdb").exists()

    con = duckdb.connect(str(data_dir / "wh.duckdb"))
    con.execute(
        "CREATE TABLE people (tenant VARCHAR NOT NULL, id BIGINT NOT NULL, name VARCHAR NOT NULL, "
        "score DECIMAL(6,2) NOT NULL DEFAULT 0, active BOOLEAN, born DATE, seen_at TIMESTAMPTZ, "
        "tags JSON, ratio DOUBLE, ref UUID, PRIMARY KEY (id, tenant))"
    )
    con.execute("CREATE TABLE victims (id INTEGER)")
    con.execute("CREATE VIEW people_view AS SELECT name FROM people")
    con.close()

    table = dest.describe_table(config, "people")
    assert table is not None
    assert table.primary_key == ("id", "tenant")
    assert _summary(table.columns) == [
        _col("tenant", FieldType.STRING, nullable=False, pk=True),
        _col("id", FieldType.INTEGER, nullable=False, pk=True),
        _col("name", FieldType.STRING, nullable=False),
        _col("score", FieldType.NUMBER, nullable=False, default=True),
        _col("active", FieldType.BOOLEAN, nullable=True),
        _col("born", FieldType.DATE, nullable=True),
        _col("seen_at", FieldType.DATETIME, nullable=True),
        _col("tags", FieldType.JSON, nullable=True),
        _col("ratio", FieldType.NUMBER, nullable=True),
        _col("ref", FieldType.STRING, nullable=True),
    ]
    assert [c.name for c in table.columns if c.required] == ["tenant", "id", "name"]
    assert dest.list_tables(config) == ["people", "victims"]
    assert dest.describe_table(config, "people_view") is None
    for name in INJECTIONS:
        assert dest.describe_table(config, name) is None
    con = duckdb.connect(str(data_dir / "wh.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM victims").fetchone() == (0,)
    con.close()


# --- API -------------------------------------------------------------------------------------------------


def _url(connector: Any, table: str | None = None) -> str:
    base = f"/api/v1/connectors/{connector.id}/tables/"
    return base if table is None else f"{base}{table}/"


def test_viewer_lists_tables_and_reads_a_table(
    personas: Any, client_for: Any, pg_connector: Any, pg_tables: None, pg_schema: str
) -> None:
    client = client_for(personas.viewer)
    listed = client.get(_url(pg_connector))
    assert listed.status_code == 200
    tables = ["people", "victims"]
    assert listed.json() == {"connector": pg_connector.id, "schema": pg_schema, "tables": tables}

    response = client.get(_url(pg_connector, "people"))
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("connector", "schema", "name", "primary_key")} == {
        "connector": pg_connector.id,
        "schema": pg_schema,
        "name": "people",
        "primary_key": ["id", "tenant"],
    }
    assert body["columns"][0] == {
        "name": "tenant",
        "type": "string",
        "nullable": False,
        "required": True,
        "has_default": False,
        "primary_key": True,
        "db_type": "text",
    }
    assert body["columns"][4] == {
        "name": "score",
        "type": "number",
        "nullable": False,
        "required": False,
        "has_default": True,
        "primary_key": False,
        "db_type": "numeric",
    }
    assert CANARY_PASSWORD not in response.content.decode() + listed.content.decode()


def test_outsider_gets_404_and_anonymous_401(
    personas: Any, client_for: Any, pg_connector: Any, pg_tables: None
) -> None:
    outsider = client_for(personas.outsider)
    for url in (_url(pg_connector), _url(pg_connector, "people")):
        assert outsider.get(url).status_code == 404
        assert client_for(None).get(url).status_code == 401
    assert client_for(personas.viewer).get("/api/v1/connectors/999999/tables/").status_code == 404


def test_a_table_not_made_yet_is_404_and_injections_change_nothing(
    personas: Any,
    client_for: Any,
    pg_connector: Any,
    pg_tables: None,
    scratch_conn: psycopg.Connection[Any],
    pg_schema: str,
) -> None:
    client = client_for(personas.viewer)
    missing = client.get(_url(pg_connector, "late_flights"))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert "late_flights" in missing.json()["error"]["message"]
    for name in INJECTIONS:
        response = client.get(_url(pg_connector, name.replace(" ", "%20").replace(";", "%3B")))
        assert response.status_code == 404, name
    assert scratch_conn.execute(f'SELECT count(*) FROM "{pg_schema}".victims').fetchone() == (0,)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 64, "1 to 63 bytes"),
        ("x" * 256, "at most 255"),
        ("%20people", "spaces"),
        ("peo%09ple", "control characters"),
        ("peo%00ple", "control characters"),
    ],
)
def test_invalid_table_names_are_400_on_table(
    personas: Any, client_for: Any, pg_connector: Any, name: str, message: str
) -> None:
    response = client_for(personas.viewer).get(_url(pg_connector, name))
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["table"]
    assert message in fields["table"][0]


def test_a_source_or_a_file_destination_has_no_tables(
    personas: Any, client_for: Any, csv_connector: Any, data_dir: Path
) -> None:
    files = connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="lake",
        connector_type="files",
        config={"directory": "lake"},
    )
    client = client_for(personas.viewer)
    for connector in (csv_connector, files):
        response = client.get(_url(connector, "people"))
        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["connector"]
        assert client.get(_url(connector)).status_code == 400


def test_unreachable_server_is_a_clear_400_without_the_password(
    personas: Any, client_for: Any, pg_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    connector = connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="down",
        connector_type="postgres",
        config={**pg_config, "port": 1, "password": CANARY_PASSWORD, "connect_timeout": 2},
    )
    caplog.set_level(logging.DEBUG)
    client = client_for(personas.viewer)
    for url in (_url(connector), _url(connector, "people")):
        response = client.get(url)
        assert response.status_code == 400
        error = response.json()["error"]
        assert list(error["fields"]) == ["config.host"]
        assert "Cannot connect to 127.0.0.1:1" in error["message"]
        assert CANARY_PASSWORD not in response.content.decode()
    assert CANARY_PASSWORD not in caplog.text


def test_mysql_and_duckdb_connectors_through_the_api(
    personas: Any, client_for: Any, mysql_database: str, data_dir: Path
) -> None:
    mysql = connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="shop",
        connector_type="mysql",
        config={"host": "127.0.0.1", "user": "root", "database": mysql_database, "ssl_mode": "disabled"},
    )
    con = duckdb.connect(str(data_dir / "wh.duckdb"))
    con.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, total DOUBLE NOT NULL)")
    con.close()
    duck = connector_create(
        workspace=personas.workspace,
        user=personas.owner,
        name="wh",
        connector_type="duckdb",
        config={"database": "wh.duckdb"},
    )
    client = client_for(personas.viewer)
    people = client.get(_url(mysql, "people")).json()
    assert people["schema"] == mysql_database
    assert [c["name"] for c in people["columns"] if c["required"]] == ["tenant", "name"]
    assert client.get(_url(mysql)).json()["tables"] == ["people", "victims"]
    orders = client.get(_url(duck, "orders")).json()
    assert orders == {
        "connector": duck.id,
        "schema": "main",
        "name": "orders",
        "primary_key": ["id"],
        "columns": [
            {
                "name": "id",
                "type": "integer",
                "nullable": False,
                "required": True,
                "has_default": False,
                "primary_key": True,
                "db_type": "BIGINT",
            },
            {
                "name": "total",
                "type": "number",
                "nullable": False,
                "required": True,
                "has_default": False,
                "primary_key": False,
                "db_type": "DOUBLE",
            },
        ],
    }
    assert client.get(_url(duck, "missing")).status_code == 404
