"""How text and values are cast between the data plane's types: which casts exist (`CASTS`), the
vectorised conversion the cast step and the type rules of quality share (`cast_values`), and how a row
value is written for the quarantine (`json_safe`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aggregator.dataplane import FieldType, arrow_type_for
from apps.transformations.expressions import INT64_MAX, INT64_MIN

_ANY_TYPE = frozenset(FieldType)
_SCALAR = frozenset({FieldType.STRING, FieldType.INTEGER, FieldType.NUMBER, FieldType.BOOLEAN})
_TIME = frozenset({FieldType.STRING, FieldType.DATE, FieldType.DATETIME})
# target type → the source types it can be cast from
CASTS: dict[FieldType, frozenset[FieldType]] = {
    FieldType.STRING: _ANY_TYPE,
    FieldType.INTEGER: _SCALAR,
    FieldType.NUMBER: _SCALAR,
    FieldType.BOOLEAN: _SCALAR,
    FieldType.DATE: _TIME,
    FieldType.DATETIME: _TIME,
    FieldType.JSON: frozenset({FieldType.JSON}),
}

# What a text value must look like to be cast: the patterns make the rules ours rather than the parser's
# quirks (Arrow reads "0x1F" as 31, which no CSV author means). What passes a pattern and still fails in
# Arrow (a 19-digit integer beyond 64 bits, the 30th of February) is masked by an exact vectorised check
# when the conversion fails; anything left after that is found by the halving search, which costs two
# kernel calls per bad value per halving level.
_INTEGER_TEXT = r"^-?[0-9]+$"
_NUMBER_TEXT = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# years 0001-9999: there is no year 0 (Python and most destinations refuse it)
_DATE_PART = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_DATE_TEXT = rf"^{_DATE_PART}$"
_DATETIME_TEXT = (
    rf"^{_DATE_PART}([T ]([01][0-9]|2[0-3])(:[0-5][0-9](:[0-5][0-9](\.[0-9]{{1,6}})?)?)?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?$"
)
_ZONE_SUFFIX = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
_TRUE_WORDS = ["true", "t", "yes", "y", "1"]
_FALSE_WORDS = ["false", "f", "no", "n", "0"]


def _where(mask: pa.Array, values: pa.Array) -> pa.Array:
    """values where mask is true, null elsewhere (and where mask is null)."""
    return pc.if_else(mask, values, pa.scalar(None, type=values.type))


def _bad_positions(values: pa.Array, convert: Callable[[pa.Array], pa.Array]) -> list[int]:
    """The positions whose conversion fails, found by halving: zero-copy slices, O(k log n) kernel calls
    for k bad values. Only reached for what the text patterns cannot see (overflow, impossible dates), so
    k is small."""
    try:
        convert(values)
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(values) == 1:
            return [0]
    half = len(values) // 2
    return _bad_positions(values.slice(0, half), convert) + [
        half + i for i in _bad_positions(values.slice(half), convert)
    ]


def _convert_or_null(
    values: pa.Array,
    convert: Callable[[pa.Array], pa.Array],
    exact: Callable[[pa.Array], pa.Array] | None = None,
) -> pa.Array:
    """`convert(values)`, with null for the values it cannot convert. `exact` (a mask of the values that
    will convert) is run only when the plain conversion fails: it costs more than the conversion."""
    try:
        return convert(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if exact is not None:
        values = _where(exact(values), values)
    try:
        return convert(values)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = _bad_positions(values, convert)
        keep = np.ones(len(values), dtype=bool)
        keep[bad] = False
        return convert(_where(pa.array(keep), values))


def _fits_int64(text: pa.Array) -> pa.Array:
    """For texts of digits with an optional minus: whether the value fits in 64 bits. Digit strings of
    one length compare as numbers do."""
    negative = pc.starts_with(text, "-")
    digits = pc.replace_substring_regex(text, r"^-?0*([0-9])", r"\1")  # no sign, no leading zeros
    length = pc.utf8_length(digits)
    limit = pc.if_else(negative, str(-INT64_MIN), str(INT64_MAX))
    return pc.or_(pc.less(length, 19), pc.and_(pc.equal(length, 19), pc.less_equal(digits, limit)))


def _real_dates(text: pa.Array) -> pa.Array:
    """For texts starting with YYYY-MM-DD: whether that is a day of the calendar (no 30th of February).
    strptime rolls an impossible day over into the next month, so the round trip tells them apart."""
    day = pc.utf8_slice_codeunits(text, 0, 10)
    parsed = pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True)
    return pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), day), False)


def _text_to(text: pa.Array, target: FieldType) -> pa.Array:
    if target in (FieldType.STRING, FieldType.JSON):
        return text
    if target == FieldType.BOOLEAN:
        lowered = pc.utf8_lower(text)
        return pc.if_else(
            pc.is_in(lowered, pa.array(_TRUE_WORDS)),
            True,
            pc.if_else(pc.is_in(lowered, pa.array(_FALSE_WORDS)), False, pa.scalar(None, pa.bool_())),
        )
    if target in (FieldType.INTEGER, FieldType.NUMBER):
        text = pc.replace_substring_regex(text, r"^\+", "")  # "+5" is five; Arrow would refuse it
    pattern = {
        FieldType.INTEGER: _INTEGER_TEXT,
        FieldType.NUMBER: _NUMBER_TEXT,
        FieldType.DATE: _DATE_TEXT,
        FieldType.DATETIME: _DATETIME_TEXT,
    }[target]
    candidates = _where(pc.match_substring_regex(text, pattern), text)
    exact = {FieldType.INTEGER: _fits_int64, FieldType.DATE: _real_dates, FieldType.DATETIME: _real_dates}
    if target != FieldType.DATETIME:
        arrow_type = arrow_type_for(target)
        return _convert_or_null(candidates, lambda v: pc.cast(v, arrow_type), exact.get(target))
    # Text with a zone is converted to UTC; text without one is taken as UTC already (the data plane's rule).
    utc = arrow_type_for(FieldType.DATETIME)
    zoned = pc.fill_null(pc.match_substring_regex(candidates, _ZONE_SUFFIX), False)
    with_zone = _convert_or_null(_where(zoned, candidates), lambda v: pc.cast(v, utc), _real_dates)
    naive = _convert_or_null(
        _where(pc.invert(zoned), candidates),
        lambda v: pc.cast(pc.cast(v, pa.timestamp("us")), utc),
        _real_dates,
    )
    return pc.if_else(zoned, with_zone, naive)


def cast_values(values: pa.Array, target: FieldType) -> tuple[pa.Array, pa.Array]:
    """(the values as they are compared, the cast values). A value that cannot be cast is null in the
    result; so a cell is bad exactly where the first is valid and the second is null."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    target_type = arrow_type_for(target)
    if values.type == target_type:
        return values, values
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        text = pc.cast(pc.utf8_trim_whitespace(values), pa.string())
        text = _where(pc.not_equal(text, ""), text)  # a blank is a missing value, not a bad one
        return text, _text_to(text, target)
    if target == FieldType.STRING:
        return values, pc.cast(values, pa.string())
    if target == FieldType.INTEGER and pa.types.is_floating(values.type):
        whole = pc.and_(pc.is_finite(values), pc.equal(pc.floor(values), values))
        in_range = pc.and_(pc.greater_equal(values, -(2.0**63)), pc.less(values, 2.0**63))
        candidates = _where(pc.and_(whole, in_range), values)
        return values, pc.cast(candidates, target_type)
    if target == FieldType.NUMBER and pa.types.is_integer(values.type):
        # Beyond 2**53 a float cannot hold every integer; like every database, round rather than refuse.
        return values, pc.cast(values, target_type, safe=False)
    return values, _convert_or_null(values, lambda v: pc.cast(v, target_type))


def json_safe(value: Any) -> Any:
    """A row value as the quarantine can store it (JSON)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)
