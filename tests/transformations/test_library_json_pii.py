"""JSON (flatten, explode) and PII (hash, mask, redact) steps with values."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from django.test import override_settings

from aggregator.dataplane import Field, FieldType, StreamSchema
from apps.transformations.steps import StepError, get_step_type

from ._helpers import apply, config_error

DOCS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "doc": [
            json.dumps({"customer": {"id": 7, "address": {"city": "Paris"}}, "tags": ["a", "b"], "ok": True}),
            "{broken",
            None,
            json.dumps({"customer": {"id": "x"}, "tags": [], "ok": "maybe"}),
        ],
    }
)
DOCS_SCHEMA = StreamSchema(name="docs", fields=(Field("id", FieldType.INTEGER), Field("doc", FieldType.JSON)))


def test_flatten_json_brings_typed_paths_out() -> None:
    config = {
        "column": "doc",
        "fields": {
            "customer.id": "integer",
            "customer.address.city": "string",
            "customer": "json",
            "ok": "boolean",
        },
        "prefix": "",
        "separator": "__",
        "drop_source": True,
    }
    out = apply("flatten_json", config, DOCS, DOCS_SCHEMA).batch.table
    assert out.column_names == ["id", "customer__id", "customer__address__city", "customer", "ok"]
    assert out.column("customer__id").to_pylist() == [7, None, None, None]
    assert out.column("customer__address__city").to_pylist() == ["Paris", None, None, None]
    assert out.column("customer").to_pylist() == [
        '{"id":7,"address":{"city":"Paris"}}',
        None,
        None,
        '{"id":"x"}',
    ]
    assert out.column("ok").to_pylist() == [True, None, None, None]  # "maybe" is not a boolean


def test_flatten_json_bad_text_can_fail_or_be_rejected() -> None:
    config = {"column": "doc", "fields": {"customer.id": "integer"}}
    with pytest.raises(StepError) as caught:
        apply("flatten_json", {**config, "on_error": "fail"}, DOCS, DOCS_SCHEMA)
    assert caught.value.message == "column 'doc' value '{broken' is not valid JSON (row index 1 of the batch)"
    output = apply("flatten_json", {**config, "on_error": "reject"}, DOCS, DOCS_SCHEMA)
    assert output.batch.table.column("id").to_pylist() == [1, 3, 4]
    assert [(r.reason, r.raw["id"]) for r in output.rejected] == [("column 'doc' is not valid JSON", 2)]


def test_flatten_json_depth_limit_and_paths() -> None:
    error = config_error("flatten_json", {"column": "doc", "fields": {"a.b.c": "string"}, "max_depth": 2})
    assert "'a.b.c' is 3 keys deep, deeper than max_depth 2" in error.message
    assert (
        "is not a path"
        in config_error("flatten_json", {"column": "doc", "fields": {"a..b": "string"}}).message
    )


def test_explode_makes_a_row_per_element() -> None:
    config = {"column": "doc", "target": "tag", "index_column": "pos"}
    table = pa.table({"id": [1, 2, 3, 4], "doc": ['["a", "b", null]', "[]", None, '{"not": "an array"}']})
    out = apply("explode", config, table).batch.table
    assert out.select(["id", "tag", "pos"]).to_pylist() == [
        {"id": 1, "tag": "a", "pos": 0},
        {"id": 1, "tag": "b", "pos": 1},
        {"id": 1, "tag": None, "pos": 2},
    ]
    kept = apply("explode", {**config, "keep_empty": True}, table).batch.table
    assert kept.select(["id", "tag", "pos"]).to_pylist()[3:] == [
        {"id": 2, "tag": None, "pos": None},
        {"id": 3, "tag": None, "pos": None},
        {"id": 4, "tag": None, "pos": None},
    ]
    numbers = apply(
        "explode", {"column": "doc", "element_type": "integer"}, pa.table({"doc": ['[1, 2.5, "x", 3]']})
    )
    assert numbers.batch.table.column("doc").to_pylist() == [1, None, None, 3]
    nested = apply(
        "explode", {"column": "doc", "element_type": "json"}, pa.table({"doc": ['[{"a": 1}, [2], "s"]']})
    )
    assert nested.batch.table.column("doc").to_pylist() == ['{"a":1}', "[2]", '"s"']
    schema = get_step_type("explode").output_schema(
        config, [StreamSchema(name="t", fields=DOCS_SCHEMA.fields, primary_key=("id",))]
    )
    assert schema.primary_key == ()  # one row became several


PII = pa.table(
    {
        "email": ["a@example.com", None, "a@example.com", "b@example.com"],
        "card": ["4111111111111111", "12", None, "é1234"],
    }
)


def test_hash_is_salted_deterministic_and_namespaced() -> None:
    first = apply("hash", {"columns": ["email"]}, PII).batch.table.column("email").to_pylist()
    assert first[0] == first[2] != first[3] and first[1] is None
    assert len(first[0]) == 64 and first[0] != __import__("hashlib").sha256(b"a@example.com").hexdigest()
    other = (
        apply("hash", {"columns": ["email"], "namespace": "crm"}, PII).batch.table.column("email").to_pylist()
    )
    assert other[0] != first[0]
    with override_settings(AGGREGATOR_PII_HASH_KEY="another key"):
        rekeyed = apply("hash", {"columns": ["email"]}, PII).batch.table.column("email").to_pylist()
    assert rekeyed[0] != first[0]
    assert apply("hash", {"columns": ["email"]}, PII).batch.table.column("email").to_pylist() == first


def test_mask_keeps_the_last_characters_and_redact_replaces() -> None:
    assert apply("mask", {"columns": ["card"]}, PII).batch.table.column("card").to_pylist() == [
        "************1111",
        "12",
        None,
        "*1234",
    ]
    assert apply("mask", {"columns": ["card"], "keep_last": 0, "mask_char": "#"}, PII).batch.table.column(
        "card"
    ).to_pylist() == ["################", "##", None, "#####"]
    assert apply("redact", {"columns": ["email"]}, PII).batch.table.column("email").to_pylist() == [
        "[REDACTED]",
        None,
        "[REDACTED]",
        "[REDACTED]",
    ]
    notes = pa.table({"n": ["mail a@example.com or b@x.org", None]})
    config = {"columns": ["n"], "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+", "replacement": r"<\1>"}
    assert apply("redact", config, notes).batch.table.column("n").to_pylist() == ["mail <\\1> or <\\1>", None]
