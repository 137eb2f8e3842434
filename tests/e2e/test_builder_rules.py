"""Quality rules in the builder's side panel, in a real browser against the real server and worker: an editor
adds a not_null rule that rejects rows and an expression rule (a broken expression flagged as it is typed,
then fixed) to a CSV source, previews the node and sees the rules' failures without saving, saves, runs, and
finds exactly the rows with an empty dep_delay in the run's quarantine under the rule's id. axe-core checks
the screens (var/e2e-artifacts/)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest

from apps.connectors.file_areas import workspace_import_dir
from apps.connectors.services import connector_create
from apps.pipelines.models import RejectedRecord, Run
from apps.pipelines.services import pipeline_create
from tests.factories import DEFAULT_PASSWORD

from .conftest import check_screen, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

# flight -> dep_delay ("" is empty: null once read). One early departure (-90) only warns.
DELAYS = {1001: "5", 1002: "", 1003: "70", 1004: "-90", 1005: "", 1006: "12", 1007: "0", 1008: "", 1009: "33",
          1010: "8"}  # fmt: skip
CSV = "year,month,day,carrier,flight,dep_delay\n" + "".join(
    f"2013,1,{i + 1},UA,{flight},{delay}\n" for i, (flight, delay) in enumerate(DELAYS.items())
)
EMPTY = sorted(f for f, d in DELAYS.items() if d == "")


def test_an_editor_adds_quality_rules_previews_their_failures_and_the_run_quarantines_the_rows(
    personas: Any,
    new_page: Any,
    settings: Any,
    e2e_import_dir: Path,
    pg_config: dict[str, Any],
    scratch_conn: Any,
) -> None:
    settings.AGGREGATOR_IMPORT_DIR = e2e_import_dir
    (workspace_import_dir(personas.workspace.id) / "checked_flights.csv").write_text(CSV)
    connector_create(workspace=personas.workspace, name="flights-csv", connector_type="csv_file",
                     config={"path": "checked_flights.csv"}, user=personas.owner)  # fmt: skip
    connector_create(workspace=personas.workspace, name="warehouse-pg", connector_type="postgres",
                     config=pg_config, user=personas.owner)  # fmt: skip
    pipeline = pipeline_create(
        workspace=personas.workspace,
        name="checked flights",
        user=personas.owner,
        definition={
            "nodes": [
                {"id": "flights", "kind": "source", "connector": "flights-csv", "stream": "checked_flights",
                 "sync_mode": "full_refresh", "position": {"x": 0, "y": 0}},
                {"id": "warehouse", "kind": "destination", "connector": "warehouse-pg",
                 "table": "checked_flights", "write_mode": "append", "position": {"x": 320, "y": 0}},
            ],
            "edges": [{"from": "flights", "to": "warehouse"}],
        },
    )  # fmt: skip

    page = new_page(width=1600, height=1000)
    sign_in(page, personas.editor.email, DEFAULT_PASSWORD, next_path=f"/pipelines/builder?id={pipeline.id}")
    page.get_by_test_id("canvas-node-flights").click()
    # The rules' columns are the node's output fields, known once the server has checked the document.
    page.get_by_test_id("node-fields").get_by_text("dep_delay").wait_for()
    rules = page.get_by_test_id("rules")
    assert rules.get_by_test_id("no-rules").is_visible()

    # A not_null rule on dep_delay that rejects: its id follows the column chosen.
    rules.get_by_label("Rule type").select_option("not_null")
    rules.get_by_role("button", name="Add rule").click()
    first = rules.get_by_test_id("rule-0")
    first.get_by_label(re.compile("^Column")).select_option("dep_delay")
    assert first.get_by_label(re.compile("^Rule id")).input_value() == "not_null_dep_delay"
    action = first.get_by_label(re.compile("^Action"))
    assert [o.strip() for o in action.locator("option").all_inner_texts()] == [
        "fail — stop the run", "reject — quarantine the row", "warn — count it, keep the row"
    ]  # fmt: skip
    action.select_option(label="reject — quarantine the row")

    # An expression rule: a broken expression is flagged inline as it is typed, then fixed.
    rules.get_by_label("Rule type").select_option("expression")
    rules.get_by_role("button", name="Add rule").click()
    second = rules.get_by_test_id("rule-1")
    expression = second.get_by_label(re.compile("^Expression"))
    expression.press_sequentially("dep_delay >=", delay=20)
    check = second.get_by_test_id("expression-check")
    check.get_by_text("Column 13: unexpected end of the expression, expected a value").wait_for()
    assert expression.get_attribute("aria-invalid") == "true"
    check_screen(page, "builder-rules-01-expression-error")
    expression.fill("dep_delay is null or dep_delay >= -60")
    second.locator('[data-testid="expression-check"][data-valid="true"]').wait_for(state="attached")
    # Once the document is checked again, the whole document's verdict on the field is clear too.
    page.locator('[data-testid="validation"][data-valid="true"]').wait_for()
    assert check.inner_text() == ""
    second.get_by_label(re.compile("^Action")).select_option(label="warn — count it, keep the row")
    # A second rule cannot take the first one's id.
    rule_id = second.get_by_label(re.compile("^Rule id"))
    rule_id.fill("not_null_dep_delay")
    second.get_by_text("Another rule of this node already has the id 'not_null_dep_delay'.").wait_for()
    rule_id.fill("early_departure")
    page.locator('[data-testid="validation"][data-valid="true"]').wait_for()
    check_screen(page, "builder-rules-02-rules")

    # Preview the source with its unsaved rules: the empty dep_delay rows rejected, the early one warned.
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("preview")
    preview.wait_for()
    rows_out = preview.get_by_test_id("preview-rows-out").get_attribute("data-count")
    assert rows_out == str(len(DELAYS) - len(EMPTY))
    failures = preview.get_by_test_id("preview-rule-failures")
    rejected = failures.locator('[data-rule="not_null_dep_delay"]')
    assert (rejected.get_attribute("data-failed"), rejected.get_attribute("data-rejected")) == ("3", "3")
    assert "failing values: ∅, ∅, ∅" in rejected.inner_text()
    warned = failures.locator('[data-rule="early_departure"]')
    assert warned.get_attribute("data-failed") == "1"
    assert "warned, 1 of 10 rows failed" in warned.inner_text()
    assert "Rejected rows (3)" in preview.get_by_test_id("preview-rejected").inner_text()
    pipeline.refresh_from_db()
    assert "rules" not in pipeline.definition["nodes"][0]
    check_screen(page, "builder-rules-03-preview")

    # The rules live in the node's document: the Document view shows them and the canvas gets them back.
    page.get_by_role("button", name="Document").click()
    text = page.get_by_test_id("builder-document").input_value()
    assert "not_null_dep_delay" in text and "dep_delay is null or dep_delay >= -60" in text
    page.get_by_role("button", name="Canvas").click()
    page.get_by_test_id("canvas-node-flights").click()
    assert page.get_by_test_id("rule-1").get_attribute("data-rule-id") == "early_departure"

    page.get_by_role("button", name="Save version").click()
    page.get_by_text("Saved version 2.").wait_for()
    pipeline.refresh_from_db()
    assert pipeline.definition["nodes"][0]["rules"] == [
        {"id": "not_null_dep_delay", "type": "not_null", "action": "reject", "column": "dep_delay"},
        {"id": "early_departure", "type": "expression", "action": "warn",
         "expression": "dep_delay is null or dep_delay >= -60"},
    ]  # fmt: skip

    page.locator('[data-testid="live"][data-live="true"]').wait_for()
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator('[data-testid="builder-run-status"][data-status="succeeded"]').wait_for(timeout=90_000)
    run = Run.objects.get(pipeline=pipeline)
    quarantined = list(RejectedRecord.objects.filter(run=run).order_by("id"))
    assert sorted(int(r.raw["flight"]) for r in quarantined) == EMPTY
    assert {(r.node_id, r.rule) for r in quarantined} == {("flights", "not_null_dep_delay")}
    assert all("not_null_dep_delay" in r.reason for r in quarantined)
    written = scratch_conn.execute(
        f'SELECT flight FROM "{pg_config["schema"]}".checked_flights ORDER BY flight'
    ).fetchall()
    assert [f for (f,) in written] == sorted(f for f, d in DELAYS.items() if d != "")
    check_screen(page, "builder-rules-04-run")

    # The run page: the quarantined rows with their reasons, narrowed to the node, downloaded as CSV.
    page.goto(f"/runs/view?id={run.id}")
    page.get_by_role("table", name="Rejected rows").get_by_text("not_null_dep_delay").first.wait_for()
    page.locator(f"#rejected-node-{run.id}").select_option("flights")
    assert page.get_by_test_id("rejected-csv").get_attribute("href") == (
        f"/api/v1/runs/{run.id}/rejected.csv?node=flights"
    )
    with page.expect_download() as download_info:
        page.get_by_test_id("rejected-csv").click()
    download = download_info.value
    assert download.suggested_filename == f"run-{run.id}-rejected.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert sorted(int(r["flight"]) for r in rows) == EMPTY
    assert {(r["node"], r["rule"]) for r in rows} == {("flights", "not_null_dep_delay")}
    assert all(r["dep_delay"] == "" and "not_null_dep_delay" in r["reason"] for r in rows)
    check_screen(page, "builder-rules-05-quarantine")
