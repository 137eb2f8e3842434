"""`ContractDecision.conform` on its own: batches made to fit the accepted schema again."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema
from apps.schemas.contracts import contract_conformer
from apps.schemas.services import schema_diff

ACCEPTED = StreamSchema(
    name="orders",
    fields=(Field("id", FieldType.INTEGER, nullable=False), Field("paid", FieldType.BOOLEAN), Field("note")),
)
NOW = StreamSchema(
    name="orders",
    fields=(Field("id", FieldType.INTEGER, nullable=False), Field("paid", FieldType.DATE), Field("coupon")),
)


def decision(new_columns: str, type_changes: str):
    diff = schema_diff(stream="orders", old=ACCEPTED.to_dict(), new=NOW.to_dict())
    return contract_conformer(
        planned=ACCEPTED,
        discovered=NOW,
        diff=diff,
        policies={"new_columns": new_columns, "type_changes": type_changes},
    )


def batch() -> Batch:
    return Batch(
        pa.table(
            {
                "id": pa.array([1, 2, 3], pa.int64()),
                "paid": pa.array([dt.date(2026, 1, 1), None, dt.date(2026, 1, 3)], pa.date32()),
                "note": pa.array([None, None, None], pa.string()),
                "coupon": pa.array(["A", " ", None]),
            }
        ),
        stream="orders",
    )


def test_the_read_schema_has_the_discovered_type_and_the_new_columns_it_must_inspect():
    chosen = decision("discard_row", "discard_value")
    assert [(f.name, str(f.type)) for f in chosen.read_schema.fields] == [
        ("id", "integer"),
        ("paid", "date"),
        ("note", "string"),
        ("coupon", "string"),
    ]
    assert decision("discard_value", "discard_value").read_schema.field_names == ["id", "paid", "note"]


def test_a_type_that_cannot_cast_back_is_null_under_discard_value():
    out, refused = decision("discard_value", "discard_value").conform(batch())
    assert refused is None
    assert out.table.schema == pa.schema([("id", pa.int64()), ("paid", pa.bool_()), ("note", pa.string())])
    assert out.table.column("paid").to_pylist() == [None, None, None]


def test_discard_row_refuses_rows_with_new_values_and_reads_changed_types_as_accepted():
    chosen = decision("discard_row", "discard_row")
    # A changed type is read as the accepted one: the source refuses values that do not fit (with their line).
    assert [(f.name, str(f.type)) for f in chosen.read_schema.fields] == [
        ("id", "integer"),
        ("paid", "boolean"),
        ("note", "string"),
        ("coupon", "string"),
    ]
    as_read = Batch(
        pa.table(
            {
                "id": pa.array([1, 2, 3], pa.int64()),
                "paid": pa.array([True, None, False], pa.bool_()),
                "note": pa.array([None, None, None], pa.string()),
                "coupon": pa.array(["A", " ", None]),
            }
        ),
        stream="orders",
    )
    out, refused = chosen.conform(as_read)
    # Row 1 has a coupon; rows 2 and 3 have none (a blank is no value).
    assert out.table.to_pylist() == [
        {"id": 2, "paid": None, "note": None},
        {"id": 3, "paid": False, "note": None},
    ]
    assert refused is not None
    assert [(r.raw["id"], r.source) for r in refused.rows] == [(1, "schema contract")]
