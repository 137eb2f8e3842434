"""The builder's field mapper against a real destination table: a map_fields node feeding a PostgreSQL
destination whose table exists shows that table's columns as the destination fields, flags the NOT NULL
column without a default until it is mapped, and says so when the table does not exist yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apps.connectors.file_areas import workspace_import_dir
from apps.connectors.services import connector_create
from apps.pipelines.services import pipeline_create
from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_the_mapper_maps_onto_the_columns_of_an_existing_table(
    personas: Any,
    new_page: Any,
    settings: Any,
    e2e_import_dir: Path,
    pg_config: dict[str, Any],
    scratch_conn: Any,
    pg_schema: str,
) -> None:
    settings.AGGREGATOR_IMPORT_DIR = e2e_import_dir
    files = workspace_import_dir(personas.workspace.id)
    (files / "people.csv").write_text("id,name,amount\n1,ann,1.5\n2,bob,2.5\n")
    scratch_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    scratch_conn.execute(
        f'CREATE TABLE "{pg_schema}".people_out (id bigint PRIMARY KEY, full_name text NOT NULL, '
        "amount double precision, origin text NOT NULL DEFAULT 'csv')"
    )
    connector_create(workspace=personas.workspace, name="people-csv", connector_type="csv_file",
                     config={"path": "people.csv"}, user=personas.owner)  # fmt: skip
    connector_create(workspace=personas.workspace, name="warehouse-pg", connector_type="postgres",
                     config=pg_config, user=personas.owner)  # fmt: skip
    pipeline = pipeline_create(
        workspace=personas.workspace,
        name="people out",
        user=personas.owner,
        definition={
            "nodes": [
                {"id": "people", "kind": "source", "connector": "people-csv", "stream": "people",
                 "sync_mode": "full_refresh", "position": {"x": 0, "y": 0}},
                {"id": "mapped", "kind": "transform", "step": "map_fields", "position": {"x": 300, "y": 0},
                 "config": {"mappings": [{"from": "id", "to": "id"}, {"from": "amount", "to": "amount"}]}},
                {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg", "table": "people_out",
                 "write_mode": "append", "position": {"x": 600, "y": 0}},
            ],
            "edges": [{"from": "people", "to": "mapped"}, {"from": "mapped", "to": "warehouse"}],
        },
    )  # fmt: skip

    page = new_page(width=1600, height=1000)
    sign_in(page, personas.editor.email, DEFAULT_PASSWORD, next_path=f"/pipelines/builder?id={pipeline.id}")
    page.get_by_test_id("canvas-node-mapped").click()
    mapper = page.get_by_test_id("field-mapper")
    mapper.locator('[data-testid="destination-table"][data-status="found"]').wait_for()
    note = mapper.get_by_test_id("destination-table").inner_text()
    assert f"Columns of table {pg_schema}.people_out" in note
    fields = mapper.locator("[data-destination-field]")
    assert [fields.nth(i).get_attribute("data-destination-field") for i in range(fields.count())] == [
        "id",
        "full_name",
        "amount",
        "origin",
    ]
    # NOT NULL without a default must be mapped; NOT NULL with a default (origin) need not be.
    flagged = mapper.get_by_test_id("unmapped-required").inner_text()
    assert flagged.endswith("Required and not mapped: full_name")
    check_screen(page, "field-mapper-table-01-required")

    mapper.get_by_label("full_name string required").select_option("name")
    mapper.get_by_test_id("unmapped-required").wait_for(state="detached")
    mapper.get_by_role("button", name="Validate against these columns").click()
    mapper.get_by_role("button", name="Validate against these columns").wait_for(state="detached")
    check_screen(page, "field-mapper-table-02-mapped")

    # A table not made yet: the mapper says so and keeps to the step's own fields.
    page.get_by_test_id("canvas-node-warehouse").click()
    page.get_by_label("Table").fill("people_new")
    page.get_by_test_id("canvas-node-mapped").click()
    page.locator('[data-testid="destination-table"][data-status="missing"]').wait_for()
    assert "does not exist yet" in page.get_by_test_id("destination-table").inner_text()
