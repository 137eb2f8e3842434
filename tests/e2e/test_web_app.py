"""The web app in a real browser against the real server and worker: an editor uploads a CSV file,
connects it to PostgreSQL, builds a pipeline in the document editor, runs it and watches it succeed live;
the dashboard shows the run; an outsider gets "not found"; a viewer sees no edit buttons; a locked-out
sign-in says so. Every screen is checked with axe-core and screenshotted (var/e2e-artifacts/)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from apps.connectors.file_areas import workspace_import_dir
from apps.connectors.services import connector_create
from apps.pipelines.services import pipeline_create
from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

ROWS = 1200  # more than one screen of preview rows; the filter keeps every other one
CSV = "id,name,amount\n" + "".join(f"{i},person {i},{i * 1.5}\n" for i in range(1, ROWS + 1))


def _document(table: str, expression: str) -> str:
    return json.dumps(
        {
            "nodes": [
                {"id": "people", "kind": "source", "connector": "people-csv", "stream": "people",
                 "sync_mode": "full_refresh"},
                {"id": "even", "kind": "transform", "step": "filter", "config": {"expression": expression}},
                {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg", "table": table,
                 "write_mode": "append"},
            ],
            "edges": [{"from": "people", "to": "even"}, {"from": "even", "to": "warehouse"}],
        },
        indent=2,
    )  # fmt: skip


def _fill_config(page: Any, label: str, value: str) -> None:
    page.get_by_label(re.compile(f"^{re.escape(label)}")).fill(value)


def test_an_editor_connects_builds_runs_and_watches_a_pipeline_live(
    personas: Any, new_page: Any, pg_config: dict[str, Any], scratch_conn: Any
) -> None:
    page = new_page()

    # Sign in through a deep link: the app sends us to the sign-in page and back.
    sign_in(page, personas.editor.email, DEFAULT_PASSWORD, next_path="/connectors")
    assert page.url.endswith("/connectors")
    check_screen(page, "01-connectors-empty")

    # A CSV source, through the type picker and the form generated from its JSON Schema.
    page.get_by_role("link", name="New connector").click()
    check_screen(page, "02-connector-type-picker")
    page.locator('[data-type="csv_file"]').click()
    _fill_config(page, "Name", "people-csv")
    page.get_by_label("Upload a file").set_input_files(
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": CSV.encode()}]
    )
    page.get_by_test_id("upload-done").wait_for()
    # The server stored it under a name of its own and the form points the connector at it.
    stored = page.get_by_label(re.compile("^Path or glob")).input_value()
    assert re.fullmatch(r"uploads/[0-9a-f]+\.csv", stored)
    _fill_config(page, "Stream name", "people")
    check_screen(page, "03-connector-form-csv")
    page.get_by_role("button", name="Create connector").click()
    page.wait_for_url("**/connectors/view?id=*")
    page.get_by_role("button", name="Test connection").click()
    page.get_by_test_id("check-result").locator('[data-status="succeeded"]').wait_for()
    page.get_by_role("tab", name="Streams").click()
    page.get_by_role("button", name="Discover streams").click()
    page.get_by_role("heading", name="people", exact=True).wait_for()
    page.get_by_role("cell", name="amount", exact=True).wait_for()
    page.get_by_role("tab", name="Preview").click()
    page.get_by_role("button", name="Preview rows").click()
    page.get_by_test_id("preview").get_by_role("cell", name="person 1", exact=True).wait_for()
    check_screen(page, "04-connector-preview")

    # A PostgreSQL destination with a secret-free config (the scratch server trusts local connections).
    page.goto("/connectors/new")
    page.locator('[data-type="postgres"]').click()
    _fill_config(page, "Name", "warehouse-pg")
    _fill_config(page, "Host", pg_config["host"])
    _fill_config(page, "Port", str(pg_config["port"]))
    _fill_config(page, "Database", pg_config["database"])
    _fill_config(page, "User", pg_config["user"])
    _fill_config(page, "Schema", pg_config["schema"])
    page.get_by_label(re.compile("^SSL mode")).select_option("disable")
    assert page.get_by_label(re.compile("^Password")).get_attribute("type") == "password"
    page.get_by_role("button", name="Create connector").click()
    page.wait_for_url("**/connectors/view?id=*")
    page.get_by_role("button", name="Test connection").click()
    page.get_by_test_id("check-result").locator('[data-status="succeeded"]').wait_for()

    # The document editor: a wrong column is reported at its node, then the fixed document is saved.
    page.get_by_role("link", name="Pipelines").click()
    page.get_by_role("link", name="New pipeline").click()
    page.get_by_label("Name", exact=True).fill("people to warehouse")
    page.get_by_label("Format").select_option("json")
    page.get_by_label("Document").fill(_document("people_even", "idd % 2 == 0"))
    page.get_by_role("button", name="Create pipeline").click()
    node = page.get_by_test_id("node-even")
    node.get_by_text(re.compile("idd")).wait_for()
    assert page.get_by_test_id("node-people").get_by_role("listitem").count() == 0
    check_screen(page, "05-document-editor-errors")
    page.get_by_label("Document").fill(_document("people_even", "id % 2 == 0"))
    page.get_by_role("button", name="Create pipeline").click()
    page.wait_for_url("**/pipelines/view?id=*")
    pipeline_url = page.url
    check_screen(page, "06-pipeline-detail")

    # A dashboard open in another tab, with no run to poll for: it can only learn of the run over /ws/.
    dashboard = page.context.new_page()
    dashboard.goto("/")
    dashboard.get_by_text("No runs yet.").wait_for()
    dashboard.locator('[data-testid="live"][data-live="true"]').wait_for()

    # Run it: the run page follows it live (over /ws/) until it succeeds, with each node's counts.
    page.locator('[data-testid="live"][data-live="true"]').wait_for()
    page.get_by_role("button", name="Run now").click()
    page.wait_for_url("**/runs/view?id=*")
    run_id = int(page.url.rsplit("=", 1)[1])
    page.get_by_test_id("run-status").and_(page.locator('[data-status="succeeded"]')).wait_for(timeout=90_000)
    nodes = page.get_by_test_id("nodes")
    assert nodes.locator('[data-node="people"] [data-col="rows_out"]').inner_text() == f"{ROWS:,}"
    assert nodes.locator('[data-node="even"] [data-col="rows_out"]').inner_text() == f"{ROWS // 2:,}"
    assert nodes.locator('[data-node="warehouse"] [data-col="rows_in"]').inner_text() == f"{ROWS // 2:,}"
    assert page.get_by_test_id("rows-written").inner_text() == f"{ROWS // 2:,}"
    written = scratch_conn.execute(f'SELECT count(*) FROM "{pg_config["schema"]}".people_even').fetchone()[0]
    assert written == ROWS // 2
    check_screen(page, "07-run-succeeded")
    dashboard.locator(f'[data-run-id="{run_id}"]').get_by_text("succeeded").wait_for()
    dashboard.close()

    # The dashboard shows the run (and is usable on a phone).
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Dashboard").click()
    page.locator(f'[data-run-id="{run_id}"]').get_by_text("succeeded").wait_for()
    page.get_by_test_id("charts").wait_for()
    assert int(page.get_by_test_id("kpi-runs").inner_text()) >= 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    check_screen(page, "08-dashboard-390px")

    # A reload of the deep link still works (the server answers /pipelines/view for any id).
    page.goto(pipeline_url)
    page.get_by_role("heading", name="people to warehouse").wait_for()


def _pipeline(personas: Any, settings: Any, import_dir: Path, pg_config: dict[str, Any]) -> Any:
    settings.AGGREGATOR_IMPORT_DIR = import_dir
    (workspace_import_dir(personas.workspace.id) / "people.csv").write_text(CSV)
    connector_create(workspace=personas.workspace, name="people-csv", connector_type="csv_file",
                     config={"path": "people.csv"}, user=personas.owner)  # fmt: skip
    connector_create(workspace=personas.workspace, name="warehouse-pg", connector_type="postgres",
                     config=pg_config, user=personas.owner)  # fmt: skip
    return pipeline_create(
        workspace=personas.workspace,
        name="people to warehouse",
        definition=json.loads(_document("people_all", "id > 0")),
        user=personas.owner,
    )


def test_an_outsider_gets_not_found_and_a_viewer_sees_no_edit_buttons(
    personas: Any, new_page: Any, settings: Any, e2e_import_dir: Path, pg_config: dict[str, Any]
) -> None:
    pipeline = _pipeline(personas, settings, e2e_import_dir, pg_config)

    outsider = new_page()
    sign_in(
        outsider, personas.outsider.email, DEFAULT_PASSWORD, next_path=f"/pipelines/view?id={pipeline.id}"
    )
    outsider.get_by_test_id("not-found").wait_for()
    assert outsider.get_by_text("people to warehouse").count() == 0
    check_screen(outsider, "09-outsider-not-found")

    viewer = new_page(width=390, height=844)
    sign_in(viewer, personas.viewer.email, DEFAULT_PASSWORD, next_path=f"/pipelines/view?id={pipeline.id}")
    viewer.get_by_role("heading", name="people to warehouse").wait_for()
    for name in ("Run now", "Pause", "Delete"):
        assert viewer.get_by_role("button", name=name).count() == 0
    viewer.get_by_role("tab", name="Document").click()
    assert viewer.get_by_role("button", name=re.compile("Save|Validate")).count() == 0
    assert viewer.get_by_test_id("document").get_attribute("readonly") is not None
    check_screen(viewer, "10-viewer-pipeline")
    viewer.get_by_role("link", name="Pipelines").click()
    viewer.get_by_role("link", name="people to warehouse").wait_for()
    assert viewer.get_by_role("link", name="New pipeline").count() == 0
    check_screen(viewer, "11-viewer-pipelines-390px")
    # The dark theme (the default follows the system's) passes the same checks.
    viewer.emulate_media(color_scheme="dark")
    viewer.locator("html.dark").wait_for(state="attached")
    check_screen(viewer, "11-viewer-pipelines-390px-dark")

    # The platform's health is for operators: a workspace member who is not staff is told so.
    viewer.goto("/monitoring")
    viewer.get_by_test_id("health-operators-only").wait_for()
    assert viewer.get_by_test_id("health").count() == 0

    # The admin's screens: monitoring with the audit log, webhooks (the secret shown once), the team.
    type(personas.owner).objects.filter(pk=personas.owner.pk).update(is_staff=True)
    owner = new_page()
    sign_in(owner, personas.owner.email, DEFAULT_PASSWORD, next_path="/monitoring")
    owner.get_by_test_id("health").wait_for()
    check_screen(owner, "12-monitoring")
    owner.get_by_role("tab", name="Audit log").click()
    owner.get_by_role("table").or_(owner.get_by_text("No changes recorded yet.")).first.wait_for()
    check_screen(owner, "13-audit-log")
    owner.get_by_role("link", name="Webhooks").click()
    owner.get_by_label("Endpoint URL").fill("http://127.0.0.1:9/aggregator")  # allow-listed, nothing listens
    owner.get_by_role("button", name="Add webhook").click()
    owner.get_by_test_id("secret-once").wait_for()
    check_screen(owner, "14-webhooks")
    owner.get_by_role("link", name="Team").click()
    owner.get_by_label(f"Role of {personas.viewer.email}").wait_for()
    check_screen(owner, "15-team")

    # Sign out returns to the sign-in page; the deep link then asks to sign in again.
    viewer.get_by_role("button", name="Sign out").click()
    viewer.wait_for_url("**/login")
    viewer.goto(f"/pipelines/view?id={pipeline.id}")
    viewer.wait_for_url("**/login**")


def test_a_locked_out_sign_in_says_so(personas: Any, new_page: Any, settings: Any) -> None:
    page = new_page()
    page.goto("/login")
    statuses = []
    for _ in range(settings.AXES_FAILURE_LIMIT):
        page.get_by_label("Email").fill(personas.editor.email)
        page.get_by_label("Password").fill("not-the-password")
        with page.expect_response("**/api/v1/auth/login/") as response:
            page.get_by_role("button", name="Sign in").click()
        statuses.append(response.value.status)
    assert statuses[0] == 401
    # Locked out now: even the right password is refused, and the page says why.
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    with page.expect_response("**/api/v1/auth/login/") as response:
        page.get_by_role("button", name="Sign in").click()
    assert response.value.status == 429
    page.get_by_test_id("lockout").wait_for()
    assert "Too many failed attempts" in page.get_by_test_id("lockout").inner_text()
    assert "/login" in page.url
    check_screen(page, "00-sign-in-locked-out")
