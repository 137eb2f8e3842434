"""Validation helpers every app shares: one way to turn a pydantic error into the API's field errors.

It lives here, below the apps, so that an app validating a config with pydantic (connector configs, step
configs, quality rules) need not import another app for it.
"""

from __future__ import annotations

from pydantic import ValidationError as PydanticValidationError


def pydantic_errors(exc: PydanticValidationError) -> dict[str, list[str]]:
    """pydantic's errors keyed by dotted field path (`port`, `auth.token`). Input values are left out: they
    may be secrets."""
    out: dict[str, list[str]] = {}
    for error in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in error["loc"]) or "non_field_errors"
        out.setdefault(path, []).append(str(error["msg"]))
    return out
