"""Transform step types: the contract the pipeline validator and executor call, the registry, and the
core steps (select, rename, filter, cast). The rest of the library lives in `library/` (one module per
family) and is registered by the import at the end of this module.

A step type is a stateless class. Its pydantic config model (unknown keys forbidden) gives the JSON Schema
the API serves for the builder's forms; `validate_config` turns a raw config into that model;
`output_schema` tells validation (and the builder) which fields come out for given input schemas, raising
`StepError` that names the field at fault; `apply` transforms one batch with Arrow compute kernels — no
per-row Python — and hands back the new batch plus any rows it rejected.

Steps that must hold more than one batch (sort, the small side of a join, a global aggregate) set
`buffers = True` and say so in their description; none of the steps here does.

`now()` in expressions is the run's start: a runner is made when the run starts and evaluates each batch
under `expressions.run_clock(started)`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import difflib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator
from pydantic import Field as PydanticField
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from aggregator.dataplane import (
    RESERVED_COLUMNS,
    Batch,
    Field,
    FieldType,
    RejectedRow,
    StreamSchema,
    arrow_type_for,
    field_type_of,
)
from aggregator.validation import pydantic_errors
from apps.transformations import expressions, limits
from apps.transformations.expressions import INT64_MAX, INT64_MIN, MAX_LENGTH, ExpressionError, Node


class StepError(Exception):
    """A config or an input the user must fix. `field` is the dotted path at fault (`config.columns.0`,
    `config.expression`, `step`); `errors` holds every config error by path when there are several."""

    def __init__(
        self, message: str, *, field: str | None = None, errors: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors if errors is not None else ({field: [message]} if field else {})


class StepBudgetExceeded(StepError):
    """A step produced more from one batch, or took longer over it, than `limits` allows."""


@dataclass
class StepOutput:
    batch: Batch
    rejected: list[RejectedRow] = field(default_factory=list)


class StepConfig(BaseModel):
    """Base of every step config: an unknown key is an error, so a typo is never silently ignored."""

    model_config = ConfigDict(extra="forbid")


ConfigT = TypeVar("ConfigT", bound=StepConfig)
_MONOTONIC = frozenset({FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME})


def unknown_column(name: str, names: list[str], *, field: str) -> StepError:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f", did you mean '{close[0]}'?" if close else ""
    return StepError(f"unknown column '{name}'{hint}", field=field)


def derive_schema(
    schema: StreamSchema, fields: list[Field], renamed: dict[str, str] | None = None
) -> StreamSchema:
    """The input's schema with new fields; primary key and cursor follow renames and are dropped when a
    step removes their columns (the key only as a whole: a partial key identifies nothing)."""
    renamed = renamed or {}
    names = {f.name for f in fields}
    primary_key = tuple(renamed.get(k, k) for k in schema.primary_key)
    cursor = renamed.get(schema.cursor_field, schema.cursor_field) if schema.cursor_field else None
    types = {f.name: f.type for f in fields}
    return StreamSchema(
        name=schema.name,
        fields=tuple(fields),
        primary_key=primary_key if all(k in names for k in primary_key) else (),
        cursor_field=cursor if cursor in names else None,
        cursor_candidates=tuple(
            renamed.get(c, c) for c in schema.cursor_candidates if types.get(renamed.get(c, c)) in _MONOTONIC
        ),
        supported_sync_modes=schema.supported_sync_modes,
    )


class StepType(Generic[ConfigT]):
    """Subclass this, fill in the class attributes, implement `_output_schema` and `_apply`, and decorate
    the class with `@register`. The public methods accept the validated config model or its raw dict."""

    slug: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    category: ClassVar[str]
    config_model: ClassVar[type[StepConfig]]
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    # True for steps that must hold more than one batch in memory; they say what and why in description.
    buffers: ClassVar[bool] = False

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.config_model.model_json_schema()

    @classmethod
    def validate_config(cls, raw: dict[str, Any]) -> BaseModel:
        try:
            return cls.config_model.model_validate(raw)
        except PydanticValidationError as exc:
            errors: dict[str, list[str]] = {}
            for path, messages in pydantic_errors(exc).items():
                key = "config" if path == "non_field_errors" else f"config.{path}"
                errors.setdefault(key, []).extend(messages)
            first_field, messages = next(iter(errors.items()))
            raise StepError(f"{first_field}: {messages[0]}", field=first_field, errors=errors) from None

    def _config(self, config: ConfigT | dict[str, Any]) -> ConfigT:
        if isinstance(config, dict):
            return self.validate_config(config)  # type: ignore[return-value]
        return config

    def output_schema(self, config: ConfigT | dict[str, Any], inputs: list[StreamSchema]) -> StreamSchema:
        count = len(inputs)
        if count < self.min_inputs or (self.max_inputs is not None and count > self.max_inputs):
            if self.max_inputs is None:
                wanted = f"{self.min_inputs} or more"
            elif self.min_inputs == self.max_inputs:
                wanted = str(self.min_inputs)
            else:
                wanted = f"{self.min_inputs} to {self.max_inputs}"
            raise StepError(f"'{self.slug}' takes {wanted} input(s), got {count}", field="inputs")
        return self._output_schema(self._config(config), inputs)

    def apply(self, config: ConfigT | dict[str, Any], batch: Batch, schema: StreamSchema) -> StepOutput:
        """Transform one batch. `schema` is the input stream's schema (what `output_schema` was given)."""
        return self._apply(self._config(config), batch, schema)

    def _output_schema(self, config: ConfigT, inputs: list[StreamSchema]) -> StreamSchema:
        raise NotImplementedError

    def _apply(self, config: ConfigT, batch: Batch, schema: StreamSchema) -> StepOutput:
        raise NotImplementedError

    # --- running inside a pipeline ---------------------------------------------------------------------
    #
    # The executor pushes batches: for each transform node it makes one runner per run and calls
    # `feed(input_id, batch)` for each batch arriving from the upstream node `input_id`, then
    # `end(input_id)` once that input is exhausted. Streaming steps (the default runner) transform each batch
    # as it comes. A step that must see more than one batch (sort, aggregate, deduplicate across the stream)
    # or combine inputs (union, join) returns its own runner from `runner()`, holds what it must and emits
    # from `feed`/`end`; it sets `buffers = True` and says in its description what it holds.

    def output_schema_for(
        self, config: ConfigT | dict[str, Any], inputs: dict[str, StreamSchema]
    ) -> StreamSchema:
        """`output_schema` with the inputs named by their upstream node ids (in edge order). Steps whose
        config names an input (a join's lookup side) override this; the default ignores the names."""
        return self.output_schema(config, list(inputs.values()))

    def input_order(self, config: ConfigT | dict[str, Any], input_ids: list[str]) -> list[str]:
        """Inputs that must be exhausted before the others start, in order (a join's lookup side). The
        executor reads the sources behind them first. Default: no constraint."""
        return []

    def runner(self, config: ConfigT | dict[str, Any], inputs: dict[str, StreamSchema]) -> StepRunner:
        return StreamingRunner(self, self._config(config), inputs)


class StepRunner:
    """One transform node during one run. See `StepType.runner`."""

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        raise NotImplementedError

    def end(self, input_id: str) -> Iterable[StepOutput]:
        return ()


class StreamingRunner(StepRunner):
    """Each batch in, one batch out: the runner of every step that needs nothing but the batch at hand."""

    def __init__(self, step: StepType[Any], config: Any, inputs: dict[str, StreamSchema]) -> None:
        self.step = step
        self.config = config
        self.inputs = inputs
        self.started = dt.datetime.now(tz=dt.UTC)

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        with expressions.run_clock(self.started):
            output = self.step.apply(self.config, batch, self.inputs[input_id])
        yield output


class BudgetedRunner(StepRunner):
    """Holds a step to its budget for each batch, the same in a run and in a preview.

    For each `feed` the step may output the larger of AGGREGATOR_STEP_OUTPUT_BYTES and
    AGGREGATOR_STEP_OUTPUT_GROWTH times the batch's bytes (plus the inputs it has read whole, which a join
    or a sql step adds to each batch); at an `end`, the same of everything it was fed (what a sort or an
    aggregate releases then). Each call may take AGGREGATOR_STEP_BATCH_SECONDS of the step's own time.
    Both are checked as each output comes out: the steps whose output can outgrow their input by a factor
    (`concat`/`replace` in expressions, regex replacements, fills, joins, sql) refuse before building it,
    and this is the bound for the rest.
    """

    def __init__(self, runner: StepRunner) -> None:
        self.runner = runner
        self.fed: dict[str, int] = {}
        self.ended: set[str] = set()

    def feed(self, input_id: str, batch: Batch) -> Iterable[StepOutput]:
        size = batch.table.nbytes
        self.fed[input_id] = self.fed.get(input_id, 0) + size
        held = sum(self.fed[i] for i in self.ended)
        return self._watch(self.runner.feed(input_id, batch), size + held, f"a batch of {limits.size(size)}")

    def end(self, input_id: str) -> Iterable[StepOutput]:
        self.ended.add(input_id)
        total = sum(self.fed.values())
        return self._watch(self.runner.end(input_id), total, f"its input of {limits.size(total)}")

    def _watch(self, outputs: Iterable[StepOutput], basis: int, given: str) -> Iterator[StepOutput]:
        bounds = limits.current()
        budget = bounds.output_budget(basis)
        produced = 0
        spent = 0.0
        iterator = iter(outputs)
        while True:
            # Only the step's own time counts: the consumer of each output runs between the next() calls.
            started = time.monotonic()
            try:
                output: StepOutput | None = next(iterator)
            except StopIteration:
                output = None
            spent += time.monotonic() - started
            if spent > bounds.step_batch_seconds:
                raise StepBudgetExceeded(
                    f"the step took {spent:.1f} s over {given}, more than its budget of "
                    f"{bounds.step_batch_seconds:g} s (AGGREGATOR_STEP_BATCH_SECONDS)"
                )
            if output is None:
                return
            produced += output.batch.table.nbytes
            if produced > budget:
                raise StepBudgetExceeded(
                    f"the step produced more than its budget of {limits.size(budget)} from "
                    f"{given} (the larger of AGGREGATOR_STEP_OUTPUT_BYTES and AGGREGATOR_STEP_OUTPUT_GROWTH "
                    "times what it was given)"
                )
            yield output


# --- registry ------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[StepType[Any]]] = {}
_INSTANCES: dict[str, StepType[Any]] = {}

StepClass = TypeVar("StepClass", bound=type[StepType[Any]])


def register(cls: StepClass) -> StepClass:
    if cls.slug in _REGISTRY and _REGISTRY[cls.slug] is not cls:
        raise ValueError(f"step type '{cls.slug}' is registered twice")
    _REGISTRY[cls.slug] = cls
    return cls


def get_step_type(slug: str) -> StepType[Any]:
    cls = _REGISTRY.get(slug) if isinstance(slug, str) else None
    if cls is None:
        raise StepError(f"unknown step '{slug}'", field="step")
    if slug not in _INSTANCES:
        _INSTANCES[slug] = cls()
    return _INSTANCES[slug]


def all_step_types() -> list[type[StepType[Any]]]:
    return sorted(_REGISTRY.values(), key=lambda cls: (cls.category, cls.slug))


# --- select --------------------------------------------------------------------------------------------


class SelectConfig(StepConfig):
    columns: list[str] = PydanticField(
        min_length=1,
        description="The columns to keep, in the order they should come out.",
        examples=[["year", "month", "day", "carrier", "dep_delay"]],
    )

    @field_validator("columns")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise PydanticCustomError(
                    "duplicate_column", "column '{name}' is listed twice", {"name": name}
                )
            seen.add(name)
        return names


@register
class SelectStep(StepType[SelectConfig]):
    slug = "select"
    title = "Select columns"
    description = (
        "Keeps the listed columns, in the listed order, and drops every other column. "
        'Example: {"columns": ["carrier", "flight", "dep_delay"]}.'
    )
    category = "columns"
    config_model = SelectConfig

    def _output_schema(self, config: SelectConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        fields = []
        for i, name in enumerate(config.columns):
            try:
                fields.append(schema.field(name))
            except KeyError:
                raise unknown_column(name, schema.field_names, field=f"config.columns.{i}") from None
        return derive_schema(schema, fields)

    def _apply(self, config: SelectConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        present = batch.table.column_names
        for i, name in enumerate(config.columns):
            if name not in present:
                raise unknown_column(name, present, field=f"config.columns.{i}")
        return StepOutput(Batch(batch.table.select(config.columns), stream=batch.stream))


# --- rename --------------------------------------------------------------------------------------------


class RenameConfig(StepConfig):
    columns: dict[str, str] = PydanticField(
        min_length=1,
        description="Old name → new name; columns not listed keep their names.",
        examples=[{"dep_delay": "departure_delay_min"}],
    )

    @field_validator("columns")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for old, new in value.items():
            if not new.strip():
                raise PydanticCustomError("empty_name", "the new name of '{old}' is empty", {"old": old})
            if new in RESERVED_COLUMNS:
                raise PydanticCustomError(
                    "reserved_name", "'{new}' is reserved for the loader's own column", {"new": new}
                )
        return value


def _renamed_names(names: list[str], columns: dict[str, str]) -> list[str]:
    for old in columns:
        if old not in names:
            raise unknown_column(old, names, field=f"config.columns.{old}")
    result = [columns.get(name, name) for name in names]
    seen: dict[str, str] = {}  # new name → the old name it came from
    for before, after in zip(names, result, strict=True):
        if after in seen:
            other = seen[after]
            old, kept = (before, other) if before in columns else (other, before)
            clash = (
                f"'{kept}', also renamed to '{after}'"
                if kept in columns and columns[kept] != kept
                else f"the column '{after}'"
            )
            raise StepError(
                f"renaming '{old}' to '{after}' collides with {clash}", field=f"config.columns.{old}"
            )
        seen[after] = before
    return result


@register
class RenameStep(StepType[RenameConfig]):
    slug = "rename"
    title = "Rename columns"
    description = (
        "Gives columns new names; the rest keep theirs. Two columns may swap names. "
        'Example: {"columns": {"dep_delay": "departure_delay_min"}}.'
    )
    category = "columns"
    config_model = RenameConfig

    def _output_schema(self, config: RenameConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        new_names = _renamed_names(schema.field_names, config.columns)
        fields = [
            Field(name=new, type=f.type, nullable=f.nullable, description=f.description)
            for f, new in zip(schema.fields, new_names, strict=True)
        ]
        return derive_schema(schema, fields, renamed=config.columns)

    def _apply(self, config: RenameConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        names = _renamed_names(batch.table.column_names, config.columns)
        return StepOutput(Batch(batch.table.rename_columns(names), stream=batch.stream))


# --- filter --------------------------------------------------------------------------------------------


class FilterConfig(StepConfig):
    expression: str = PydanticField(
        min_length=1,
        max_length=MAX_LENGTH,
        description="A condition; rows where it is true are kept (false and null are dropped).",
        examples=["dep_delay > 60 and carrier in ('UA', 'AA')"],
    )
    _node: Node | None = PrivateAttr(default=None)

    @field_validator("expression")
    @classmethod
    def _parses(cls, text: str) -> str:
        try:
            expressions.parse(text)
        except ExpressionError as exc:
            # the context keeps braces in the message (`unexpected character '{'`) out of the template
            raise PydanticCustomError("invalid_expression", "{error}", {"error": str(exc)}) from None
        return text

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = expressions.parse(self.expression)
        return self._node


@register
class FilterStep(StepType[FilterConfig]):
    slug = "filter"
    title = "Filter rows"
    description = (
        "Keeps the rows for which the expression is true; rows where it is false or null are dropped. "
        "Example: dep_delay > 60 and carrier in ('UA', 'AA')."
    )
    category = "rows"
    config_model = FilterConfig

    def _output_schema(self, config: FilterConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        try:
            result = expressions.typecheck(config.node, schema)
        except ExpressionError as exc:
            raise StepError(str(exc), field="config.expression") from None
        if result != FieldType.BOOLEAN:
            raise StepError(
                f"the filter expression must be a condition (true or false), but it gives {result} values",
                field="config.expression",
            )
        return schema

    def _apply(self, config: FilterConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        try:
            table = expressions.filter_table(config.node, batch.table, schema)
        except ExpressionError as exc:
            raise StepError(str(exc), field="config.expression") from None
        return StepOutput(Batch(table, stream=batch.stream))


# --- cast ----------------------------------------------------------------------------------------------

_ANY_TYPE = frozenset(FieldType)
_SCALAR = frozenset({FieldType.STRING, FieldType.INTEGER, FieldType.NUMBER, FieldType.BOOLEAN})
_TIME = frozenset({FieldType.STRING, FieldType.DATE, FieldType.DATETIME})
# target type → the source types it can be cast from
CASTS: dict[FieldType, frozenset[FieldType]] = {
    FieldType.STRING: _ANY_TYPE,
    FieldType.INTEGER: _SCALAR,
    FieldType.NUMBER: _SCALAR,
    FieldType.BOOLEAN: _SCALAR,
    FieldType.DATE: _TIME,
    FieldType.DATETIME: _TIME,
    FieldType.JSON: frozenset({FieldType.JSON}),
}

# What a text value must look like to be cast: the patterns make the rules ours rather than the parser's
# quirks (Arrow reads "0x1F" as 31, which no CSV author means). What passes a pattern and still fails in
# Arrow (a 19-digit integer beyond 64 bits, the 30th of February) is masked by an exact vectorised check
# when the conversion fails; anything left after that is found by the halving search, which costs two
# kernel calls per bad value per halving level.
_INTEGER_TEXT = r"^-?[0-9]+$"
_NUMBER_TEXT = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# years 0001-9999: there is no year 0 (Python and most destinations refuse it)
_DATE_PART = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_DATE_TEXT = rf"^{_DATE_PART}$"
_DATETIME_TEXT = (
    rf"^{_DATE_PART}([T ]([01][0-9]|2[0-3])(:[0-5][0-9](:[0-5][0-9](\.[0-9]{{1,6}})?)?)?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?$"
)
_ZONE_SUFFIX = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
_TRUE_WORDS = ["true", "t", "yes", "y", "1"]
_FALSE_WORDS = ["false", "f", "no", "n", "0"]


def _where(mask: pa.Array, values: pa.Array) -> pa.Array:
    """values where mask is true, null elsewhere (and where mask is null)."""
    return pc.if_else(mask, values, pa.scalar(None, type=values.type))


def _bad_positions(values: pa.Array, convert: Callable[[pa.Array], pa.Array]) -> list[int]:
    """The positions whose conversion fails, found by halving: zero-copy slices, O(k log n) kernel calls
    for k bad values. Only reached for what the text patterns cannot see (overflow, impossible dates), so
    k is small."""
    try:
        convert(values)
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(values) == 1:
            return [0]
    half = len(values) // 2
    return _bad_positions(values.slice(0, half), convert) + [
        half + i for i in _bad_positions(values.slice(half), convert)
    ]


def _convert_or_null(
    values: pa.Array,
    convert: Callable[[pa.Array], pa.Array],
    exact: Callable[[pa.Array], pa.Array] | None = None,
) -> pa.Array:
    """`convert(values)`, with null for the values it cannot convert. `exact` (a mask of the values that
    will convert) is run only when the plain conversion fails: it costs more than the conversion."""
    try:
        return convert(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if exact is not None:
        values = _where(exact(values), values)
    try:
        return convert(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _bad_positions(values, convert)
        keep = np.ones(len(values), dtype=bool)
        keep[bad] = False
        return convert(_where(pa.array(keep), values))


def _fits_int64(text: pa.Array) -> pa.Array:
    """For texts of digits with an optional minus: whether the value fits in 64 bits. Digit strings of
    one length compare as numbers do."""
    negative = pc.starts_with(text, "-")
    digits = pc.replace_substring_regex(text, r"^-?0*([0-9])", r"\1")  # no sign, no leading zeros
    length = pc.utf8_length(digits)
    limit = pc.if_else(negative, str(-INT64_MIN), str(INT64_MAX))
    return pc.or_(pc.less(length, 19), pc.and_(pc.equal(length, 19), pc.less_equal(digits, limit)))


def _real_dates(text: pa.Array) -> pa.Array:
    """For texts starting with YYYY-MM-DD: whether that is a day of the calendar (no 30th of February).
    strptime rolls an impossible day over into the next month, so the round trip tells them apart."""
    day = pc.utf8_slice_codeunits(text, 0, 10)
    parsed = pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True)
    return pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), day), False)


def _text_to(text: pa.Array, target: FieldType) -> pa.Array:
    if target in (FieldType.STRING, FieldType.JSON):
        return text
    if target == FieldType.BOOLEAN:
        lowered = pc.utf8_lower(text)
        return pc.if_else(
            pc.is_in(lowered, pa.array(_TRUE_WORDS)),
            True,
            pc.if_else(pc.is_in(lowered, pa.array(_FALSE_WORDS)), False, pa.scalar(None, pa.bool_())),
        )
    if target in (FieldType.INTEGER, FieldType.NUMBER):
        text = pc.replace_substring_regex(text, r"^\+", "")  # "+5" is five; Arrow would refuse it
    pattern = {
        FieldType.INTEGER: _INTEGER_TEXT,
        FieldType.NUMBER: _NUMBER_TEXT,
        FieldType.DATE: _DATE_TEXT,
        FieldType.DATETIME: _DATETIME_TEXT,
    }[target]
    candidates = _where(pc.match_substring_regex(text, pattern), text)
    exact = {FieldType.INTEGER: _fits_int64, FieldType.DATE: _real_dates, FieldType.DATETIME: _real_dates}
    if target != FieldType.DATETIME:
        arrow_type = arrow_type_for(target)
        return _convert_or_null(candidates, lambda v: pc.cast(v, arrow_type), exact.get(target))
    # Text with a zone is converted to UTC; text without one is taken as UTC already (the data plane's rule).
    utc = arrow_type_for(FieldType.DATETIME)
    zoned = pc.fill_null(pc.match_substring_regex(candidates, _ZONE_SUFFIX), False)
    with_zone = _convert_or_null(_where(zoned, candidates), lambda v: pc.cast(v, utc), _real_dates)
    naive = _convert_or_null(
        _where(pc.invert(zoned), candidates),
        lambda v: pc.cast(pc.cast(v, pa.timestamp("us")), utc),
        _real_dates,
    )
    return pc.if_else(zoned, with_zone, naive)


def _cast_values(values: pa.Array, target: FieldType) -> tuple[pa.Array, pa.Array]:
    """(the values as they are compared, the cast values). A value that cannot be cast is null in the
    result; so a cell is bad exactly where the first is valid and the second is null."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    target_type = arrow_type_for(target)
    if values.type == target_type:
        return values, values
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        text = pc.cast(pc.utf8_trim_whitespace(values), pa.string())
        text = _where(pc.not_equal(text, ""), text)  # a blank is a missing value, not a bad one
        return text, _text_to(text, target)
    if target == FieldType.STRING:
        return values, pc.cast(values, pa.string())
    if target == FieldType.INTEGER and pa.types.is_floating(values.type):
        whole = pc.and_(pc.is_finite(values), pc.equal(pc.floor(values), values))
        in_range = pc.and_(pc.greater_equal(values, -(2.0**63)), pc.less(values, 2.0**63))
        candidates = _where(pc.and_(whole, in_range), values)
        return values, pc.cast(candidates, target_type)
    if target == FieldType.NUMBER and pa.types.is_integer(values.type):
        # Beyond 2**53 a float cannot hold every integer; like every database, round rather than refuse.
        return values, pc.cast(values, target_type, safe=False)
    return values, _convert_or_null(values, lambda v: pc.cast(v, target_type))


def _show(value: Any) -> str:
    text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"'{text}'" if isinstance(value, str) else text


def _json_safe(value: Any) -> Any:
    """A row value as the quarantine can store it (JSON)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


def _check_castable(name: str, source: FieldType, target: FieldType) -> None:
    if source not in CASTS[target]:
        raise StepError(
            f"cannot cast column '{name}' from {source} to {target}", field=f"config.columns.{name}"
        )


class CastConfig(StepConfig):
    columns: dict[str, FieldType] = PydanticField(
        min_length=1,
        description="Column → the type to cast it to.",
        examples=[{"dep_delay": "number", "day": "date"}],
    )
    on_error: Literal["fail", "null", "reject"] = PydanticField(
        default="fail",
        description=(
            "What to do with a value that cannot be cast: fail the run, make it null, or reject the "
            "row to the run's quarantine."
        ),
    )


@register
class CastStep(StepType[CastConfig]):
    slug = "cast"
    title = "Cast types"
    description = (
        "Converts columns to another type. Text is trimmed first and a blank text is null. A value "
        "that cannot be converted fails the run, becomes null, or sends its row to quarantine. "
        'Example: {"columns": {"dep_delay": "number"}, "on_error": "reject"}.'
    )
    category = "types"
    config_model = CastConfig

    def _output_schema(self, config: CastConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        for name, target in config.columns.items():
            if name not in schema.field_names:
                raise unknown_column(name, schema.field_names, field=f"config.columns.{name}")
            _check_castable(name, schema.field(name).type, target)
        fields = [
            # nullable whatever the policy: a blank text becomes null
            Field(name=f.name, type=config.columns[f.name], nullable=True, description=f.description)
            if f.name in config.columns
            else f
            for f in schema.fields
        ]
        derived = derive_schema(schema, fields)
        # A column cast to a monotonic type (integer, number, date, datetime) can now serve as a cursor.
        candidates = set(derived.cursor_candidates) | {
            name for name, target in config.columns.items() if target in _MONOTONIC
        }
        return dataclasses.replace(
            derived, cursor_candidates=tuple(f.name for f in fields if f.name in candidates)
        )

    def _apply(self, config: CastConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        bad_by_column: dict[str, pa.Array] = {}
        for name, target in config.columns.items():
            index = table.schema.get_field_index(name)
            if index < 0:
                raise unknown_column(name, table.column_names, field=f"config.columns.{name}")
            original = table.column(index).combine_chunks()
            # JSON travels as text, so the schema knows a column's type better than its Arrow type does.
            source = schema.field(name).type if name in schema.field_names else field_type_of(original.type)
            _check_castable(name, source, target)
            compared, cast = _cast_values(original, target)
            bad = pc.and_(pc.is_valid(compared), pc.is_null(cast))
            if pc.any(bad).as_py():
                if config.on_error == "fail":
                    row = pc.index(bad, True).as_py()
                    raise StepError(
                        f"cannot cast column '{name}' value {_show(original[row].as_py())} to {target} "
                        f"(row index {row} of the batch)",
                        field=f"config.columns.{name}",
                    )
                bad_by_column[name] = bad
            table = table.set_column(index, pa.field(name, arrow_type_for(target)), cast)
        if config.on_error != "reject" or not bad_by_column:
            return StepOutput(Batch(table, stream=batch.stream))
        return self._reject(config, batch, table, bad_by_column)

    def _reject(
        self, config: CastConfig, batch: Batch, table: pa.Table, bad_by_column: dict[str, pa.Array]
    ) -> StepOutput:
        any_bad = None
        reasons: dict[int, list[str]] = {}
        # Python touches only the bad cells here, to word their reasons.
        for name, bad in bad_by_column.items():
            any_bad = bad if any_bad is None else pc.or_(any_bad, bad)
            rows = pc.indices_nonzero(bad)
            values = batch.table.column(name).take(rows).to_pylist()
            for row, value in zip(rows.to_pylist(), values, strict=True):
                reasons.setdefault(row, []).append(
                    f"cannot cast column '{name}' value {_show(value)} to {config.columns[name]}"
                )
        assert any_bad is not None
        rows = pc.indices_nonzero(any_bad)
        raw_rows = batch.table.take(rows).to_pylist()
        rejected = [
            RejectedRow(reason="; ".join(reasons[row]), raw=_json_safe(raw), source=self.slug)
            for row, raw in zip(rows.to_pylist(), raw_rows, strict=True)
        ]
        kept = table.filter(pc.invert(any_bad))
        return StepOutput(Batch(kept, stream=batch.stream), rejected=rejected)


# The library registers its steps on import; imported last because its modules import this one.
from apps.transformations import library  # noqa: E402, F401
