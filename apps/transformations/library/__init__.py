"""The step library beyond the core steps of `steps.py`: importing this package registers every step type.

One module per family (columns, rows, text, dates, json, combine, aggregate, pii, sql); each step is a
`StepType` subclass decorated with `register`, as described in docs/transformations.md.
"""

from . import aggregate, columns, combine, dates, nested, pii, rows, sql, text

__all__ = ["aggregate", "columns", "combine", "dates", "nested", "pii", "rows", "sql", "text"]
