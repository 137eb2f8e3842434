"""Filters shared by the list endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms


class _UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    def clean(self, value: Any) -> dt.datetime | None:
        if value == "":
            # `?since=` is a mistake, not "no bound": django-filter would answer the unfiltered list.
            raise forms.ValidationError("Enter a date and time.", code="invalid")
        cleaned = super().clean(value)
        if cleaned is None:
            return None
        # PostgreSQL takes UTC offsets up to ±15:59 only; ISO 8601 allows up to ±23:59. Comparing in UTC
        # accepts every offset the format allows, and a moment outside the calendar is the client's error.
        try:
            return cleaned.astimezone(dt.UTC)
        except OverflowError:
            raise forms.ValidationError("Out of the supported date range.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time query parameter, compared in UTC whatever offset it was written with."""

    field_class = _UtcDateTimeField


class _TrueOrFalseField(forms.Field):
    widget = forms.TextInput

    def to_python(self, value: Any) -> bool | None:
        if value is None:
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("Must be true or false.", code="invalid")


class TrueOrFalseFilter(django_filters.BooleanFilter):
    """A boolean query parameter that is `true` or `false` and nothing else: django-filter's own reads any
    other value (`7`, `yes`, an empty string) as "not given" and answers the unfiltered list."""

    field_class = _TrueOrFalseField
