"""Working hours shapes: weekly hours, date overrides, and the line format agents write."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from core.bookings.schemas.common import HHMM, WEEKDAYS, CalendarDate, TimeZone, Weekday
from core.errors import FieldIssue, ValidationFailed
from core.tenancy.schemas import PersonRef
from core.validation import Input, issue_message


class TimeRange(Input):
    start: HHMM = Field(description="Local start, HH:MM.")
    end: HHMM = Field(description="Local end, HH:MM (24:00 = midnight at the end of the day).")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start == "24:00" or self.end <= self.start:
            raise ValueError("`end` must be after `start` on the same day")
        return self


class WeeklyHours(TimeRange):
    weekday: Weekday


class DateOverride(Input):
    date: CalendarDate
    intervals: list[TimeRange] = Field(
        default_factory=list,
        max_length=12,
        description="The hours of that day, replacing the weekly ones; empty = day off.",
    )


def _no_overlaps(ranges: list[TimeRange], where: str) -> None:
    ordered = sorted(ranges, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        if b.start < a.end:
            raise ValueError(f"{where}: {a.start}-{a.end} overlaps {b.start}-{b.end}")


def _or_lines(example: str) -> Callable[[dict[str, Any]], None]:
    """Document that a list also takes compact lines (the before-validators read them)."""

    def extra(schema: dict[str, Any]) -> None:
        schema["items"] = {"anyOf": [schema["items"], {"type": "string", "examples": [example]}]}

    return extra


class AvailabilityIn(Input):
    time_zone: TimeZone = Field(description="IANA zone the hours are in, e.g. Europe/Paris.")
    weekly: list[WeeklyHours] = Field(
        default_factory=list,
        max_length=100,
        description='Objects `{"weekday","start","end"}` or lines like "mon-fri 09:00-17:00" (mixable).',
        json_schema_extra=_or_lines("mon-fri 09:00-17:00"),
    )
    overrides: list[DateOverride] = Field(
        default_factory=list,
        max_length=400,
        description='Objects `{"date","intervals"}` or lines: "2026-12-24 off", "2026-12-27 10:00-14:00".',
        json_schema_extra=_or_lines("2026-12-24 off"),
    )

    # REST took objects and MCP took compact lines; both doors now take either, read here once.
    @field_validator("weekly", mode="before")
    @classmethod
    def _weekly_lines(cls, value: Any) -> Any:
        return read_weekly(value) if isinstance(value, list) else value

    @field_validator("overrides", mode="before")
    @classmethod
    def _override_lines(cls, value: Any) -> Any:
        return read_overrides(value) if isinstance(value, list) else value

    # Checked per field (not on the model), so the error names `weekly` or `overrides`; each
    # message starts with the day it is about ("mon: ...", "2026-12-24: ..."), which the portal
    # uses to show it on that day's field.
    @field_validator("weekly", mode="after")
    @classmethod
    def _weekly_consistent(cls, weekly: list[WeeklyHours]) -> list[WeeklyHours]:
        for day in WEEKDAYS:
            _no_overlaps([w for w in weekly if w.weekday == day], day)
        return weekly

    @field_validator("overrides", mode="after")
    @classmethod
    def _overrides_consistent(cls, overrides: list[DateOverride]) -> list[DateOverride]:
        seen: set[dt.date] = set()
        for o in overrides:
            if o.date in seen:
                raise ValueError(f"{o.date}: overridden twice")
            seen.add(o.date)
            _no_overlaps(o.intervals, o.date.isoformat())
        return overrides


def parse_weekly(lines: list[str]) -> list[WeeklyHours]:
    """`["mon-fri 09:00-17:00", "sat 10:00-13:00"]` -> weekly rules (the compact form tools take)."""
    rules: list[WeeklyHours] = []
    for line in lines:
        match = re.fullmatch(
            r"\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", line.lower()
        )
        if not match or match.group(1) not in WEEKDAYS or (match.group(2) and match.group(2) not in WEEKDAYS):
            raise ValueError(f"{line!r}: write e.g. 'mon 09:00-17:00' or 'mon-fri 09:00-12:30'")
        first = WEEKDAYS.index(match.group(1))
        last = WEEKDAYS.index(match.group(2)) if match.group(2) else first
        if last < first:
            raise ValueError(f"{line!r}: the day range runs backwards")
        for day in WEEKDAYS[first : last + 1]:
            rules.append(WeeklyHours(weekday=day, start=match.group(3), end=match.group(4)))
    return rules


def parse_overrides(lines: list[str]) -> list[DateOverride]:
    """`["2026-12-24 off", "2026-12-27 10:00-14:00 16:00-18:00"]` -> date overrides. Lines of
    one date merge; "off" and hours for one date contradict each other and are refused."""
    by_date: dict[dt.date, list[TimeRange]] = {}
    off: set[dt.date] = set()
    for line in lines:
        parts = line.split()
        try:
            day = dt.date.fromisoformat(parts[0]) if parts else None
        except ValueError:
            day = None
        if day is None or len(parts) < 2:
            raise ValueError(f"{line!r}: write e.g. '2026-12-24 off' or '2026-12-27 10:00-14:00'")
        closed = parts[1:] == ["off"]
        if (closed and by_date.get(day)) or (not closed and day in off):
            raise ValueError(f"{day}: both off and open; give the date one line")
        ranges = by_date.setdefault(day, [])
        if closed:
            off.add(day)
            continue
        for part in parts[1:]:
            start, _, end = part.partition("-")
            try:
                ranges.append(TimeRange(start=start, end=end))
            except ValidationError as exc:
                raise ValueError(f"{line!r}: {_lines_error(exc)}") from exc
    overrides: list[DateOverride] = []
    for d, r in by_date.items():
        try:
            overrides.append(DateOverride(date=d, intervals=r))
        except ValidationError as exc:  # a date out of range, too many ranges: said with the date
            raise ValueError(f"{d}: {_lines_error(exc)}") from exc
    return overrides


def _lines_error(exc: ValidationError) -> ValueError:
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    return ValueError(issue_message(first))


def read_weekly(items: list[Any]) -> list[Any]:
    """Weekly hours as given: compact lines are expanded to rules, objects pass on unchanged
    (the model validates them). The one reader behind REST, MCP and the portal."""
    out: list[Any] = []
    for item in items:
        if not isinstance(item, str):
            out.append(item)
            continue
        try:
            out.extend(parse_weekly([item]))
        except ValidationError as exc:
            raise ValueError(f"{item!r}: {_lines_error(exc)}") from exc
    return out


def read_overrides(items: list[Any]) -> list[Any]:
    """Date overrides as given: lines (several lines of one date merge) and objects."""
    parsed = parse_overrides([item for item in items if isinstance(item, str)])
    return [item for item in items if not isinstance(item, str)] + parsed


def availability_from_lines(
    time_zone: str, weekly: list[str | dict[str, Any]], overrides: list[str | dict[str, Any]]
) -> AvailabilityIn:
    """Hours in either form (`"mon-fri 09:00-17:00"`, `"2026-12-24 off"`, or the objects) as an
    AvailabilityIn, with a clear error naming the line that is wrong."""
    rules = _read_lines(
        "weekly",
        read_weekly,
        weekly,
        "write lines like 'mon-fri 09:00-17:00' or objects {weekday, start, end}",
    )
    days = _read_lines(
        "overrides",
        read_overrides,
        overrides,
        "write lines like '2026-12-24 off' or '2026-12-27 10:00-14:00', or {date, intervals}",
    )
    return AvailabilityIn.model_validate({"time_zone": time_zone, "weekly": rules, "overrides": days})


def _read_lines(field: str, read: Callable[[list[Any]], list[Any]], lines: list[Any], hint: str) -> list[Any]:
    """`read(lines)`, a line it cannot read refused as a validation error naming `field`."""
    try:
        return read(lines)
    except ValueError as exc:
        raise ValidationFailed(f"{field}: {exc}", hint=hint, errors=[FieldIssue(field, str(exc))]) from exc


class AvailabilityOut(BaseModel):
    provider: PersonRef
    context: Literal["personal", "org"]
    configured: bool = Field(description="False until hours are set: no slots are offered then.")
    time_zone: str | None
    weekly: list[WeeklyHours]
    overrides: list[DateOverride]
    updated_at: dt.datetime | None
