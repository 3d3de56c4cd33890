"""The visitor's time zone on the public pages: the one chosen (`?tz=`), kept on links, and
what a time is shown in when none was chosen."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cache
from urllib.parse import urlencode
from zoneinfo import available_timezones

from starlette.requests import Request

__all__ = ["asked_zone", "chosen", "clock", "clock_labels", "tz_query", "zone_label", "zone_query", "zones"]


@cache
def zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z or z == "UTC")


def asked_zone(request: Request) -> tuple[str, bool]:
    given = request.query_params.get("tz", "")
    return (given, True) if given in zones() else ("UTC", False)


def chosen(value: str | None) -> str | None:
    """The zone a visitor chose (a page's `tz`), or None when none was or it is no zone."""
    return value if value in zones() else None


def zone_label(start: dt.datetime, zone: str | None) -> str:
    """What a time is shown in: the chosen zone, else the start's own offset as written (a
    link made by hand), e.g. "UTC+01:00", rather than a zone the visitor never chose."""
    return zone or _offset_label(start)


def _offset_label(at: dt.datetime) -> str:
    offset = at.utcoffset() or dt.timedelta(0)
    if not offset:
        return "UTC"
    sign, offset = ("-", -offset) if offset < dt.timedelta(0) else ("+", offset)
    hours, rest = divmod(int(offset.total_seconds()) // 60, 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def _told_apart(at: dt.datetime, alike: Sequence[dt.datetime]) -> str:
    """`at`'s "HH:MM" with what tells it from the other instants of `alike` that show the same
    (a fall-back change repeats an hour): the zone's abbreviation ("01:00 PST"), or the UTC
    offset where abbreviations don't tell them apart (some zones keep one through a change)."""
    names = [a.tzname() for a in alike]
    if all(names) and len(set(names)) == len(names):
        return f"{at:%H:%M} {at.tzname()}"
    return f"{at:%H:%M} {_offset_label(at)}"


def clock(at: dt.datetime) -> str:
    """`at`'s "HH:MM" on its own clock, told apart from the other instant it could name when its
    zone shows that time twice that day."""
    other = at.replace(fold=1 - at.fold)
    if other.utcoffset() == at.utcoffset():
        return f"{at:%H:%M}"
    return _told_apart(at, [at, other])


def clock_labels(starts: Sequence[dt.datetime]) -> list[str]:
    """The "HH:MM" of each start (one day's, on one clock); where two show the same, each of
    them also says which it is, so neither the text nor the accessible name repeats."""
    alike: dict[str, list[dt.datetime]] = {}
    for at in starts:
        alike.setdefault(f"{at:%H:%M}", []).append(at)
    return [
        f"{at:%H:%M}" if len(same := alike[f"{at:%H:%M}"]) == 1 else _told_apart(at, same) for at in starts
    ]


def tz_query(zone: str | None, **more: str) -> str:
    """A page's query with the visitor's zone when one was chosen; without it, the times page
    shows the visitor's own (its script) or UTC."""
    return urlencode(({"tz": zone} if zone else {}) | more)


def zone_query(request: Request) -> str:
    """The zone a visitor chose on a link to this page, kept on its links to the times: "?tz=…"
    or nothing (the times page then shows the visitor's own zone)."""
    zone = chosen(request.query_params.get("tz"))
    return "?" + tz_query(zone) if zone else ""
