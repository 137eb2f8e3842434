"""Personal data: hash (salted SHA-256), mask (keep the last N characters), redact. Dropping a column is
the `drop` step.

The hash salt: a step runs without knowing its workspace, and a salt in the pipeline document would be
readable by everyone who can read the pipeline. So the salt is derived on the server:
HMAC-SHA256(key, "aggregator.pii.hash:" + namespace), where key is the AGGREGATOR_PII_HASH_KEY setting
(SECRET_KEY when unset). The same value in the same namespace always hashes the same, so hashed columns
still join across pipelines and runs; a different namespace gives unrelated hashes; without the server key
a hash cannot be reversed by hashing guesses. Changing the key (or SECRET_KEY when it is the key) changes
every hash: set AGGREGATOR_PII_HASH_KEY before hashing data that must stay joinable.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from pydantic import Field as PydanticField
from pydantic import field_validator

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema
from apps.transformations.steps import StepConfig, StepOutput, StepType, derive_schema, register

from ._util import (
    TEXT_TYPES,
    column,
    duck,
    field_of,
    quote_literal,
    refuse_growth,
    replacement_growth,
    set_column,
    text,
    typed_field,
    unique_names,
)
from .text import re2_pattern


def hash_salt(namespace: str) -> str:
    key = getattr(settings, "AGGREGATOR_PII_HASH_KEY", None) or settings.SECRET_KEY
    return hmac.new(
        str(key).encode(), f"aggregator.pii.hash:{namespace}".encode(), hashlib.sha256
    ).hexdigest()


class _PiiConfig(StepConfig):
    columns: list[str] = PydanticField(
        min_length=1,
        title="Columns",
        description="The columns to protect; they become text.",
        examples=[["email", "phone"]],
    )

    _unique = field_validator("columns")(unique_names)


def _as_text(schema: StreamSchema, config: Any) -> StreamSchema:
    """Each listed column becomes text (its values are replaced by text); nullability is kept."""
    for i, name in enumerate(config.columns):
        field_of(schema, name, f"config.columns.{i}")
    fields = [
        Field(f.name, FieldType.STRING, nullable=f.nullable, description=f.description)
        if f.name in config.columns
        else f
        for f in schema.fields
    ]
    return derive_schema(schema, fields)


# --- hash ----------------------------------------------------------------------------------------------


class HashConfig(_PiiConfig):
    namespace: str = PydanticField(
        default="default",
        min_length=1,
        max_length=200,
        title="Namespace",
        description=(
            "Hashes are comparable only within a namespace: use one per purpose (or per workspace) to keep "
            "hashed identifiers from being linked across them."
        ),
        examples=["marketing"],
    )


@register
class HashStep(StepType[HashConfig]):
    slug = "hash"
    title = "Hash (pseudonymise)"
    description = (
        "Replaces values with the hex SHA-256 of a server-held salt and the value's text, so equal values "
        "stay equal (joins and counts still work) but cannot be read back. Nulls stay null. "
        'Example: {"columns": ["email"], "namespace": "crm"}.'
    )
    category = "pii"
    config_model = HashConfig

    def _output_schema(self, config: HashConfig, inputs: list[StreamSchema]) -> StreamSchema:
        return _as_text(inputs[0], config)

    def _apply(self, config: HashConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        salt = quote_literal(hash_salt(config.namespace))  # hex digits: nothing to escape
        table = batch.table
        for i, name in enumerate(config.columns):
            values = text(column(table, name, f"config.columns.{i}"))
            hashed = duck(f"SELECT sha256({salt} || c) AS h FROM v", {"v": pa.table({"c": values})})  # noqa: S608
            table = set_column(table, name, hashed.column("h").combine_chunks(), FieldType.STRING)
        return StepOutput(Batch(table, stream=batch.stream))


# --- mask ----------------------------------------------------------------------------------------------


class MaskConfig(_PiiConfig):
    keep_last: int = PydanticField(
        default=4,
        ge=0,
        le=100,
        title="Keep last",
        description="Characters left visible at the end.",
        examples=[4],
    )
    mask_char: str = PydanticField(
        default="*",
        min_length=1,
        max_length=1,
        title="Mask character",
        description="One character.",
        examples=["#"],
    )


@register
class MaskStep(StepType[MaskConfig]):
    slug = "mask"
    title = "Mask"
    description = (
        "Replaces every character but the last N with a mask character, keeping the length "
        "(4111111111111111 → ************1111). Nulls stay null. "
        'Example: {"columns": ["card_number"], "keep_last": 4}.'
    )
    category = "pii"
    config_model = MaskConfig

    def _output_schema(self, config: MaskConfig, inputs: list[StreamSchema]) -> StreamSchema:
        return _as_text(inputs[0], config)

    def _apply(self, config: MaskConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        for i, name in enumerate(config.columns):
            values = text(column(table, name, f"config.columns.{i}"))
            length = pc.utf8_length(values)
            hidden = pc.max_element_wise(pc.subtract(length, config.keep_last), 0)
            shown = (
                pc.utf8_slice_codeunits(values, start=-config.keep_last)
                if config.keep_last
                else pc.if_else(pc.is_valid(values), "", pa.scalar(None, pa.string()))
            )
            masked = pc.binary_join_element_wise(pc.binary_repeat(config.mask_char, hidden), shown, "")
            table = set_column(table, name, masked, FieldType.STRING)
        return StepOutput(Batch(table, stream=batch.stream))


# --- redact --------------------------------------------------------------------------------------------


class RedactConfig(_PiiConfig):
    pattern: str | None = PydanticField(
        default=None,
        title="Pattern",
        description=(
            "An RE2 regular expression: only the matches are replaced. Leave out to replace whole values."
        ),
        examples=[r"[\w.+-]+@[\w-]+\.[\w.]+"],
    )
    replacement: str = PydanticField(
        default="[REDACTED]",
        title="Replacement",
        description="The text put in place of each value or match (taken literally).",
        examples=["[email]"],
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return None if value is None else re2_pattern(value)


@register
class RedactStep(StepType[RedactConfig]):
    slug = "redact"
    title = "Redact"
    description = (
        "Replaces whole values, or only the parts that match a pattern (e-mail addresses in free text), "
        'with a fixed text. Nulls stay null. Example: {"columns": ["notes"], "pattern": "[0-9]{9}"}.'
    )
    category = "pii"
    config_model = RedactConfig

    def _output_schema(self, config: RedactConfig, inputs: list[StreamSchema]) -> StreamSchema:
        if config.pattern is not None:
            for i, name in enumerate(config.columns):
                typed_field(inputs[0], name, f"config.columns.{i}", TEXT_TYPES, "text to search")
        return _as_text(inputs[0], config)

    def _apply(self, config: RedactConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        for i, name in enumerate(config.columns):
            values = text(column(table, name, f"config.columns.{i}"))
            literal = len(config.replacement.encode())
            if config.pattern is None:
                refuse_growth(
                    batch.table,
                    (len(values) - values.null_count) * literal,
                    what="the replacement",
                    field="config.replacement",
                )
                redacted = pc.if_else(pc.is_valid(values), config.replacement, pa.scalar(None, pa.string()))
            else:
                if literal:
                    replacement_growth(
                        batch.table,
                        values,
                        config.pattern,
                        literal,
                        0,
                        what="the replacement",
                        field="config.replacement",
                    )
                # A literal replacement: backslashes in it must not be read as group references.
                redacted = pc.replace_substring_regex(
                    values, config.pattern, config.replacement.replace("\\", "\\\\")
                )
            table = set_column(table, name, redacted, FieldType.STRING)
        return StepOutput(Batch(table, stream=batch.stream))
