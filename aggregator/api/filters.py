"""Filters shared by the list endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms


class _UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    def clean(self, value: Any) -> dt.datetime | None:
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
