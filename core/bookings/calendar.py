"""iCalendar (RFC 5545) documents for bookings, built with `icalendar`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import icalendar

from core import __version__

_STATUS = {"confirmed": "CONFIRMED", "requested": "TENTATIVE", "held": "TENTATIVE"}


@dataclass(frozen=True)
class Entry:
    booking_id: uuid.UUID
    status: str
    summary: str
    start_at: dt.datetime
    end_at: dt.datetime
    updated_at: dt.datetime
    sequence: int
    location: str | None = None
    description: str | None = None


def document(entries: Iterable[Entry], name: str) -> str:
    cal = icalendar.Calendar()
    cal.add("prodid", f"-//Atlilith//Bookings {__version__}//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    for e in entries:
        event = icalendar.Event()
        event.add("uid", f"{e.booking_id}@bookings.atlilith")
        event.add("dtstamp", e.updated_at.astimezone(dt.UTC))
        event.add("last-modified", e.updated_at.astimezone(dt.UTC))
        event.add("dtstart", e.start_at.astimezone(dt.UTC))
        event.add("dtend", e.end_at.astimezone(dt.UTC))
        # A reschedule bumps the sequence so calendar apps replace the old time.
        event.add("sequence", e.sequence)
        event.add("summary", e.summary)
        event.add("status", _STATUS.get(e.status, "CANCELLED"))
        if e.location:
            event.add("location", e.location)
        if e.description:
            event.add("description", e.description)
        cal.add_component(event)
    return str(cal.to_ical().decode())
