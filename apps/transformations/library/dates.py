"""Date steps: parse text to datetimes, convert time zones, truncate, extract parts.

Datetimes in the data plane are UTC instants. A time zone matters only where wall-clock time does:
reading text written in local time, showing an instant in a zone, truncating to local days, extracting
local parts. Time zones are IANA names (`Europe/Paris`); an unknown name is a config error.
"""

from __future__ import annotations

import zoneinfo
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field as PydanticField
from pydantic import field_validator
from pydantic_core import PydanticCustomError

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, arrow_type_for
from apps.transformations.steps import StepConfig, StepError, StepOutput, StepType, derive_schema, register

from ._util import TEMPORAL_TYPES, TEXT_TYPES, column, new_name, set_column, text, typed_field, unique_names

UTC_TYPE = arrow_type_for(FieldType.DATETIME)


def time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "unknown_zone",
            "unknown time zone '{name}' (use an IANA name such as 'America/New_York')",
            {"name": name},
        ) from None
    return name


def _localised(values: pa.Array, zone: str) -> pa.Array:
    """UTC instants as the same instants labelled with a zone (so Arrow's calendar kernels work locally)."""
    return pc.cast(values, pa.timestamp("us", tz=zone))


# --- parse ---------------------------------------------------------------------------------------------


class ParseDatetimeConfig(StepConfig):
    column: str = PydanticField(
        title="Column", description="The text column to read.", examples=["departure"]
    )
    format: str = PydanticField(
        min_length=1,
        title="Format",
        description=(
            "A strptime format: %Y year, %m month, %d day, %H hour, %M minute, %S seconds, %z offset "
            "(+0100), %b month name, %p AM/PM."
        ),
        examples=["%d/%m/%Y %H:%M"],
    )
    timezone: str = PydanticField(
        default="UTC",
        title="Time zone",
        description="The zone of values written without an offset (wall-clock time there).",
        examples=["America/New_York"],
    )
    target: str | None = PydanticField(
        default=None, title="Target column", description="Where to write the result (default: in place)."
    )
    output: Literal["datetime", "date"] = PydanticField(
        default="datetime",
        title="Output type",
        description="datetime (a UTC instant) or date (the calendar day in the zone).",
        examples=["date"],
    )
    on_error: Literal["fail", "null"] = PydanticField(
        default="null",
        title="Unreadable values",
        description=(
            "fail: stop the run at the first text that does not match the format; null: make it null."
        ),
    )

    _zone = field_validator("timezone")(time_zone)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        try:
            pc.strptime(pa.array(["x"]), format=value, unit="us", error_is_null=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise PydanticCustomError(
                "invalid_format", "invalid format: {error}", {"error": str(exc)}
            ) from None
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else new_name(value)


@register
class ParseDatetimeStep(StepType[ParseDatetimeConfig]):
    slug = "parse_datetime"
    title = "Parse dates and times"
    description = (
        "Reads text with a strptime format into a datetime (UTC) or a date. Text without an offset is "
        "wall-clock time in the given zone; in a daylight-saving gap it is read as the first instant after "
        'the gap, in an overlap as the earlier instant. Example: {"column": "dep", "format": '
        '"%d/%m/%Y %H:%M", "timezone": "America/New_York"}.'
    )
    category = "dates"
    config_model = ParseDatetimeConfig

    def _output_schema(self, config: ParseDatetimeConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        typed_field(schema, config.column, "config.column", TEXT_TYPES, "text")
        new = Field(config.target or config.column, FieldType(config.output))
        if new.name in schema.field_names:
            return derive_schema(schema, [new if f.name == new.name else f for f in schema.fields])
        return derive_schema(schema, [*schema.fields, new])

    def _apply(self, config: ParseDatetimeConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        values = text(column(batch.table, config.column, "config.column"))
        parsed = pc.strptime(values, format=config.format, unit="us", error_is_null=True)
        if config.on_error == "fail":
            bad = pc.and_(pc.is_valid(values), pc.is_null(parsed))
            if pc.any(bad).as_py():
                row = pc.index(bad, True).as_py()
                raise StepError(
                    f"'{values[row].as_py()}' does not match the format '{config.format}' "
                    f"(row index {row} of the batch)",
                    field="config.format",
                )
        if parsed.type.tz is None:
            parsed = pc.assume_timezone(parsed, config.timezone, ambiguous="earliest", nonexistent="latest")
        result = pc.cast(parsed, UTC_TYPE)
        if config.output == "date":
            # The calendar day where the text was written (its zone), not the UTC day.
            result = pc.cast(pc.local_timestamp(_localised(result, config.timezone)), pa.date32())
        table = set_column(batch.table, config.target or config.column, result, FieldType(config.output))
        return StepOutput(Batch(table, stream=batch.stream))


def _iso_with_offset(utc: pa.Array, wall: pa.Array) -> pa.Array:
    """ISO 8601 text of the wall-clock times with their offset from UTC ('2013-01-01T00:00:00-05:00'),
    assembled from casts and arithmetic: Arrow's strftime with a zone is ten times slower."""
    clock = pc.cast(wall, pa.string())  # '2013-01-01 00:00:00.000000'
    clock = pc.replace_substring_regex(clock, r"\.0+$", "")  # microseconds only when there are some
    clock = pc.replace_substring(clock, " ", "T", max_replacements=1)
    minutes = pc.divide(
        pc.subtract(pc.cast(wall, pa.int64()), pc.cast(pc.cast(utc, pa.timestamp("us")), pa.int64())),
        60_000_000,
    )
    sign = pc.if_else(pc.less(minutes, 0), "-", "+")
    size = pc.abs(minutes)
    hours = pc.utf8_lpad(pc.cast(pc.divide(size, 60), pa.string()), width=2, padding="0")
    mins = pc.utf8_lpad(
        pc.cast(pc.subtract(size, pc.multiply(pc.divide(size, 60), 60)), pa.string()), width=2, padding="0"
    )
    return pc.binary_join_element_wise(clock, sign, hours, ":", mins, "")


# --- convert time zone ---------------------------------------------------------------------------------


class ConvertTimezoneConfig(StepConfig):
    column: str = PydanticField(title="Column", description="A datetime column.", examples=["time_hour"])
    timezone: str = PydanticField(
        title="Time zone", description="The IANA zone to show the instants in.", examples=["America/New_York"]
    )
    output: Literal["text", "wall_clock"] = PydanticField(
        default="text",
        title="Output",
        description=(
            "text: ISO 8601 with the zone's offset ('2013-01-01T00:00:00-05:00'), a json-safe way to carry "
            "local time. wall_clock: a datetime holding the local clock reading as if it were UTC, for "
            "destinations that want local time without a zone."
        ),
    )
    target: str | None = PydanticField(default=None, title="Target column", description="Default: in place.")

    _zone = field_validator("timezone")(time_zone)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else new_name(value)


@register
class ConvertTimezoneStep(StepType[ConvertTimezoneConfig]):
    slug = "convert_timezone"
    title = "Convert time zone"
    description = (
        "Shows datetimes (UTC instants) in another zone: as ISO text with the local offset, or as the local "
        'wall-clock reading. Example: {"column": "time_hour", "timezone": "Europe/Paris"}.'
    )
    category = "dates"
    config_model = ConvertTimezoneConfig

    def _type(self, config: ConvertTimezoneConfig) -> FieldType:
        return FieldType.STRING if config.output == "text" else FieldType.DATETIME

    def _output_schema(self, config: ConvertTimezoneConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        source = typed_field(schema, config.column, "config.column", {FieldType.DATETIME}, "a datetime")
        new = Field(config.target or config.column, self._type(config), nullable=source.nullable)
        if new.name in schema.field_names:
            return derive_schema(schema, [new if f.name == new.name else f for f in schema.fields])
        return derive_schema(schema, [*schema.fields, new])

    def _apply(self, config: ConvertTimezoneConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        values = pc.cast(column(batch.table, config.column, "config.column"), UTC_TYPE)
        local = _localised(values, config.timezone)
        if config.output == "text":
            result = _iso_with_offset(values, pc.local_timestamp(local))
        else:
            result = pc.cast(pc.local_timestamp(local), UTC_TYPE)
        table = set_column(batch.table, config.target or config.column, result, self._type(config))
        return StepOutput(Batch(table, stream=batch.stream))


# --- truncate ------------------------------------------------------------------------------------------

_UNITS = ("year", "quarter", "month", "week", "day", "hour", "minute", "second")


class TruncateDatetimeConfig(StepConfig):
    columns: list[str] = PydanticField(
        min_length=1,
        title="Columns",
        description="Date or datetime columns, truncated in place.",
        examples=[["time_hour"]],
    )
    unit: Literal["year", "quarter", "month", "week", "day", "hour", "minute", "second"] = PydanticField(
        title="Unit", description="Weeks start on Monday.", examples=["day"]
    )
    timezone: str = PydanticField(
        default="UTC",
        title="Time zone",
        description="Whose days (and hours, in zones with odd offsets) to truncate to; dates ignore it.",
        examples=["America/New_York"],
    )

    _unique = field_validator("columns")(unique_names)
    _zone = field_validator("timezone")(time_zone)


@register
class TruncateDatetimeStep(StepType[TruncateDatetimeConfig]):
    slug = "truncate_datetime"
    title = "Truncate dates and times"
    description = (
        "Rounds dates and datetimes down to the start of their year, quarter, month, week (Monday), day, "
        'hour, minute or second, in the given zone. Example: {"columns": ["time_hour"], "unit": "day"}.'
    )
    category = "dates"
    config_model = TruncateDatetimeConfig

    def _output_schema(self, config: TruncateDatetimeConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        for i, name in enumerate(config.columns):
            f = typed_field(schema, name, f"config.columns.{i}", TEMPORAL_TYPES, "a date or datetime")
            if f.type == FieldType.DATE and config.unit in ("hour", "minute", "second"):
                raise StepError(f"column '{name}' is a date: it has no {config.unit}s", field="config.unit")
        return schema

    def _apply(self, config: TruncateDatetimeConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        table = batch.table
        for i, name in enumerate(config.columns):
            values = column(table, name, f"config.columns.{i}")
            if pa.types.is_timestamp(values.type):
                local = _localised(pc.cast(values, UTC_TYPE), config.timezone)
                result = pc.cast(
                    pc.floor_temporal(local, unit=config.unit, week_starts_monday=True), UTC_TYPE
                )
                table = set_column(table, name, result, FieldType.DATETIME)
            else:
                result = pc.floor_temporal(values, unit=config.unit, week_starts_monday=True)
                table = set_column(table, name, result, FieldType.DATE)
        return StepOutput(Batch(table, stream=batch.stream))


# --- extract parts -------------------------------------------------------------------------------------

_PARTS = {
    "year": pc.year,
    "quarter": pc.quarter,
    "month": pc.month,
    "day": pc.day,
    "hour": pc.hour,
    "minute": pc.minute,
    "second": pc.second,
    "day_of_week": lambda v: pc.day_of_week(v, count_from_zero=False, week_start=1),  # 1 = Monday
    "day_of_year": pc.day_of_year,
    "week": pc.iso_week,
}
Part = Literal[
    "year", "quarter", "month", "day", "hour", "minute", "second", "day_of_week", "day_of_year", "week"
]


class ExtractDatePartsConfig(StepConfig):
    column: str = PydanticField(
        title="Column", description="A date or datetime column.", examples=["time_hour"]
    )
    parts: list[Part] = PydanticField(
        min_length=1,
        title="Parts",
        description="day_of_week is ISO (1 = Monday … 7 = Sunday); week is the ISO week number.",
        examples=[["year", "month", "day_of_week"]],
    )
    prefix: str | None = PydanticField(
        default=None,
        title="Column prefix",
        description="New columns are named <prefix><part>; default <column>_.",
        examples=["dep_"],
    )
    timezone: str = PydanticField(default="UTC", title="Time zone", description="Whose calendar and clock.")

    _zone = field_validator("timezone")(time_zone)

    @field_validator("parts")
    @classmethod
    def _unique(cls, parts: list[str]) -> list[str]:
        if len(set(parts)) != len(parts):
            raise PydanticCustomError("duplicate_part", "a part is listed twice")
        return parts

    def names(self) -> dict[str, str]:
        prefix = self.prefix if self.prefix is not None else f"{self.column}_"
        return {part: f"{prefix}{part}" for part in self.parts}


@register
class ExtractDatePartsStep(StepType[ExtractDatePartsConfig]):
    slug = "extract_date_parts"
    title = "Extract date parts"
    description = (
        "Adds integer columns with parts of a date or datetime (year, quarter, month, day, hour, minute, "
        'second, day_of_week, day_of_year, week). Example: {"column": "time_hour", "parts": ["year", '
        '"month"]} adds time_hour_year and time_hour_month.'
    )
    category = "dates"
    config_model = ExtractDatePartsConfig

    def _output_schema(self, config: ExtractDatePartsConfig, inputs: list[StreamSchema]) -> StreamSchema:
        schema = inputs[0]
        f = typed_field(schema, config.column, "config.column", TEMPORAL_TYPES, "a date or datetime")
        new = []
        for i, (part, name) in enumerate(config.names().items()):
            if f.type == FieldType.DATE and part in ("hour", "minute", "second"):
                raise StepError(
                    f"column '{config.column}' is a date: it has no {part}", field=f"config.parts.{i}"
                )
            if name in schema.field_names:
                raise StepError(f"the column '{name}' exists already", field=f"config.parts.{i}")
            new_name(name)
            new.append(Field(name, FieldType.INTEGER, nullable=f.nullable))
        return derive_schema(schema, [*schema.fields, *new])

    def _apply(self, config: ExtractDatePartsConfig, batch: Batch, schema: StreamSchema) -> StepOutput:
        values = column(batch.table, config.column, "config.column")
        if pa.types.is_timestamp(values.type):
            values = _localised(pc.cast(values, UTC_TYPE), config.timezone)
        table = batch.table
        for part, name in config.names().items():
            table = set_column(table, name, _PARTS[part](values), FieldType.INTEGER)
        return StepOutput(Batch(table, stream=batch.stream))
