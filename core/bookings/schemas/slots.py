"""Free slot shapes: the query and the answer."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from core.bookings.schemas.catalogue import ServiceRef
from core.bookings.schemas.common import BookableDate, TimeZone
from core.validation import Input, SlugRef


class SlotsQuery(Input):
    service_id: uuid.UUID
    from_date: BookableDate = Field(description="First day, in `time_zone` (at most a year back).")
    to_date: BookableDate = Field(description="Last day (inclusive), in `time_zone` (up to 5 years ahead).")
    time_zone: TimeZone = Field(default="UTC", description="The requester's zone: days and times use it.")
    provider: SlugRef | None = Field(default=None, description="Only this provider's slots.")

    @field_validator("to_date")
    @classmethod
    def _range(cls, to_date: dt.date, info: ValidationInfo) -> dt.date:
        return _to_date(to_date, info)


class MoveSlotsQuery(Input):
    """The times one booking could move to (`reschedule_slots`): its service, its length."""

    from_date: BookableDate = Field(description="First day, in `time_zone` (at most a year back).")
    to_date: BookableDate = Field(description="Last day (inclusive), in `time_zone` (up to 5 years ahead).")
    time_zone: TimeZone = Field(default="UTC", description="The requester's zone: days and times use it.")
    provider: SlugRef | None = Field(
        default=None, description="Move to this provider; omit to keep the booking's own."
    )

    @field_validator("to_date")
    @classmethod
    def _range(cls, to_date: dt.date, info: ValidationInfo) -> dt.date:
        return _to_date(to_date, info)


def _to_date(to_date: dt.date, info: ValidationInfo) -> dt.date:
    # A field's check, not the model's: the error names `to_date`, the argument to change.
    from_date = info.data.get("from_date")
    if from_date is None:  # invalid itself, and reported as such
        return to_date
    if to_date < from_date:
        raise ValueError("`to_date` is before `from_date`")
    if (to_date - from_date).days > 41:
        raise ValueError("ask for at most 42 days at a time")
    return to_date


class SlotOut(BaseModel):
    start: dt.datetime = Field(description="Start, in the requested time zone (ISO 8601 with offset).")
    end: dt.datetime
    providers: list[str] = Field(description="Slugs of providers free then; the first is next in turn.")


class SlotsOut(BaseModel):
    service: ServiceRef
    time_zone: str
    from_date: dt.date
    to_date: dt.date
    slots: list[SlotOut]
    truncated: bool = Field(description="True when more slots exist than returned: narrow the range.")
