"""The visual pipeline builder in a real browser against the real server and worker: an editor drags a CSV
source, a filter, a derive step and a PostgreSQL destination onto the canvas, connects them, configures them
in the side panel (a mistyped expression is flagged inline as it is typed), previews the filter before the
pipeline is first saved (fewer rows out than in), creates it, runs it from the builder and watches each
node's counts go live on the canvas, then finds the rows in PostgreSQL with the derived column. axe-core
checks the builder screens (var/e2e-artifacts/)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from apps.connectors.file_areas import workspace_import_dir
from apps.connectors.services import connector_create
from apps.pipelines.models import Pipeline, Run
from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

ROWS = 400
DELAYS = [(i * 37) % 181 - 30 for i in range(ROWS)]  # -30 … 150 minutes, spread over the file
CSV = "year,month,day,carrier,flight,dep_delay\n" + "".join(
    f"2013,1,{i % 28 + 1},{'UA' if i % 2 else 'AA'},{1000 + i},{d}\n" for i, d in enumerate(DELAYS)
)
LATE = sum(1 for d in DELAYS if d > 60)
PREVIEW_LATE = sum(1 for d in DELAYS[:100] if d > 60)


def _drop(page: Any, palette_item: str, x: int, y: int) -> None:
    page.locator(f'[data-palette="{palette_item}"]').drag_to(
        page.get_by_test_id("canvas"), target_position={"x": x, "y": y}
    )


def _connect(page: Any, source: str, target: str) -> None:
    """Drag from a node's output handle to another node's input handle, as a person does."""
    start = page.locator(f'.react-flow__node[data-id="{source}"] .react-flow__handle.source').bounding_box()
    end = page.locator(f'.react-flow__node[data-id="{target}"] .react-flow__handle.target').bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()
    # a straight edge has no height, which Playwright calls hidden
    page.locator(f'.react-flow__edge[data-id="{source}->{target}"]').wait_for(state="attached")


def test_an_editor_builds_previews_runs_and_watches_the_flights_pipeline_on_the_canvas(
    personas: Any,
    new_page: Any,
    settings: Any,
    e2e_import_dir: Path,
    pg_config: dict[str, Any],
    scratch_conn: Any,
) -> None:
    settings.AGGREGATOR_IMPORT_DIR = e2e_import_dir
    (workspace_import_dir(personas.workspace.id) / "flights.csv").write_text(CSV)
    connector_create(workspace=personas.workspace, name="flights-csv", connector_type="csv_file",
                     config={"path": "flights.csv"}, user=personas.owner)  # fmt: skip
    connector_create(workspace=personas.workspace, name="warehouse-pg", connector_type="postgres",
                     config=pg_config, user=personas.owner)  # fmt: skip

    page = new_page(width=1600, height=1000)
    sign_in(page, personas.editor.email, DEFAULT_PASSWORD, next_path="/pipelines")
    page.get_by_role("link", name="Build visually").click()
    page.wait_for_url("**/pipelines/builder")
    page.get_by_test_id("canvas").wait_for()

    # The palette: the CSV connector's streams (discovered here), the step library, the destinations.
    page.get_by_role("button", name="Discover streams of flights-csv").click()
    page.locator('[data-palette="flights"]').wait_for()
    page.get_by_label("Search steps").fill("filter")
    page.locator('[data-palette="Filter rows"]').wait_for()
    assert page.locator('[data-palette="Join"]').count() == 0

    _drop(page, "flights", 20, 160)
    _drop(page, "Filter rows", 270, 160)
    page.get_by_label("Search steps").fill("derive")
    _drop(page, "Derive a column", 270, 320)
    _drop(page, "warehouse-pg", 520, 160)
    for node_id in ("flights", "filter", "derive", "warehouse_pg"):
        page.get_by_test_id(f"canvas-node-{node_id}").wait_for()
    page.get_by_role("button", name="Zoom to fit").click()

    # Undo and redo from the keyboard (the pane has the focus, not a form field).
    page.get_by_test_id("canvas").locator(".react-flow__pane").click(position={"x": 40, "y": 400})
    page.keyboard.press("Control+z")
    page.get_by_test_id("canvas-node-warehouse_pg").wait_for(state="detached")
    page.locator('button[aria-label="Redo"]:not([disabled])').wait_for()
    page.keyboard.press("Control+Shift+z")
    page.get_by_test_id("canvas-node-warehouse_pg").wait_for()

    _connect(page, "flights", "filter")
    _connect(page, "filter", "derive")
    _connect(page, "derive", "warehouse_pg")
    assert page.locator(".react-flow__minimap").count() == 1

    # Delete from the keyboard takes the node with its edge; undo brings both back.
    page.get_by_test_id("canvas-node-warehouse_pg").click()
    page.keyboard.press("Delete")
    page.get_by_test_id("canvas-node-warehouse_pg").wait_for(state="detached")
    assert page.locator('.react-flow__edge[data-id="derive->warehouse_pg"]').count() == 0
    page.get_by_test_id("canvas").locator(".react-flow__pane").click(position={"x": 40, "y": 400})
    page.keyboard.press("Control+z")
    page.get_by_test_id("canvas-node-warehouse_pg").wait_for()
    page.locator('.react-flow__edge[data-id="derive->warehouse_pg"]').wait_for(state="attached")
    page.get_by_role("button", name="Auto-layout").click()
    page.get_by_role("button", name="Zoom to fit").click()

    # Before the first save the server already checks the document: the derive and the destination are
    # not configured yet, but the fields reaching the filter are known, so its column names complete.
    page.get_by_test_id("canvas-node-filter").click()
    expression = page.get_by_label(re.compile("^Expression"))
    page.locator('[data-testid="canvas-node-derive"]:not([data-errors="0"])').wait_for()
    page.get_by_test_id("canvas-node-flights").get_by_text(re.compile("6 fields")).wait_for()
    expression.fill("dep_d")
    page.get_by_role("button", name="Insert column dep_delay").click()
    assert expression.input_value() == "dep_delay"

    # The side panel: the step's form comes from its JSON Schema. The expression is checked as it is
    # typed: a syntax error at its column, then an unknown column with the closest name; fixed, it is clear.
    expression.press_sequentially(" >", delay=20)
    check = page.get_by_test_id("expression-check")
    check.get_by_text("Column 12: unexpected end of the expression, expected a value").wait_for()
    assert expression.get_attribute("aria-invalid") == "true"
    assert "__check" in (expression.get_attribute("aria-describedby") or "")
    check_screen(page, "19-builder-expression-error")
    expression.fill("dep_dely > 60")
    check.get_by_text("Column 1: unknown column 'dep_dely', did you mean 'dep_delay'?").wait_for()
    expression.fill("dep_delay > 60")
    page.locator('[data-testid="expression-check"][data-valid="true"]').wait_for(state="attached")
    assert check.inner_text() == ""
    assert expression.get_attribute("aria-invalid") == "false"

    # Preview the filter before the pipeline exists: its input and output side by side, fewer rows out.
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("preview")
    preview.wait_for()
    rows_in = int(preview.get_by_test_id("preview-rows-in").get_attribute("data-count"))
    rows_out = int(preview.get_by_test_id("preview-rows-out").get_attribute("data-count"))
    assert rows_in == 100
    assert rows_out == PREVIEW_LATE < rows_in
    assert not Pipeline.objects.exists()
    # The output sample's profile: every delay over the filter's 60 minutes.
    profile = preview.get_by_test_id("preview-profile")
    profile.get_by_text(f"Profile of the output sample ({PREVIEW_LATE} rows)").click()
    late = sorted(d for d in DELAYS[:100] if d > 60)
    delays = profile.get_by_test_id("column-profile-dep_delay")
    delays.get_by_text(f"min {late[0]} · max {late[-1]}").wait_for()
    check_screen(page, "20-builder-preview")

    # The derive step: a new column from an expression, completed and checked like the filter's.
    page.get_by_test_id("canvas-node-derive").click()
    page.get_by_label(re.compile("^Column")).fill("delay_hours")
    page.get_by_label(re.compile("^Expression")).fill("dep_delay / 60")
    page.get_by_test_id("expression-type").get_by_text("Gives number values.").wait_for()
    page.get_by_test_id("canvas-node-warehouse_pg").click()
    page.get_by_label("Table", exact=True).fill("late_flights")
    page.locator('[data-testid="validation"][data-valid="true"]').wait_for()

    page.get_by_label("Name", exact=True).fill("late flights")
    page.get_by_role("button", name="Create pipeline").click()
    page.wait_for_url(re.compile(r".*/pipelines/builder\?id=\d+$"))
    pipeline = Pipeline.objects.get(name="late flights")
    assert [n["id"] for n in pipeline.definition["nodes"]] == ["flights", "filter", "derive", "warehouse_pg"]
    assert all("position" in n for n in pipeline.definition["nodes"])
    assert {(e["from"], e["to"]) for e in pipeline.definition["edges"]} == {
        ("flights", "filter"), ("filter", "derive"), ("derive", "warehouse_pg")
    }  # fmt: skip
    assert pipeline.definition["nodes"][2]["config"] == {
        "column": "delay_hours",
        "expression": "dep_delay / 60",
    }

    # Validation as you build: the server's answer, and the fields available at each node.
    page.locator('[data-testid="validation"][data-valid="true"]').wait_for()
    page.get_by_test_id("canvas-node-filter").click()
    page.get_by_test_id("node-fields").get_by_text("dep_delay").wait_for()

    # A wrong column is reported at its node while editing (the document's validation), and fixed again.
    page.get_by_label(re.compile("^Expression")).fill("dep_dely > 60")
    page.locator('[data-testid="canvas-node-filter"]:not([data-errors="0"])').wait_for()
    page.get_by_test_id("node-errors").get_by_text(re.compile("dep_dely")).wait_for()
    page.get_by_label(re.compile("^Expression")).fill("dep_delay > 60")
    page.locator('[data-testid="validation"][data-valid="true"]').wait_for()

    # Run from the builder (the document is saved) and watch the counts arrive on the canvas.
    page.locator('[data-testid="live"][data-live="true"]').wait_for()
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator('[data-testid="builder-run-status"][data-status="succeeded"]').wait_for(timeout=90_000)
    page.locator('[data-testid="counts-warehouse_pg"][data-status="succeeded"]').wait_for()
    counts = {
        node: (page.get_by_test_id(f"counts-{node}").get_attribute("data-rows-in"),
               page.get_by_test_id(f"counts-{node}").get_attribute("data-rows-out"))
        for node in ("flights", "filter", "derive", "warehouse_pg")
    }  # fmt: skip
    assert counts["flights"][1] == str(ROWS)
    assert counts["filter"] == (str(ROWS), str(LATE))
    assert counts["derive"] == (str(LATE), str(LATE))
    assert counts["warehouse_pg"][0] == str(LATE)
    table = f'"{pg_config["schema"]}".late_flights'
    written = scratch_conn.execute(
        f"SELECT count(*), min(dep_delay), count(delay_hours) FROM {table}"
    ).fetchone()
    assert written == (LATE, min(d for d in DELAYS if d > 60), LATE)
    # The derived column holds dep_delay / 60 for every row (as a number, not truncated to an integer).
    rows = scratch_conn.execute(
        f"SELECT flight, dep_delay, delay_hours FROM {table} ORDER BY flight"
    ).fetchall()
    expected = sorted((1000 + i, d, d / 60) for i, d in enumerate(DELAYS) if d > 60)
    assert [(f, d) for f, d, _ in rows] == [(f, d) for f, d, _ in expected]
    assert all(abs(h - e) < 1e-9 for (_, _, h), (_, _, e) in zip(rows, expected, strict=True))
    check_screen(page, "21-builder-run")

    # The run's page: no rule ran; the source was profiled, with a histogram per numeric column.
    run_id = Run.objects.filter(pipeline=pipeline).latest("id").id
    builder_url = page.url
    page.goto(f"/runs/view?id={run_id}")
    page.get_by_text("No validation rules ran.").wait_for()
    page.get_by_test_id("profile-flights").get_by_test_id("histogram-dep_delay").wait_for()
    check_screen(page, "21-run-quality")
    page.goto(builder_url)
    page.get_by_test_id("canvas-node-warehouse_pg").wait_for()

    # Lineage: where each column of the destination comes from, traced on the canvas.
    page.get_by_test_id("canvas-node-warehouse_pg").click()
    row = page.get_by_test_id("lineage").locator('[data-column="dep_delay"]')
    row.get_by_text("flights.dep_delay").wait_for()
    row.get_by_role("button", name="Trace dep_delay").click()
    for node_id in ("flights", "filter", "derive", "warehouse_pg"):
        page.locator(f'[data-testid="canvas-node-{node_id}"][data-traced="true"]').wait_for()
    check_screen(page, "22-builder-lineage")

    # The document view is the same state: switching there and back keeps everything, positions included.
    page.get_by_role("button", name="Document").click()
    text = page.get_by_test_id("builder-document").input_value()
    assert "dep_delay > 60" in text and "delay_hours" in text and "position:" in text
    check_screen(page, "22-builder-document-view")
    page.get_by_role("button", name="Canvas").click()
    for node_id in ("flights", "filter", "warehouse_pg"):
        page.get_by_test_id(f"canvas-node-{node_id}").wait_for()
    assert page.get_by_role("button", name="Save version").is_disabled()

    # Versions: an unsaved change compared with version 1 is marked on its node; restoring version 1
    # puts it back on the canvas (nothing left to save).
    page.get_by_test_id("canvas-node-filter").click()
    page.get_by_label(re.compile("^Expression")).fill("dep_delay > 90")
    page.get_by_label("Compare with").select_option("1")
    page.locator('[data-testid="canvas-node-filter"][data-change="changed"]').wait_for()
    assert "filter: config" in page.get_by_test_id("compare-summary").inner_text()
    assert page.locator('[data-testid="canvas-node-flights"][data-change]').count() == 0
    check_screen(page, "23-builder-compare")
    page.get_by_role("button", name="Restore version 1").click()
    page.get_by_test_id("canvas-node-filter").click()
    assert page.get_by_label(re.compile("^Expression")).input_value() == "dep_delay > 60"
    assert page.get_by_role("button", name="Save version").is_disabled()

    # A field-mapping step added by a click gets the mapper (axe-checked), and Ctrl+Z takes it away again.
    page.get_by_label("Search steps").fill("map")
    page.locator('[data-palette="Map fields"]').click()
    page.get_by_test_id("field-mapper").wait_for()
    check_screen(page, "26-builder-field-mapper")
    page.keyboard.press("Control+z")
    page.get_by_test_id("canvas-node-map_fields").wait_for(state="detached")
    assert page.get_by_role("button", name="Save version").is_disabled()


def test_an_editor_approves_a_drift_change_a_frozen_contract_held(
    personas: Any, new_page: Any, settings: Any, e2e_import_dir: Path
) -> None:
    from apps.schemas.models import SchemaChange, StreamContract
    from apps.schemas.services import schema_discover, stream_contract_set

    settings.AGGREGATOR_IMPORT_DIR = e2e_import_dir
    files = workspace_import_dir(personas.workspace.id)
    (files / "drift.csv").write_text("id,name\n1,a\n")
    connector = connector_create(workspace=personas.workspace, name="drift-csv", connector_type="csv_file",
                                 config={"path": "drift.csv"}, user=personas.owner)  # fmt: skip
    stream_contract_set(connector=connector, stream="", user=None, new_columns="freeze")
    schema_discover(connector=connector)
    (files / "drift.csv").write_text("id,name,tailnum\n1,a,N1\n")
    schema_discover(connector=connector)
    change = SchemaChange.objects.get(connector=connector)

    page = new_page()
    sign_in(page, personas.editor.email, DEFAULT_PASSWORD, next_path="/")
    page.get_by_role("link", name="Schemas").click()
    item = page.locator(f'[data-change-id="{change.id}"]')
    item.get_by_text("+ tailnum").wait_for()
    page.get_by_label("Versions of drift").get_by_text("v2").wait_for()
    check_screen(page, "24-schemas-pending-drift")
    page.get_by_role("button", name=f"Approve change #{change.id}").click()
    page.get_by_text("No drift waits for a decision.").wait_for()
    change.refresh_from_db()
    assert change.status == "approved"

    # A further drift (a new column again) is rejected: it stays recorded, and runs refuse the stream.
    (files / "drift.csv").write_text("id,name,tailnum,origin\n1,a,N1,EWR\n")
    schema_discover(connector=connector)
    newer = SchemaChange.objects.get(connector=connector, status="pending")
    page.reload()
    page.locator(f'[data-change-id="{newer.id}"]').get_by_text("+ origin").wait_for()
    page.get_by_role("button", name=f"Reject change #{newer.id}").click()
    page.get_by_text("No drift waits for a decision.").wait_for()
    newer.refresh_from_db()
    assert newer.status == "rejected"

    # The stream's contract policy: new columns evolve from now on.
    contract = page.get_by_test_id("contract-drift")
    contract.get_by_label("New columns").select_option("evolve")
    contract.get_by_role("button", name="Save the contract of drift").click()
    page.get_by_text("Contract of drift saved.").wait_for()
    assert StreamContract.objects.get(connector=connector, stream="drift").new_columns == "evolve"
    page.get_by_test_id("contract-source-drift").get_by_text("Contract (its own)").wait_for()
    check_screen(page, "25-schemas-contract")

    # The connector's default (set above to freeze new columns): type changes freeze too from now on.
    default = page.get_by_test_id("default-contract")
    default.get_by_text("Default contract (this connector's)").wait_for()
    default.get_by_label("Type changes").select_option("freeze")
    default.get_by_role("button", name="Save the contract of the connector's streams by default").click()
    page.get_by_text("Contract of the connector's streams by default saved.").wait_for()
    connector_default = StreamContract.objects.get(connector=connector, stream="")
    assert (connector_default.new_columns, connector_default.type_changes) == ("freeze", "freeze")
    # The stream drops its own contract and follows the connector's default again.
    page.get_by_role("button", name="Use the default contract for drift").click()
    page.get_by_test_id("contract-source-drift").get_by_text(
        "Contract (the connector's default): new columns freeze, type changes freeze"
    ).wait_for()
    assert not StreamContract.objects.filter(connector=connector, stream="drift").exists()
