"""The step framework: the contract of a transform step type that the pipeline validator, the executor
and the preview call, the runners that feed it batches (and hold it to its budget), and the registry.

The built-in steps live in `library/` (one module per family, the core steps select, rename, filter and
cast in `library/core.py`); they are registered when the app is ready (`TransformationsConfig.ready`
imports the library, and each step class is decorated with `register`).

A step type is a stateless class. Its pydantic config model (unknown keys forbidden) gives the JSON Schema
the API serves for the builder's forms; `validate_config` turns a raw config into that model;
`output_schema` tells validation (and the builder) which fields come out for given input schemas, raising
`StepError` that names the field at fault; `apply` transforms one batch with Arrow compute kernels — no
per-row Python — and hands back the new batch plus any rows it rejected.

Steps that must hold more than one batch (sort, the small side of a join, a global aggregate) set
`buffers = True` and say so in their description.

`now()` in expressions is the run's start: a runner is made when the run starts and evaluates each batch
under `expressions.run_clock(started)`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from aggregator.dataplane import Batch, Field, FieldType, RejectedRow, StreamSchema
from aggregator.validation import pydantic_errors
from apps.transformations import expressions, limits

# Which casts exist is the cast step's table; the schemas app's field mappings check their casts with it.
from apps.transformations.casting import CASTS as CASTS


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
# The types a cursor can be: their values only grow as rows are added.
MONOTONIC_TYPES = frozenset({FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME})


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
            renamed.get(c, c)
            for c in schema.cursor_candidates
            if types.get(renamed.get(c, c)) in MONOTONIC_TYPES
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
