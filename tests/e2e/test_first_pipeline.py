"""A first-time user with no data and no warehouse, in a browser at 1024 x 768: the empty dashboard offers the
sample pipeline; one click makes it, opens the builder on it and runs it, the counts arrive on the canvas,
and the run page shows the rows that landed in the workspace's Local warehouse — which holds exactly the
sample's late flights. axe-core checks the screens (var/e2e-artifacts/)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from apps.pipelines.models import Pipeline, Run, RunStatus
from tests.connectors.test_local_warehouse import admin_url
from tests.factories import DEFAULT_PASSWORD
from tests.pipelines.test_sample import expected_late_flights

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PREFIX = f"e2e_wh_{secrets.token_hex(3)}_"


@pytest.fixture(scope="module")
def live_server_extra_env() -> Iterator[dict[str, str]]:
    """The server and worker get a Local warehouse on the test server, as `up` gives one on its own."""
    yield {"AGGREGATOR_LOCAL_WAREHOUSE_URL": admin_url(), "AGGREGATOR_LOCAL_WAREHOUSE_DB_PREFIX": PREFIX}
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",)):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (PREFIX + "%",)):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_newcomer_gets_from_the_empty_dashboard_to_rows_in_the_local_warehouse(
    personas: Any, new_page: Any
) -> None:
    page = new_page(width=1024, height=768)
    sign_in(page, personas.owner.email, DEFAULT_PASSWORD)
    started = page.get_by_test_id("get-started")
    started.wait_for()
    assert "no pipelines yet" in started.inner_text()
    check_screen(page, "first-pipeline-dashboard")

    page.get_by_role("button", name="Create a sample pipeline").click()
    page.wait_for_url(re.compile(r"/pipelines/builder\?id=\d+&run=\d+"))
    pipeline = Pipeline.objects.get(workspace=personas.workspace)
    assert pipeline.name == "Sample: late flights"
    for node in ("flights", "late", "made_up", "warehouse"):
        page.locator(f'.react-flow__node[data-id="{node}"]').wait_for()

    # The run started with the pipeline: its counts arrive on the canvas.
    page.locator('[data-testid="builder-run-status"][data-status="succeeded"]').wait_for(timeout=90_000)
    expected = expected_late_flights()
    page.locator('[data-testid="counts-warehouse"][data-status="succeeded"]').wait_for()
    counts = page.get_by_test_id("counts-late")
    assert (counts.get_attribute("data-rows-in"), counts.get_attribute("data-rows-out")) == (
        "6099",
        str(len(expected)),
    )
    assert page.get_by_test_id("counts-warehouse").get_attribute("data-rows-in") == str(len(expected))

    # The run page says where the rows landed and shows them, read back from the Local warehouse.
    page.get_by_role("link", name="Open the run").click()
    page.wait_for_url(re.compile(r"/runs/view\?id=\d+"))
    page.locator('[data-testid="run-status"][data-status="succeeded"]').wait_for()
    assert page.get_by_test_id("rows-written").inner_text() == f"{len(expected):,}"
    landed = page.get_by_test_id("destinations").locator('[data-node="warehouse"]')
    assert "Local warehouse" in landed.inner_text()
    assert "public.late_flights" in landed.inner_text()
    assert page.get_by_test_id("landed-warehouse").inner_text() == f"{len(expected):,}"
    page.get_by_role("button", name="Show the rows").click()
    grid = page.get_by_test_id("loaded-rows-warehouse")
    grid.locator("tbody tr").first.wait_for()
    headers = grid.locator("thead th").all_inner_texts()
    assert {"dep_delay", "arr_delay", "made_up_min", "_ag_run_id"} <= {h.strip() for h in headers}
    assert grid.locator("tbody tr").count() == 10  # the first page of the 50 rows read back
    check_screen(page, "first-pipeline-run")

    run = Run.objects.get(pipeline=pipeline)
    assert (run.status, run.rows_read, run.rows_written) == (RunStatus.SUCCEEDED, 6099, len(expected))
    database = f"{PREFIX}{personas.workspace.id}"
    with psycopg.connect(make_conninfo(admin_url(), dbname=database)) as conn:
        loaded = conn.execute(
            "SELECT month, day, flight, carrier, dep_delay, made_up_min FROM public.late_flights "
            "ORDER BY month, day, flight, carrier, dep_delay"
        ).fetchall()
        run_ids = conn.execute("SELECT DISTINCT _ag_run_id FROM public.late_flights").fetchall()
    assert loaded == expected
    assert run_ids == [(str(run.id),)]

    # With a pipeline in the workspace, the dashboard no longer offers the sample.
    page.goto("/")
    page.get_by_test_id("kpi-runs").wait_for()
    assert page.get_by_test_id("get-started").count() == 0
