"""The data screens in a real browser: the lineage of a destination table (pick it, select a column, see
its source column highlighted on the graph), a stream profiled from the connector page without a run
(histogram, null count), and the top navigation on one line at desktop widths. axe-core checks both
screens (var/e2e-artifacts/)."""

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

ROWS = 200
CSV = "year,month,day,carrier,flight,dep_delay\n" + "".join(
    f"2013,1,{i % 28 + 1},{'UA' if i % 2 else 'AA'},{1000 + i},{'' if i % 8 == 3 else (i * 37) % 181 - 30}\n"
    for i in range(ROWS)
)
NULLS = sum(1 for i in range(ROWS) if i % 8 == 3)  # 25


def _definition() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "flights", "kind": "source", "connector": "flights-csv", "stream": "flights"},
            {"id": "late", "kind": "transform", "step": "filter", "config": {"expression": "dep_delay > 60"}},
            {
                "id": "hours",
                "kind": "transform",
                "step": "derive",
                "config": {"column": "delay_hours", "expression": "dep_delay / 60"},
            },
            {
                "id": "named",
                "kind": "transform",
                "step": "rename",
                "config": {"columns": {"carrier": "airline"}},
            },
            {"id": "warehouse", "kind": "destination", "connector": "warehouse", "table": "late_flights"},
        ],
        "edges": [
            {"from": "flights", "to": "late"},
            {"from": "late", "to": "hours"},
            {"from": "hours", "to": "named"},
            {"from": "named", "to": "warehouse"},
        ],
    }


def _assert_header_on_one_line(page: Any) -> None:
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    first = links.first.bounding_box()
    nav = page.get_by_role("navigation", name="Main").bounding_box()
    header = page.get_by_test_id("app-header").bounding_box()
    # One row of links, and the header no taller than that row plus its padding.
    assert nav["height"] <= first["height"] + 2, (nav, first)
    assert header["height"] <= first["height"] + 24, (header, first)
    sign_out = page.get_by_role("button", name="Sign out").bounding_box()
    assert abs((sign_out["y"] + sign_out["height"] / 2) - (first["y"] + first["height"] / 2)) < 6


def test_a_viewer_traces_a_column_and_profiles_a_stream(
    personas: Any, new_page: Any, settings: Any, e2e_import_dir: Path
) -> None:
    settings.AGGREGATOR_IMPORT_DIR = e2e_import_dir
    (workspace_import_dir(personas.workspace.id) / "flights.csv").write_text(CSV)
    flights = connector_create(workspace=personas.workspace, name="flights-csv", connector_type="csv_file",
                               config={"path": "flights.csv"}, user=personas.owner)  # fmt: skip
    connector_create(workspace=personas.workspace, name="warehouse", connector_type="duckdb",
                     config={"database": "lineage.duckdb"}, user=personas.owner)  # fmt: skip
    pipeline_create(workspace=personas.workspace, name="late flights", definition=_definition(), user=None)

    page = new_page(width=1280, height=900)
    sign_in(page, personas.viewer.email, DEFAULT_PASSWORD, next_path="/lineage")
    nav = page.get_by_role("navigation", name="Main")
    current = nav.get_by_role("link", name="Lineage")
    assert current.get_attribute("aria-current") == "page"
    _assert_header_on_one_line(page)

    page.get_by_label("Destination table").select_option(label="warehouse · late_flights (1 pipeline)")
    page.wait_for_url("**/lineage?connector=*&table=late_flights")
    columns = page.get_by_test_id("lineage-columns")
    delay = columns.get_by_role("button", name="delay_hours")
    delay.wait_for()
    assert "from flights-csv · flights · dep_delay" in delay.inner_text()
    page.get_by_test_id("lineage-canvas").locator(".react-flow__node").first.wait_for()

    source = f"lineage-node-source:{flights.id}:flights"
    delay.click()
    assert delay.get_attribute("aria-pressed") == "true"
    assert page.get_by_test_id(f"{source}:dep_delay").get_attribute("data-highlighted") == "true"
    assert page.get_by_test_id(f"{source}:carrier").get_attribute("data-highlighted") == "false"
    assert page.get_by_test_id("lineage-node-column:delay_hours").get_attribute("data-highlighted") == "true"
    assert page.locator(".react-flow__edge.lineage-edge-on").count() == 4  # source → 3 steps → column
    # Selecting a column on the graph itself: the renamed carrier traces back to `carrier`.
    page.get_by_test_id("lineage-node-column:airline").click()
    assert columns.get_by_role("button", name="airline").get_attribute("aria-pressed") == "true"
    assert page.get_by_test_id(f"{source}:carrier").get_attribute("data-highlighted") == "true"
    assert page.get_by_test_id(f"{source}:dep_delay").get_attribute("data-highlighted") == "false"
    check_screen(page, "lineage")

    page.set_viewport_size({"width": 1600, "height": 900})
    _assert_header_on_one_line(page)
    # On a phone the navigation has a line (or two) of its own and nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 800})
    nav.get_by_role("link", name="Lineage").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"/connectors/view?id={flights.id}")
    page.get_by_role("tab", name="Profile").click()
    page.get_by_role("button", name="Profile flights").click()
    summary = page.get_by_test_id("profile-summary")
    summary.wait_for()
    assert summary.inner_text().startswith(f"{ROWS} rows profiled (the whole stream)")
    delay_profile = page.get_by_test_id("column-profile-dep_delay")
    assert delay_profile.get_by_test_id("nulls").inner_text() == f"nulls {NULLS} (12.5%)"
    histogram = delay_profile.get_by_test_id("histogram-dep_delay")
    histogram.wait_for()
    caption = histogram.locator("figcaption").inner_text()
    counts = [int(part.rsplit(": ", 1)[1]) for part in caption.split(": ", 1)[1].split(", ")]
    assert sum(counts) == ROWS - NULLS
    assert (
        page.get_by_test_id("column-profile-carrier").get_by_test_id("nulls").inner_text() == "nulls 0 (0.0%)"
    )
    check_screen(page, "connector-profile")
