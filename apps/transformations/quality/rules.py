"""The rules' configs: one pydantic model per rule type (unknown keys forbidden), chosen by `type`, their
errors (`RuleError`, `RuleFailed`), and the rule types with their JSON Schemas for the builder
(`rule_types`).
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, model_validator
from pydantic import Field as PydanticField

from aggregator.dataplane import FieldType
from apps.transformations import expressions

Action = Literal["fail", "reject", "warn"]
_RULE_ID = r"^[A-Za-z0-9_.\-]{1,100}$"


class RuleError(Exception):
    """A rule config that does not fit the node: `field` is the key of the rule at fault."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class RuleFailed(Exception):
    """A fail-action rule failed: the run stops. Retrying cannot help, so the executor treats it like a
    configuration error."""

    def __init__(self, message: str, *, node: str, rule: str, counts: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.rule = rule
        self.counts = counts


# --- configs -------------------------------------------------------------------------------------------


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = PydanticField(pattern=_RULE_ID, description="Names the rule in reports and quarantine.")
    action: Action = PydanticField(
        default="fail",
        description="fail the run, reject the row to quarantine, or warn (count and keep the row).",
    )
    description: str = PydanticField(default="", max_length=500)


class NotNullRule(RuleBase):
    """The value is not null."""

    type: Literal["not_null"]
    column: str


class UniqueRule(RuleBase):
    """Unique within the run: the first row with a key passes, later ones fail. Rows with a null in the key
    are not checked (as a SQL unique constraint)."""

    type: Literal["unique"]
    columns: list[str] = PydanticField(min_length=1, max_length=20)

    @model_validator(mode="before")
    @classmethod
    def _one_column(cls, data: Any) -> Any:
        # `"column": "x"` is accepted for the common single-column key.
        if isinstance(data, dict) and "column" in data and "columns" not in data:
            data = {**data, "columns": [data["column"]]}
            del data["column"]
        return data


class RangeRule(RuleBase):
    """The value lies between `min` and `max` (each optional, inclusive unless said otherwise); bounds
    are cast to the column's type, so a date column takes `"2013-01-01"`."""

    type: Literal["range"]
    column: str
    min: float | int | str | None = None
    max: float | int | str | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    @model_validator(mode="after")
    def _a_bound(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        return self


class RegexRule(RuleBase):
    """The value must contain a match (RE2 syntax; anchor with ^…$ to match the whole value)."""

    type: Literal["regex"]
    column: str
    pattern: str = PydanticField(min_length=1, max_length=1000)


class AllowedValuesRule(RuleBase):
    """The value is one of `values`."""

    type: Literal["allowed_values"]
    column: str
    values: list[str | int | float | bool] = PydanticField(min_length=1, max_length=10_000)


class TypeRule(RuleBase):
    """The value (typically text) can be cast to `expected_type` as the cast step would."""

    type: Literal["type"]
    column: str
    expected_type: FieldType


class RowCountRule(RuleBase):
    """The node's total row count lies within `min`/`max`. Judged when the node's stream ends; there is
    no row to reject, so the action is fail or warn."""

    type: Literal["row_count"]
    min: int | None = PydanticField(default=None, ge=0)
    max: int | None = PydanticField(default=None, ge=0)
    action: Literal["fail", "warn"] = "fail"

    @model_validator(mode="after")
    def _a_bound(self) -> RowCountRule:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("`min` is above `max`")
        return self


class FreshnessRule(RuleBase):
    """The latest value of a date or datetime column is at most `max_age_s` old when the stream ends."""

    type: Literal["freshness"]
    column: str
    max_age_s: int = PydanticField(gt=0)
    action: Literal["fail", "warn"] = "fail"


class ExpressionRule(RuleBase):
    """A boolean expression of the expression language; a row passes where it is true."""

    type: Literal["expression"]
    expression: str = PydanticField(min_length=1, max_length=expressions.MAX_LENGTH)


RuleConfig = Annotated[
    NotNullRule
    | UniqueRule
    | RangeRule
    | RegexRule
    | AllowedValuesRule
    | TypeRule
    | RowCountRule
    | FreshnessRule
    | ExpressionRule,
    PydanticField(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(RuleConfig)
RULE_TYPES = (
    "not_null",
    "unique",
    "range",
    "regex",
    "allowed_values",
    "type",
    "row_count",
    "freshness",
    "expression",
)

_MODELS: dict[str, type[RuleBase]] = {
    "not_null": NotNullRule,
    "unique": UniqueRule,
    "range": RangeRule,
    "regex": RegexRule,
    "allowed_values": AllowedValuesRule,
    "type": TypeRule,
    "row_count": RowCountRule,
    "freshness": FreshnessRule,
    "expression": ExpressionRule,
}


def rule_types() -> list[dict[str, Any]]:
    """Each rule type with the JSON Schema of its config (the builder's forms are drawn from it)."""
    out = []
    for name in RULE_TYPES:
        model = _MODELS[name]
        schema = model.model_json_schema()
        actions = schema["properties"]["action"].get("enum") or list(typing.get_args(Action))
        out.append(
            {
                "type": name,
                "description": " ".join((model.__doc__ or "").split()),
                "stream_level": name in ("row_count", "freshness"),
                "actions": actions,
                "config_schema": schema,
            }
        )
    return out
