"""The expression language of filter (and, later, derive, validation rules and conditions).

Text is parsed by a hand-written tokenizer and a precedence-climbing (Pratt) parser into a small tree of
frozen dataclasses; nothing is ever handed to `eval`, `exec` or a template engine, and the tokenizer knows
no character that could reach Python (no `.`, `[`, `{`, `;`, no function calls yet). The tree is then

- formatted back to canonical text (`format_expr`; `parse(format_expr(n)) == n`),
- type-checked against a stream schema (`typecheck`), which is where unknown columns and type mistakes
  are reported with their position, and
- compiled to a `pyarrow.compute.Expression` (`compile_expr`), so evaluation is vectorised by Arrow.

The package's modules, each importing only those above it:

- `ast`: the tree's nodes, the errors, the limits, the operators and keywords, canonical formatting;
- `types`: the types of values (field types, null, any) and the constants compilation makes;
- `functions`: the built-in FUNCTIONS, each with its type check, its kernels and its text bound;
- `parser`: the tokenizer and the parser (`parse`);
- `checker`: type checking (`typecheck`, `check`, `columns_used`);
- `compiler`: compilation and evaluation (`compile_expr`, `evaluate`, `filter_table`, `run_clock`).

Everything public is imported from this package (`from apps.transformations.expressions import parse`).

Semantics are SQL's three-valued logic: a comparison with a null is null, `and`/`or` are Kleene, a
filter keeps the rows where the condition is true (null is dropped). Division is true division and gives
null (not an error, not infinity) for a zero divisor; `%` takes the sign of the divisor, as in Python.

Grammar, loosest binding first (every binary operator is left-associative except comparisons, which do
not chain):

    expr        := expr "or" expr | expr "and" expr | "not" expr
                 | sum ( cmp_op sum | ["not"] "in" "(" expr ("," expr)* ")" | "is" ["not"] "null" )?
                 | sum
    cmp_op      := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    sum         := sum ("+" | "-") product | product
    product     := product ("*" | "/" | "%") unary | unary
    unary       := "-" unary | primary
    primary     := NUMBER | STRING | "true" | "false" | "null" | IDENT | `QUOTED IDENT` | "(" expr ")"

Keywords are case-insensitive; column names are case-sensitive. A column whose name is a keyword or is
not a plain identifier is written in backquotes (`` `my col` ``, a backquote inside doubled).
"""

from apps.transformations.expressions.ast import (
    ARITHMETIC_OPS,
    BOOLEAN_OPS,
    COMPARISON_OPS,
    INT64_MAX,
    INT64_MIN,
    KEYWORDS,
    MAX_DEPTH,
    MAX_LENGTH,
    Binary,
    Call,
    Case,
    Column,
    ExpressionError,
    ExpressionLimitError,
    InList,
    IsNull,
    Literal,
    Node,
    Position,
    Unary,
    format_column,
    format_expr,
)
from apps.transformations.expressions.checker import Checked, check, columns_used, typecheck
from apps.transformations.expressions.compiler import (
    RUN_CLOCK,
    compile_expr,
    evaluate,
    filter_table,
    run_clock,
)
from apps.transformations.expressions.functions import FUNCTIONS, Function
from apps.transformations.expressions.parser import parse

__all__ = [
    "ARITHMETIC_OPS",
    "BOOLEAN_OPS",
    "COMPARISON_OPS",
    "FUNCTIONS",
    "INT64_MAX",
    "INT64_MIN",
    "KEYWORDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "RUN_CLOCK",
    "Binary",
    "Call",
    "Case",
    "Checked",
    "Column",
    "ExpressionError",
    "ExpressionLimitError",
    "Function",
    "InList",
    "IsNull",
    "Literal",
    "Node",
    "Position",
    "Unary",
    "check",
    "columns_used",
    "compile_expr",
    "evaluate",
    "filter_table",
    "format_column",
    "format_expr",
    "parse",
    "run_clock",
    "typecheck",
]
