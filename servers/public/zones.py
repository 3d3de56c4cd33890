"""The visitor's time zone on the public pages: the one chosen (`?tz=`), kept on links, and
what a time is shown in when none was chosen."""

from __future__ import annotations

import datetime as dt
from functools import cache
from urllib.parse import urlencode
from zoneinfo import available_timezones

from starlette.requests import Request

__all__ = ["asked_zone", "chosen", "tz_query", "zone_label", "zone_query", "zones"]


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
    if zone:
        return zone
    offset = start.utcoffset() or dt.timedelta(0)
    if not offset:
        return "UTC"
    sign, offset = ("-", -offset) if offset < dt.timedelta(0) else ("+", offset)
    hours, rest = divmod(int(offset.total_seconds()) // 60, 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def tz_query(zone: str | None, **more: str) -> str:
    """A page's query with the visitor's zone when one was chosen; without it, the times page
    shows the visitor's own (its script) or UTC."""
    return urlencode(({"tz": zone} if zone else {}) | more)


def zone_query(request: Request) -> str:
    """The zone a visitor chose on a link to this page, kept on its links to the times: "?tz=…"
    or nothing (the times page then shows the visitor's own zone)."""
    zone = chosen(request.query_params.get("tz"))
    return "?" + tz_query(zone) if zone else ""
