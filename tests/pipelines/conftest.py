"""Pipeline fixtures: connectors on real servers (a CSV import dir, a scratch PostgreSQL database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apps.connectors.services import connector_create
from tests.connectors.conftest import import_dir, pg_config, pg_schema, scratch_conn, scratch_database  # noqa: F401

FLIGHTS_CSV = """year,month,day,dep_delay,carrier,flight,origin
2013,1,1,2,UA,1545,EWR
2013,1,1,4,UA,1714,LGA
2013,1,1,75,AA,1141,JFK
2013,1,1,-1,B6,725,JFK
2013,1,2,101,UA,1696,EWR
2013,1,2,,DL,461,LGA
2013,1,3,61,AA,33,JFK
"""


@pytest.fixture
def flights_file(import_dir: Path) -> Path:  # noqa: F811
    path = import_dir / "flights.csv"
    path.write_text(FLIGHTS_CSV)
    return path


@pytest.fixture
def csv_connector(personas: Any, flights_file: Path) -> Any:
    return connector_create(
        workspace=personas.workspace,
        name="flights-files",
        connector_type="csv_file",
        config={"path": "flights.csv"},
        user=personas.owner,
    )


@pytest.fixture
def pg_connector(personas: Any, pg_config: dict[str, Any]) -> Any:  # noqa: F811
    return connector_create(
        workspace=personas.workspace,
        name="warehouse-pg",
        connector_type="postgres",
        config=pg_config,
        user=personas.owner,
    )


def flights_definition(
    *, expression: str = "dep_delay > 60", write_mode: str = "append", table: str = "late_flights"
) -> dict[str, Any]:
    destination: dict[str, Any] = {
        "id": "warehouse",
        "kind": "destination",
        "connector": "warehouse-pg",
        "table": table,
        "write_mode": write_mode,
    }
    if write_mode == "merge":
        destination["primary_key"] = ["year", "month", "day", "flight", "carrier"]
    return {
        "nodes": [
            {
                "id": "flights",
                "kind": "source",
                "connector": "flights-files",
                "stream": "flights",
                "sync_mode": "full_refresh",
            },
            {"id": "late", "kind": "transform", "step": "filter", "config": {"expression": expression}},
            destination,
        ],
        "edges": [{"from": "flights", "to": "late"}, {"from": "late", "to": "warehouse"}],
    }
