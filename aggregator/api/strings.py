"""Strings sent to the API are strings, as the schema says.

DRF's CharField (and the fields built on it: email, URL, slug, regex) takes a number where a string is due
and turns it into one (`5` → `"5"`, the code `012345` sent as a number → `"12345"`), and it checks
`max_length` after stripping surrounding whitespace, so a value longer than the documented `maxLength`
gets in. Both make the OpenAPI schema untrue about what is accepted; `install()` (run once at start-up by
aggregator/apps.py) makes every such field refuse a non-string and a value longer than its maximum as sent.
Query parameters and form fields arrive as strings already, so only JSON bodies see a difference.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

_lenient = serializers.CharField.to_internal_value


def _strict(self: serializers.CharField, data: Any) -> str:
    if not isinstance(data, str):
        self.fail("invalid")
    if self.max_length is not None and len(data) > self.max_length:
        self.fail("max_length", max_length=self.max_length)
    return str(_lenient(self, data))


def install() -> None:
    serializers.CharField.to_internal_value = _strict  # type: ignore[method-assign,assignment]
