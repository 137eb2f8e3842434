"""Data quality in real runs: a CSV with malformed rows and rule failures → PostgreSQL through the real
executor; the quarantine (API, filters, CSV download), the quality report, profiles, `quality.failed`
events, a fail rule stopping the run before anything commits, and the personas on the new endpoints."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.monitoring.models import Event
from apps.pipelines.executor import run_execute
from apps.pipelines.models import NodeProfile, NodeRun, QualityResult, RejectedRecord, Run, RunStatus
from apps.pipelines.services import pipeline_create, run_start

from .conftest import FLIGHTS_CSV

pytestmark = pytest.mark.django_db(transaction=True)

# Seven good rows, then: a bad number (the source refuses it), a row with a column missing (refused too),
# a delay out of range and an unknown airport (rejected by the source's rules), an early departure
# (rejected by the transform's expression rule), and one more good row.
EXTRA_ROWS = """2013,1,4,abc,UA,9,EWR
2013,1,4,900,UA,10,EWR
2013,1,4,5,UA,11
2013,1,4,5,UA,12,XXX
2013,1,5,-45,AA,13,JFK
2013,1,5,12,B6,15,LGA
"""
INPUT_ROWS = 13

SOURCE_RULES = [
    {"id": "delay_range", "type": "range", "column": "dep_delay", "min": -60, "max": 600, "action": "reject"},
    {
        "id": "known_airport",
        "type": "allowed_values",
        "column": "origin",
        "values": ["EWR", "LGA", "JFK"],
        "action": "reject",
    },
    {
        "id": "one_per_flight",
        "type": "unique",
        "columns": ["year", "month", "day", "flight", "carrier"],
        "action": "warn",
    },
    {"id": "enough_rows", "type": "row_count", "min": 1},
]


def quality_definition(
    *, source_rules: list[dict[str, Any]] | None = None, table: str = "checked_flights"
) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": "flights",
                "kind": "source",
                "connector": "flights-files",
                "stream": "flights",
                "rules": SOURCE_RULES if source_rules is None else source_rules,
            },
            {
                "id": "tidy",
                "kind": "transform",
                "step": "select",
                "config": {"columns": ["year", "month", "day", "dep_delay", "carrier", "flight", "origin"]},
                "rules": [
                    {
                        "id": "not_early",
                        "type": "expression",
                        "expression": "dep_delay is null or dep_delay >= -30",
                        "action": "reject",
                    }
                ],
                "profile": True,
            },
            {
                "id": "warehouse",
                "kind": "destination",
                "connector": "warehouse-pg",
                "table": table,
                "rules": [{"id": "has_delay", "type": "not_null", "column": "dep_delay", "action": "warn"}],
            },
        ],
        "edges": [{"from": "flights", "to": "tidy"}, {"from": "tidy", "to": "warehouse"}],
    }


def make_messy(flights_file):
    # Only after the pipeline is saved: discovery on the messy file would type dep_delay as text.
    flights_file.write_text(FLIGHTS_CSV + EXTRA_ROWS)
    return flights_file


@pytest.fixture
def pipeline(personas, csv_connector, pg_connector):
    return pipeline_create(
        workspace=personas.workspace, name="checked", definition=quality_definition(), user=personas.owner
    )


@pytest.fixture
def messy_file(pipeline, flights_file):
    return make_messy(flights_file)


@pytest.fixture
def finished_run(pipeline, messy_file):
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    return run


def test_valid_rows_land_the_rest_are_quarantined_and_counts_add_up(finished_run, scratch_conn, pg_schema):
    run = finished_run
    landed = scratch_conn.execute(
        f'SELECT flight FROM "{pg_schema}".checked_flights ORDER BY flight'
    ).fetchall()
    assert [r[0] for r in landed] == [15, 33, 461, 725, 1141, 1545, 1696, 1714]
    assert (run.rows_written, run.rows_rejected) == (8, 5)
    assert run.rows_written + run.rows_rejected == INPUT_ROWS

    quarantine = [
        (r.node_id, r.rule, r.line, r.reason) for r in RejectedRecord.objects.filter(run=run).order_by("id")
    ]
    # The source's rules act on its batch (and the transform's on what follows) before the source hands
    # over the rows it could not read, which it finds after parsing the batch.
    assert [q[:3] for q in quarantine] == [
        ("flights", "delay_range", None),
        ("flights", "known_airport", None),
        ("tidy", "not_early", None),
        ("flights", "", 11),
        ("flights", "", 9),
    ]
    reasons = {rule or line: reason for _, rule, line, reason in quarantine}
    assert "dep_delay" in reasons[9] and "abc" not in reasons["delay_range"]
    assert reasons[11] == "expected 7 columns, found 6"
    assert reasons["delay_range"] == "dep_delay outside [-60, 600] (rule 'delay_range')"
    assert reasons["known_airport"] == "origin not one of the allowed values (rule 'known_airport')"
    assert (
        reasons["not_early"]
        == "expression is not true: dep_delay is null or dep_delay >= -30 (rule 'not_early')"
    )
    assert RejectedRecord.objects.get(run=run, rule="known_airport").raw == {
        "year": 2013,
        "month": 1,
        "day": 4,
        "dep_delay": 5,
        "carrier": "UA",
        "flight": 12,
        "origin": "XXX",
    }

    nodes = {n.node_id: (n.rows_in, n.rows_out, n.rows_rejected) for n in NodeRun.objects.filter(run=run)}
    assert nodes == {"flights": (13, 9, 4), "tidy": (9, 8, 1), "warehouse": (8, 8, 0)}
    for rows_in, rows_out, rejected in nodes.values():
        assert rows_in == rows_out + rejected  # nothing silently dropped at any node


def test_quarantine_is_filtered_by_node_and_rule(personas, client_for, finished_run):
    client = client_for(personas.viewer)
    by_rule = client.get(f"/api/v1/runs/{finished_run.id}/rejected/", {"rule": "not_early"}).json()
    assert by_rule["count"] == 1
    (record,) = by_rule["results"]
    assert {k: v for k, v in record.items() if k not in ("id", "created_at")} == {
        "node": "tidy",
        "rule": "not_early",
        "line": None,
        "row": None,
        "reason": "expression is not true: dep_delay is null or dep_delay >= -30 (rule 'not_early')",
        "raw": {
            "year": 2013,
            "month": 1,
            "day": 5,
            "dep_delay": -45,
            "carrier": "AA",
            "flight": 13,
            "origin": "JFK",
        },
        "source": "rule:not_early",
    }
    by_node = client.get(f"/api/v1/runs/{finished_run.id}/rejected/", {"node": "flights"}).json()
    assert by_node["count"] == 4
    with CaptureQueriesContext(connection) as few:
        client.get(f"/api/v1/runs/{finished_run.id}/rejected/")
    RejectedRecord.objects.bulk_create(
        RejectedRecord(run=finished_run, node_id="tidy", rule="x", reason="r", raw={"a": i})
        for i in range(30)
    )
    with CaptureQueriesContext(connection) as many:
        client.get(f"/api/v1/runs/{finished_run.id}/rejected/")
    assert len(many) == len(few)


def test_quarantine_downloads_as_csv(personas, client_for, finished_run):
    response = client_for(personas.viewer).get(f"/api/v1/runs/{finished_run.id}/rejected.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == f'attachment; filename="run-{finished_run.id}-rejected.csv"'
    content = b"".join(response.streaming_content).decode()
    # Value columns: the raw values' keys, those of the earliest rows first, alphabetically among a row's;
    # a raw line that could not be split into values is under `text`.
    assert content.splitlines() == [
        "node,rule,line,row,reason,carrier,day,dep_delay,flight,month,origin,year,text,raw",
        "flights,delay_range,,,\"dep_delay outside [-60, 600] (rule 'delay_range')\","
        "UA,4,900,10,1,EWR,2013,,",
        "flights,known_airport,,,origin not one of the allowed values (rule 'known_airport'),"
        "UA,4,5,12,1,XXX,2013,,",
        "tidy,not_early,,,expression is not true: dep_delay is null or dep_delay >= -30 (rule 'not_early'),"
        "AA,5,-45,13,1,JFK,2013,,",
        'flights,,11,,"expected 7 columns, found 6",,,,,,,,"2013,1,4,5,UA,11",',
        "flights,,9,,dep_delay: 'abc' is not a valid integer,UA,4,abc,9,1,EWR,2013,,",
    ]

    only_rule = client_for(personas.viewer).get(
        f"/api/v1/runs/{finished_run.id}/rejected.csv", {"rule": "not_early", "node": "tidy"}
    )
    assert b"".join(only_rule.streaming_content).decode().splitlines() == [
        "node,rule,line,row,reason,carrier,day,dep_delay,flight,month,origin,year,raw",
        "tidy,not_early,,,expression is not true: dep_delay is null or dep_delay >= -30 (rule 'not_early'),"
        "AA,5,-45,13,1,JFK,2013,",
    ]


def test_the_quality_report_lists_every_rule_with_its_counts(personas, client_for, finished_run):
    body = client_for(personas.viewer).get(f"/api/v1/runs/{finished_run.id}/quality/").json()

    def rule(name, type_, action, columns, status, checked, failed, observed=None, sample=None):
        return {
            "rule": name,
            "type": type_,
            "action": action,
            "columns": columns,
            "status": status,
            "checked": checked,
            "passed": checked - failed if type_ != "row_count" else checked,
            "failed": failed,
            "rejected": failed if action == "reject" else 0,
            "warned": failed if action == "warn" else 0,
            "observed": observed,
            "sample": sample or [],
        }

    key = ["year", "month", "day", "flight", "carrier"]
    assert body == {
        "run": finished_run.id,
        "status": "rejected",
        "nodes": [
            {
                "node": "flights",
                "status": "rejected",
                "rules": [
                    rule("delay_range", "range", "reject", ["dep_delay"], "rejected", 11, 1, sample=[900]),
                    rule(
                        "known_airport",
                        "allowed_values",
                        "reject",
                        ["origin"],
                        "rejected",
                        11,
                        1,
                        sample=["XXX"],
                    ),
                    rule("one_per_flight", "unique", "warn", key, "passed", 11, 0),
                    rule("enough_rows", "row_count", "fail", [], "passed", 11, 0, observed=11),
                ],
            },
            {
                "node": "tidy",
                "status": "rejected",
                "rules": [
                    rule("not_early", "expression", "reject", ["dep_delay"], "rejected", 9, 1, sample=[-45]),
                ],
            },
            {
                "node": "warehouse",
                "status": "warned",
                "rules": [
                    rule("has_delay", "not_null", "warn", ["dep_delay"], "warned", 8, 1, sample=[None])
                ],
            },
        ],
    }
    assert QualityResult.objects.filter(run=finished_run).count() == 6


def test_rules_that_reject_or_warn_emit_quality_failed(finished_run):
    events = Event.objects.filter(type="quality.failed", subject_type="run", subject_id=str(finished_run.id))
    payloads = sorted((e.payload for e in events), key=lambda p: (p["node"], p["rule"]))
    assert payloads == [
        {
            "run": finished_run.id,
            "pipeline": finished_run.pipeline_id,
            "node": "flights",
            "rule": "delay_range",
            "status": "rejected",
            "checked": 11,
            "passed": 10,
            "failed": 1,
            "rejected": 1,
            "warned": 0,
        },
        {
            "run": finished_run.id,
            "pipeline": finished_run.pipeline_id,
            "node": "flights",
            "rule": "known_airport",
            "status": "rejected",
            "checked": 11,
            "passed": 10,
            "failed": 1,
            "rejected": 1,
            "warned": 0,
        },
        {
            "run": finished_run.id,
            "pipeline": finished_run.pipeline_id,
            "node": "tidy",
            "rule": "not_early",
            "status": "rejected",
            "checked": 9,
            "passed": 8,
            "failed": 1,
            "rejected": 1,
            "warned": 0,
        },
        {
            "run": finished_run.id,
            "pipeline": finished_run.pipeline_id,
            "node": "warehouse",
            "rule": "has_delay",
            "status": "warned",
            "checked": 8,
            "passed": 7,
            "failed": 1,
            "rejected": 0,
            "warned": 1,
        },
    ]


def test_profiles_of_the_source_and_the_opted_in_node(personas, client_for, finished_run, messy_file):
    body = client_for(personas.viewer).get(f"/api/v1/runs/{finished_run.id}/profiles/").json()
    assert [(p["node"], p["rows"], p["complete"], p["row_cap"]) for p in body["results"]] == [
        ("flights", 9, True, 100_000),
        ("tidy", 8, True, None),
    ]
    assert NodeProfile.objects.filter(run=finished_run).count() == 2
    tidy = {c["name"]: c for c in body["results"][1]["columns"]}
    # What the transform let through, as pandas sees it.
    frame = pd.read_csv(io.StringIO(messy_file.read_text()), on_bad_lines="skip")
    frame = frame[pd.to_numeric(frame["dep_delay"], errors="coerce").notna() | frame["dep_delay"].isna()]
    frame["dep_delay"] = pd.to_numeric(frame["dep_delay"])
    frame = frame[frame["origin"].isin(["EWR", "LGA", "JFK"])]
    frame = frame[frame["dep_delay"].isna() | frame["dep_delay"].between(-30, 600)]
    assert len(frame) == 8
    delay = tidy["dep_delay"]
    assert delay["nulls"] == frame["dep_delay"].isna().sum() == 1
    assert delay["null_share"] == pytest.approx(1 / 8)
    assert delay["min"] == frame["dep_delay"].min() and delay["max"] == frame["dep_delay"].max()
    assert delay["mean"] == pytest.approx(frame["dep_delay"].mean())
    assert delay["stddev"] == pytest.approx(frame["dep_delay"].std())
    assert delay["distinct"] == frame["dep_delay"].nunique()
    assert sum(delay["histogram"]["counts"]) == 7
    assert tidy["carrier"]["top_values"] == [
        {"value": k, "count": int(v)}
        for k, v in sorted(frame["carrier"].value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    only = client_for(personas.viewer).get(f"/api/v1/runs/{finished_run.id}/profiles/", {"node": "tidy"})
    assert [p["node"] for p in only.json()["results"]] == ["tidy"]


def test_a_fail_rule_fails_the_run_naming_node_and_rule_and_nothing_commits(
    personas, csv_connector, pg_connector, flights_file, scratch_conn, pg_schema
):
    rules = [{"id": "sane_delay", "type": "range", "column": "dep_delay", "max": 600}]
    pipeline = pipeline_create(
        workspace=personas.workspace,
        name="strict",
        definition=quality_definition(source_rules=rules, table="strict_flights"),
        user=None,
    )
    make_messy(flights_file)
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.FAILED
    run.refresh_from_db()
    assert (run.status, run.attempt, run.error_kind) == (RunStatus.FAILED, 1, "quality")
    assert run.error == (
        "Rule 'sane_delay' (range on dep_delay) failed at node 'flights': 1 row(s) in this batch; "
        "failing values: 900"
    )
    exists = scratch_conn.execute("SELECT to_regclass(%s)", [f'"{pg_schema}".strict_flights']).fetchone()[0]
    rows = (
        scratch_conn.execute(f'SELECT count(*) FROM "{pg_schema}".strict_flights').fetchone()[0]
        if exists
        else 0
    )
    assert rows == 0
    (result,) = QualityResult.objects.filter(run=run, node_id="flights")
    assert (result.rule_id, result.status, result.failed, result.sample) == ("sane_delay", "failed", 1, [900])
    event = Event.objects.get(type="quality.failed", subject_id=str(run.id))
    assert event.payload["rule"] == "sane_delay" and event.payload["status"] == "failed"
    assert Run.objects.filter(id=run.id, status=RunStatus.QUEUED).count() == 0  # no retry


def test_a_row_count_failure_at_the_end_stops_the_writes(
    personas, csv_connector, pg_connector, flights_file, scratch_conn, pg_schema
):
    rules = [{"id": "big_enough", "type": "row_count", "min": 1000}]
    pipeline = pipeline_create(
        workspace=personas.workspace,
        name="counted",
        definition=quality_definition(source_rules=rules, table="counted_flights"),
        user=None,
    )
    make_messy(flights_file)
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.FAILED
    run.refresh_from_db()
    assert run.error == "Rule 'big_enough' (row_count) failed at node 'flights': 11 row(s), outside [1000, ]"
    exists = scratch_conn.execute("SELECT to_regclass(%s)", [f'"{pg_schema}".counted_flights']).fetchone()[0]
    rows = (
        scratch_conn.execute(f'SELECT count(*) FROM "{pg_schema}".counted_flights').fetchone()[0]
        if exists
        else 0
    )
    assert rows == 0


def test_rules_are_validated_with_errors_at_the_rule(personas, client_for, csv_connector, pg_connector):
    definition = quality_definition(
        source_rules=[
            {"id": "a", "type": "not_null", "column": "carier"},
            {"id": "b", "type": "regex", "column": "carrier", "pattern": "(["},
        ]
    )
    definition["nodes"][1]["profile"] = "yes"
    response = client_for(personas.editor).post(
        "/api/v1/pipelines/", {"name": "bad rules", "definition": definition}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "nodes.flights.rules.0.column": ["unknown column 'carier', did you mean 'carrier'?"],
        "nodes.flights.rules.1.pattern": ["not an RE2 pattern: missing ]: ["],
        "nodes.tidy.profile": ["`profile` must be true or false."],
    }


def test_connector_stream_profile(personas, client_for, csv_connector, flights_file):
    client = client_for(personas.viewer)
    response = client.get(f"/api/v1/connectors/{csv_connector.id}/profile/", {"stream": "flights"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert {k: body[k] for k in ("connector", "stream", "rows", "limit", "rejected")} == {
        "connector": csv_connector.id,
        "stream": "flights",
        "rows": 7,
        "limit": 10_000,
        "rejected": 0,
    }
    frame = pd.read_csv(io.StringIO(FLIGHTS_CSV))
    delay = next(c for c in body["columns"] if c["name"] == "dep_delay")
    assert delay["mean"] == pytest.approx(frame["dep_delay"].mean())
    assert delay["stddev"] == pytest.approx(frame["dep_delay"].std())
    assert (delay["nulls"], delay["min"], delay["max"]) == (1, -1, 101)
    capped = client.get(f"/api/v1/connectors/{csv_connector.id}/profile/", {"stream": "flights", "limit": 3})
    assert capped.json()["rows"] == 3
    missing = client.get(f"/api/v1/connectors/{csv_connector.id}/profile/")
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {"stream": ["This field is required."]}


def test_outsider_gets_404_on_the_quality_endpoints(personas, client_for, finished_run, csv_connector):
    client = client_for(personas.outsider)
    for url in [
        f"/api/v1/runs/{finished_run.id}/quality/",
        f"/api/v1/runs/{finished_run.id}/profiles/",
        f"/api/v1/runs/{finished_run.id}/rejected/",
        f"/api/v1/runs/{finished_run.id}/rejected.csv",
        f"/api/v1/connectors/{csv_connector.id}/profile/?stream=flights",
    ]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"2013" not in response.content
    assert client_for(None).get(f"/api/v1/runs/{finished_run.id}/rejected.csv").status_code in (401, 403)


def test_a_retry_replaces_the_earlier_attempts_quarantine_and_report(pipeline, flights_file):
    # Without the unreadable number: each run rediscovers the stream, and "abc" would make dep_delay text
    # for the retry's plan.
    flights_file.write_text(FLIGHTS_CSV + EXTRA_ROWS.replace("2013,1,4,abc,UA,9,EWR\n", ""))
    finished_run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=finished_run.id, attempt=1) == RunStatus.SUCCEEDED
    assert RejectedRecord.objects.filter(run=finished_run).count() == 4
    # As if the first attempt had died after its reads: the second starts from a clean quarantine.
    Run.objects.filter(id=finished_run.id).update(status=RunStatus.QUEUED, attempt=2)
    status = run_execute(run_id=finished_run.id, attempt=2)
    finished_run.refresh_from_db()
    assert status == RunStatus.SUCCEEDED, finished_run.error
    assert RejectedRecord.objects.filter(run=finished_run).count() == 4
    assert QualityResult.objects.filter(run=finished_run).count() == 6
    assert NodeProfile.objects.filter(run=finished_run).count() == 2


def test_quality_and_profile_reads_take_a_fixed_number_of_queries(personas, client_for, finished_run):
    client = client_for(personas.viewer)
    urls = [f"/api/v1/runs/{finished_run.id}/quality/", f"/api/v1/runs/{finished_run.id}/profiles/"]
    before = []
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        before.append(len(queries))
    QualityResult.objects.bulk_create(
        QualityResult(
            run=finished_run,
            node_id=f"n{i}",
            rule_id="r",
            rule_type="not_null",
            action="warn",
            status="passed",
        )
        for i in range(20)
    )
    NodeProfile.objects.bulk_create(NodeProfile(run=finished_run, node_id=f"n{i}") for i in range(20))
    after = []
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        after.append(len(queries))
    assert after == before


def test_a_pipelines_quality_alert_rule_fires_on_its_failed_rules(personas, pipeline, messy_file):
    from apps.monitoring.models import Alert, AlertKind, AlertRule

    rule = AlertRule.objects.create(
        workspace=personas.workspace, pipeline=pipeline, name="bad data", kind=AlertKind.QUALITY_FAILED
    )
    run = run_start(pipeline=pipeline, user=None)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.SUCCEEDED
    alert = Alert.objects.get(rule=rule)
    assert (alert.subject_type, alert.subject_id, alert.status) == ("run", str(run.id), "open")
    assert alert.title == f"Quality check failed on run:{run.id}"
