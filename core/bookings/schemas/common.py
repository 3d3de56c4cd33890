"""Field types and validators shared by the bookings shapes: zones, dates, money, times."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from pydantic_core import PydanticCustomError

from core.validation import time_zones

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


LocationKind = Literal["in_person", "phone", "video", "client_address", "other"]


Assignment = Literal["specific", "round_robin"]


Status = Literal["held", "requested", "confirmed", "declined", "cancelled", "expired", "completed", "no_show"]


Outcome = Literal["completed", "no_show"]


Actor = Literal["provider", "client"]


def _time_zone(value: str) -> str:
    value = value.strip()
    if value in time_zones():
        return value
    raise ValueError("not an IANA time zone name, e.g. Europe/Paris or America/New_York")


@lru_cache(maxsize=1)
def _iso_4217() -> frozenset[str]:
    # Imported on first use: pycountry's import alone takes ~0.4 s, every CLI start would pay it.
    import pycountry

    return frozenset(c.alpha_3 for c in pycountry.currencies)


def _currency(value: str) -> str:
    value = value.strip().upper()
    if value not in _iso_4217():
        raise ValueError("an ISO 4217 currency code, e.g. EUR or USD")
    return value


_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _hhmm(value: str) -> str:
    value = value.strip()
    if len(value) == 4 and value[1] == ":":
        value = "0" + value
    if not _HHMM.fullmatch(value):
        raise ValueError("a time as HH:MM (00:00-24:00)")
    return value


# Bookings live around now: far dates overflow date arithmetic (a day past 9999-12-31, an offset
# off 0001-01-01) and mean nothing to a calendar. Slots and start times: a year back to five years
# ahead; filters and date overrides, which may look further back: 1900-2199. The date compared is
# the one as written (no conversion, which could itself overflow).
DateOrTime = TypeVar("DateOrTime", dt.date, dt.datetime)


BOOKABLE_PAST = dt.timedelta(days=366)


BOOKABLE_AHEAD = dt.timedelta(days=5 * 366)


CALENDAR_FIRST, CALENDAR_LAST = dt.date(1900, 1, 1), dt.date(2199, 12, 31)


def _within(day: dt.date, first: dt.date, last: dt.date, what: str) -> None:
    if not first <= day <= last:
        raise PydanticCustomError(
            "date_out_of_range",
            "{what} must be between {first} and {last}",
            {"what": what, "first": first.isoformat(), "last": last.isoformat()},
        )


def _day(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def bookable_range() -> tuple[dt.date, dt.date]:
    """The first and the last day a slot or a start may fall on, as of today (UTC)."""
    today = dt.datetime.now(dt.UTC).date()
    return today - BOOKABLE_PAST, today + BOOKABLE_AHEAD


def _bookable(value: DateOrTime) -> DateOrTime:
    _within(_day(value), *bookable_range(), "a bookable date (a year back to five years ahead)")
    return value


def is_bookable(value: dt.date | dt.datetime) -> bool:
    """Whether `BookableDate` / `BookableStart` would take this value: for a door that answers a
    refusal its own way (a page) instead of with the validation error."""
    try:
        _bookable(value)
    except PydanticCustomError:
        return False
    return True


def _calendar(value: DateOrTime) -> DateOrTime:
    _within(_day(value), CALENDAR_FIRST, CALENDAR_LAST, "the date")
    return value


BookableDate = Annotated[dt.date, AfterValidator(_bookable)]


BookableStart = Annotated[AwareDatetime, AfterValidator(_bookable)]


CalendarDate = Annotated[dt.date, AfterValidator(_calendar)]


CalendarMoment = Annotated[AwareDatetime, AfterValidator(_calendar)]


TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_time_zone)]


Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]


HHMM = Annotated[str, Field(max_length=5), AfterValidator(_hhmm)]


Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


Reason = Annotated[str, Field(min_length=1, max_length=2000)]


Text = Annotated[str, Field(max_length=5000)]


class Out(BaseModel):
    pass
