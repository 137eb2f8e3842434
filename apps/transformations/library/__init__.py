"""The built-in step types: importing this package registers every one of them (the app does so in
`TransformationsConfig.ready`).

One module per family (core: select, rename, filter, cast; columns, rows, text, dates, json, combine,
aggregate, pii, sql); each step is a `StepType` subclass of `apps/transformations/steps.py` decorated with
`register`, as described in docs/transformations.md.
"""

from . import aggregate, columns, combine, core, dates, nested, pii, rows, sql, text

# For the preview's forked child, which must not use the DuckDB connection it inherits.
from ._util import forget_inherited_connections

__all__ = [
    "aggregate",
    "columns",
    "combine",
    "core",
    "dates",
    "forget_inherited_connections",
    "nested",
    "pii",
    "rows",
    "sql",
    "text",
]
