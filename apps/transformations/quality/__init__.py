"""Validation rules on a node's output: their configs, their checks against the node's schema, and their
vectorised evaluation over the batches of one run.

A node of a pipeline document may carry `"rules": [{"id": …, "type": …, "action": …, …}, …]`. Each rule is
a pydantic model (unknown keys forbidden) chosen by `type`; `bind` checks it against the node's output
schema (columns exist, bounds and values fit the column's type, the regex compiles in RE2, the expression
type-checks as a boolean) and returns a `BoundRule` that evaluates batches.

Row rules (not_null, unique, range, regex, allowed_values, type, expression) compute a boolean "fails" mask
per batch with `pyarrow.compute`; stream rules (row_count, freshness) fold each batch into a running
value and are judged when the node's stream ends. Nulls pass every row rule except not_null (and fail an
expression rule, whose row passes only when the expression is true), as a SQL constraint would treat them —
missing values are not_null's business.

Actions: `fail` stops the run (`RuleFailed`, a configuration-type failure: a retry would fail the same way),
`reject` sends the row to the run's quarantine with the rule id and reason, `warn` keeps it and counts it.
A row failing several reject rules is quarantined once, under the first of them, with every reason.

The package's modules: `rules` (the configs and their errors), `binding` (a config fitted to a schema, the
vectorised checks) and `evaluation` (a node's rules during a run). Everything public is imported from
this package (`from apps.transformations.quality import NodeRules`).
"""

from apps.transformations.quality.binding import (
    BoundRule,
    HashSet,
    RuleCounts,
    bind,
    parse_rule,
    row_hashes,
    validate_rules,
)
from apps.transformations.quality.evaluation import SAMPLE_SIZE, CheckResult, NodeRules
from apps.transformations.quality.rules import (
    RULE_TYPES,
    Action,
    AllowedValuesRule,
    ExpressionRule,
    FreshnessRule,
    NotNullRule,
    RangeRule,
    RegexRule,
    RowCountRule,
    RuleBase,
    RuleConfig,
    RuleError,
    RuleFailed,
    TypeRule,
    UniqueRule,
    rule_types,
)

__all__ = [
    "RULE_TYPES",
    "SAMPLE_SIZE",
    "Action",
    "AllowedValuesRule",
    "BoundRule",
    "CheckResult",
    "ExpressionRule",
    "FreshnessRule",
    "HashSet",
    "NodeRules",
    "NotNullRule",
    "RangeRule",
    "RegexRule",
    "RowCountRule",
    "RuleBase",
    "RuleConfig",
    "RuleCounts",
    "RuleError",
    "RuleFailed",
    "TypeRule",
    "UniqueRule",
    "bind",
    "parse_rule",
    "row_hashes",
    "rule_types",
    "validate_rules",
]
