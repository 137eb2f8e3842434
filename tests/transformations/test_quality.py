"""Validation rules on batches: each type passing and failing (nulls included), the three actions, unique
across batches, stream rules judged at the end, and config errors naming the key at fault."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema
from apps.transformations.quality import NodeRules, RuleFailed, validate_rules

SCHEMA = StreamSchema(
    name="flights",
    fields=(
        Field("flight", FieldType.INTEGER),
        Field("carrier", FieldType.STRING),
        Field("dep_delay", FieldType.NUMBER),
        Field("raw_delay", FieldType.STRING),
        Field("day", FieldType.DATE),
        Field("at", FieldType.DATETIME),
    ),
)


def batch(rows: list[dict[str, Any]]) -> Batch:
    full = [{f: row.get(f) for f in SCHEMA.field_names} for row in rows]
    return Batch.from_records(full, SCHEMA)


def rules_for(*configs: dict[str, Any]) -> NodeRules:
    rules, problems = validate_rules(list(configs), SCHEMA)
    assert problems == []
    return NodeRules("checks", rules)


def failing(rule: dict[str, Any], rows: list[dict[str, Any]]) -> list[Any]:
    """The rows (as their `flight`) a reject version of the rule sends to quarantine."""
    node = rules_for({**rule, "id": "r", "action": "reject"})
    result = node.check(batch(rows))
    return [raw["flight"] for _, raw in ((rid, r.raw) for rid, r in result.rejected)]


ROWS = [
    {"flight": 1, "carrier": "UA", "dep_delay": 5.0, "raw_delay": "5", "day": dt.date(2013, 1, 1)},
    {"flight": 2, "carrier": "AA", "dep_delay": None, "raw_delay": None, "day": None},
    {"flight": 3, "carrier": "ZZ", "dep_delay": 700.0, "raw_delay": "abc", "day": dt.date(2013, 1, 3)},
    {"flight": 4, "carrier": None, "dep_delay": -20.0, "raw_delay": "1e3", "day": dt.date(2013, 1, 4)},
]


@pytest.mark.parametrize(
    ("rule", "failed"),
    [
        ({"type": "not_null", "column": "carrier"}, [4]),
        ({"type": "not_null", "column": "dep_delay"}, [2]),
        ({"type": "range", "column": "dep_delay", "min": -10, "max": 600}, [3, 4]),  # null passes
        ({"type": "range", "column": "dep_delay", "min": 5, "min_inclusive": False}, [1, 4]),
        ({"type": "range", "column": "dep_delay", "max": 700, "max_inclusive": True}, []),
        ({"type": "range", "column": "day", "min": "2013-01-02", "max": "2013-01-03"}, [1, 4]),
        ({"type": "regex", "column": "carrier", "pattern": "^[A-Z][A-Z0-9]$"}, []),
        ({"type": "regex", "column": "carrier", "pattern": "^(UA|AA)$"}, [3]),  # null passes
        ({"type": "allowed_values", "column": "carrier", "values": ["UA", "AA", "B6"]}, [3]),
        ({"type": "allowed_values", "column": "flight", "values": [1, 2]}, [3, 4]),
        ({"type": "type", "column": "raw_delay", "expected_type": "integer"}, [3, 4]),
        ({"type": "type", "column": "raw_delay", "expected_type": "number"}, [3]),
        ({"type": "expression", "expression": "dep_delay < 600"}, [2, 3]),  # null is not true: fails
        ({"type": "expression", "expression": "dep_delay is null or dep_delay < 600"}, [3]),
        ({"type": "unique", "column": "carrier"}, []),  # nulls are not keys
    ],
)
def test_each_row_rule_passes_and_fails_the_right_rows(rule: dict[str, Any], failed: list[int]) -> None:
    assert failing(rule, ROWS) == failed


def test_reject_quarantines_the_row_with_rule_reason_and_original_values() -> None:
    node = rules_for(
        {
            "id": "delay_range",
            "type": "range",
            "column": "dep_delay",
            "min": -10,
            "max": 600,
            "action": "reject",
        },
        {"id": "known_carrier", "type": "not_null", "column": "carrier", "action": "reject"},
    )
    result = node.check(batch(ROWS))
    assert result.batch.table.column("flight").to_pylist() == [1, 2]
    assert [(rule, r.reason, r.raw["flight"], r.source) for rule, r in result.rejected] == [
        ("delay_range", "dep_delay outside [-10, 600] (rule 'delay_range')", 3, "rule:delay_range"),
        (
            "delay_range",
            "dep_delay outside [-10, 600] (rule 'delay_range'); carrier is null (rule 'known_carrier')",
            4,
            "rule:delay_range",
        ),
    ]
    assert result.rejected[0][1].raw == {
        "flight": 3,
        "carrier": "ZZ",
        "dep_delay": 700.0,
        "raw_delay": "abc",
        "day": "2013-01-03",
        "at": None,
    }
    report = {r["rule"]: r for r in node.results()}
    assert report["delay_range"] == {
        "rule": "delay_range",
        "type": "range",
        "action": "reject",
        "columns": ["dep_delay"],
        "status": "rejected",
        "checked": 4,
        "passed": 2,
        "failed": 2,
        "rejected": 2,
        "warned": 0,
        "observed": None,
        "sample": [700.0, -20.0],
    }
    assert report["known_carrier"]["failed"] == 1


def test_warn_keeps_the_rows_and_counts_them() -> None:
    node = rules_for({"id": "w", "type": "not_null", "column": "dep_delay", "action": "warn"})
    result = node.check(batch(ROWS))
    assert result.batch.num_rows == 4 and result.rejected == []
    (report,) = node.results()
    assert (report["status"], report["passed"], report["failed"], report["warned"]) == ("warned", 3, 1, 1)


def test_fail_stops_with_node_rule_and_failing_values() -> None:
    node = rules_for({"id": "known", "type": "allowed_values", "column": "carrier", "values": ["UA", "AA"]})
    with pytest.raises(RuleFailed) as caught:
        node.check(batch(ROWS))
    assert caught.value.node == "checks" and caught.value.rule == "known"
    assert str(caught.value) == (
        "Rule 'known' (allowed_values on carrier) failed at node 'checks': 1 row(s) in this batch; "
        "failing values: 'ZZ'"
    )


def test_a_clean_batch_passes_every_rule() -> None:
    node = rules_for(
        {"id": "a", "type": "not_null", "column": "flight"},
        {"id": "b", "type": "unique", "columns": ["flight"]},
        {"id": "c", "type": "expression", "expression": "flight > 0"},
    )
    result = node.check(batch(ROWS))
    assert result.batch.num_rows == 4
    assert {r["rule"]: r["status"] for r in node.results()} == {"a": "passed", "b": "passed", "c": "passed"}


def test_unique_holds_across_batches_and_ignores_rows_other_rules_reject() -> None:
    node = rules_for(
        {"id": "key", "type": "unique", "columns": ["flight", "carrier"], "action": "reject"},
        {"id": "delay", "type": "not_null", "column": "dep_delay", "action": "reject"},
    )
    first = node.check(
        batch(
            [
                {"flight": 1, "carrier": "UA", "dep_delay": 1.0},
                {"flight": 1, "carrier": "AA", "dep_delay": 1.0},
                {"flight": 1, "carrier": "UA", "dep_delay": 2.0},  # duplicate within the batch
                {"flight": 7, "carrier": "UA", "dep_delay": None},  # rejected by `delay`: takes no key
            ]
        )
    )
    second = node.check(
        batch(
            [
                {"flight": 1, "carrier": "AA", "dep_delay": 3.0},  # duplicate of the first batch
                {"flight": 7, "carrier": "UA", "dep_delay": 4.0},  # first time it lands
                {"flight": 2, "carrier": "UA", "dep_delay": 4.0},
            ]
        )
    )
    assert [(r.raw["flight"], r.raw["carrier"], rule) for rule, r in first.rejected] == [
        (1, "UA", "key"),
        (7, "UA", "delay"),
    ]
    assert [(r.raw["flight"], r.raw["carrier"], rule) for rule, r in second.rejected] == [(1, "AA", "key")]
    assert second.batch.table.column("flight").to_pylist() == [7, 2]
    report = {r["rule"]: r for r in node.results()}
    assert (report["key"]["checked"], report["key"]["failed"]) == (7, 2)


def test_row_count_is_judged_when_the_stream_ends() -> None:
    node = rules_for({"id": "enough", "type": "row_count", "min": 5, "max": 100})
    node.check(batch(ROWS[:3]))
    node.check(batch(ROWS[3:]))  # 4 rows so far: no verdict before the end
    with pytest.raises(RuleFailed) as caught:
        node.finish()
    assert (
        str(caught.value) == "Rule 'enough' (row_count) failed at node 'checks': 4 row(s), outside [5, 100]"
    )
    (report,) = node.results()
    assert (report["status"], report["observed"], report["checked"]) == ("failed", 4, 4)

    ok = rules_for({"id": "enough", "type": "row_count", "min": 4})
    ok.check(batch(ROWS))
    ok.finish()
    assert next(iter(ok.results()))["status"] == "passed"

    empty = rules_for({"id": "some", "type": "row_count", "min": 1, "action": "warn"})
    empty.finish()
    (report,) = empty.results()
    assert (report["status"], report["sample"]) == ("warned", ["0 row(s), outside [1, ]"])


def test_freshness_looks_at_the_latest_timestamp_at_the_end() -> None:
    now = dt.datetime.now(tz=dt.UTC)
    stale = rules_for({"id": "fresh", "type": "freshness", "column": "at", "max_age_s": 3600})
    stale.check(batch([{"flight": 1, "at": now - dt.timedelta(hours=5)}]))
    stale.check(batch([{"flight": 2, "at": now - dt.timedelta(hours=2)}, {"flight": 3, "at": None}]))
    with pytest.raises(
        RuleFailed, match=r"Rule 'fresh' \(freshness of at\) failed at node 'checks': latest at"
    ):
        stale.finish()

    fresh = rules_for({"id": "fresh", "type": "freshness", "column": "at", "max_age_s": 3600})
    fresh.check(batch([{"flight": 1, "at": now - dt.timedelta(hours=5)}]))
    fresh.check(batch([{"flight": 2, "at": now - dt.timedelta(minutes=5)}]))
    fresh.finish()
    (report,) = fresh.results()
    assert report["status"] == "passed"
    assert report["observed"] == (now - dt.timedelta(minutes=5)).isoformat()

    dates = rules_for({"id": "d", "type": "freshness", "column": "day", "max_age_s": 86400, "action": "warn"})
    dates.check(batch([{"flight": 1, "day": dt.date(2013, 1, 1)}]))
    dates.finish()
    assert next(iter(dates.results()))["status"] == "warned"


def test_rules_are_checked_against_the_schema_with_errors_at_the_key() -> None:
    _, problems = validate_rules(
        [
            {"id": "a", "type": "not_null", "column": "carier"},
            {"id": "b", "type": "regex", "column": "carrier", "pattern": "(?=lookahead)"},
            {"id": "c", "type": "range", "column": "dep_delay", "min": "soon"},
            {"id": "d", "type": "range", "column": "dep_delay", "min": 5, "max": 1},
            {"id": "e", "type": "expression", "expression": "dep_delay + 1"},
            {"id": "f", "type": "expression", "expression": "dep_dely > 1"},
            {"id": "g", "type": "freshness", "column": "carrier", "max_age_s": 60},
            {"id": "h", "type": "row_count", "min": 1, "action": "reject"},
            {"id": "i", "type": "allowed_values", "column": "flight", "values": [1, "x"]},
            {"id": "j", "type": "unique", "columns": ["flight", "nope"]},
            {"id": "k", "type": "sometimes"},
            {"id": "a", "type": "not_null", "column": "flight"},
            {"id": "l", "type": "not_null", "column": "flight", "colour": "red"},
            {"id": "bad id!", "type": "not_null", "column": "flight"},
        ],
        SCHEMA,
    )
    fields = dict(problems)
    assert fields["rules.0.column"] == "unknown column 'carier', did you mean 'carrier'?"
    assert fields["rules.1.pattern"].startswith("not an RE2 pattern: invalid perl operator")
    assert fields["rules.2.min"] == "'soon' is not a valid number"
    assert fields["rules.3.min"] == "`min` is above `max`"
    assert fields["rules.4.expression"] == "the expression must be true or false, not number"
    assert fields["rules.5.expression"].startswith(
        "unknown column 'dep_dely' at 1:1, did you mean 'dep_delay'"
    )
    assert fields["rules.6.column"] == "freshness needs a date or datetime column, not string"
    assert fields["rules.7.action"] == "Input should be 'fail' or 'warn'"
    assert fields["rules.8.values.1"] == "'x' is not a valid integer"
    assert fields["rules.9.columns.1"] == "unknown column 'nope'"
    assert "does not match any of the expected tags" in fields["rules.10"]
    assert fields["rules.11.id"] == "rule id 'a' is used twice on this node"
    assert fields["rules.12.colour"] == "Extra inputs are not permitted"
    assert fields["rules.13.id"] == "String should match pattern '^[A-Za-z0-9_.\\-]{1,100}$'"
    assert validate_rules({"id": "x"}, SCHEMA) == ([], [("rules", "`rules` must be a list of rule objects.")])


def test_rules_check_a_large_batch_without_per_row_work() -> None:
    # 200,000 rows through every row rule type: vectorised, so this is quick (no timing asserted).
    n = 200_000
    table = pa.table(
        {
            "flight": pa.array(range(n), pa.int64()),
            "carrier": pa.array(["UA", "AA", "B6", None] * (n // 4)),
            "dep_delay": pa.array([float(i % 900 - 100) for i in range(n)]),
            "raw_delay": pa.array([str(i) for i in range(n)]),
            "day": pa.array([dt.date(2013, 1, 1)] * n, pa.date32()),
            "at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    node = rules_for(
        {"id": "a", "type": "not_null", "column": "carrier", "action": "warn"},
        {"id": "b", "type": "unique", "columns": ["flight"], "action": "warn"},
        {"id": "c", "type": "range", "column": "dep_delay", "min": -60, "max": 600, "action": "warn"},
        {"id": "d", "type": "regex", "column": "carrier", "pattern": "^[A-Z][A-Z0-9]$", "action": "warn"},
        {"id": "e", "type": "allowed_values", "column": "carrier", "values": ["UA", "AA"], "action": "warn"},
        {"id": "f", "type": "type", "column": "raw_delay", "expected_type": "integer", "action": "warn"},
        {"id": "g", "type": "expression", "expression": "dep_delay > 0", "action": "warn"},
    )
    node.check(Batch(table))
    failed = {r["rule"]: r["failed"] for r in node.results()}
    delays = [i % 900 - 100 for i in range(n)]
    assert failed == {
        "a": n // 4,
        "b": 0,
        "c": sum(1 for d in delays if d < -60 or d > 600),
        "d": 0,
        "e": n // 4,
        "f": 0,
        "g": sum(1 for d in delays if d <= 0),
    }
