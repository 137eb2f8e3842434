"""Text steps: trim, change case, normalise, regex replace and extract, split.

Regular expressions are RE2's (Arrow's engine): linear time, so no pattern can stall a run, but no
look-around or back-references. A pattern is compiled when the config is validated, so one RE2 refuses
is a config error naming `config.pattern`, never a failed run.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema
from apps.transformations.steps import StepConfig, StepError, StepOutput, StepType, derive_schema, register

from ._util import (
    TEXT_TYPES,
    column,
    field_of,
    new_name,
    replacement_growth,
    set_column,
    text,
    typed_field,
    unique_names,
)

_COLUMNS_DESCRIPTION = "Text columns to change; the others pass through."
# `\1` … `\9` in a replacement: each copies a group of the match.
_GROUP_REFERENCE_RE = re.compile(r"\\[0-9]")


def re2_pattern(pattern: str) -> str:
    """A pydantic validator body: the pattern must compile in RE2."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).removeprefix("Invalid regular expression: ")
        hint = ""
        if "(?<" in pattern or "(?=" in pattern or "(?!" in pattern:
            hint = " (look-around is not supported: RE2 matches in linear time)"
        elif re.search(r"\\[1-9]", pattern):
            hint = " (back-references are not supported: RE2 matches in linear time)"
        raise PydanticCustomError(
            "invalid_regex",
            "not a valid regular expression: {reason}{hint}",
            {"reason": reason, "hint": hint},
        ) from None
    return pattern


def _text_columns(schema: StreamSchema, names: list[str]) -> None:
    for i, name in enumerate(names):
        typed_field(schema, name, f"config.columns.{i}", TEXT_TYPES, "text")


class _ColumnsConfig(StepConfig):
    columns: list[str] = PydanticField(
        min_length=1, title="Columns", description=_COLUMNS_DESCRIPTION, examples=[["carrier", "tailnum"]]
    )
    _unique = field_validator("columns")(unique_names)


class _PerColumnStep(StepType[Any]):
    """A step that rewrites each listed text column on its own, keeping its type (string or json)."""

    def _output_schema(self, config: Any, inputs: list[StreamSchema]) -> StreamSchema:
        _text_columns(inputs[0], config.columns)
        return inputs[0]

    def transform(self, config: Any, values: pa.Array) -> pa.Array:
        raise NotImplementedError

    def refuse(self, config: Any, table: pa.Table, values: pa.Array) -> None:
        """Steps whose output can be longer than their input refuse here what would be too long."""

    def _apply(self, config: Any, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        for i, name in enumerate(config.columns):
            values = text(column(table, name, f"config.columns.{i}"))
            field_type = schema.field(name).type if name in schema.field_names else FieldType.STRING
            self.refuse(config, batch.table, values)
            table = set_column(table, name, self.transform(config, values), field_type)
        return StepOutput(Batch(table, stream=batch.stream))


# --- trim ----------------------------------------------------------------------------------------------


class TrimConfig(_ColumnsConfig):
    side: Literal["both", "left", "right"] = PydanticField(
        default="both",
        title="Side",
        description="Trim the start (left), the end (right) or both.",
        examples=["left"],
    )
    characters: str | None = PydanticField(
        default=None,
        min_length=1,
        title="Characters",
        description="The characters to strip; by default any Unicode whitespace.",
        examples=[" -"],
    )


@register
class TrimStep(_PerColumnStep):
    slug = "trim"
    title = "Trim text"
    description = (
        "Removes whitespace (or the given characters) from the start and/or end of text columns. "
        'Example: {"columns": ["tailnum"], "side": "both"}.'
    )
    category = "text"
    config_model = TrimConfig

    def transform(self, config: TrimConfig, values: pa.Array) -> pa.Array:
        if config.characters is None:
            kernel = {
                "both": pc.utf8_trim_whitespace,
                "left": pc.utf8_ltrim_whitespace,
                "right": pc.utf8_rtrim_whitespace,
            }
            return kernel[config.side](values)
        kernel = {"both": pc.utf8_trim, "left": pc.utf8_ltrim, "right": pc.utf8_rtrim}
        return kernel[config.side](values, characters=config.characters)


# --- change case ---------------------------------------------------------------------------------------


class ChangeCaseConfig(_ColumnsConfig):
    case: Literal["lower", "upper", "title", "capitalize"] = PydanticField(
        title="Case",
        description="lower, UPPER, Title Case (each word), or Capitalize (the first letter only).",
        examples=["upper"],
    )


@register
class ChangeCaseStep(_PerColumnStep):
    slug = "change_case"
    title = "Change case"
    description = (
        "Changes the letter case of text columns (Unicode-aware). "
        'Example: {"columns": ["origin"], "case": "lower"}.'
    )
    category = "text"
    config_model = ChangeCaseConfig

    def transform(self, config: ChangeCaseConfig, values: pa.Array) -> pa.Array:
        kernel = {
            "lower": pc.utf8_lower,
            "upper": pc.utf8_upper,
            "title": pc.utf8_title,
            "capitalize": pc.utf8_capitalize,
        }
        return kernel[config.case](values)


# --- normalise -----------------------------------------------------------------------------------------


class NormalizeConfig(_ColumnsConfig):
    whitespace: bool = PydanticField(
        default=True,
        title="Whitespace",
        description=(
            "Collapse every run of whitespace (tabs, newlines, non-breaking spaces) to one space and trim."
        ),
    )
    unicode: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = PydanticField(
        default="NFC",
        title="Unicode form",
        description=(
            "NFC composes accents (é as one character); NFKC also folds compatibility forms (ﬁ → fi, "
            "full-width letters → ASCII). null leaves the characters as they are."
        ),
    )
    empty_as_null: bool = PydanticField(
        default=False,
        title="Empty text is null",
        description="After normalising, an empty text becomes null.",
    )

    @model_validator(mode="after")
    def _does_something(self) -> NormalizeConfig:
        if not self.whitespace and self.unicode is None and not self.empty_as_null:
            raise PydanticCustomError("nothing_to_do", "choose whitespace, a unicode form or empty_as_null")
        return self


@register
class NormalizeStep(_PerColumnStep):
    slug = "normalize"
    title = "Normalise text"
    description = (
        "Normalises Unicode (NFC or NFKC) and whitespace in text columns, so values that look the same "
        'compare the same. Example: {"columns": ["name"], "unicode": "NFKC"}.'
    )
    category = "text"
    config_model = NormalizeConfig

    def transform(self, config: NormalizeConfig, values: pa.Array) -> pa.Array:
        if config.unicode is not None:
            values = pc.utf8_normalize(values, form=config.unicode)
        if config.whitespace:
            values = pc.utf8_trim_whitespace(pc.replace_substring_regex(values, r"\s+", " "))
        if config.empty_as_null:
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        return values


# --- regex replace -------------------------------------------------------------------------------------


class RegexReplaceConfig(_ColumnsConfig):
    pattern: str = PydanticField(
        min_length=1,
        title="Pattern",
        description="An RE2 regular expression.",
        examples=[r"^N(\d+)$"],
    )
    replacement: str = PydanticField(
        title="Replacement",
        description=r"The text that replaces each match; \1 … \9 insert the groups.",
        examples=[r"\1"],
    )
    ignore_case: bool = PydanticField(
        default=False, title="Ignore case", description="Match letters whatever their case."
    )

    _pattern = field_validator("pattern")(re2_pattern)


@register
class RegexReplaceStep(_PerColumnStep):
    slug = "regex_replace"
    title = "Replace by pattern"
    description = (
        "Replaces every match of a regular expression (RE2 syntax) in text columns. "
        r'Example: {"columns": ["tailnum"], "pattern": "^N", "replacement": ""}.'
    )
    category = "text"
    config_model = RegexReplaceConfig

    def _pattern(self, config: RegexReplaceConfig) -> str:
        return f"(?i){config.pattern}" if config.ignore_case else config.pattern

    def transform(self, config: RegexReplaceConfig, values: pa.Array) -> pa.Array:
        return pc.replace_substring_regex(values, self._pattern(config), config.replacement)

    def refuse(self, config: RegexReplaceConfig, table: pa.Table, values: pa.Array) -> None:
        # A pattern that matches the empty text (`x*`, `^`) matches between every two characters.
        copies = len(_GROUP_REFERENCE_RE.findall(config.replacement))
        literal = len(_GROUP_REFERENCE_RE.sub("", config.replacement).encode())
        if literal or copies:
            replacement_growth(
                table,
                values,
                self._pattern(config),
                literal,
                copies,
                what="the replacement",
                field="config.replacement",
            )


# --- regex extract -------------------------------------------------------------------------------------

_GROUP_RE = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")


class RegexExtractConfig(StepConfig):
    column: str = PydanticField(
        title="Column", description="The text column to search.", examples=["tailnum"]
    )
    pattern: str = PydanticField(
        min_length=1,
        title="Pattern",
        description="An RE2 regular expression with named groups; each group becomes a text column.",
        examples=[r"^N(?P<tail_number>\d+)(?P<tail_suffix>[A-Z]*)$"],
    )
    drop_source: bool = PydanticField(
        default=False, title="Drop the searched column", description="Remove the searched column afterwards."
    )

    _pattern = field_validator("pattern")(re2_pattern)

    @property
    def groups(self) -> list[str]:
        return _GROUP_RE.findall(self.pattern)

    @model_validator(mode="after")
    def _has_groups(self) -> RegexExtractConfig:
        if not self.groups:
            raise PydanticCustomError(
                "no_groups", "the pattern needs named groups, like (?P<number>\\d+): each becomes a column"
            )
        for name in self.groups:
            new_name(name)
        return self


@register
class RegexExtractStep(StepType[RegexExtractConfig]):
    slug = "regex_extract"
    title = "Extract by pattern"
    description = (
        "Searches a text column with a regular expression and puts each named group in a new text column "
        "(null where the pattern does not match). "
        r'Example: {"column": "tailnum", "pattern": "^N(?P<tail_number>\\d+)"}.'
    )
    category = "text"
    config_model = RegexExtractConfig

    def _output_schema(self, config: RegexExtractConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        typed_field(schema, config.column, "config.column", TEXT_TYPES, "text")
        kept = [f for f in schema.fields if not (config.drop_source and f.name == config.column)]
        for group in config.groups:
            if group in {f.name for f in kept}:
                raise StepError(
                    f"the group '{group}' would overwrite the column '{group}'", field="config.pattern"
                )
        return derive_schema(schema, [*kept, *(Field(g, FieldType.STRING) for g in config.groups)])

    def _apply(self, config: RegexExtractConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        values = text(column(batch.table, config.column, "config.column"))
        found = pc.extract_regex(values, config.pattern)
        table = batch.table.drop_columns([config.column]) if config.drop_source else batch.table
        for i, group in enumerate(config.groups):
            table = set_column(table, group, pc.struct_field(found, [i]), FieldType.STRING)
        return StepOutput(Batch(table, stream=batch.stream))


# --- split ---------------------------------------------------------------------------------------------


class SplitConfig(StepConfig):
    column: str = PydanticField(title="Column", description="The text column to split.", examples=["route"])
    separator: str = PydanticField(
        min_length=1, title="Separator", description="The literal text between parts.", examples=["-"]
    )
    into: list[str] | None = PydanticField(
        default=None,
        title="Into columns",
        description=(
            "Names for the parts, in order: part 1 goes to the first, and so on; missing parts are null and "
            "parts beyond the last name are dropped. Leave out to get the parts as a JSON list instead."
        ),
        examples=[["origin", "dest"]],
    )
    target: str | None = PydanticField(
        default=None,
        title="List column",
        description=(
            "Without `into`: the json column for the list of parts (default: the split column itself)."
        ),
        examples=["route_parts"],
    )

    @field_validator("into")
    @classmethod
    def _names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            if not names:
                raise PydanticCustomError("empty", "name at least one column, or leave `into` out")
            unique_names(names)
            for name in names:
                new_name(name)
        return names

    @model_validator(mode="after")
    def _one_output(self) -> SplitConfig:
        if self.into is not None and self.target is not None:
            raise PydanticCustomError("two_outputs", "give `into` (columns) or `target` (a list), not both")
        if self.target is not None:
            new_name(self.target)
        return self


def _json_list(parts: pa.ListArray) -> pa.Array:
    """Each row's list of strings as JSON text (`["a","b"]`), built from the flat values, no row loop."""
    flat = parts.flatten()
    escaped = flat
    for char, escape in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, char, escape)
    quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    quoted = pc.fill_null(quoted, "null")
    rebuilt = pa.ListArray.from_arrays(parts.offsets, quoted, mask=parts.is_null())
    return pc.binary_join_element_wise("[", pc.binary_join(rebuilt, ","), "]", "")


def split_parts(values: pa.Array, count: int, parts: pa.ListArray) -> list[pa.Array]:
    """The first `count` parts of each row as columns, null where a row has fewer."""
    lengths = pc.fill_null(pc.list_value_length(parts), 0).to_numpy(zero_copy_only=False)
    offsets = parts.offsets.to_numpy()
    starts = offsets[:-1] - offsets[0]  # flatten() starts at the first row's first part
    flat = parts.flatten()
    columns = []
    for i in range(count):
        has = lengths > i
        if not has.any():
            columns.append(pa.nulls(len(values), pa.string()))
            continue
        columns.append(flat.take(pa.array(np.where(has, starts + i, 0), mask=~has)))
    return columns


@register
class SplitStep(StepType[SplitConfig]):
    slug = "split"
    title = "Split text"
    description = (
        "Splits a text column on a separator, into named columns (missing parts are null) or into a JSON "
        'list. Example: {"column": "route", "separator": "-", "into": ["origin", "dest"]}.'
    )
    category = "text"
    config_model = SplitConfig

    def _output_schema(self, config: SplitConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        source = typed_field(schema, config.column, "config.column", TEXT_TYPES, "text")
        if config.into is None:
            target = config.target or config.column
            new = Field(target, FieldType.JSON, nullable=source.nullable)
            if target in schema.field_names:
                return derive_schema(schema, [new if f.name == target else f for f in schema.fields])
            return derive_schema(schema, [*schema.fields, new])
        for i, name in enumerate(config.into):
            if name in schema.field_names and name != config.column:
                raise StepError(
                    f"the part '{name}' would overwrite the column '{name}'", field=f"config.into.{i}"
                )
        kept = [f for f in schema.fields if f.name not in config.into]
        return derive_schema(schema, [*kept, *(Field(n, FieldType.STRING) for n in config.into)])

    def _apply(self, config: SplitConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        field_of(StreamSchema.from_arrow("batch", batch.table.schema), config.column, "config.column")
        values = text(column(batch.table, config.column, "config.column"))
        parts = pc.split_pattern(values, pattern=config.separator)
        table = batch.table
        if config.into is None:
            return StepOutput(
                Batch(
                    set_column(table, config.target or config.column, _json_list(parts), FieldType.JSON),
                    stream=batch.stream,
                )
            )
        table = table.drop_columns([n for n in config.into if n in table.column_names])
        for name, part in zip(config.into, split_parts(values, len(config.into), parts), strict=True):
            table = set_column(table, name, part, FieldType.STRING)
        return StepOutput(Batch(table, stream=batch.stream))
